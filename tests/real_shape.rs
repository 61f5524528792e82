//! Real-shape models: the configs of two hub sentiment models
//! (cardiffnlp/twitter-roberta-base-sentiment-latest, RoBERTa-base, and
//! nlptown/bert-base-multilingual-uncased-sentiment, BERT-base with a
//! 105,879-token vocabulary), with random weights of exactly their shapes
//! (HF's initialisation: normal(0, 0.02), zero biases, unit norms). They
//! load, classify, run `bench`, and int8 agrees with f32 on SST-2 dev.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::*;
use sentiment::model::Config;
use sentiment::{Classifier, ClassifyOptions, ModelSpec, Precision};

/// (config under tests/fixtures/real-shape, a tokenizer of its family).
const MODELS: [(&str, &str); 2] = [
    ("twitter-roberta-base-sentiment-latest.json", "tiny-roberta"),
    (
        "bert-base-multilingual-uncased-sentiment.json",
        "tiny-distilbert",
    ),
];

/// A deterministic normal(0, std) stream (xorshift + Box-Muller): the
/// weights need to be random, not good.
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn tensor(&mut self, shape: (usize, usize), std: f32) -> Tensor {
        let values: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| {
                let (u, v) = (self.uniform(), self.uniform());
                std * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }
}

/// Every tensor the architecture's classifier reads, named as HF names it.
fn random_weights(config: &Config, num_labels: usize) -> HashMap<String, Tensor> {
    let names = sentiment::model::weight_names(config.architecture);
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let mut normal = Normal(0x9e37_79b9_7f4a_7c15);
    let mut tensors = HashMap::new();
    let mut linear = |tensors: &mut HashMap<String, Tensor>, name: String, out: usize, inp| {
        tensors.insert(format!("{name}.weight"), normal.tensor((out, inp), 0.02));
        tensors.insert(
            format!("{name}.bias"),
            Tensor::zeros(out, DType::F32, &Device::Cpu).unwrap(),
        );
    };
    let norm = |tensors: &mut HashMap<String, Tensor>, name: String| {
        let ones = Tensor::ones(h, DType::F32, &Device::Cpu).unwrap();
        tensors.insert(format!("{name}.weight"), ones);
        let zeros = Tensor::zeros(h, DType::F32, &Device::Cpu).unwrap();
        tensors.insert(format!("{name}.bias"), zeros);
    };
    let embeddings = names.embeddings;
    let mut tables = vec![
        ("word_embeddings", config.vocab_size),
        ("position_embeddings", config.max_position_embeddings),
    ];
    if names.token_types != sentiment::model::TokenTypes::None {
        tables.push(("token_type_embeddings", config.type_vocab_size));
    }
    let mut table_rng = Normal(7);
    for (table, rows) in tables {
        let weight = table_rng.tensor((rows, h), 0.02);
        tensors.insert(format!("{embeddings}.{table}.weight"), weight);
    }
    norm(&mut tensors, format!("{embeddings}.LayerNorm"));
    let layer = &names.layer;
    for index in 0..config.num_hidden_layers {
        let at = |module: &str| format!("{}.{index}.{module}", names.layers);
        for module in [layer.query, layer.key, layer.value, layer.attention_output] {
            linear(&mut tensors, at(module), h, h);
        }
        linear(&mut tensors, at(layer.intermediate), i, h);
        linear(&mut tensors, at(layer.output), h, i);
        norm(&mut tensors, at(layer.attention_norm));
        norm(&mut tensors, at(layer.output_norm));
    }
    linear(&mut tensors, names.head.dense.to_string(), h, h);
    linear(&mut tensors, names.head.out_proj.to_string(), num_labels, h);
    tensors
}

/// The model folder: the hub config, random weights stored as f16 (half
/// the disk; computed in f32), the family's tokenizer.
fn write_model(dir: &Path, config_file: &str, tokenizer_from: &str) {
    let config_json = std::fs::read(fixture("real-shape").join(config_file)).unwrap();
    let config = Config::from_json(&config_json).unwrap();
    let num_labels = config.id2label.as_ref().unwrap().len();
    let tensors: HashMap<String, Tensor> = random_weights(&config, num_labels)
        .into_iter()
        .map(|(name, t)| (name, t.to_dtype(DType::F16).unwrap()))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), config_json).unwrap();
    std::fs::copy(
        fixture(tokenizer_from).join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
}

fn sst2_dev() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/sst2_dev.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn argmax(values: &[f32]) -> usize {
    (0..values.len())
        .max_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap()
}

#[test]
fn real_shape_models_load_classify_bench_and_agree_in_int8() {
    let texts = sst2_dev();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (config_file, tokenizer_from) in MODELS {
        let dir = tempfile::tempdir().unwrap();
        write_model(dir.path(), config_file, tokenizer_from);
        let load = |precision| {
            Classifier::builder()
                .model(ModelSpec::Local(dir.path().to_path_buf()))
                .precision(precision)
                .build()
                .unwrap()
        };
        let logits = |precision| -> Vec<Vec<f32>> {
            load(precision)
                .classify(&texts, &ClassifyOptions::default())
                .unwrap()
                .into_iter()
                .map(|p| p.logits)
                .collect()
        };
        let (f32_logits, int8_logits) = (logits(Precision::F32), logits(Precision::Int8));
        // A random model says nearly the same thing of every text, so its
        // raw labels are one constant and agreement would be trivial.
        // Centre each label's logit on its f32 mean over the dataset (a
        // bias shift, as calibrating the head would do): labels then
        // spread over the classes and depend on what differs between texts.
        let labels = f32_logits[0].len();
        let mean: Vec<f32> = (0..labels)
            .map(|j| f32_logits.iter().map(|l| l[j]).sum::<f32>() / texts.len() as f32)
            .collect();
        let label = |logits: &Vec<f32>| {
            (0..labels)
                .max_by(|&a, &b| (logits[a] - mean[a]).total_cmp(&(logits[b] - mean[b])))
                .unwrap()
        };
        let f32_labels: Vec<usize> = f32_logits.iter().map(label).collect();
        let agree = f32_logits
            .iter()
            .zip(&int8_logits)
            .filter(|(a, b)| label(a) == label(b))
            .count();
        let agreement = agree as f64 / texts.len() as f64;
        let mut spread = vec![0usize; labels];
        f32_labels.iter().for_each(|&l| spread[l] += 1);
        eprintln!(
            "{config_file}: centred labels: int8 agrees with f32 on {agree}/{} \
             SST-2 dev texts ({:.2}%); f32 labels per class: {spread:?}",
            texts.len(),
            agreement * 100.0
        );
        assert!(
            spread.iter().filter(|&&n| n > 0).count() > 1,
            "{config_file}: one label for every text tests nothing: {spread:?}"
        );
        // The figure asked for is raw label agreement: trivial here (one
        // label), but it catches an int8 path that is broken outright.
        let raw = f32_logits
            .iter()
            .zip(&int8_logits)
            .filter(|(a, b)| argmax(a) == argmax(b))
            .count();
        assert!(
            raw as f64 >= 0.99 * texts.len() as f64,
            "{config_file}: raw {raw}"
        );
        // Centred labels hinge on differences between texts far smaller than
        // a trained model's margins, so int8's rounding flips some (97.0%
        // RoBERTa, 90.0% BERT with 5 classes, measured 2026-11-23; the
        // trained bundled model agrees on 870/872). Printed, not asserted;
        // what is asserted is that int8's logits stay near f32's.
        let worst = f32_logits
            .iter()
            .zip(&int8_logits)
            .map(|(a, b)| max_abs_diff(a, b))
            .fold(0f32, f32::max);
        eprintln!("{config_file}: int8 max |Δlogit| {worst:e}");
        assert!(
            worst > 0.0 && worst < 0.05,
            "{config_file}: int8 |Δlogit| {worst}"
        );

        let output = std::process::Command::new(binary())
            .args(["-m", dir.path().to_str().unwrap(), "bench"])
            .args(["--runs", "2", "--warmup", "1", "--lengths", "16,128"])
            .args(["--batch-sizes", "8", "--format", "json"])
            .args([
                "--dataset",
                fixture("real-shape")
                    .join("dataset.jsonl")
                    .to_str()
                    .unwrap(),
            ])
            .output()
            .unwrap();
        assert_exit_code(&output, 0);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let latency = &report["devices"][0]["latency"];
        assert_eq!(latency.as_array().unwrap().len(), 2, "{report}");
    }
}
