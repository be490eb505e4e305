# Sourced by ./scripts/test. Installs the servers the context-surface tests run against.
#
# install_context_servers: PostgreSQL 16 + pgvector from the PyPI `pgserver` wheel, into $VENV.
# Postgres refuses to run as root and runs as `nobody`, which cannot traverse /root (where the
# venv usually lives), so its install tree is copied to a world-readable directory once.
# Exports FIREBREAK_PG_BIN (the directory holding initdb and postgres).

PGSERVER_VERSION="0.1.4"

install_context_servers() {
    local py="$VENV/bin/python"
    if ! "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('pgserver') != '$PGSERVER_VERSION')" 2>/dev/null; then
        log "installing pgserver==$PGSERVER_VERSION (PostgreSQL 16 + pgvector) into $VENV"
        "$py" -m pip install --quiet --disable-pip-version-check "pgserver==$PGSERVER_VERSION"
    fi
    # The wheel's binaries find their bundled libraries through RPATH
    # $ORIGIN/../../../pgserver.libs: copy both directories, keeping that layout.
    local site
    site="$("$py" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("pgserver").submodule_search_locations[0]))')"
    local dest="${FIREBREAK_PG_HOME:-/var/tmp/firebreak-pgserver-$PGSERVER_VERSION}"
    if [[ ! -x "$dest/pgserver/pginstall/bin/postgres" ]]; then
        log "copying PostgreSQL to $dest (readable by the unprivileged user it runs as)"
        rm -rf "$dest" "$dest.partial"
        mkdir -p "$dest.partial"
        cp -a "$site/pgserver" "$site/pgserver.libs" "$dest.partial/"
        chmod -R a+rX "$dest.partial"
        chmod a+rx "$dest.partial"
        mv "$dest.partial" "$dest"
    fi
    export FIREBREAK_PG_BIN="$dest/pgserver/pginstall/bin"
}
