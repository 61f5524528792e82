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
//! otherwise), samples its RSS at start, idle after one pass at
//! concurrency 1, and under load from /proc (anonymous and file-backed
//! apart), and prints a Markdown table: per concurrency,
//! the median over the repeats of sentences/s, p50/p95/p99 latency and
//! errors; then `batch`'s sentences/s, start-up excluded. Each repeat runs
//! `batch` first and then every level, and "vs batch" is the median of the
//! repeats' ratios, so that drift in the machine's speed cancels.

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

/// The `text` field of each JSONL line.
fn sentences(dataset: &str) -> Vec<String> {
    dataset
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(String::from))
        .collect()
}

/// A field of /proc/<pid>/status in KiB (`VmRSS`, `RssAnon`, `RssFile`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory: total, anonymous (heap, stacks) and file-backed (the
/// binary's pages), in KiB.
#[derive(Clone, Copy, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

fn rss(pid: u32) -> Rss {
    Rss {
        total: status_kib(pid, "VmRSS"),
        anon: status_kib(pid, "RssAnon"),
        file: status_kib(pid, "RssFile"),
    }
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

/// Seconds `sentiment batch` takes over `lines` (a JSONL string).
fn batch_seconds(args: &Args, lines: &str) -> f64 {
    let started = Instant::now();
    let mut child = Command::new(&args.binary)
        .args(["--threads", &args.threads, "batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run sentiment batch");
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, lines.as_bytes()).expect("feed sentiment batch");
    drop(stdin);
    assert!(child.wait().expect("wait for sentiment batch").success());
    started.elapsed().as_secs_f64()
}

/// `sentiment batch`'s sentences/s over the dataset, its start-up (model
/// load, first pass) taken out: the time of a one-sentence run is
/// subtracted, as the server's figures exclude its start-up too.
fn batch_sentences_per_s(args: &Args, dataset: &str, first_line: &str, count: usize) -> f64 {
    let startup = batch_seconds(args, first_line);
    let whole = batch_seconds(args, dataset);
    (count - 1) as f64 / (whole - startup).max(1e-3)
}

fn main() {
    let args = parse_args();
    let dataset = std::fs::read_to_string(&args.dataset).expect("read the dataset");
    let texts = Arc::new(sentences(&dataset));
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
    // RSS at start (after a few requests), then after one pass over the
    // dataset at concurrency 1, which is the idle figure: that pass maps in
    // the pages of the bundled word-embedding table (read from the binary
    // on demand) that the dataset's vocabulary touches, as one client
    // alone would. What grows past it under load is the load's.
    let pid = server.id();
    run_level(
        &url,
        &Arc::new(texts[..4.min(texts.len())].to_vec()),
        1,
        pid,
    );
    std::thread::sleep(Duration::from_millis(300));
    let at_start = rss(pid);
    run_level(&url, &texts, 1, pid);
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss(pid);
    let peak = Arc::new(Mutex::new(idle));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let now = rss(pid);
                let mut peak = peak.lock().unwrap();
                if now.total > peak.total {
                    *peak = now;
                }
                drop(peak);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    println!(
        "| concurrency | sentences/s | vs batch | p50 ms | p95 ms | p99 ms | errors | CPU s: server / load generator |\n|---|---|---|---|---|---|---|---|"
    );
    // Each repeat runs `batch` and then every level, so that a level and
    // the `batch` run it is compared with see the same machine: this VM's
    // speed drifts over minutes.
    let first_line = format!("{}\n", dataset.lines().next().unwrap_or_default());
    let mut batch_rates = Vec::new();
    let mut rows: Vec<(usize, Vec<Level>)> =
        args.concurrency.iter().map(|&c| (c, Vec::new())).collect();
    for _ in 0..args.repeats {
        batch_rates.push(batch_sentences_per_s(
            &args,
            &dataset,
            &first_line,
            texts.len(),
        ));
        for (clients, levels) in &mut rows {
            levels.push(run_level(&url, &texts, *clients, pid));
        }
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let batch = median(batch_rates.clone());
    for (clients, levels) in rows {
        let pick = |f: fn(&Level) -> f64| median(levels.iter().map(f).collect());
        let rate = pick(|l| l.sentences_per_s);
        let ratio = median(
            levels
                .iter()
                .zip(&batch_rates)
                .map(|(level, batch)| level.sentences_per_s / batch)
                .collect(),
        );
        println!(
            "| {clients} | {rate:.0} | {ratio:.2}x | {:.2} | {:.2} | {:.2} | {} | {:.1} / {:.1} |",
            pick(|l| l.p50),
            pick(|l| l.p95),
            pick(|l| l.p99),
            levels.iter().map(|l| l.errors).sum::<u64>(),
            pick(|l| l.server_cpu),
            pick(|l| l.client_cpu),
        );
    }
    println!(
        "\n`sentiment batch` on the same {} sentences: {batch:.0} sentences/s (median of {}; \
         start-up excluded). \"vs batch\" is the median of each repeat's ratio to the `batch` \
         run just before it.",
        texts.len(),
        args.repeats
    );
    let peak = *peak.lock().unwrap();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let describe = |r: Rss| {
        format!(
            "{:.0} MiB (anonymous {:.0} + file {:.0})",
            mib(r.total),
            mib(r.anon),
            mib(r.file)
        )
    };
    let ratio = |a: Rss, b: Rss| a.total as f64 / b.total.max(1) as f64;
    println!(
        "Server RSS: {} at start; idle after one pass at concurrency 1: {}; peak under load: {}. \
         Peak / idle {:.2}x (peak / start {:.2}x).",
        describe(at_start),
        describe(idle),
        describe(peak),
        ratio(peak, idle),
        ratio(peak, at_start),
    );
}
