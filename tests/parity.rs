//! Golden parity with HF transformers on the tiny random fixture model:
//! identical token ids, logits within 1e-4, alone and in padded batches.
//! The goldens come from `tools/make_fixtures.py`.

mod common;

use common::*;
use sentiment::model::ProblemType;
use sentiment::postprocess::scores_from_logits;

fn tiny_golden() -> Golden {
    golden(&fixture("golden_tiny.json"))
}

#[test]
fn token_ids_and_masks_match_hf() {
    let classifier = load(&tiny_model_dir());
    for case in tiny_golden().cases {
        let encoded = classifier.encode(&case.text).unwrap();
        assert_eq!(encoded.ids, case.ids, "ids for {:?}", case.text);
        assert_eq!(
            encoded.attention_mask, case.attention_mask,
            "mask for {:?}",
            case.text
        );
        assert_eq!(
            encoded.truncated, case.truncated,
            "truncated for {:?}",
            case.text
        );
    }
}

#[test]
fn logits_match_hf_one_text_at_a_time() {
    let classifier = load(&tiny_model_dir());
    let golden = tiny_golden();
    assert_eq!(classifier.labels(), golden.labels.as_slice());
    let mut worst = 0f32;
    for case in &golden.cases {
        let prediction = &predict(&classifier, &[case.text.as_str()])[0];
        let diff = max_abs_diff(&prediction.logits, &case.logits);
        assert!(diff <= LOGIT_TOLERANCE, "{:?}: |Δlogit| {diff}", case.text);
        let probabilities = scores_in_class_order(prediction, &golden.labels);
        assert!(max_abs_diff(&probabilities, &case.probabilities) <= 1e-5);
        worst = worst.max(diff);
    }
    eprintln!("max |Δlogit| over {} texts: {worst:e}", golden.cases.len());
}

#[test]
fn logits_match_hf_in_padded_batches() {
    let worst = assert_golden_batches(&load(&tiny_model_dir()), &tiny_golden());
    eprintln!("max |Δlogit| in padded batches: {worst:e}");
}

#[test]
fn pytorch_bin_checkpoint_matches_hf() {
    let classifier = load(&fixture("tiny-distilbert-pth"));
    for case in tiny_golden().cases.iter().take(8) {
        let prediction = &predict(&classifier, &[case.text.as_str()])[0];
        assert!(max_abs_diff(&prediction.logits, &case.logits) <= LOGIT_TOLERANCE);
    }
}

/// f16 and bf16 files load and compute in f32: the only difference from the
/// f32 goldens is the rounding of the stored weights.
#[test]
fn half_precision_weights_load_and_upcast() {
    use candle_core::{safetensors, DType, Device};
    let source = tiny_model_dir();
    let golden = tiny_golden();
    for (dtype, tolerance) in [(DType::F16, 0.05f32), (DType::BF16, 0.3)] {
        let dir = tempfile::tempdir().unwrap();
        for name in ["config.json", "tokenizer.json"] {
            std::fs::copy(source.join(name), dir.path().join(name)).unwrap();
        }
        let tensors = safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
        let converted: std::collections::HashMap<_, _> = tensors
            .into_iter()
            .map(|(name, t)| (name, t.to_dtype(dtype).unwrap()))
            .collect();
        safetensors::save(&converted, dir.path().join("model.safetensors")).unwrap();
        let classifier = load(dir.path());
        for case in golden.cases.iter().take(6) {
            let prediction = &predict(&classifier, &[case.text.as_str()])[0];
            let diff = max_abs_diff(&prediction.logits, &case.logits);
            assert!(
                diff > 0.0 && diff <= tolerance,
                "{dtype:?} {:?}: {diff}",
                case.text
            );
        }
    }
}

/// A compiled-in half-precision image reads its word embeddings in place
/// (WordTable::Static) while a file loads the table (WordTable::Half); both
/// upcast the same rows, so the logits are identical to the bit.
#[test]
fn in_place_and_loaded_half_tables_give_identical_logits() {
    use candle_core::{safetensors, DType, Device};
    use sentiment::source::{FileBytes, ModelFiles, TokenizerFiles, Weights};
    use sentiment::{Classifier, Precision};
    let source = tiny_model_dir();
    let golden = tiny_golden();
    let texts: Vec<&str> = golden
        .cases
        .iter()
        .take(8)
        .map(|c| c.text.as_str())
        .collect();
    let tensors = safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let dir = tempfile::tempdir().unwrap();
        for name in ["config.json", "tokenizer.json"] {
            std::fs::copy(source.join(name), dir.path().join(name)).unwrap();
        }
        let converted: std::collections::HashMap<_, _> = tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.to_dtype(dtype).unwrap()))
            .collect();
        let weights_path = dir.path().join("model.safetensors");
        safetensors::save(&converted, &weights_path).unwrap();
        let from_file = predict(&load(dir.path()), &texts);

        let file = |name: &str| FileBytes::read(dir.path().join(name)).unwrap();
        let image: &'static [u8] =
            Box::leak(std::fs::read(&weights_path).unwrap().into_boxed_slice());
        let files = ModelFiles {
            name: "compiled-in".into(),
            config: file("config.json"),
            tokenizer: TokenizerFiles::json(file("tokenizer.json")),
            weights: Weights::Embedded {
                origin: weights_path.clone(),
                bytes: image,
            },
        };
        let in_place = predict(
            &Classifier::from_files(&files, &Device::Cpu, Precision::F32).unwrap(),
            &texts,
        );
        for (a, b) in from_file.iter().zip(&in_place) {
            assert_eq!(a.logits, b.logits, "{dtype:?}");
        }
    }
}

#[test]
fn scores_follow_the_problem_type() {
    let logits = [2.0f32, -1.0, 0.5];
    let softmax = scores_from_logits(&logits, ProblemType::SingleLabelClassification);
    assert!((softmax.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!((softmax[0] - 0.785_597_4).abs() < 1e-6);
    let sigmoid = scores_from_logits(&logits, ProblemType::MultiLabelClassification);
    assert!((sigmoid[0] - 0.880_797_1).abs() < 1e-6);
    assert!((sigmoid[1] - 0.268_941_4).abs() < 1e-6);
    assert_eq!(
        scores_from_logits(&logits, ProblemType::Regression),
        logits.to_vec()
    );
}
