//! The stage after the forward pass: logits become scores (as HF's pipeline
//! computes them), labelled predictions, and, in window mode, one
//! prediction per text from its windows'.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::model::ProblemType;

/// One label and its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// The label's name (from `id2label`, or HF's `LABEL_<i>`).
    pub label: String,
    /// Its score: a probability (softmax or sigmoid) or, for regression,
    /// the raw value.
    #[serde(serialize_with = "as_f64")]
    pub score: f32,
}

/// The classification of one text.
///
/// Serializes to the fields of `sentiment predict --json`: HF's pipeline
/// fields `label` and `score`, every label's score in `scores` (an object,
/// best first), `truncated`, and `windows` in window mode. Logits and
/// token counts are for programs and are not serialized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The best label.
    pub label: String,
    /// The best label's score.
    #[serde(serialize_with = "as_f64")]
    pub score: f32,
    /// Labels and scores, best first (ties in class order), cut to
    /// [`ClassifyOptions::top_k`](crate::ClassifyOptions::top_k) when set.
    #[serde(serialize_with = "as_object")]
    pub scores: Vec<LabelScore>,
    /// Raw logits of every class, in class order (never cut).
    #[serde(skip)]
    pub logits: Vec<f32>,
    /// The text was longer than the model accepts and was cut.
    pub truncated: bool,
    /// Tokens the model saw, special tokens included (summed over windows).
    #[serde(skip)]
    pub tokens: usize,
    /// In window mode, how many windows the text was classified in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<usize>,
}

impl Prediction {
    /// The score of `label`, if it is among [`Prediction::scores`].
    pub fn score_of(&self, label: &str) -> Option<f32> {
        self.scores
            .iter()
            .find(|s| s.label == label)
            .map(|s| s.score)
    }
}

/// How window scores combine into one prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Aggregate {
    /// The mean of the windows' scores (and logits).
    #[default]
    Mean,
    /// The single most confident window decides.
    Max,
}

/// What HF reports as scores: softmax for single-label classification,
/// sigmoid for multi-label, the raw value for regression. Computed in f32,
/// max-shifted, like transformers' pipeline.
pub fn scores_from_logits(logits: &[f32], problem_type: ProblemType) -> Vec<f32> {
    match problem_type {
        ProblemType::SingleLabelClassification => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.iter().map(|e| e / sum).collect()
        }
        ProblemType::MultiLabelClassification => {
            logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect()
        }
        ProblemType::Regression => logits.to_vec(),
    }
}

/// Turns the logits of one sequence (or the combined logits and scores of
/// a text's windows) into predictions.
#[derive(Debug, Clone)]
pub struct Postprocessor {
    labels: Vec<String>,
    problem_type: ProblemType,
}

/// The scores of one text, in class order, before labelling: one
/// sequence's, or the running combination of a text's windows.
#[derive(Debug, Clone)]
pub struct Scored {
    logits: Vec<f32>,
    probabilities: Vec<f32>,
    tokens: usize,
    truncated: bool,
    windows: usize,
}

impl Postprocessor {
    /// Labels in class order, and how their scores are computed.
    pub fn new(labels: Vec<String>, problem_type: ProblemType) -> Self {
        Self {
            labels,
            problem_type,
        }
    }

    /// Label names in class order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The scores of one sequence's logits.
    pub fn score(&self, logits: Vec<f32>, tokens: usize, truncated: bool) -> Scored {
        Scored {
            probabilities: scores_from_logits(&logits, self.problem_type),
            logits,
            tokens,
            truncated,
            windows: 1,
        }
    }

    /// Folds the next window of a text into `acc`: sums for the mean, the
    /// most confident window for the max. Windows arrive in any order and
    /// are folded as they come, so a long text never holds all of them.
    pub fn fold_window(&self, acc: Option<Scored>, next: Scored, aggregate: Aggregate) -> Scored {
        let Some(mut acc) = acc else {
            return next;
        };
        let windows = acc.windows + next.windows;
        let tokens = acc.tokens + next.tokens;
        let truncated = acc.truncated || next.truncated;
        match aggregate {
            Aggregate::Mean => {
                add(&mut acc.logits, &next.logits);
                add(&mut acc.probabilities, &next.probabilities);
            }
            Aggregate::Max => {
                if best(&next.probabilities).1 > best(&acc.probabilities).1 {
                    acc = next;
                }
            }
        }
        acc.windows = windows;
        acc.tokens = tokens;
        acc.truncated = truncated;
        acc
    }

    /// The labelled prediction. `windowed`: the text went through window
    /// mode, whose means are taken here; `top_k` cuts `scores`.
    pub fn finish(
        &self,
        mut scored: Scored,
        aggregate: Aggregate,
        windowed: bool,
        top_k: Option<usize>,
    ) -> Prediction {
        if windowed && aggregate == Aggregate::Mean && scored.windows > 1 {
            let n = scored.windows as f32;
            scored.logits.iter_mut().for_each(|l| *l /= n);
            scored.probabilities.iter_mut().for_each(|p| *p /= n);
        }
        let (best_index, best_score) = best(&scored.probabilities);
        let mut scores: Vec<LabelScore> = self
            .labels
            .iter()
            .zip(&scored.probabilities)
            .map(|(label, &score)| LabelScore {
                label: label.clone(),
                score,
            })
            .collect();
        // Stable: ties keep class order.
        scores.sort_by(|a, b| b.score.total_cmp(&a.score));
        if let Some(k) = top_k {
            scores.truncate(k);
        }
        Prediction {
            label: best_index
                .and_then(|i| self.labels.get(i))
                .cloned()
                .unwrap_or_default(),
            score: best_score,
            scores,
            logits: scored.logits,
            // Windows cover the whole text and are never cut; a pair, one
            // sequence in every mode, may be.
            truncated: scored.truncated,
            tokens: scored.tokens,
            windows: windowed.then_some(scored.windows),
        }
    }
}

fn add(sum: &mut [f32], values: &[f32]) {
    sum.iter_mut().zip(values).for_each(|(s, v)| *s += v);
}

/// The index and value of the largest score; the first on ties.
fn best(scores: &[f32]) -> (Option<usize>, f32) {
    scores
        .iter()
        .enumerate()
        .fold((None, f32::NAN), |(index, max), (i, &s)| {
            if index.is_none() || s > max {
                (Some(i), s)
            } else {
                (index, max)
            }
        })
}

/// f32 scores as JSON numbers through f64, as the CLI has always printed
/// them (serde_json writes a NaN, which JSON cannot hold, as null).
fn as_f64<S: Serializer>(value: &f32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(f64::from(*value))
}

/// `[{label, score}, ...]` as `{label: score, ...}`, in order.
fn as_object<S: Serializer>(scores: &[LabelScore], serializer: S) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(scores.len()))?;
    for s in scores {
        map.serialize_entry(&s.label, &f64::from(s.score))?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post() -> Postprocessor {
        Postprocessor::new(
            vec!["NEG".into(), "POS".into()],
            ProblemType::SingleLabelClassification,
        )
    }

    #[test]
    fn mean_of_windows_is_the_mean_of_their_scores() {
        let p = post();
        let a = p.score(vec![2.0, 0.0], 512, false);
        let b = p.score(vec![0.0, 4.0], 300, false);
        let (pa, pb) = (a.probabilities.clone(), b.probabilities.clone());
        let folded = p.fold_window(Some(a), b, Aggregate::Mean);
        let prediction = p.finish(folded, Aggregate::Mean, true, None);
        assert_eq!(prediction.windows, Some(2));
        assert_eq!(prediction.tokens, 812);
        assert!(!prediction.truncated);
        let want_pos = (pa[1] + pb[1]) / 2.0;
        assert!((prediction.score_of("POS").unwrap() - want_pos).abs() < 1e-6);
        assert_eq!(prediction.logits, vec![1.0, 2.0]);
    }

    /// Window mode never cuts a single text, but a pair (one sequence in
    /// every mode) can be cut, and says so.
    #[test]
    fn a_cut_sequence_in_window_mode_is_reported_truncated() {
        let p = post();
        for aggregate in [Aggregate::Mean, Aggregate::Max] {
            let cut = p.score(vec![2.0, 0.0], 512, true);
            assert!(p.finish(cut, aggregate, true, None).truncated);
            let folded = p.fold_window(
                Some(p.score(vec![0.0, 9.0], 512, false)),
                p.score(vec![1.0, 0.0], 512, true),
                aggregate,
            );
            assert!(p.finish(folded, aggregate, true, None).truncated);
        }
    }

    #[test]
    fn max_keeps_the_most_confident_window() {
        let p = post();
        let folded = p.fold_window(
            Some(p.score(vec![0.0, 1.0], 10, false)),
            p.score(vec![5.0, 0.0], 10, false),
            Aggregate::Max,
        );
        let prediction = p.finish(folded, Aggregate::Max, true, None);
        assert_eq!(prediction.label, "NEG");
        assert_eq!(prediction.logits, vec![5.0, 0.0]);
    }

    #[test]
    fn serializes_as_the_cli_prints_it() {
        let p = post();
        let prediction = p.finish(
            p.score(vec![0.0, 1.0], 3, false),
            Aggregate::Mean,
            false,
            Some(1),
        );
        let json = serde_json::to_value(&prediction).unwrap();
        assert_eq!(json["label"], "POS");
        assert_eq!(json["scores"].as_object().unwrap().len(), 1);
        assert_eq!(json["truncated"], false);
        assert!(json.get("windows").is_none() && json.get("logits").is_none());
    }
}
