//! Models whose tokenizers come from slow files, as folders: the bad
//! files each give one error naming the file (exit 3), the length limit the
//! files or the model set, and `serve` on such a model. The files are the
//! hub repos' of `tests/fixtures/hub/` (see tests/hub_repos.rs).

mod common;
#[path = "common/hub_repos.rs"]
mod hub_repos;
#[path = "common/mock_hub.rs"]
mod mock_hub;
#[path = "common/server.rs"]
mod server;

use std::path::Path;

use common::*;
use hub_repos::*;
use mock_hub::stderr;
use server::Server;

/// `sentiment -m <folder> predict` fails with exit 3, naming `file`.
fn assert_bad_file(folder: &Path, file: &str, says: &str) {
    let output = run_with_stdin(
        sentiment_command(&["-m", folder.to_str().unwrap(), "predict", "a good film"]),
        b"",
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{file}: {message}");
    assert!(message.contains(file), "{file} not named: {message}");
    assert!(message.contains(says), "{file}: {says:?} not in {message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(output.stdout.is_empty());
}

fn edit(path: &Path, change: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, change(text)).unwrap();
}

#[test]
fn bad_slow_files_are_exit_3_naming_the_file() {
    let no_unk = repo_folder("distilbert-sst2", |dir| {
        edit(&dir.join("vocab.txt"), |t| {
            t.replacen("[UNK]\n", "[UNK_]\n", 1)
        })
    });
    assert_bad_file(no_unk.path(), "vocab.txt", "[UNK]");

    let not_utf8 = repo_folder("finbert", |dir| {
        std::fs::write(dir.join("vocab.txt"), b"\xff\xfe\n").unwrap()
    });
    assert_bad_file(not_utf8.path(), "vocab.txt", "vocab.txt");

    let bad_merge = repo_folder("twitter-roberta", |dir| {
        edit(&dir.join("merges.txt"), |t| {
            t.replacen('\n', "\nnot a merge\n", 2)
        })
    });
    assert_bad_file(bad_merge.path(), "merges.txt", "line");

    let no_merges = repo_folder("twitter-roberta", |dir| {
        std::fs::remove_file(dir.join("merges.txt")).unwrap()
    });
    assert_bad_file(no_merges.path(), "vocab.json", "merges.txt");

    let vocab_not_json = repo_folder("twitter-roberta", |dir| {
        std::fs::write(dir.join("vocab.json"), "[1, 2]").unwrap()
    });
    assert_bad_file(vocab_not_json.path(), "vocab.json", "array");

    let cut_model = repo_folder("twitter-xlm-roberta", |dir| {
        let path = dir.join("sentencepiece.bpe.model");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert_bad_file(cut_model.path(), "sentencepiece.bpe.model", "SentencePiece");

    let text_model = repo_folder("twitter-xlm-roberta", |dir| {
        std::fs::write(
            dir.join("sentencepiece.bpe.model"),
            "this is not a protobuf\n",
        )
        .unwrap()
    });
    assert_bad_file(
        text_model.path(),
        "sentencepiece.bpe.model",
        "SentencePiece",
    );

    let empty_model = repo_folder("twitter-xlm-roberta", |dir| {
        std::fs::write(dir.join("sentencepiece.bpe.model"), b"").unwrap()
    });
    assert_bad_file(empty_model.path(), "sentencepiece.bpe.model", "pieces");

    let unknown_special = repo_folder("nlptown", |dir| {
        edit(&dir.join("special_tokens_map.json"), |t| {
            t.replace("[MASK]", "[NOT-A-TOKEN]")
        })
    });
    assert_bad_file(
        unknown_special.path(),
        "special_tokens_map.json",
        "[NOT-A-TOKEN]",
    );
    // With an added_tokens_decoder, tokenizer_config.json is the whole story
    // (special_tokens_map.json is not read, as in transformers).
    let unknown_config_special = repo_folder("finbert", |dir| {
        edit(&dir.join("tokenizer_config.json"), |t| {
            t.replace(
                "\"mask_token\": \"[MASK]\"",
                "\"mask_token\": \"[NOT-A-TOKEN]\"",
            )
        })
    });
    assert_bad_file(
        unknown_config_special.path(),
        "tokenizer_config.json",
        "[NOT-A-TOKEN]",
    );

    let unknown_roberta_special = repo_folder("twitter-roberta", |dir| {
        edit(&dir.join("special_tokens_map.json"), |t| {
            t.replace("\"<mask>\"", "\"<nope>\"")
        })
    });
    assert_bad_file(
        unknown_roberta_special.path(),
        "special_tokens_map.json",
        "<nope>",
    );

    let wrong_added_id = repo_folder("nlptown", |dir| {
        std::fs::write(dir.join("added_tokens.json"), r#"{"[NEW]": 5}"#).unwrap()
    });
    assert_bad_file(wrong_added_id.path(), "added_tokens.json", "[NEW]");

    let config_not_json = repo_folder("nlptown", |dir| {
        std::fs::write(dir.join("tokenizer_config.json"), "{not json").unwrap()
    });
    assert_bad_file(config_not_json.path(), "tokenizer_config.json", "JSON");

    let bad_limit = repo_folder("nlptown", |dir| {
        std::fs::write(dir.join("tokenizer_config.json"), r#"{"max_len": -3}"#).unwrap()
    });
    assert_bad_file(
        bad_limit.path(),
        "tokenizer_config.json",
        "model_max_length",
    );

    let unknown_class = repo_folder("finbert", |dir| {
        edit(&dir.join("tokenizer_config.json"), |t| {
            t.replace("\"BertTokenizer\"", "\"T5Tokenizer\"")
        })
    });
    assert_bad_file(unknown_class.path(), "tokenizer_config.json", "T5Tokenizer");

    let wrong_family = repo_folder("twitter-xlm-roberta", |dir| {
        edit(&dir.join("config.json"), |t| {
            t.replace(
                "XLMRobertaForSequenceClassification",
                "BertForSequenceClassification",
            )
            .replace("\"xlm-roberta\"", "\"bert\"")
        })
    });
    let output = run_with_stdin(
        sentiment_command(&["-m", wrong_family.path().to_str().unwrap(), "predict", "x"]),
        b"",
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("sentencepiece.bpe.model"),
        "{}",
        stderr(&output)
    );

    let no_tokenizer = repo_folder("nlptown", |dir| {
        std::fs::remove_file(dir.join("vocab.txt")).unwrap()
    });
    assert_bad_file(no_tokenizer.path(), "no tokenizer", "vocab.txt");
}

/// transformers' "no limit" and a smaller limit than the model's.
#[test]
fn model_max_length_is_the_files_or_the_models() {
    // No tokenizer_config.json: the model's 514 positions less RoBERTa's offset.
    let roberta = repo_folder("twitter-roberta", |_| {});
    let classifier = load(roberta.path());
    assert_eq!(classifier.max_input_tokens(), 512);
    let huge = repo_folder("nlptown", |dir| {
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"model_max_length": 1000000000000000019884624838656}"#,
        )
        .unwrap()
    });
    assert_eq!(load(huge.path()).max_input_tokens(), 512);
    let short = repo_folder("nlptown", |dir| {
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"model_max_length": 64}"#,
        )
        .unwrap()
    });
    let classifier = load(short.path());
    assert_eq!(classifier.max_input_tokens(), 64);
    let encoded = classifier.encode("good ".repeat(100).as_str()).unwrap();
    assert_eq!(encoded.len(), 64);
    assert!(encoded.truncated);
}

/// `serve` on a model whose tokenizer is a SentencePiece file: TEI's
/// /predict scores are HF's probabilities.
#[test]
fn serve_answers_with_a_slow_tokenizer() {
    let folder = repo_folder("twitter-xlm-roberta", |_| {});
    let server = Server::start_model(&["-m", folder.path().to_str().unwrap()], &[], |_| {});
    let golden = golden(&fixture("hub/golden_twitter-xlm-roberta.json"));
    for case in golden
        .cases
        .iter()
        .filter(|c| !c.text.trim().is_empty())
        .take(12)
    {
        let body = serde_json::json!({ "inputs": case.text }).to_string();
        let (status, answer) = server.post("/predict", &body);
        assert_eq!(status, 200, "{answer}");
        for entry in answer.as_array().unwrap() {
            let label = entry["label"].as_str().unwrap();
            let index = golden.labels.iter().position(|l| l == label).unwrap();
            let score = entry["score"].as_f64().unwrap() as f32;
            let want = case.probabilities[index];
            assert!(
                (score - want).abs() <= 1e-4,
                "{:?} {label}: {score} vs {want}",
                case.text
            );
        }
    }
}

/// Weights as repos hold them: tensors the classifier does not use (the
/// checkpoint's pooler and position_ids) are ignored, and a tensor it needs
/// that is missing is named in the error.
#[test]
fn unused_tensors_are_ignored_and_a_missing_one_is_named() {
    use candle_core::{safetensors, Device};
    let folder = repo_folder("twitter-roberta", |dir| {
        let weights = fixture("hub/twitter-roberta/model.safetensors");
        let mut tensors = safetensors::load(weights, &Device::Cpu).unwrap();
        assert!(tensors.contains_key("roberta.pooler.dense.weight"));
        assert!(tensors.contains_key("roberta.embeddings.position_ids"));
        tensors.remove("roberta.encoder.layer.1.output.dense.weight");
        safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    });
    assert_bad_file(
        folder.path(),
        "model.safetensors",
        "roberta.encoder.layer.1.output.dense.weight",
    );
}
