//! Records the git commit and the versions of the crates that do the work,
//! for `sentiment bench`'s system report.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for (krate, var) in [
        ("candle-core", "SENTIMENT_CANDLE_VERSION"),
        ("tokenizers", "SENTIMENT_TOKENIZERS_VERSION"),
        ("gemm", "SENTIMENT_GEMM_VERSION"),
    ] {
        println!("cargo:rustc-env={var}={}", locked_version(&lock, krate));
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SENTIMENT_GIT_COMMIT={commit}");
    host_cpu_features();
    root_user();
}

/// `build_as_root` where the build (and so `cargo test`) runs as root, who
/// may read any file: a test of "permission denied" cannot run there and
/// is ignored with that reason.
fn root_user() {
    println!("cargo::rustc-check-cfg=cfg(build_as_root)");
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() == Some("0") {
        println!("cargo:rustc-cfg=build_as_root");
    }
}

/// `host_avx512`, `host_avx2`, `host_vnni` and `host_bf16` where the machine
/// building (and so running `cargo test`) has the kernels' instructions, so a
/// kernel test this CPU cannot run is ignored with its reason in the test
/// summary rather than passing by doing nothing.
fn host_cpu_features() {
    for name in ["host_avx512", "host_avx2", "host_vnni", "host_bf16"] {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    if std::env::var("HOST") != std::env::var("TARGET") {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
        let features = [
            ("host_avx512", is_x86_feature_detected!("avx512f")),
            (
                "host_avx2",
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            ),
            (
                "host_vnni",
                avx512 && is_x86_feature_detected!("avx512vnni"),
            ),
            (
                "host_bf16",
                avx512 && is_x86_feature_detected!("avx512bf16"),
            ),
        ];
        for (name, present) in features {
            if present {
                println!("cargo:rustc-cfg={name}");
            }
        }
    }
}

fn locked_version(lock: &str, krate: &str) -> String {
    let needle = format!("name = \"{krate}\"\nversion = \"");
    lock.find(&needle)
        .and_then(|at| {
            let rest = &lock[at + needle.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
