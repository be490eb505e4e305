# shellcheck shell=bash
# Milvus 2.3 with RBAC for the context surface's Milvus tests: the PyPI `milvus` build (a
# standalone Milvus with embedded etcd, rocksmq and local storage, started by `milvus-server`)
# and pymilvus, which the tests' seeding and agent-search scripts use, in the shared venv.
# pymilvus 2.3 imports pkg_resources (gone from setuptools 70) and environs 9 (which breaks with
# marshmallow 4), hence the two caps. The test runs Milvus in a private network namespace, so
# it needs iproute2 and root.
#
# Sourced by scripts/test; expects VENV (created by the caller). Exports FIREBREAK_MILVUS_SERVER
# (the milvus-server launcher) and FIREBREAK_MILVUS_PYTHON (a python that imports pymilvus).

MILVUS_VERSION="2.3.5"
PYMILVUS_VERSION="2.3.8"

install_milvus_servers() {
    local py="$VENV/bin/python"
    # Versions only (importing pymilvus takes seconds); a later install that lifted one of the
    # caps re-runs this one.
    if ! "$py" -c "import importlib.metadata as m, sys; major = lambda p: int(m.version(p).split('.')[0]); sys.exit(m.version('milvus') != '$MILVUS_VERSION' or m.version('pymilvus') != '$PYMILVUS_VERSION' or major('setuptools') >= 70 or major('marshmallow') >= 4)" 2>/dev/null; then
        printf '==> installing milvus==%s and pymilvus==%s into %s\n' \
            "$MILVUS_VERSION" "$PYMILVUS_VERSION" "$VENV" >&2
        "$py" -m pip install --quiet --disable-pip-version-check \
            "milvus==$MILVUS_VERSION" "pymilvus==$PYMILVUS_VERSION" "setuptools<70" "marshmallow<4"
    fi
    if ! command -v ip >/dev/null; then
        printf '==> installing iproute2 (ip netns, for the Milvus test)\n' >&2
        apt-get update -qq && apt-get install -y -qq iproute2
    fi
    export FIREBREAK_MILVUS_SERVER="$VENV/bin/milvus-server"
    export FIREBREAK_MILVUS_PYTHON="$py"
}
