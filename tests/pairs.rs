//! Text pairs against HF transformers: each tiny model (one per
//! architecture) on pairs encoded as `tokenizer(first, second,
//! truncation=True)` with the token type ids the pipeline passes, alone, in
//! padded batches, mixed with single texts, and cut from the left. Goldens
//! from `tools/make_fixtures.py pairs`.

mod common;

use common::*;
use sentiment::{
    Aggregate, Classifier, ClassifyOptions, KernelChoice, KernelOptions, LongText, Prediction,
    TextInput,
};
use serde::Deserialize;

const MODELS: [&str; 4] = [
    "tiny-distilbert",
    "tiny-bert",
    "tiny-roberta",
    "tiny-xlm-roberta",
];

#[derive(Debug, Deserialize)]
struct PairGolden {
    labels: Vec<String>,
    cases: Vec<PairCase>,
    left_truncated: Vec<LeftCase>,
    batches: Vec<GoldenBatch>,
}

#[derive(Debug, Deserialize)]
struct PairCase {
    first: String,
    second: String,
    ids: Vec<u32>,
    /// None where HF's tokenizer returns no token type ids (the model then
    /// runs type 0 throughout).
    type_ids: Option<Vec<u32>>,
    truncated: bool,
    logits: Vec<f32>,
    probabilities: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct LeftCase {
    index: usize,
    ids: Vec<u32>,
    logits: Vec<f32>,
}

fn pair_golden(model: &str) -> PairGolden {
    let path = fixture(&format!("golden_pairs_{model}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

impl PairCase {
    fn input(&self) -> TextInput<'_> {
        TextInput::Pair(&self.first, &self.second)
    }
}

fn pairs(golden: &PairGolden) -> Vec<(&str, &str)> {
    golden
        .cases
        .iter()
        .map(|c| (c.first.as_str(), c.second.as_str()))
        .collect()
}

fn assert_logits(prediction: &Prediction, want: &[f32], what: &str) -> f32 {
    let diff = max_abs_diff(&prediction.logits, want);
    assert!(diff <= LOGIT_TOLERANCE, "{what}: |Δlogit| {diff}");
    diff
}

#[test]
fn pair_token_ids_and_types_match_hf() {
    for model in MODELS {
        let classifier = load(&fixture(model));
        let golden = pair_golden(model);
        let mut typed = 0;
        for (i, case) in golden.cases.iter().enumerate() {
            let encoded = classifier.encode(case.input()).unwrap();
            assert_eq!(encoded.ids, case.ids, "{model} pair {i}: ids");
            assert_eq!(encoded.truncated, case.truncated, "{model} pair {i}");
            assert!(encoded.attention_mask.iter().all(|&m| m == 1));
            if let Some(types) = &case.type_ids {
                assert_eq!(&encoded.type_ids, types, "{model} pair {i}: type ids");
                typed += usize::from(types.contains(&1));
            }
        }
        // BERT's second texts are type 1: the goldens exercise the table.
        if model == "tiny-bert" {
            assert!(typed >= 10, "{typed} pairs with type-1 tokens");
        }
    }
}

#[test]
fn pair_logits_match_hf_one_pair_at_a_time() {
    for model in MODELS {
        let classifier = load(&fixture(model));
        let golden = pair_golden(model);
        assert_eq!(classifier.labels(), golden.labels.as_slice());
        let mut worst = 0f32;
        for (i, case) in golden.cases.iter().enumerate() {
            let prediction = &classifier
                .classify_pairs(&[(&case.first, &case.second)], &ClassifyOptions::default())
                .unwrap()[0];
            worst = worst.max(assert_logits(
                prediction,
                &case.logits,
                &format!("{model} {i}"),
            ));
            assert_eq!(prediction.truncated, case.truncated, "{model} {i}");
            let probabilities = scores_in_class_order(prediction, &golden.labels);
            assert!(max_abs_diff(&probabilities, &case.probabilities) <= 1e-5);
        }
        eprintln!(
            "{model}: max |Δlogit| over {} pairs: {worst:e}",
            golden.cases.len()
        );
    }
}

/// HF's padded batches of pairs, and our ragged batches of the same pairs
/// with single texts among them: each sequence's logits are its own.
#[test]
fn pair_logits_match_hf_in_batches_mixed_with_single_texts() {
    for model in MODELS {
        let classifier = load(&fixture(model));
        let golden = pair_golden(model);
        let all = pairs(&golden);
        for batch in &golden.batches {
            let members: Vec<(&str, &str)> = batch.members.iter().map(|&i| all[i]).collect();
            let predictions = classifier
                .classify_pairs(&members, &ClassifyOptions::default())
                .unwrap();
            for (prediction, want) in predictions.iter().zip(&batch.logits) {
                assert_logits(
                    prediction,
                    want,
                    &format!("{model} batch {:?}", batch.members),
                );
            }
        }
        // Singles and pairs in one window: the single texts' own logits
        // are what they are alone.
        let singles = ["a single text", "", "另一个文本 😀"];
        let alone = predict(&classifier, &singles);
        let mut inputs: Vec<TextInput> = golden.cases.iter().map(PairCase::input).collect();
        for (at, text) in [(0, singles[0]), (5, singles[1]), (9, singles[2])] {
            inputs.insert(at, TextInput::Single(text));
        }
        let mut got = Vec::new();
        classifier
            .batcher(ClassifyOptions::default())
            .with_batch_size(7)
            .run(inputs.iter().copied(), |input: TextInput, result| {
                got.push((input, result.unwrap().unwrap()));
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(got.len(), inputs.len());
        let mut cases = golden.cases.iter();
        let mut singles_alone = alone.iter();
        for (input, prediction) in &got {
            let want = match input {
                TextInput::Pair(..) => &cases.next().unwrap().logits,
                TextInput::Single(_) => &singles_alone.next().unwrap().logits,
            };
            assert_logits(prediction, want, &format!("{model} mixed {input:?}"));
        }
    }
}

/// TEI's `"truncation_direction": "Left"` on a pair: HF's
/// `truncation_side="left"`, the end of each side kept.
#[test]
fn pairs_cut_from_the_left_match_hf() {
    let keep_end = ClassifyOptions::default().with_long_text(LongText::TruncateStart);
    for model in MODELS {
        let classifier = load(&fixture(model));
        let golden = pair_golden(model);
        assert!(golden.left_truncated.len() >= 6, "{model}");
        for left in &golden.left_truncated {
            let case = &golden.cases[left.index];
            let encoded = &classifier
                .encode_text(case.input(), LongText::TruncateStart)
                .unwrap()[0];
            assert_eq!(encoded.ids, left.ids, "{model} pair {}", left.index);
            assert!(encoded.truncated);
            let prediction = &classifier
                .classify_pairs(&[(&case.first, &case.second)], &keep_end)
                .unwrap()[0];
            assert_logits(
                prediction,
                &left.logits,
                &format!("{model} left {}", left.index),
            );
        }
    }
}

/// Window mode classifies a pair as truncation does (one sequence, the
/// longer side cut first), while single texts still get windows.
#[test]
fn window_mode_truncates_pairs() {
    let windows = ClassifyOptions::default().with_long_text(LongText::Window {
        stride: 128,
        aggregate: Aggregate::Mean,
    });
    let classifier = load(&fixture("tiny-bert"));
    let golden = pair_golden("tiny-bert");
    let long = golden
        .cases
        .iter()
        .find(|c| c.first.len() > 30_000)
        .unwrap();
    assert_eq!(
        classifier
            .encode_text(long.input(), windows.long_text)
            .unwrap()
            .len(),
        1
    );
    assert!(
        classifier
            .encode_text(long.first.as_str(), windows.long_text)
            .unwrap()
            .len()
            > 1
    );
    let all = pairs(&golden);
    let predictions = classifier.classify_pairs(&all, &windows).unwrap();
    for (prediction, case) in predictions.iter().zip(&golden.cases) {
        assert_logits(prediction, &case.logits, "window mode");
        assert_eq!(prediction.truncated, case.truncated);
    }
}

/// Every pair golden, one at a time and in HF's batches, on `classifier`;
/// returns the largest logit difference.
fn assert_pair_goldens(classifier: &Classifier, golden: &PairGolden, what: &str) -> f32 {
    let all = pairs(golden);
    let options = ClassifyOptions::default();
    let mut worst = 0f32;
    for (i, (pair, case)) in all.iter().zip(&golden.cases).enumerate() {
        let prediction = &classifier.classify_pairs(&[*pair], &options).unwrap()[0];
        worst = worst.max(assert_logits(
            prediction,
            &case.logits,
            &format!("{what} {i}"),
        ));
    }
    for batch in &golden.batches {
        let members: Vec<(&str, &str)> = batch.members.iter().map(|&i| all[i]).collect();
        let predictions = classifier.classify_pairs(&members, &options).unwrap();
        for (prediction, want) in predictions.iter().zip(&batch.logits) {
            worst = worst.max(assert_logits(prediction, want, &format!("{what} batch")));
        }
    }
    worst
}

fn load_with(model: &str, device: &candle_core::Device, kernels: KernelChoice) -> Classifier {
    let files = sentiment::ModelSpec::Local(fixture(model))
        .resolve()
        .unwrap();
    let options = KernelOptions {
        kernels,
        ..KernelOptions::default()
    };
    Classifier::from_files_with_kernels(&files, device, sentiment::Precision::F32, &options)
        .unwrap()
}

/// The padded path (candle's generic ops, CUDA's and Metal's) pads the
/// type ids too, and the portable kernels run pairs as the fastest do.
#[test]
fn pairs_match_hf_on_the_generic_and_portable_paths() {
    for kernels in [KernelChoice::Generic, KernelChoice::Portable] {
        for model in MODELS {
            let classifier = load_with(model, &candle_core::Device::Cpu, kernels);
            assert_eq!(classifier.runs_unpadded(), kernels != KernelChoice::Generic);
            let worst = assert_pair_goldens(&classifier, &pair_golden(model), model);
            eprintln!("{model} {kernels:?}: max |Δlogit| {worst:e}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU (SENTIMENT_TEST_CUDA=1)"]
fn pairs_match_hf_on_cuda() {
    assert!(std::env::var_os("SENTIMENT_TEST_CUDA").is_some());
    let device = sentiment::DeviceSpec::Cuda(0).open().unwrap();
    for model in MODELS {
        let classifier = load_with(model, &device, KernelChoice::Fastest);
        let worst = assert_pair_goldens(&classifier, &pair_golden(model), model);
        eprintln!("{model} cuda: max |Δlogit| {worst:e}");
    }
}

/// A pair on int8 stays near f32, as single texts do.
#[test]
fn int8_runs_pairs() {
    use sentiment::{ModelSpec, Precision};
    let classifier = Classifier::builder()
        .model(ModelSpec::Local(fixture("tiny-bert")))
        .precision(Precision::Int8)
        .build()
        .unwrap();
    let golden = pair_golden("tiny-bert");
    let predictions = classifier
        .classify_pairs(&pairs(&golden)[..8], &ClassifyOptions::default())
        .unwrap();
    let worst = predictions
        .iter()
        .zip(&golden.cases)
        .map(|(p, case)| max_abs_diff(&p.logits, &case.logits))
        .fold(0f32, f32::max);
    assert!(worst > 0.0 && worst < 0.5, "int8 |Δlogit| {worst}");
}

/// `batch --pair-field`: each line's pair, as the library (and so HF)
/// classifies it, passthrough kept; a line without the pair field is an
/// error record in its place; a pair field that cannot work is exit 2.
#[cfg(feature = "cli")]
#[test]
fn batch_reads_pairs_from_two_fields() {
    let golden = pair_golden("tiny-bert");
    let model = fixture("tiny-bert");
    let mut input = String::new();
    for (i, case) in golden.cases.iter().enumerate() {
        let line = serde_json::json!({"id": i, "premise": case.first, "hypothesis": case.second});
        input.push_str(&format!("{line}\n"));
        if i == 3 {
            input.push_str("{\"id\": \"no pair\", \"premise\": \"alone\"}\n");
        }
    }
    let args = [
        "-m",
        model.to_str().unwrap(),
        "batch",
        "--field",
        "premise",
        "--pair-field",
        "hypothesis",
    ];
    let output = run_with_stdin(sentiment_command(&args), input.as_bytes());
    assert_exit_code(&output, 1);
    let records: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), golden.cases.len() + 1);
    assert_eq!(records[4]["error"], "field \"hypothesis\" is missing");
    assert_eq!(records[4]["id"], "no pair");
    let library = load(&model)
        .classify_pairs(&pairs(&golden), &ClassifyOptions::default())
        .unwrap();
    let answered = records.iter().filter(|r| r.get("error").is_none());
    for ((record, case), want) in answered.zip(&golden.cases).zip(&library) {
        assert_eq!(record["premise"], case.first.as_str());
        assert_eq!(record["label"], want.label.as_str());
        let score = record["score"].as_f64().unwrap() as f32;
        assert!((score - want.score).abs() < 1e-6, "{record}");
        assert_eq!(record["truncated"], case.truncated);
    }
    for bad in [
        vec!["batch", "--pair-field", "text"],
        vec!["batch", "--input", "text", "--pair-field", "b"],
    ] {
        let output = run_with_stdin(sentiment_command(&bad), b"{\"text\": \"a\"}\n");
        assert_exit_code(&output, 2);
        assert!(output.stdout.is_empty());
    }
}

/// `predict --pairs`: the arguments two at a time, each pair's record (with
/// its `text_pair`) the library's answer; an odd count is exit 2 before
/// anything runs.
#[cfg(feature = "cli")]
#[test]
fn predict_reads_pairs_from_its_arguments() {
    let golden = pair_golden("tiny-bert");
    let model = fixture("tiny-bert");
    let chosen = [0, 1, 5, 8];
    let mut args = vec![
        "-m",
        model.to_str().unwrap(),
        "predict",
        "--json",
        "--pairs",
    ];
    for &i in &chosen {
        args.extend([
            golden.cases[i].first.as_str(),
            golden.cases[i].second.as_str(),
        ]);
    }
    let output = sentiment_command(&args).output().unwrap();
    assert_exit_code(&output, 0);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), chosen.len());
    for (record, &i) in records.iter().zip(&chosen) {
        let case = &golden.cases[i];
        assert_eq!(record["text"], case.first.as_str());
        assert_eq!(record["text_pair"], case.second.as_str());
        let best = case.probabilities.iter().copied().fold(f32::MIN, f32::max);
        let score = record["score"].as_f64().unwrap() as f32;
        assert!((score - best).abs() < 1e-5, "{record}");
        assert_eq!(record["truncated"], case.truncated);
    }
    // The human line shows both texts.
    let case = &golden.cases[chosen[0]];
    let model_path = model.to_str().unwrap();
    let human = sentiment_command(&[
        "-m",
        model_path,
        "predict",
        "--pairs",
        &case.first,
        &case.second,
    ])
    .output()
    .unwrap();
    let line = String::from_utf8(human.stdout).unwrap();
    assert!(
        line.trim_end()
            .ends_with(&format!("{} | {}", case.first, case.second)),
        "{line}"
    );
    let odd = sentiment_command(&["predict", "--pairs", "one", "two", "three"])
        .output()
        .unwrap();
    assert_exit_code(&odd, 2);
    assert!(odd.stdout.is_empty());
    let stderr = String::from_utf8(odd.stderr).unwrap();
    assert!(
        stderr.contains("--pairs") && stderr.contains("got 3"),
        "{stderr}"
    );
}
