#![cfg(target_os = "linux")]
//! The CPU thread count the binary runs on (issue 31): the CPUs the process
//! may use by default, the variables checked as `--threads` is, and results
//! that do not depend on the count or on a busy neighbour.

mod common;

use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::Value;

/// A tiny bench whose JSON report says the thread count and its source,
/// with RAYON_NUM_THREADS set to `rayon` (and CANDLE_NUM_THREADS unset).
fn bench_threads(command: &mut std::process::Command, rayon: Option<&str>) -> (u64, String) {
    let tiny = tiny_model_dir();
    command
        .args(["-m", tiny.to_str().unwrap(), "bench", "--format", "json"])
        .args([
            "--lengths",
            "8",
            "--batch-sizes",
            "4",
            "--runs",
            "1",
            "--warmup",
            "0",
        ])
        .env_remove("RAYON_NUM_THREADS")
        .env_remove("CANDLE_NUM_THREADS");
    if let Some(rayon) = rayon {
        command.env("RAYON_NUM_THREADS", rayon);
    }
    let output = command.output().unwrap();
    assert_exit_code(&output, 0);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    (
        report["threads"].as_u64().unwrap(),
        report["threads_source"].as_str().unwrap().to_string(),
    )
}

/// Under an affinity mask of one CPU, the default is one thread, whatever
/// the machine's cores.
#[test]
fn the_default_follows_the_affinity_mask() {
    let mut command = sentiment_command(&[]);
    // SAFETY: sched_setaffinity on the child, between fork and exec, with a
    // zeroed set holding CPU 0; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            match libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let (threads, source) = bench_threads(&mut command, None);
    assert_eq!(threads, 1);
    assert_eq!(source, "the CPUs this process may use");
}

#[test]
fn the_flag_and_the_variables_say_where_the_count_came_from() {
    let (threads, source) = bench_threads(&mut sentiment_command(&["--threads", "3"]), None);
    assert_eq!((threads, source.as_str()), (3, "--threads"));
    let (threads, source) = bench_threads(&mut sentiment_command(&[]), Some("2"));
    assert_eq!((threads, source.as_str()), (2, "RAYON_NUM_THREADS"));
}

/// RAYON_NUM_THREADS and CANDLE_NUM_THREADS out of range are usage errors
/// with the `--threads` message, not a process that starts 5000 threads.
#[test]
fn out_of_range_variables_are_usage_errors() {
    for (name, value) in [
        ("RAYON_NUM_THREADS", "5000"),
        ("RAYON_NUM_THREADS", "0"),
        ("CANDLE_NUM_THREADS", "lots"),
    ] {
        let output = sentiment_command(&["predict", "x"])
            .env_remove("RAYON_NUM_THREADS")
            .env_remove("CANDLE_NUM_THREADS")
            .env(name, value)
            .output()
            .unwrap();
        assert_exit_code(&output, 2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(name) && stderr.contains("--threads"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}

/// The scores are the same bits on 1, 2 and 3 threads, and with a busy
/// neighbour spinning on the CPUs.
#[test]
fn results_do_not_depend_on_the_thread_count_or_a_neighbour() {
    let texts = (0..40)
        .map(|i| format!("a {} film about {} things", ["fine", "dull"][i % 2], i).repeat(1 + i % 5))
        .collect::<Vec<_>>()
        .join("\n");
    let run = |threads: &str| {
        let output = run_with_stdin(
            sentiment_command(&["--threads", threads, "predict", "--json"]),
            texts.as_bytes(),
        );
        assert_exit_code(&output, 0);
        output.stdout
    };
    let one = run("1");
    for threads in ["2", "3"] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
    };
    let busy = run("2");
    stop.store(true, Ordering::Relaxed);
    neighbour.join().unwrap();
    assert_eq!(busy, one, "with a neighbour");
}
