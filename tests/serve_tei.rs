//! `sentiment serve` as TEI's clients see it: routes, forms, /tokenize,
//! /decode, the OpenAPI document, truncation direction, Prometheus text.

mod common;
#[path = "common/server.rs"]
mod server;

use common::*;
use serde_json::{json, Value};
use server::*;

/// TEI's routes and forms: POST / and /invocations answer as /predict, a
/// batch is a list of one-text lists, and unknown fields (the HF client's
/// "parameters") are ignored as TEI ignores them. Each failed before (404,
/// 422 "text pairs", 422 "unknown field").
#[test]
fn tei_routes_batch_form_and_unknown_fields() {
    let server = Server::start(&[]);
    let (status, single) = server.post("/predict", r#"{"inputs": "I love this movie"}"#);
    assert_eq!(status, 200, "{single}");
    let (status, answer) = server.post("/invocations", r#"{"inputs": "I love this movie"}"#);
    assert_eq!((status, &answer), (200, &single));
    // POST / is where huggingface_hub's InferenceClient posts: the HF
    // Inference API's shape, one list per input, cut to parameters.top_k
    // (TEI's bare list reached the client's users as one label).
    let (status, answer) = server.post("/", r#"{"inputs": "I love this movie"}"#);
    assert_eq!((status, &answer), (200, &json!([single])));
    let (status, answer) = server.post(
        "/",
        r#"{"inputs": "I love this movie", "parameters": {"top_k": 1, "function_to_apply": "softmax"}}"#,
    );
    assert_eq!((status, &answer), (200, &json!([[single[0]]])));
    let (status, answer) = server.post(
        "/",
        r#"{"inputs": [["good"], ["bad"]], "parameters": {"top_k": null}}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.as_array().unwrap().len(), 2);
    assert_eq!(
        answer[0].as_array().unwrap().len(),
        single.as_array().unwrap().len()
    );
    for bad in [
        r#"{"top_k": 0}"#,
        r#"{"top_k": -1}"#,
        r#"{"top_k": "2"}"#,
        r#""top_k""#,
    ] {
        let body = format!(r#"{{"inputs": "good", "parameters": {bad}}}"#);
        let (status, answer) = server.post("/", &body);
        assert_eq!(status, 422, "{bad}: {answer}");
    }
    // TEI's routes ignore "parameters", as TEI does.
    let (status, answer) = server.post(
        "/predict",
        r#"{"inputs": "I love this movie", "parameters": {"top_k": 1}}"#,
    );
    assert_eq!((status, &answer), (200, &single));
    // TEI reads a one-text list as that text, answered alone.
    let (status, answer) = server.post("/predict", r#"{"inputs": ["I love this movie"]}"#);
    assert_eq!((status, &answer), (200, &single));
    let (status, batch) = server.post(
        "/predict",
        r#"{"inputs": [["I like you."], ["I hate pineapples"]]}"#,
    );
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch.as_array().unwrap().len(), 2);
    let (_, classified) = server.post(
        "/classify",
        r#"{"inputs": ["I like you.", "I hate pineapples"]}"#,
    );
    for (tei, ours) in batch
        .as_array()
        .unwrap()
        .iter()
        .zip(classified.as_array().unwrap())
    {
        assert_eq!(tei[0]["label"], ours["label"]);
        let score = |v: &Value| v["score"].as_f64().unwrap() as f32;
        assert_eq!(score(&tei[0]), score(ours));
    }
}

/// Text pairs in every form TEI takes (`["a", "b"]` alone, `[["a", "b"],
/// ["c"]]` in a batch) and /classify's (HF's pipeline's `{"text",
/// "text_pair"}`), on a BERT model whose second texts are token type 1:
/// each answer is the library's for that pair, which matches HF
/// (tests/pairs.rs). `["a", "b"]` was a batch of two before, and `[["a",
/// "b"]]` a 422.
#[test]
fn text_pairs_in_tei_and_pipeline_forms_match_the_library() {
    let model = fixture("tiny-bert");
    let server = Server::start_model(&["-m", model.to_str().unwrap()], &[], |_| {});
    let classifier = load(&model);
    let (premise, hypothesis) = ("A man is playing a guitar.", "Someone is making music.");
    let options = sentiment::ClassifyOptions::default();
    let want = &classifier
        .classify_pairs(&[(premise, hypothesis)], &options)
        .unwrap()[0];
    let alone = &classifier.classify(&[premise], &options).unwrap()[0];
    let best = |answer: &Value| {
        (
            answer["label"].as_str().unwrap().to_string(),
            answer["score"].as_f64().unwrap() as f32,
        )
    };
    let check = |answer: &Value, what: &str| {
        let (label, score) = best(answer);
        assert_eq!(label, want.label, "{what}: {answer}");
        assert!((score - want.score).abs() < 1e-6, "{what}: {answer}");
    };

    let (status, pair) = server.post(
        "/predict",
        &json!({"inputs": [premise, hypothesis]}).to_string(),
    );
    assert_eq!(status, 200, "{pair}");
    check(&pair[0], "TEI pair");
    assert!(
        (best(&pair[0]).1 - alone.score).abs() > 1e-4,
        "the pair scored as its first text"
    );

    let body = json!({"inputs": [[premise, hypothesis], [premise]]}).to_string();
    let (status, batch) = server.post("/predict", &body);
    assert_eq!(status, 200, "{batch}");
    check(&batch[0][0], "TEI batch pair");
    assert!((best(&batch[1][0]).1 - alone.score).abs() < 1e-6, "{batch}");

    let body = json!({"inputs": {"text": premise, "text_pair": hypothesis}}).to_string();
    let (status, one) = server.post("/classify", &body);
    assert_eq!(status, 200, "{one}");
    check(&one, "pipeline pair");
    let body = json!({"inputs": [{"text": premise, "text_pair": hypothesis}, [premise, hypothesis], premise]});
    let (status, many) = server.post("/classify", &body.to_string());
    assert_eq!(status, 200, "{many}");
    check(&many[0], "pipeline pair in a list");
    check(&many[1], "TEI pair in a /classify list");
    assert!((best(&many[2]).1 - alone.score).abs() < 1e-6);

    // raw_scores on a pair: its logits.
    let body = json!({"inputs": [premise, hypothesis], "raw_scores": true}).to_string();
    let (_, raw) = server.post("/predict", &body);
    let top = raw[0]["score"].as_f64().unwrap() as f32;
    assert!(
        (top - want.logits.iter().copied().fold(f32::MIN, f32::max)).abs() < 1e-5,
        "{raw}"
    );

    // An over-long pair: cut longer side first, or refused with truncate false.
    let long = "the movie was great , and i loved it ! ".repeat(80);
    let body = json!({"inputs": {"text": long, "text_pair": hypothesis}}).to_string();
    let (status, cut) = server.post("/classify", &body);
    assert_eq!((status, &cut["truncated"]), (200, &json!(true)), "{cut}");
    let body = json!({"inputs": [long, hypothesis], "truncate": false}).to_string();
    let (status, refused) = server.post("/predict", &body);
    assert_eq!(status, 422, "{refused}");
    // Both sides empty is TEI's Empty.
    let (status, empty) = server.post("/predict", r#"{"inputs": ["", ""]}"#);
    assert_eq!(status, 400, "{empty}");
}

/// TEI's liveness route: GET /ping answers 200, without the API key, as
/// /health does.
#[test]
fn ping_answers_like_health() {
    let server = Server::start_with(&[], |c| {
        c.env("SENTIMENT_API_KEY", "s3cret");
    });
    assert_eq!(server.get("/ping").0, 200);
    assert_eq!(server.get("/health").0, 200);
    // TEI answers GET / as health too (POST / is predict).
    assert_eq!(server.get("/").0, 200);
}

/// /metrics is Prometheus text by default (as TEI serves it), with HELP
/// and TYPE under each counter's `_total` name; OpenMetrics when asked.
#[test]
fn metrics_are_prometheus_text_unless_openmetrics_is_asked_for() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/health").0, 200);
    let response = ureq::get(&server.url("/metrics")).call().unwrap();
    assert!(response.content_type().starts_with("text/plain"));
    let text = response.into_string().unwrap();
    assert!(
        text.contains("# TYPE sentiment_requests_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    let response = ureq::get(&server.url("/metrics"))
        .set("Accept", "application/openmetrics-text; version=1.0.0")
        .call()
        .unwrap();
    assert!(response.content_type().contains("openmetrics"));
    assert!(response.into_string().unwrap().ends_with("# EOF\n"));
}

/// TEI's /tokenize (tokens with their byte spans, special tokens marked)
/// and /decode, with the model's own tokenizer: 404 before.
#[test]
fn tokenize_and_decode_as_tei() {
    let server = Server::start(&[]);
    let (status, tokens) = server.post("/tokenize", r#"{"inputs": "Héllo there"}"#);
    assert_eq!(status, 200, "{tokens}");
    let tokens = tokens[0].as_array().unwrap().clone();
    assert_eq!(tokens[0]["text"], "[CLS]");
    assert_eq!(tokens[0]["special"], true);
    assert!(tokens[0]["start"].is_null());
    assert_eq!(tokens.last().unwrap()["text"], "[SEP]");
    let first = &tokens[1];
    assert_eq!(first["special"], false);
    assert_eq!(first["start"], 0);
    let ids: Vec<u64> = tokens.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let classifier = load(&tiny_model_dir());
    let expected: Vec<u64> = classifier
        .encode("Héllo there")
        .unwrap()
        .ids
        .iter()
        .map(|&i| u64::from(i))
        .collect();
    assert_eq!(ids, expected);
    let (status, plain) = server.post(
        "/tokenize",
        r#"{"inputs": ["a", "b c"], "add_special_tokens": false}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(plain.as_array().unwrap().len(), 2);
    assert_eq!(plain[1].as_array().unwrap().len(), 2);
    let (status, decoded) = server.post("/decode", &json!({"ids": ids}).to_string());
    assert_eq!(status, 200, "{decoded}");
    assert_eq!(decoded, json!(["hello there"]));
    let (status, answer) = server.post("/decode", r#"{"ids": []}"#);
    assert_eq!(status, 400, "{answer}");
}

/// The OpenAPI document at TEI's path, with every route this server
/// answers, and the docs page that shows it (both 404 before).
#[test]
fn openapi_document_and_docs_page() {
    let server = Server::start(&[]);
    let (status, body) = server.get("/api-doc/openapi.json");
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&body).unwrap();
    for path in [
        "/",
        "/predict",
        "/classify",
        "/tokenize",
        "/decode",
        "/info",
        "/health",
        "/metrics",
    ] {
        assert!(document["paths"][path].is_object(), "{path}");
    }
    let (status, page) = server.get("/docs");
    assert_eq!(status, 200);
    assert!(page.contains("/api-doc/openapi.json"));
}

/// TEI's `"truncation_direction": "Left"` keeps a long text's end (it was
/// refused with 422): the answer is the library's with the start cut.
#[test]
fn truncation_direction_left_keeps_the_end() {
    let server = Server::start(&[]);
    let classifier = load(&tiny_model_dir());
    let text = "the start was dull . ".repeat(150) + &"the end was great fun ! ".repeat(150);
    let body = json!({"inputs": text, "truncation_direction": "Left"}).to_string();
    let (status, left) = server.post("/classify", &body);
    assert_eq!(status, 200, "{left}");
    let options =
        sentiment::ClassifyOptions::default().with_long_text(sentiment::LongText::TruncateStart);
    let want = &classifier.classify(&[text.as_str()], &options).unwrap()[0];
    assert_eq!(left["label"], want.label.as_str());
    assert!((left["score"].as_f64().unwrap() as f32 - want.score).abs() < 1e-6);
    assert_eq!(left["truncated"], true);
    let (_, right) = server.post("/classify", &json!({"inputs": text}).to_string());
    assert_ne!(
        left["score"], right["score"],
        "both ends gave the same answer"
    );
    let body = json!({"inputs": text, "truncate": false, "truncation_direction": "Left"});
    assert_eq!(server.post("/predict", &body.to_string()).0, 422);

    // A server started with --long-text truncate-start keeps the end unless
    // a request asks for "Right".
    let keeps_end = Server::start(&["--long-text", "truncate-start"]);
    let (status, by_default) = keeps_end.post("/classify", &json!({"inputs": text}).to_string());
    assert_eq!((status, &by_default["score"]), (200, &left["score"]));
    let body = json!({"inputs": text, "truncation_direction": "Right"}).to_string();
    let (_, asked_right) = keeps_end.post("/classify", &body);
    assert_eq!(asked_right["score"], right["score"]);
    let (_, info) = keeps_end.get("/info");
    assert!(info.contains("\"long_text\":\"truncate_start\""), "{info}");
}
