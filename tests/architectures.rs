//! Every architecture against HF transformers: a tiny random classifier per
//! family (BERT, RoBERTa, XLM-R) with a tokenizer of that family, and
//! goldens from `tools/make_fixtures.py archs`. Identical token ids, logits
//! within 1e-4, one text at a time and in padded batches, texts over 512
//! tokens included. DistilBERT's own goldens are in parity.rs.

mod common;

use common::*;
use sentiment::{Aggregate, ClassifyOptions, LongText};

/// (fixture folder, golden file, HF class it was saved as).
const ARCHITECTURES: [(&str, &str, &str); 3] = [
    (
        "tiny-bert",
        "golden_tiny-bert.json",
        "BertForSequenceClassification",
    ),
    (
        "tiny-roberta",
        "golden_tiny-roberta.json",
        "RobertaForSequenceClassification",
    ),
    (
        "tiny-xlm-roberta",
        "golden_tiny-xlm-roberta.json",
        "XLMRobertaForSequenceClassification",
    ),
];

#[test]
fn each_architecture_is_read_from_its_config() {
    for (dir, _, class) in ARCHITECTURES {
        let classifier = load(&fixture(dir));
        assert_eq!(classifier.config().class_name, class, "{dir}");
        assert_eq!(classifier.max_input_tokens(), 512, "{dir}");
    }
}

#[test]
fn token_ids_match_hf_for_every_tokenizer_family() {
    for (dir, golden_file, _) in ARCHITECTURES {
        let classifier = load(&fixture(dir));
        for case in golden(&fixture(golden_file)).cases {
            let encoded = classifier.encode(&case.text).unwrap();
            assert_eq!(encoded.ids, case.ids, "{dir}: ids for {:?}", case.text);
            assert_eq!(encoded.attention_mask, case.attention_mask, "{dir}");
            assert_eq!(encoded.truncated, case.truncated, "{dir}: {:?}", case.text);
        }
    }
}

#[test]
fn logits_match_hf_one_text_at_a_time() {
    for (dir, golden_file, _) in ARCHITECTURES {
        let classifier = load(&fixture(dir));
        let golden = golden(&fixture(golden_file));
        assert_eq!(classifier.labels(), golden.labels.as_slice(), "{dir}");
        let mut worst = 0f32;
        for case in &golden.cases {
            let prediction = &predict(&classifier, &[case.text.as_str()])[0];
            let diff = max_abs_diff(&prediction.logits, &case.logits);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "{dir} {:?}: |Δlogit| {diff}",
                case.text
            );
            let probabilities = scores_in_class_order(prediction, &golden.labels);
            assert!(max_abs_diff(&probabilities, &case.probabilities) <= 1e-5);
            worst = worst.max(diff);
        }
        eprintln!(
            "{dir}: max |Δlogit| over {} texts: {worst:e}",
            golden.cases.len()
        );
    }
}

#[test]
fn logits_match_hf_in_padded_batches() {
    for (dir, golden_file, _) in ARCHITECTURES {
        let worst = assert_golden_batches(&load(&fixture(dir)), &golden(&fixture(golden_file)));
        eprintln!("{dir}: max |Δlogit| in padded batches: {worst:e}");
    }
}

/// The int8 path runs every architecture and stays close to f32 on the
/// goldens' ordinary texts (labels may differ on near-ties of a random model).
#[test]
fn int8_runs_every_architecture() {
    use sentiment::{Classifier, ModelSpec, Precision};
    for (dir, golden_file, _) in ARCHITECTURES {
        let classifier = Classifier::builder()
            .model(ModelSpec::Local(fixture(dir)))
            .precision(Precision::Int8)
            .build()
            .unwrap();
        let golden = golden(&fixture(golden_file));
        let texts: Vec<&str> = golden.cases.iter().map(|c| c.text.as_str()).collect();
        let predictions = predict(&classifier, &texts);
        let worst = predictions
            .iter()
            .zip(&golden.cases)
            .map(|(p, case)| max_abs_diff(&p.logits, &case.logits))
            .fold(0f32, f32::max);
        assert!(worst > 0.0 && worst < 0.5, "{dir}: int8 |Δlogit| {worst}");
    }
}

/// Window mode wraps every window in the family's own special tokens
/// (`[CLS]`/`[SEP]` or `<s>`/`</s>`), as the empty text's encoding shows
/// them, and covers the whole text.
#[test]
fn windows_carry_each_familys_special_tokens() {
    for (dir, golden_file, _) in ARCHITECTURES {
        let classifier = load(&fixture(dir));
        let golden = golden(&fixture(golden_file));
        let specials = &golden.cases[0].ids;
        assert_eq!(
            specials.len(),
            2,
            "{dir}: the empty text is two special tokens"
        );
        let long = "the movie was fine but long ".repeat(200);
        let windows = classifier
            .encode_text(
                &long,
                LongText::Window {
                    stride: 64,
                    aggregate: Aggregate::Mean,
                },
            )
            .unwrap();
        assert!(windows.len() >= 3, "{dir}: {} windows", windows.len());
        for window in &windows {
            assert!(window.len() <= 512);
            assert_eq!(window.ids[0], specials[0], "{dir}");
            assert_eq!(*window.ids.last().unwrap(), specials[1], "{dir}");
        }
        let options = ClassifyOptions::default().with_long_text(LongText::Window {
            stride: 64,
            aggregate: Aggregate::Mean,
        });
        let prediction = &classifier.classify(&[long.as_str()], &options).unwrap()[0];
        assert_eq!(prediction.windows, Some(windows.len()), "{dir}");
    }
}

/// A copy of a fixture with its config.json edited and its tensors
/// rewritten by `edit_tensors`.
fn edited_copy(
    dir: &str,
    edit_config: impl FnOnce(&mut serde_json::Value),
    edit_tensors: impl FnOnce(&mut std::collections::HashMap<String, candle_core::Tensor>),
) -> tempfile::TempDir {
    let source = fixture(dir);
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        source.join("tokenizer.json"),
        copy.path().join("tokenizer.json"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source.join("config.json")).unwrap()).unwrap();
    edit_config(&mut config);
    std::fs::write(copy.path().join("config.json"), config.to_string()).unwrap();
    let mut tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    edit_tensors(&mut tensors);
    candle_core::safetensors::save(&tensors, copy.path().join("model.safetensors")).unwrap();
    copy
}

/// transformers' pipeline scores a one-label model with a sigmoid (not a
/// softmax, which would say 1.0 for every text).
#[test]
fn a_single_label_model_scores_with_a_sigmoid() {
    let model = edited_copy(
        "tiny-roberta",
        |config| {
            let map = config.as_object_mut().unwrap();
            map.remove("id2label");
            map.remove("label2id");
        },
        |tensors| {
            for name in ["classifier.out_proj.weight", "classifier.out_proj.bias"] {
                let one_row = tensors[name].narrow(0, 0, 1).unwrap();
                tensors.insert(name.to_string(), one_row);
            }
        },
    );
    let classifier = load(model.path());
    assert_eq!(classifier.labels(), ["LABEL_0"]);
    let golden = golden(&fixture("golden_tiny-roberta.json"));
    for case in golden.cases.iter().take(6) {
        let prediction = &predict(&classifier, &[case.text.as_str()])[0];
        let sigmoid = 1.0 / (1.0 + (-case.logits[0]).exp());
        assert!((prediction.logits[0] - case.logits[0]).abs() <= LOGIT_TOLERANCE);
        assert!(
            (prediction.score - sigmoid).abs() < 1e-5,
            "{:?}: score {} vs sigmoid {sigmoid}",
            case.text,
            prediction.score
        );
    }
}

/// A config of one family over another family's weights names the
/// checkpoint and what is missing, not an internal tensor name alone.
#[test]
fn weights_of_another_architecture_are_named_as_such() {
    let model = edited_copy(
        "tiny-distilbert",
        |config| *config = serde_json::json!({"model_type": "roberta", "hidden_size": 16, "num_attention_heads": 4}),
        |_| {},
    );
    let files = sentiment::ModelSpec::Local(model.path().to_path_buf())
        .resolve()
        .unwrap();
    let err = sentiment::Classifier::from_files(
        &files,
        &candle_core::Device::Cpu,
        sentiment::Precision::F32,
    )
    .unwrap_err();
    let message = err.chain_message();
    assert!(
        message.contains("not a RobertaForSequenceClassification checkpoint")
            && message.contains("roberta.embeddings.word_embeddings.weight"),
        "{message}"
    );
}

/// Configs we cannot run are refused by name, listing what is supported.
#[test]
fn unsupported_architectures_are_refused_by_name() {
    use sentiment::model::Config;
    for (config, asked) in [
        (r#"{"model_type": "gpt2"}"#, "gpt2"),
        (
            r#"{"model_type": "bert", "architectures": ["BertForMaskedLM"]}"#,
            "BertForMaskedLM",
        ),
        (
            r#"{"architectures": ["DebertaV2ForSequenceClassification"]}"#,
            "DebertaV2ForSequenceClassification",
        ),
    ] {
        let message = Config::from_json(config.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(message.contains(asked), "{message}");
        assert!(
            message.contains("XLMRobertaForSequenceClassification")
                && message.contains("DistilBertForSequenceClassification"),
            "{message}"
        );
    }
    // A model_type and a listed classifier of the same network agree.
    let config = Config::from_json(
        br#"{"model_type": "roberta", "architectures": ["XLMRobertaForSequenceClassification"]}"#,
    )
    .unwrap();
    assert_eq!(config.class_name, "XLMRobertaForSequenceClassification");
    let mixed = br#"{"model_type": "bert", "architectures": ["RobertaForSequenceClassification"]}"#;
    assert!(Config::from_json(mixed).is_err());
    // Without model_type, a supported class in `architectures` is enough.
    let config =
        Config::from_json(br#"{"architectures": ["CamembertForSequenceClassification"]}"#).unwrap();
    assert_eq!(config.model_type, "camembert");
    assert_eq!(config.pad_token_id, 1);
    assert_eq!(config.max_input_tokens(), 510);
}
