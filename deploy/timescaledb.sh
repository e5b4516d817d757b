#!/bin/sh
# Build and install TimescaleDB (Apache-2 edition) from Debian trixie's source package against the
# machine's own PostgreSQL server, then preload it and restart the cluster. Recipe: DESIGN.md
# "TimescaleDB on these machines". The machine's apt configuration is left untouched: the trixie
# deb-src line lives in a private list with private state and cache directories.
#
# Usage (as root, Debian/Ubuntu):  sh deploy/timescaledb.sh        (or: make timescaledb)
# Environment: PG_VERSION (default: the newest installed server with a cluster), PG_CLUSTER (main),
#              WORKDIR (/var/tmp/shopfloor-timescaledb), MIRROR (default: from the machine's apt sources).
# Idempotent: if the extension is installed and preloaded by the running server it says so and exits 0.
set -eu

say() { printf 'timescaledb: %s\n' "$*"; }
die() { printf 'timescaledb: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (try: sudo sh $0)"
[ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1 \
    || die "not a Debian/Ubuntu system (no /etc/debian_version or apt-get); install TimescaleDB from its official packages"
command -v pg_lsclusters >/dev/null 2>&1 || die "no PostgreSQL server found (postgresql-common's pg_lsclusters is missing)"

CLUSTER=${PG_CLUSTER:-main}
if [ -z "${PG_VERSION:-}" ]; then
    PG_VERSION=$(pg_lsclusters -h 2>/dev/null | awk -v c="$CLUSTER" '$2 == c {print $1}' | sort -n | tail -n 1)
fi
[ -n "$PG_VERSION" ] && [ -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ] \
    || die "no PostgreSQL server found (no cluster '$CLUSTER' with a server binary in /usr/lib/postgresql/*/bin)"
case "$PG_VERSION" in
    14|15|16|17) ;;
    *) die "PostgreSQL $PG_VERSION is not supported by TimescaleDB 2.19 (needs 14-17)" ;;
esac

PG_CONFIG=/usr/lib/postgresql/$PG_VERSION/bin/pg_config
CONF_DIR=/etc/postgresql/$PG_VERSION/$CLUSTER/conf.d
CONF_FILE=$CONF_DIR/timescaledb.conf
CONTROL=/usr/share/postgresql/$PG_VERSION/extension/timescaledb.control

psql_admin() { runuser -u postgres -- psql -p "$PORT" -XAtq -d postgres -c "$1" 2>/dev/null; }
PORT=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$CLUSTER" '$1 == v && $2 == c {print $3}')
running_preload() { psql_admin "SHOW shared_preload_libraries" || true; }

installed() { [ -f "$CONTROL" ] && [ -f "/usr/lib/postgresql/$PG_VERSION/lib/timescaledb.so" ]; }
preloaded() { running_preload | tr ',' '\n' | tr -d ' "' | grep -qx timescaledb; }

if installed && preloaded; then
    say "already installed and preloaded in PostgreSQL $PG_VERSION/$CLUSTER ($(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$CONTROL")); nothing to do"
    exit 0
fi

if ! installed; then
    WORKDIR=${WORKDIR:-/var/tmp/shopfloor-timescaledb}
    if [ -z "${MIRROR:-}" ]; then
        # The machine's own main-archive mirror: deb822 URIs (not the security archive), else sources.list.
        MIRROR=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | awk 'tolower($1) == "uris:" {for (i = 2; i <= NF; i++) print $i}' \
            | grep -v -- '-security' | grep -i 'debian' | head -n 1 || true)
        if [ -z "$MIRROR" ] && [ -r /etc/apt/sources.list ]; then
            MIRROR=$(awk '$1 == "deb" || $1 == "deb-src" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
                /etc/apt/sources.list | grep -v -- '-security' | head -n 1 || true)
        fi
        MIRROR=${MIRROR:-http://deb.debian.org/debian}
    fi
    say "building from Debian trixie source (mirror $MIRROR) for PostgreSQL $PG_VERSION in $WORKDIR"
    rm -rf "$WORKDIR"
    mkdir -p "$WORKDIR/lists/partial" "$WORKDIR/cache/archives/partial" "$WORKDIR/src"
    LIST=$WORKDIR/trixie-src.list
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" > "$LIST"
    # -o options only: the machine's own sources, lists and cache stay as they are.
    set -- -q -o "Dir::Etc::SourceList=$LIST" -o Dir::Etc::SourceParts=/dev/null \
        -o "Dir::State::Lists=$WORKDIR/lists" -o "Dir::Cache=$WORKDIR/cache" -o APT::Sandbox::User=root
    apt-get "$@" update >"$WORKDIR/apt-update.log" 2>&1 \
        || die "build failure: could not read trixie sources from $MIRROR (see $WORKDIR/apt-update.log)"
    (cd "$WORKDIR/src" && apt-get "$@" source --download-only timescaledb) >"$WORKDIR/apt-source.log" 2>&1 \
        || die "build failure: could not download the timescaledb source package (see $WORKDIR/apt-source.log)"

    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "postgresql-server-dev-$PG_VERSION" cmake >"$WORKDIR/apt-install.log" 2>&1; then
        apt-get update -q >>"$WORKDIR/apt-install.log" 2>&1 || true
        apt-get install -y -q "postgresql-server-dev-$PG_VERSION" cmake >>"$WORKDIR/apt-install.log" 2>&1 \
            || die "build failure: apt-get install postgresql-server-dev-$PG_VERSION cmake failed (see $WORKDIR/apt-install.log)"
    fi

    ORIG=$(ls "$WORKDIR"/src/timescaledb_*.orig.tar.* 2>/dev/null | head -n 1 || true)
    [ -n "$ORIG" ] || die "build failure: no timescaledb_*.orig.tar.* in $WORKDIR/src"
    mkdir -p "$WORKDIR/build"
    tar -xf "$ORIG" -C "$WORKDIR/build" --strip-components=1
    cd "$WORKDIR/build"
    cmake -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DUSE_TELEMETRY=OFF -DSEND_TELEMETRY_DEFAULT=OFF . >"$WORKDIR/cmake.log" 2>&1 \
        || die "build failure: cmake failed (see $WORKDIR/cmake.log)"
    { make -j2 && make install; } >"$WORKDIR/make.log" 2>&1 \
        || die "build failure: make failed (see $WORKDIR/make.log)"
    installed || die "build failure: make install did not put timescaledb into /usr/lib/postgresql/$PG_VERSION"
    say "installed $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$CONTROL")"
fi

# Preload, keeping any library the server already preloads.
CURRENT=$(running_preload | tr -d ' "')
case ",$CURRENT," in
    *,timescaledb,*) LIBS=$CURRENT ;;
    ,,) LIBS=timescaledb ;;
    *) LIBS=timescaledb,$CURRENT ;;
esac
mkdir -p "$CONF_DIR"
printf "# written by shopfloor deploy/timescaledb.sh\nshared_preload_libraries = '%s'\n" "$LIBS" > "$CONF_FILE"
chown postgres:postgres "$CONF_FILE" 2>/dev/null || true
pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$CLUSTER" restart \
    || die "PostgreSQL $PG_VERSION/$CLUSTER did not restart; check $CONF_FILE and the server log"
preloaded || die "PostgreSQL $PG_VERSION/$CLUSTER restarted but does not preload timescaledb (is conf.d included?)"
say "installed and preloaded in PostgreSQL $PG_VERSION/$CLUSTER; CREATE EXTENSION timescaledb now works in any database"
