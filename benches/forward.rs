//! Criterion benchmarks: the forward pass at a few shapes, for the bundled
//! model's shape (dim 384) and distilbert-base's (dim 768), with random
//! weights, in f32, bf16 (where the CPU has a bf16 kernel) and int8; the
//! encoder's linear layers alone (f32, bf16 and int8 kernels); and tokenization with the uncased WordPiece tokenizer.
//!
//!     cargo bench --bench forward

use std::hint::black_box;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sentiment::model::{Config, RaggedBatch, SequenceClassifier};
use sentiment::unstable_kernels::TextTokenizer;
use sentiment::unstable_kernels::{KernelPlan, Narrow};

fn config(dim: usize, hidden_dim: usize) -> Config {
    let json = format!(
        r#"{{"model_type": "distilbert", "dim": {dim}, "hidden_dim": {hidden_dim}, "n_heads": 12, "n_layers": 6,
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
        let plan = KernelPlan::fastest();
        let cpu = plan.cpu.unwrap();
        let model = SequenceClassifier::load(vb, &cfg, 2, plan).unwrap();
        let mut int8 = model.clone();
        int8.narrow(Narrow::Int8(cpu.int8)).unwrap();
        let mut models = vec![("f32", model), ("int8", int8)];
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = cpu.bf16 {
            let mut bf16 = models[0].1.clone();
            bf16.narrow(Narrow::Bf16(kernel)).unwrap();
            models.push(("bf16", bf16));
        }
        for (precision, model) in &models {
            let mut group = c.benchmark_group(format!("forward/{name}/{precision}"));
            group.sample_size(20);
            for (batch, seq) in [(1, 16), (1, 128), (1, 512), (32, 32)] {
                let ids = vec![1u32; seq];
                let input = RaggedBatch::of_texts((0..batch).map(|_| &ids[..])).unwrap();
                group.bench_with_input(
                    BenchmarkId::from_parameter(format!("{batch}x{seq}")),
                    &input,
                    |b, input| b.iter(|| model.forward(black_box(input)).unwrap()),
                );
            }
            group.finish();
        }
    }
}

/// One linear layer at the encoder's shapes (rows x in -> out), through
/// the same kernels the model calls, so kernel changes can be judged
/// without the rest of the pass.
fn linear(c: &mut Criterion) {
    use sentiment::unstable_kernels::{self as cpu, Epilogue, Isa, PackedWeights};
    let kernels = KernelPlan::fastest().cpu.unwrap();
    let f32_kernel = kernels.linear.kernel;
    let mut group = c.benchmark_group("linear");
    for (rows, in_dim, out_dim) in [
        (14, 384, 1152),
        (75, 384, 1536),
        (800, 384, 1536),
        (800, 768, 3072),
        (800, 3072, 768),
        (400, 768, 2304),
        (400, 768, 768),
        (400, 768, 3072),
        (400, 3072, 768),
    ] {
        let x: Vec<f32> = (0..rows * in_dim).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..out_dim * in_dim)
            .map(|i| (i % 5) as f32 * 0.1)
            .collect();
        let packed = PackedWeights::pack(&w, out_dim, in_dim).unwrap();
        let shape = format!("{rows}x{in_dim}x{out_dim}");
        group.bench_function(format!("f32/{shape}"), |b| {
            b.iter(|| {
                let none = Epilogue::default();
                cpu::linear_packed(black_box(&x), &packed, None, rows, none, f32_kernel).unwrap()
            })
        });
        // The feed-forward's first layer runs GELU in its epilogue: the same
        // layer with it, to see what the activation costs inside the tile.
        let gelu = Epilogue {
            residual: None,
            activation: Some(sentiment::model::Activation::Gelu),
        };
        if out_dim == 4 * in_dim {
            group.bench_function(format!("f32-gelu/{shape}"), |b| {
                b.iter(|| {
                    cpu::linear_packed(black_box(&x), &packed, None, rows, gelu, f32_kernel)
                        .unwrap()
                })
            });
            #[cfg(target_arch = "x86_64")]
            if cpu::int8::Kernel::Vnni.available() {
                let int8 = cpu::int8::PackedInt8::from_f32(&packed, cpu::int8::Kernel::Vnni);
                group.bench_function(format!("int8-gelu/{shape}"), |b| {
                    b.iter(|| cpu::linear_int8(black_box(&x), &int8, None, rows, gelu).unwrap())
                });
            }
        }
        #[cfg(target_arch = "x86_64")]
        if Isa::Avx2.available() {
            group.bench_function(format!("f32-avx2/{shape}"), |b| {
                b.iter(|| {
                    let none = Epilogue::default();
                    cpu::linear_packed(black_box(&x), &packed, None, rows, none, Isa::Avx2).unwrap()
                })
            });
        }
        // Every int8 kernel this CPU runs: "int8" is VNNI's name from
        // before there were two, kept so saved baselines still compare.
        #[cfg(target_arch = "x86_64")]
        for (kernel, name) in [
            (cpu::int8::Kernel::Vnni, "int8"),
            (cpu::int8::Kernel::Avx2, "int8-avx2"),
        ] {
            if !kernel.available() {
                continue;
            }
            let int8 = cpu::int8::PackedInt8::from_f32(&packed, kernel);
            group.bench_function(format!("{name}/{shape}"), |b| {
                b.iter(|| {
                    cpu::linear_int8(black_box(&x), &int8, None, rows, Epilogue::default()).unwrap()
                })
            });
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = kernels.bf16 {
            let bf16 = cpu::bf16::PackedBf16::from_f32(&packed);
            group.bench_function(format!("bf16-{kernel:?}/{shape}"), |b| {
                b.iter(|| {
                    cpu::linear_bf16(
                        black_box(&x),
                        &bf16,
                        None,
                        rows,
                        Epilogue::default(),
                        kernel,
                    )
                    .unwrap()
                })
            });
        }
    }
    group.finish();
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
    let inputs: Vec<sentiment::TextInput> = refs.iter().map(|&text| text.into()).collect();
    let mut group = c.benchmark_group("tokenize");
    group.bench_function("one sentence", |b| {
        b.iter(|| tokenizer.encode(black_box(refs[0])).unwrap())
    });
    group.bench_function("32 sentences", |b| {
        b.iter(|| tokenizer.encode_batch(black_box(&inputs)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, forward, linear, tokenization);
criterion_main!(benches);
