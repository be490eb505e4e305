# shellcheck shell=bash
# NATS JetStream for the streaming alert source tests: Debian's nats-server (JetStream built in).
#
# Sourced by scripts/test.

install_nats_server() {
    if ! command -v nats-server >/dev/null 2>&1; then
        printf '==> installing nats-server (Debian)\n' >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    fi
    FIREBREAK_NATS_SERVER="$(command -v nats-server)"
    export FIREBREAK_NATS_SERVER
}
