#!/usr/bin/env bash
# Vendors the dashboard's browser libraries from the npm registry into package data (run by `make vendor`).
# Pinned versions; the app serves these files itself, so nothing is fetched at run time (no CDN, no Node).
set -euo pipefail
HTMX_VERSION=4.0.1
ECHARTS_VERSION=6.1.0
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX_VERSION" "echarts@$ECHARTS_VERSION" >/dev/null
mkdir htmx echarts
tar xzf "htmx.org-$HTMX_VERSION.tgz" -C htmx
tar xzf "echarts-$ECHARTS_VERSION.tgz" -C echarts
mkdir -p "$dest"
cp htmx/package/dist/htmx.min.js "$dest/htmx.min.js"
cp echarts/package/dist/echarts.min.js "$dest/echarts.min.js"
cp echarts/package/i18n/langZH.js "$dest/echarts-langZH.js"
cp echarts/package/i18n/langEN.js "$dest/echarts-langEN.js"
cp htmx/package/LICENSE "$dest/LICENSE.htmx.txt"
cp echarts/package/LICENSE "$dest/LICENSE.echarts.txt"
cat > "$dest/VENDORED.md" <<MD
# Vendored browser libraries

Taken from the npm registry by \`make vendor\` (api/dashboard/vendor.sh); served by the app from package data.

| file | package | version | licence |
|---|---|---|---|
| htmx.min.js | htmx.org | $HTMX_VERSION | $(node -p "require('./htmx/package/package.json').license") (LICENSE.htmx.txt) |
| echarts.min.js | echarts | $ECHARTS_VERSION | $(node -p "require('./echarts/package/package.json').license") (LICENSE.echarts.txt) |
| echarts-langZH.js, echarts-langEN.js | echarts (i18n/) | $ECHARTS_VERSION | same |

sha256:
\`\`\`
$(cd "$dest" && sha256sum htmx.min.js echarts.min.js echarts-langZH.js echarts-langEN.js)
\`\`\`
MD
echo "vendored htmx.org $HTMX_VERSION and echarts $ECHARTS_VERSION into $dest"
