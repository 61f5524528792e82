//! Load test for `sentiment serve`, against `sentiment batch` on the same
//! sentences in the same run. A real load generator: N client threads, each
//! with its own keep-alive connection, sending one sentence per request.
//!
//!     cargo build --release
//!     cargo run --release --example serve_load -- [--binary target/release/sentiment]
//!         [--concurrency 1,8,64,256] [--repeats 3] [--dataset test_data/sst2_dev.jsonl]
//!         [--threads 2] [-- extra serve flags]
//!
//! It starts the server itself (bundled model unless the extra flags say
//! otherwise), samples its RSS idle and under load from /proc, and prints
//! a Markdown table: per concurrency, the median over the repeats of
//! sentences/s, p50/p95/p99 latency and errors; then `batch`'s sentences/s.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    binary: String,
    concurrency: Vec<usize>,
    repeats: usize,
    dataset: String,
    threads: String,
    serve_flags: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        binary: "target/release/sentiment".into(),
        concurrency: vec![1, 8, 64, 256],
        repeats: 3,
        dataset: "test_data/sst2_dev.jsonl".into(),
        threads: "2".into(),
        serve_flags: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--binary" => args.binary = value(),
            "--concurrency" => {
                args.concurrency = value().split(',').map(|c| c.parse().unwrap()).collect()
            }
            "--repeats" => args.repeats = value().parse().unwrap(),
            "--dataset" => args.dataset = value(),
            "--threads" => args.threads = value(),
            "--" => args.serve_flags = it.by_ref().collect(),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn sentences(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read the dataset")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(String::from))
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct Level {
    sentences_per_s: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    errors: u64,
    client_cpu: f64,
    server_cpu: f64,
}

/// One pass over the dataset with `clients` threads.
fn run_level(url: &str, texts: &Arc<Vec<String>>, clients: usize, server: u32) -> Level {
    let (client0, server0) = (cpu_seconds("self"), cpu_seconds(&server.to_string()));
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(texts.len())));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (texts, next, errors, latencies) = (
                texts.clone(),
                next.clone(),
                errors.clone(),
                latencies.clone(),
            );
            let url = url.to_string();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(120))
                    .build();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(text) = texts.get(i) else { break };
                    let body = serde_json::json!({ "inputs": text }).to_string();
                    let sent = Instant::now();
                    match agent
                        .post(&url)
                        .set("Content-Type", "application/json")
                        .send_string(&body)
                    {
                        Ok(response) => {
                            let _ = response.into_string();
                            mine.push(sent.elapsed().as_secs_f64() * 1e3);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    let seconds = started.elapsed().as_secs_f64();
    let mut all = latencies.lock().unwrap().clone();
    all.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        all.get(((q * all.len() as f64).ceil() as usize).clamp(1, all.len().max(1)) - 1)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Level {
        sentences_per_s: all.len() as f64 / seconds,
        p50: rank(0.5),
        p95: rank(0.95),
        p99: rank(0.99),
        errors: errors.load(Ordering::Relaxed),
        client_cpu: cpu_seconds("self") - client0,
        server_cpu: cpu_seconds(&server.to_string()) - server0,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn batch_sentences_per_s(args: &Args, count: usize) -> f64 {
    let started = Instant::now();
    let status = Command::new(&args.binary)
        .args(["--threads", &args.threads, "batch"])
        .stdin(std::fs::File::open(&args.dataset).expect("open the dataset"))
        .stdout(Stdio::null())
        .status()
        .expect("run sentiment batch");
    assert!(status.success());
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args = parse_args();
    let texts = Arc::new(sentences(&args.dataset));
    let mut server = Command::new(&args.binary)
        .args(["--threads", &args.threads, "serve", "--port", "0"])
        .args(&args.serve_flags)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sentiment serve");
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the server exited"
        );
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stderr.read_to_end(&mut sink);
    });
    let url = format!("{base}/predict");
    // Warm up, then take the idle RSS.
    let pid = server.id();
    run_level(
        &url,
        &Arc::new(texts[..32.min(texts.len())].to_vec()),
        4,
        pid,
    );
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(idle));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    println!(
        "| concurrency | sentences/s | vs batch | p50 ms | p95 ms | p99 ms | errors | CPU s: server / load generator |\n|---|---|---|---|---|---|---|---|"
    );
    let mut rows = Vec::new();
    for &clients in &args.concurrency {
        let levels: Vec<Level> = (0..args.repeats)
            .map(|_| run_level(&url, &texts, clients, pid))
            .collect();
        rows.push((clients, levels));
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let batch = median(
        (0..args.repeats)
            .map(|_| batch_sentences_per_s(&args, texts.len()))
            .collect(),
    );
    for (clients, levels) in rows {
        let pick = |f: fn(&Level) -> f64| median(levels.iter().map(f).collect());
        let rate = pick(|l| l.sentences_per_s);
        println!(
            "| {clients} | {rate:.0} | {:.2}x | {:.2} | {:.2} | {:.2} | {} | {:.1} / {:.1} |",
            rate / batch,
            pick(|l| l.p50),
            pick(|l| l.p95),
            pick(|l| l.p99),
            levels.iter().map(|l| l.errors).sum::<u64>(),
            pick(|l| l.server_cpu),
            pick(|l| l.client_cpu),
        );
    }
    println!(
        "\n`sentiment batch` on the same {} sentences: {batch:.0} sentences/s (median of {}).",
        texts.len(),
        args.repeats
    );
    println!(
        "Server RSS: {:.0} MiB idle, {:.0} MiB peak under load ({:.2}x).",
        idle as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / idle.max(1) as f64
    );
}
