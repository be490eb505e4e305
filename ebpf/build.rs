//! Compiles the kernel programs in `bpf/` with clang (`-O2 -g -target bpf`) into `$OUT_DIR`,
//! where `src/kernel.rs` embeds them. Fails with the Debian packages to install when the
//! toolchain is missing.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[&str] = &["egress"];
const INSTALL: &str = "apt-get install -y clang libbpf-dev linux-libc-dev (or run ./scripts/test, which installs them)";

fn main() {
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // linux/bpf.h includes asm/types.h, which Debian keeps under the multiarch directory; the
    // bpf target has none of its own, so the host's is used.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    for header in ["/usr/include/bpf/bpf_helpers.h", "/usr/include/linux/bpf.h"] {
        if !Path::new(header).exists() {
            panic!("{header} is missing: the eBPF programs need it to compile; {INSTALL}");
        }
    }
    for name in PROGRAMS {
        let source = format!("bpf/{name}.c");
        let object = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-I{multiarch}"))
            .args(["-c", &source, "-o"])
            .arg(&object)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {clang:?} to compile {source} ({e}): {INSTALL}, or set CLANG to a clang binary")
            });
        if !status.success() {
            panic!("{clang} failed to compile {source} ({status}); see the compiler output above");
        }
    }
}
