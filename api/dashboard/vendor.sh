#!/usr/bin/env bash
# Vendors the dashboard's browser libraries (and Swagger UI for /docs) from the npm registry into package data (run by `make vendor`).
# Pinned versions; the app serves these files itself, so nothing is fetched at run time (no CDN, no Node).
set -euo pipefail
HTMX_VERSION=4.0.1
ECHARTS_VERSION=6.1.0
SWAGGER_UI_VERSION=5.35.0  # /docs (api/routes/docs.py)
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX_VERSION" "echarts@$ECHARTS_VERSION" "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null
mkdir htmx echarts swagger
tar xzf "htmx.org-$HTMX_VERSION.tgz" -C htmx
tar xzf "echarts-$ECHARTS_VERSION.tgz" -C echarts
tar xzf "swagger-ui-dist-$SWAGGER_UI_VERSION.tgz" -C swagger
mkdir -p "$dest"
cp htmx/package/dist/htmx.min.js "$dest/htmx.min.js"
cp echarts/package/dist/echarts.min.js "$dest/echarts.min.js"
cp echarts/package/i18n/langZH.js "$dest/echarts-langZH.js"
cp echarts/package/i18n/langEN.js "$dest/echarts-langEN.js"
cp swagger/package/swagger-ui-bundle.js "$dest/swagger-ui-bundle.js"
cp swagger/package/swagger-ui.css "$dest/swagger-ui.css"
cp htmx/package/LICENSE "$dest/LICENSE.htmx.txt"
cp swagger/package/LICENSE "$dest/LICENSE.swagger-ui.txt"
cp echarts/package/LICENSE "$dest/LICENSE.echarts.txt"
cat > "$dest/VENDORED.md" <<MD
# Vendored browser libraries

Taken from the npm registry by \`make vendor\` (api/dashboard/vendor.sh); served by the app from package data.

| file | package | version | licence |
|---|---|---|---|
| htmx.min.js | htmx.org | $HTMX_VERSION | $(node -p "require('./htmx/package/package.json').license") (LICENSE.htmx.txt) |
| echarts.min.js | echarts | $ECHARTS_VERSION | $(node -p "require('./echarts/package/package.json').license") (LICENSE.echarts.txt) |
| echarts-langZH.js, echarts-langEN.js | echarts (i18n/) | $ECHARTS_VERSION | same |
| swagger-ui-bundle.js, swagger-ui.css (for /docs) | swagger-ui-dist | $SWAGGER_UI_VERSION | $(node -p "require('./swagger/package/package.json').license") (LICENSE.swagger-ui.txt) |

sha256:
\`\`\`
$(cd "$dest" && sha256sum htmx.min.js echarts.min.js echarts-langZH.js echarts-langEN.js \
  swagger-ui-bundle.js swagger-ui.css)
\`\`\`
MD
echo "vendored htmx.org $HTMX_VERSION, echarts $ECHARTS_VERSION and swagger-ui-dist $SWAGGER_UI_VERSION into $dest"
