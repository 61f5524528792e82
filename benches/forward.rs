//! Criterion benchmarks: the forward pass at a few shapes, for the bundled
//! model's shape (dim 384) and distilbert-base's (dim 768), with random
//! weights; and tokenization with the uncased WordPiece tokenizer.
//!
//!     cargo bench --bench forward

use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sentiment::model::{Config, DistilBertForSequenceClassification};
use sentiment::tokenize::TextTokenizer;

fn config(dim: usize, hidden_dim: usize) -> Config {
    let json = format!(
        r#"{{"dim": {dim}, "hidden_dim": {hidden_dim}, "n_heads": 12, "n_layers": 6,
            "vocab_size": 30522, "max_position_embeddings": 512}}"#
    );
    Config::from_json(json.as_bytes()).unwrap()
}

fn forward(c: &mut Criterion) {
    for (name, dim, hidden_dim) in [
        ("bundled-384", 384, 1536),
        ("distilbert-base-768", 768, 3072),
    ] {
        let cfg = config(dim, hidden_dim);
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = DistilBertForSequenceClassification::load(vb, &cfg, 2).unwrap();
        let mut group = c.benchmark_group(format!("forward/{name}"));
        group.sample_size(20);
        for (batch, seq) in [(1, 16), (1, 128), (1, 512), (32, 32)] {
            let ids = Tensor::ones((batch, seq), DType::U32, &Device::Cpu).unwrap();
            let mask = Tensor::ones((batch, seq), DType::U32, &Device::Cpu).unwrap();
            group.bench_with_input(
                BenchmarkId::from_parameter(format!("{batch}x{seq}")),
                &(ids, mask),
                |b, (ids, mask)| b.iter(|| model.forward(black_box(ids), black_box(mask)).unwrap()),
            );
        }
        group.finish();
    }
}

fn tokenization(c: &mut Criterion) {
    let json = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-distilbert/tokenizer.json"
    ))
    .unwrap();
    let tokenizer = TextTokenizer::from_json(&json, 512).unwrap();
    let dev = include_str!("../test_data/sst2_dev.jsonl");
    let sentences: Vec<String> = dev
        .lines()
        .take(32)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("tokenize");
    group.bench_function("one sentence", |b| {
        b.iter(|| tokenizer.encode(black_box(refs[0])).unwrap())
    });
    group.bench_function("32 sentences", |b| {
        b.iter(|| tokenizer.encode_batch(black_box(&refs)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, forward, tokenization);
criterion_main!(benches);
