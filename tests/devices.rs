//! The device-generic forward path: the one CUDA and Metal run (candle's
//! matmul, `softmax_last_dim`, `layer_norm` and elementwise ops instead of
//! our CPU kernels), against HF's goldens within 1e-4, alone and in padded
//! batches, for every architecture.
//!
//! - On the CPU, always: [`KernelChoice::Generic`] turns our CPU kernels
//!   off, so CI checks the GPU path's numerics on every run.
//! - On a CUDA GPU (a `--features cuda` build, run with `--ignored` and
//!   `SENTIMENT_TEST_CUDA=1`; docs/cuda.md): the same parity, `batch
//!   --device cuda` with its contract, and `bench --device cpu,cuda`.
//!   Without a GPU, `--device cuda` must fail cleanly (exit 5): what a
//!   CPU-only build, or a CUDA build on a machine without a GPU (CI,
//!   against the stub driver), must do.

mod common;

use candle_core::Device;
use common::*;
use sentiment::{DeviceSpec, KernelChoice};

#[test]
fn the_generic_path_matches_hf_on_the_cpu() {
    let worst = assert_parity_with(&Device::Cpu, KernelChoice::Generic);
    eprintln!("generic ops on the CPU: max |Δlogit| {worst:e}");
}

/// The CUDA device, which a run with `--ignored` on a GPU machine must open.
fn cuda() -> Device {
    assert!(
        std::env::var_os("SENTIMENT_TEST_CUDA").is_some(),
        "the CUDA tests run where SENTIMENT_TEST_CUDA=1 says a GPU is there"
    );
    DeviceSpec::Cuda(0)
        .open()
        .expect("SENTIMENT_TEST_CUDA is set, but cuda:0 does not open")
}

#[cfg(feature = "cli")]
#[test]
fn without_a_gpu_cuda_fails_cleanly() {
    if std::env::var_os("SENTIMENT_TEST_CUDA").is_some() {
        return; // a GPU is there: the ignored tests below use it
    }
    let err = DeviceSpec::Cuda(0).open().unwrap_err();
    assert!(err.to_string().to_lowercase().contains("cuda"), "{err}");
    let output = sentiment_command(&["--device", "cuda", "predict", "x"])
        .output()
        .unwrap();
    assert_exit_code(&output, 5);
    assert!(output.stdout.is_empty());
}

#[test]
#[ignore = "needs a CUDA GPU (SENTIMENT_TEST_CUDA=1)"]
fn golden_parity_on_cuda() {
    let device = cuda();
    let worst = assert_parity(&device);
    eprintln!("cuda: max |Δlogit| {worst:e}");
}

/// `batch --device cuda`: one line out per line in, in order, a bad line
/// as an error record in its place, and the CPU's labels and scores.
#[cfg(feature = "cli")]
#[test]
#[ignore = "needs a CUDA GPU (SENTIMENT_TEST_CUDA=1)"]
fn batch_on_cuda_keeps_the_contract() {
    cuda();
    let long = "a fine and moving film . ".repeat(200);
    let input = format!(
        "{{\"text\": \"a triumph\", \"id\": 1}}\nnot json\n{{\"text\": \"\"}}\n{{\"text\": \"{long}\"}}\n{{\"text\": \"a dull mess\"}}\n"
    );
    let run = |device: &str| {
        let output = run_with_stdin(
            sentiment_command(&["--device", device, "batch"]),
            input.as_bytes(),
        );
        assert_exit_code(&output, 1); // the bad line
        String::from_utf8(output.stdout).unwrap()
    };
    let (cpu, gpu) = (run("cpu"), run("cuda"));
    let (cpu, gpu): (Vec<&str>, Vec<&str>) = (cpu.lines().collect(), gpu.lines().collect());
    assert_eq!(gpu.len(), 5, "{gpu:?}");
    for (c, g) in cpu.iter().zip(&gpu) {
        let (c, g): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(c).unwrap(),
            serde_json::from_str(g).unwrap(),
        );
        assert_eq!(c["label"], g["label"]);
        assert_eq!(c["error"].is_null(), g["error"].is_null());
        if let (Some(a), Some(b)) = (c["score"].as_f64(), g["score"].as_f64()) {
            assert!((a - b).abs() < 1e-4, "{c} / {g}");
        }
    }
    assert!(gpu[1].contains("error") && gpu[0].contains("\"id\":1"));
}

#[cfg(feature = "cli")]
#[test]
#[ignore = "needs a CUDA GPU (SENTIMENT_TEST_CUDA=1)"]
fn bench_compares_cpu_and_cuda() {
    cuda();
    let output = sentiment_command(&["--device", "cpu,cuda", "bench", "--format", "json"])
        .args([
            "--runs",
            "5",
            "--lengths",
            "14,128",
            "--batch-sizes",
            "1,32",
        ])
        .output()
        .unwrap();
    assert_exit_code(&output, 0);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let devices: Vec<&str> = report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["cpu", "cuda:0"]);
}
