//! The hub's models as their repos really are (issue 39): five repos in
//! the file layouts of five popular sentiment models, slow tokenizer files
//! and `pytorch_model.bin`-only ones among them, served by the mock hub
//! under their real ids. Each loads by id into an empty cache, then offline
//! from the cache, then from a folder, and matches transformers (loading
//! only the slow files) on every golden text and pair; it downloads
//! nothing the model does not use. The repos and goldens come from
//! `tools/make_hub_repos.py`.

mod common;
#[path = "common/hub_repos.rs"]
mod hub_repos;
#[path = "common/mock_hub.rs"]
mod mock_hub;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use common::*;
use hub_repos::*;
use mock_hub::*;

/// The snapshot's files copied out of the cache into a folder (links
/// followed), as a user copies a model out of it.
fn copy_out(snapshot: &Path, into: &Path) {
    for entry in std::fs::read_dir(snapshot).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
    }
}

/// Runs `sentiment -m <id> [--revision r] predict --json` against the mock
/// hub, online, into `home`; returns its stdout.
fn predict_online(hub: &MockHub, id: &str, revision: &str, home: &Path) -> String {
    let output = predict_from_hub(id, &["--revision", revision], &hub.address, home);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{id}@{revision}: {}",
        stderr(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn each_repo_loads_by_id_then_offline_then_from_a_folder() {
    let manifest = manifest();
    assert_eq!(manifest.repos.len(), 5);
    let kinds: BTreeSet<&str> = manifest.repos.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["bpe", "sentencepiece", "wordpiece"]));
    let hub = MockHub::start(mock_repos(&manifest));
    for repo in &manifest.repos {
        for (revision_name, revision) in &repo.revisions {
            let how = format!("{}@{revision_name}", repo.id);
            let home = tempfile::tempdir().unwrap();
            let online = predict_online(&hub, &repo.id, revision_name, home.path());

            // What it fetched: every file the model uses, nothing else the
            // repo has (probes of files it lacks are 404s).
            let requests = hub.requests_for(&repo.id);
            let fetched: BTreeSet<String> = requests
                .iter()
                .filter(|(rev, _, status)| {
                    (rev == revision_name || *rev == revision.commit) && *status != 404
                })
                .map(|(_, file, _)| file.clone())
                .collect();
            let uses: BTreeSet<String> = revision.uses.iter().cloned().collect();
            assert_eq!(fetched, uses, "{how}: files fetched");
            for (_, file, _) in &requests {
                assert!(
                    !file.starts_with("onnx/")
                        && !["tf_model.h5", "rust_model.ot", "flax_model.msgpack"]
                            .contains(&file.as_str()),
                    "{how}: asked for {file}"
                );
            }
            hub.requests.lock().unwrap().clear();

            // The cache, as the binary left it, loads offline and matches HF.
            let cache = home.path().join("hub");
            let files = sentiment::source::hub::from_cache(&cache, &repo.id, revision_name, true)
                .unwrap()
                .unwrap_or_else(|| panic!("{how}: not complete in the cache"));
            assert_matches_hf(&load_files(&files), repo, &format!("{how} (cache)"));

            // Offline, the binary needs no request and says the same.
            let mut offline = hub_command(
                &repo.id,
                &["--revision", revision_name],
                "http://127.0.0.1:9",
                home.path(),
            );
            offline.env("HF_HUB_OFFLINE", "1");
            let output = run_with_stdin(offline, b"");
            assert_eq!(
                output.status.code(),
                Some(0),
                "{how} offline: {}",
                stderr(&output)
            );
            assert_eq!(
                String::from_utf8(output.stdout).unwrap(),
                online,
                "{how} offline"
            );
            // Online again, the complete cache needs no request either.
            predict_online(&hub, &repo.id, revision_name, home.path());
            assert_eq!(
                hub.requests_for(&repo.id),
                vec![],
                "{how}: a cached model asked the hub"
            );

            // Copied out of the cache into a folder: the same model.
            let folder = tempfile::tempdir().unwrap();
            let snapshot = cached_repo(home.path(), &repo.id)
                .join("snapshots")
                .join(&revision.commit);
            copy_out(&snapshot, folder.path());
            let spec = sentiment::ModelSpec::Local(folder.path().to_path_buf());
            let files = spec.resolve().unwrap();
            assert_matches_hf(&load_files(&files), repo, &format!("{how} (folder)"));
            let output = run_with_stdin(
                sentiment_command(&[
                    "-m",
                    folder.path().to_str().unwrap(),
                    "predict",
                    "--json",
                    "a good film",
                ]),
                b"",
            );
            assert_eq!(
                String::from_utf8(output.stdout).unwrap(),
                online,
                "{how} folder"
            );
        }
    }
}

#[test]
fn a_pr_revision_is_quoted_in_the_url_and_cached_under_its_ref() {
    let manifest = manifest();
    let hub = MockHub::start(mock_repos(&manifest));
    let home = tempfile::tempdir().unwrap();
    let id = "cardiffnlp/twitter-roberta-base-sentiment-latest";
    predict_online(&hub, id, "refs/pr/1", home.path());
    let repo = cached_repo(home.path(), id);
    let pr = &manifest.revision(id, "refs/pr/1");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/refs/pr/1")).unwrap(),
        pr.commit
    );
    let snapshot = repo.join("snapshots").join(&pr.commit);
    assert!(snapshot.join("model.safetensors").is_file());
    assert!(!snapshot.join("pytorch_model.bin").exists());
    // The revision was asked for config.json only (its probe and its
    // body); the rest by the commit that answered.
    let requests = hub.requests_for(id);
    let (by_ref, by_commit): (Vec<_>, Vec<_>) =
        requests.iter().partition(|(rev, _, _)| rev == "refs/pr/1");
    assert_eq!(by_ref.len(), 2, "{requests:?}");
    assert!(by_ref.iter().all(|(_, file, _)| file == "config.json"));
    assert!(
        by_commit.iter().all(|(rev, _, _)| *rev == pr.commit),
        "{requests:?}"
    );
    // main, in the same cache, is its own snapshot with the pickle.
    predict_online(&hub, id, "main", home.path());
    let main = &manifest.revision(id, "main");
    assert!(repo
        .join("snapshots")
        .join(&main.commit)
        .join("pytorch_model.bin")
        .is_file());
}

#[test]
fn a_cache_link_out_of_the_cache_is_refused() {
    let manifest = manifest();
    let hub = MockHub::start(mock_repos(&manifest));
    let home = tempfile::tempdir().unwrap();
    let id = "nlptown/bert-base-multilingual-uncased-sentiment";
    predict_online(&hub, id, "main", home.path());
    let repo = cached_repo(home.path(), id);
    let commit = &manifest.revision(id, "main").commit;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("vocab.txt");
    std::fs::write(&secret, "[UNK]\n[CLS]\n[SEP]\n").unwrap();
    let link = repo.join("snapshots").join(commit).join("vocab.txt");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let mut offline = hub_command(id, &[], "http://127.0.0.1:9", home.path());
    offline.env("HF_HUB_OFFLINE", "1");
    let output = run_with_stdin(offline, b"");
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("outside the HF cache"),
        "{}",
        stderr(&output)
    );

    // A ref that is a path is refused before it names a folder.
    std::fs::write(repo.join("refs/main"), "../../../../etc").unwrap();
    let mut offline = hub_command(id, &[], "http://127.0.0.1:9", home.path());
    offline.env("HF_HUB_OFFLINE", "1");
    let output = run_with_stdin(offline, b"");
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("does not name a commit"),
        "{}",
        stderr(&output)
    );
}

/// A cache a run left half-written (config and vocabulary, no answer yet
/// for the settings files) is completed online, not taken as it is.
#[test]
fn an_incomplete_cache_asks_the_hub_for_what_it_never_asked() {
    let manifest = manifest();
    let hub = MockHub::start(mock_repos(&manifest));
    let home = tempfile::tempdir().unwrap();
    let id = "ProsusAI/finbert";
    let online = predict_online(&hub, id, "main", home.path());
    let repo = cached_repo(home.path(), id);
    let commit = &manifest.revision(id, "main").commit;
    let snapshot: PathBuf = repo.join("snapshots").join(commit);
    std::fs::remove_file(snapshot.join("tokenizer_config.json")).unwrap();
    std::fs::remove_dir_all(repo.join(".no_exist")).unwrap();
    hub.requests.lock().unwrap().clear();
    assert_eq!(predict_online(&hub, id, "main", home.path()), online);
    let asked: Vec<String> = hub
        .requests_for(id)
        .into_iter()
        .map(|(_, f, _)| f)
        .collect();
    assert!(
        asked.contains(&"tokenizer_config.json".to_string()),
        "{asked:?}"
    );
    assert!(snapshot.join("tokenizer_config.json").is_file());
}

/// A hub that names a commit which is a path (`../..`) gets nothing
/// written for it: the answer is refused before it names a folder.
#[test]
fn a_commit_that_is_a_path_is_refused() {
    let repos = Repos::from([(
        "evil/commit".to_string(),
        HashMap::from([(
            "main".to_string(),
            ("../../../../outside".to_string(), tiny_files()),
        )]),
    )]);
    let hub = MockHub::start(repos);
    let home = tempfile::tempdir().unwrap();
    let output = predict_from_hub("evil/commit", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("commit"), "{}", stderr(&output));
    let entries: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(entries.iter().all(|name| name == "hub"), "{entries:?}");
    assert!(!home.path().join("hub/outside").exists());
}
