//! The hub repos of `tests/fixtures/hub/` (made by tools/make_hub_repos.py):
//! their manifest, the mock hub's view of them, folders made of their
//! files, and the check against their goldens.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::common::*;
use crate::mock_hub::Repos;
use sentiment::{Classifier, ClassifyOptions, ModelFiles, Precision};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub repos: Vec<HubRepo>,
}

#[derive(Debug, Deserialize)]
pub struct HubRepo {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub revisions: BTreeMap<String, Revision>,
}

#[derive(Debug, Deserialize)]
pub struct Revision {
    pub commit: String,
    /// File name in the repo -> its bytes' path in this repository.
    pub files: BTreeMap<String, String>,
    /// What loading the model must download.
    pub uses: Vec<String>,
}

impl Manifest {
    /// One repo's revision, by the repo's id.
    pub fn revision(&self, id: &str, revision: &str) -> &Revision {
        &self.repos.iter().find(|r| r.id == id).unwrap().revisions[revision]
    }
}

/// The repo's folder in the HF cache under `home`.
pub fn cached_repo(home: &Path, id: &str) -> std::path::PathBuf {
    home.join("hub")
        .join(format!("models--{}", id.replace('/', "--")))
}

pub fn manifest() -> Manifest {
    let text = std::fs::read_to_string(fixture("hub/repos.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn bytes_of(source: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(source)).unwrap()
}

pub fn mock_repos(manifest: &Manifest) -> Repos {
    manifest
        .repos
        .iter()
        .map(|repo| {
            let revisions = repo
                .revisions
                .iter()
                .map(|(name, revision)| {
                    let files: HashMap<String, Vec<u8>> = revision
                        .files
                        .iter()
                        .map(|(file, source)| (file.clone(), bytes_of(source)))
                        .collect();
                    (name.clone(), (revision.commit.clone(), files))
                })
                .collect();
            (repo.id.clone(), revisions)
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub struct PairGolden {
    pub cases: Vec<PairCase>,
    pub batches: Vec<GoldenBatch>,
}

#[derive(Debug, Deserialize)]
pub struct PairCase {
    pub first: String,
    pub second: String,
    pub ids: Vec<u32>,
    pub type_ids: Option<Vec<u32>>,
    pub logits: Vec<f32>,
}

/// The classifier matches transformers on the repo's goldens: the token
/// ids of every text and pair, their logits alone, and in padded batches.
pub fn assert_matches_hf(classifier: &Classifier, repo: &HubRepo, how: &str) {
    let golden = golden(&fixture(&format!("hub/golden_{}.json", repo.name)));
    assert_eq!(classifier.labels(), golden.labels.as_slice(), "{how}");
    for case in &golden.cases {
        let encoded = classifier.encode(&case.text).unwrap();
        assert_eq!(encoded.ids, case.ids, "{how}: ids of {:?}", case.text);
        assert_eq!(encoded.truncated, case.truncated, "{how}: {:?}", case.text);
        let prediction = &predict(classifier, &[case.text.as_str()])[0];
        let diff = max_abs_diff(&prediction.logits, &case.logits);
        assert!(
            diff <= LOGIT_TOLERANCE,
            "{how}: {:?}: |Δlogit| {diff}",
            case.text
        );
    }
    assert_golden_batches(classifier, &golden);
    let text = std::fs::read_to_string(fixture(&format!("hub/golden_pairs_{}.json", repo.name)));
    let pairs: PairGolden = serde_json::from_str(&text.unwrap()).unwrap();
    for (i, case) in pairs.cases.iter().enumerate() {
        let input = (case.first.as_str(), case.second.as_str());
        let encoded = classifier.encode(input).unwrap();
        assert_eq!(encoded.ids, case.ids, "{how}: pair {i} ids");
        if let Some(types) = &case.type_ids {
            assert_eq!(&encoded.type_ids, types, "{how}: pair {i} type ids");
        }
        let prediction = &classifier
            .classify_pairs(&[input], &ClassifyOptions::default())
            .unwrap()[0];
        let diff = max_abs_diff(&prediction.logits, &case.logits);
        assert!(diff <= LOGIT_TOLERANCE, "{how}: pair {i}: |Δlogit| {diff}");
    }
    for batch in &pairs.batches {
        let members: Vec<(&str, &str)> = batch
            .members
            .iter()
            .map(|&i| {
                (
                    pairs.cases[i].first.as_str(),
                    pairs.cases[i].second.as_str(),
                )
            })
            .collect();
        let predictions = classifier
            .classify_pairs(&members, &ClassifyOptions::default())
            .unwrap();
        for (prediction, want) in predictions.iter().zip(&batch.logits) {
            let diff = max_abs_diff(&prediction.logits, want);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "{how}: pair batch: |Δlogit| {diff}"
            );
        }
    }
}

pub fn load_files(files: &ModelFiles) -> Classifier {
    Classifier::from_files(files, &candle_core::Device::Cpu, Precision::F32).unwrap()
}

/// A folder made of one repo's files, with `change` applied.
pub fn repo_folder(name: &str, change: impl FnOnce(&Path)) -> tempfile::TempDir {
    let manifest = manifest();
    let repo = manifest.repos.iter().find(|r| r.name == name).unwrap();
    let revision = &repo.revisions["main"];
    let folder = tempfile::tempdir().unwrap();
    for file in &revision.uses {
        std::fs::write(folder.path().join(file), bytes_of(&revision.files[file])).unwrap();
    }
    change(folder.path());
    folder
}
