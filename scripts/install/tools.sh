# shellcheck shell=bash
# Real MCP software for the tools-gateway tests: the official Python SDK (FastMCP server and
# client) in the shared venv, and @modelcontextprotocol/server-everything from npm in a private
# prefix (never global, so nothing on the machine changes but the cache).
#
# Sourced by scripts/test; expects FIREBREAK_CACHE and VENV (created by the caller).

MCP_PY_VERSION="2.3.0"
MCP_EVERYTHING_VERSION="2026.8.31"

install_tools_servers() {
    local py="$VENV/bin/python"
    if ! "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$MCP_PY_VERSION')" 2>/dev/null; then
        printf '==> installing mcp==%s into %s\n' "$MCP_PY_VERSION" "$VENV" >&2
        "$py" -m pip install --quiet --disable-pip-version-check "mcp==$MCP_PY_VERSION"
    fi
    local prefix="$FIREBREAK_CACHE/npm"
    local pkg="$prefix/node_modules/@modelcontextprotocol/server-everything"
    if ! grep -q "\"version\": \"$MCP_EVERYTHING_VERSION\"" "$pkg/package.json" 2>/dev/null; then
        printf '==> installing @modelcontextprotocol/server-everything@%s into %s\n' \
            "$MCP_EVERYTHING_VERSION" "$prefix" >&2
        mkdir -p "$prefix"
        npm install --prefix "$prefix" --no-audit --no-fund --silent \
            "@modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION"
    fi
    export FIREBREAK_MCP_PYTHON="$py"
    export FIREBREAK_MCP_EVERYTHING="$pkg"
}
