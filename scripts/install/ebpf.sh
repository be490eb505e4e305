# shellcheck shell=bash
# Sourced by ./scripts/test. What the eBPF enforcement point needs to build and to be tested:
#
# - clang (compiles ebpf/bpf/*.c with -target bpf in ebpf/build.rs), libbpf-dev (bpf_helpers.h),
#   bpftool (to inspect programs, maps and links by hand) and linux-libc-dev (linux/bpf.h; it
#   is the userspace kernel API headers, not the kernel's own headers, which are not needed);
# - as root: the BPF filesystem at /sys/fs/bpf (Firebreak pins its programs, links and deny
#   map there so enforcement outlives the daemon) and tracefs (tracepoints need it).
#
# Exports FIREBREAK_EBPF=ready when the tests can attach programs (root, bpffs mounted), and
# FIREBREAK_EBPF=unprivileged otherwise, so the tests can tell "skipped: not root" from "not set
# up"; and FIREBREAK_EBPF_PYTHON, the interpreter of the probe processes the tests put in cgroups
# (the shared venv's when the caller has one, $VENV).

install_ebpf_tools() {
    local missing=()
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    [[ -f /usr/include/bpf/bpf_helpers.h ]] || missing+=(libbpf-dev)
    command -v bpftool >/dev/null 2>&1 || missing+=(bpftool)
    [[ -f /usr/include/linux/bpf.h ]] || missing+=(linux-libc-dev)
    if ((${#missing[@]})); then
        if [[ $EUID -ne 0 ]]; then
            log "eBPF build needs Debian packages ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
            return 1
        fi
        log "installing ${missing[*]} (eBPF programs are compiled by clang at build time)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

mount_ebpf_filesystems() {
    if [[ $EUID -ne 0 ]]; then
        export FIREBREAK_EBPF=unprivileged
        return 0
    fi
    if ! mountpoint -q /sys/fs/bpf; then
        log "mounting bpffs at /sys/fs/bpf (pinned eBPF objects live there)"
        mkdir -p /sys/fs/bpf
        mount -t bpf bpffs /sys/fs/bpf
    fi
    if ! mountpoint -q /sys/kernel/tracing && [[ -d /sys/kernel/tracing ]]; then
        log "mounting tracefs at /sys/kernel/tracing"
        mount -t tracefs tracefs /sys/kernel/tracing
    fi
    export FIREBREAK_EBPF=ready
}

install_ebpf() {
    install_ebpf_tools
    mount_ebpf_filesystems
    if [[ -n "${VENV:-}" && -x "$VENV/bin/python" ]]; then
        export FIREBREAK_EBPF_PYTHON="$VENV/bin/python"
    else
        FIREBREAK_EBPF_PYTHON="$(command -v python3)"
        export FIREBREAK_EBPF_PYTHON
    fi
}
