# shellcheck shell=bash
# The delegation shims (shims/python, installed editable) with the real frameworks their tests
# drive: LangGraph, CrewAI, AutoGen AgentChat and a2a-sdk, versions pinned in its pyproject.
#
# They get a venv of their own: crewai 1.15 requires mcp<2 while the tools-gateway tests need
# mcp 2.x in the shared venv, so the two cannot share one.
#
# Sourced by scripts/test; expects FIREBREAK_CACHE.

install_delegation_shims() {
    local venv="$FIREBREAK_CACHE/shim-venv"
    local py="$venv/bin/python"
    local shims
    shims="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../shims/python" && pwd)"
    if [[ ! -x "$py" ]]; then
        printf '==> creating %s\n' "$venv" >&2
        python3 -m venv "$venv" || {
            rm -rf "$venv"
            apt-get update -qq && apt-get install -y -qq python3-venv
            python3 -m venv "$venv"
        }
    fi
    # Reinstall only when the pins in pyproject.toml changed since the last install.
    local stamp="$venv/.firebreak-shim-pyproject"
    if ! cmp -s "$shims/pyproject.toml" "$stamp" \
        || ! "$py" -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ('firebreak_shim', 'langgraph', 'crewai', 'autogen_agentchat', 'autogen_ext', 'a2a', 'pytest')))" 2>/dev/null; then
        printf '==> installing firebreak-shim[test] (editable) into %s\n' "$venv" >&2
        "$py" -m pip install --quiet --disable-pip-version-check -e "$shims[test]"
        cp "$shims/pyproject.toml" "$stamp"
    fi
    export FIREBREAK_SHIM_PYTHON="$py"
}
