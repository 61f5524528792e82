//! `sentiment serve` end to end: the real binary on an ephemeral port with
//! the tiny fixture model, spoken to over HTTP with ureq.

mod common;
#[path = "common/server.rs"]
mod server;

use common::*;
use serde_json::{json, Value};
use server::*;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn predict_answers_in_teis_shape_with_the_librarys_scores() {
    let server = Server::start(&[]);
    let classifier = load(&tiny_model_dir());
    let (status, one) = server.post("/predict", r#"{"inputs": "I love this movie"}"#);
    assert_eq!(status, 200, "{one}");
    let expected = &predict(&classifier, &["I love this movie"])[0];
    let scores = one.as_array().unwrap();
    assert_eq!(scores.len(), 3);
    for (got, want) in scores.iter().zip(&expected.scores) {
        assert_eq!(got["label"], want.label.as_str());
        assert!((got["score"].as_f64().unwrap() as f32 - want.score).abs() < 1e-6);
    }
    let descending = scores
        .windows(2)
        .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64());
    assert!(descending, "{one}");

    let (status, many) = server.post("/predict", r#"{"inputs": [["good"], ["bad"], [""]]}"#);
    assert_eq!(status, 200, "{many}");
    assert_eq!(many.as_array().unwrap().len(), 3);
    assert!(many[0].is_array() && many[0][0]["label"].is_string());

    // raw_scores: the logits, still best first.
    let (status, raw) = server.post("/predict", r#"{"inputs": "great", "raw_scores": true}"#);
    assert_eq!(status, 200);
    let logits = &predict(&classifier, &["great"])[0].logits;
    let mut best_first = logits.clone();
    best_first.sort_by(|a, b| b.total_cmp(a));
    for (got, want) in raw.as_array().unwrap().iter().zip(best_first) {
        assert!((got["score"].as_f64().unwrap() as f32 - want).abs() < 1e-6);
    }
}

#[test]
fn classify_answers_with_predicts_json_fields() {
    let server = Server::start(&[]);
    let (status, one) = server.post("/classify", r#"{"inputs": "I love this movie"}"#);
    assert_eq!(status, 200, "{one}");
    for field in ["label", "score", "scores", "truncated"] {
        assert!(one.get(field).is_some(), "{field} in {one}");
    }
    let body = json!({"inputs": [long_text(), "short"]}).to_string();
    let (status, many) = server.post("/classify", &body);
    assert_eq!(status, 200, "{many}");
    assert_eq!(many[0]["truncated"], true);
    assert_eq!(many[1]["truncated"], false);
}

#[test]
fn health_info_and_metrics() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/health").0, 200);
    let (status, info) = server.get("/info");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["architecture"], "DistilBertForSequenceClassification");
    assert_eq!(info["labels"], json!(["NEGATIVE", "NEUTRAL", "POSITIVE"]));
    assert_eq!(info["max_input_length"], 512);
    assert_eq!(info["precision"], "f32");
    assert!(info["version"].is_string());
    // TEI's required Info fields.
    assert_eq!(info["model_dtype"], "float32");
    assert!(info["served_model_name"].is_string(), "{info}");
    assert_eq!(info["auto_truncate"], true);
    assert!(
        info["tokenization_workers"].as_u64().unwrap() >= 1,
        "{info}"
    );
    assert!(info["max_concurrent_requests"].is_u64() && info["max_batch_tokens"].is_u64());
    assert!(info["max_client_batch_size"].is_u64(), "{info}");
    let classifier = &info["model_type"]["classifier"];
    assert_eq!(classifier["id2label"]["2"], "POSITIVE");
    assert_eq!(classifier["label2id"]["POSITIVE"], 2);
    server.post("/predict", r#"{"inputs": [["a"], ["b"]]}"#);
    server.post("/predict", "not json");
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for series in [
        "sentiment_requests_total{route=\"/predict\",status=\"200\"} 1",
        "sentiment_requests_total{route=\"/predict\",status=\"422\"} 1",
        "sentiment_queue_duration_seconds_bucket",
        "sentiment_inference_duration_seconds_count 1",
        "sentiment_batch_size_sum 2",
        "sentiment_tokens_total 6",
        "sentiment_requests_in_flight",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

#[test]
fn bad_requests_get_their_status_and_a_message() {
    let server = Server::start(&["--payload-limit", "8192", "--max-client-batch-size", "4"]);
    let long = json!({"inputs": long_text(), "truncate": false}).to_string();
    let many = json!({"inputs": [["a"], ["b"], ["c"], ["d", "pair"], ["e"]]}).to_string();
    let huge = json!({"inputs": "x".repeat(10_000)}).to_string();
    for (body, status, says) in [
        ("not json", 422, "not valid JSON"),
        ("[1, 2]", 422, "JSON object"),
        (r#"{"text": "hi"}"#, 422, "no \"inputs\""),
        (r#"{"inputs": 42}"#, 422, "must be a text, a pair"),
        (
            r#"{"inputs": ["ok", 7]}"#,
            422,
            "inputs[1] must be a string",
        ),
        (r#"{"inputs": ["a", "b", "c"]}"#, 422, "3 texts"),
        (
            r#"{"inputs": [["a", "b", "c"]]}"#,
            422,
            "inputs[0] holds 3 texts",
        ),
        (r#"{"inputs": [["a"], []]}"#, 422, "inputs[1] holds 0 texts"),
        // TEI's codes: Empty is 400, Validation 422 (too many inputs, a
        // text over the limit); the body limit is the framework's 413.
        (r#"{"inputs": []}"#, 422, "not an empty list"),
        (r#"{"inputs": ""}"#, 400, "empty"),
        (
            r#"{"inputs": "a", "truncate": "yes"}"#,
            422,
            "true or false",
        ),
        (
            r#"{"inputs": "a", "truncation_direction": "Up"}"#,
            422,
            "Left",
        ),
        (long.as_str(), 422, "truncate"),
        (many.as_str(), 422, "limit of 4"),
        (huge.as_str(), 413, "8192 byte limit"),
    ] {
        let (got, answer) = server.post("/predict", body);
        assert_eq!(got, status, "{body:.60}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body:.60}: {answer}");
        assert_tei_error_type(&answer);
    }
    // /classify's empty list is TEI's Empty (TEI's predict parser refuses it).
    let (status, answer) = server.post("/classify", r#"{"inputs": []}"#);
    assert_eq!((status, &answer["error_type"]), (400, &json!("Empty")));
    // The same long text is fine when truncation is asked for.
    let body = json!({"inputs": long_text(), "truncate": true}).to_string();
    assert_eq!(server.post("/predict", &body).0, 200);
    // The router's own errors (no route, a wrong method) are TEI-shaped
    // JSON too.
    for (path, status) in [("/nowhere", 404), ("/predict", 405)] {
        let (got, body) = server.get(path);
        assert_eq!(got, status, "{path}");
        let answer: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body:?}"));
        assert_tei_error_type(&answer);
    }
}

/// With a key, every route the OpenAPI document lists needs it, but the
/// health probes (/health, /ping, GET /) and the API's own description
/// (/docs, /api-doc/openapi.json), as docs/serve.md and the README say.
#[test]
fn the_api_key_guards_every_route_but_health_and_the_api_description() {
    let server = Server::start_with(&[], |c| {
        c.env("SENTIMENT_API_KEY", "s3cret");
    });
    let body = Some(r#"{"inputs": "hi"}"#);
    let post = || ureq::post(&server.url("/predict"));
    assert_eq!(send(post(), body).0, 401);
    assert_eq!(
        send(post().set("Authorization", "Bearer wrong"), body).0,
        401
    );
    assert_eq!(send(post().set("Authorization", "s3cret"), body).0, 401);
    assert_eq!(
        send(post().set("Authorization", "Bearer s3cret"), body).0,
        200
    );
    const OPEN: [(&str, &str); 5] = [
        ("get", "/health"),
        ("get", "/ping"),
        ("get", "/"),
        ("get", "/docs"),
        ("get", "/api-doc/openapi.json"),
    ];
    for (_, path) in OPEN {
        assert_eq!(server.get(path).0, 200, "{path}");
    }
    let (status, document) = server.get("/api-doc/openapi.json");
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();
    let mut guarded = 0;
    for (path, methods) in document["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            if OPEN.contains(&(method.as_str(), path.as_str())) {
                continue;
            }
            let request = ureq::request(&method.to_uppercase(), &server.url(path));
            let status = send(request, (method == "post").then_some(r#"{"inputs": "hi"}"#)).0;
            assert_eq!(status, 401, "{method} {path} answered without the key");
            guarded += 1;
        }
    }
    assert_eq!(
        guarded, 8,
        "POST /, /invocations, /predict, /classify, /tokenize, /decode; GET /info, /metrics"
    );
}

#[test]
fn fifty_concurrent_clients_each_get_their_own_answer() {
    let server = Server::start(&[]);
    let classifier = load(&tiny_model_dir());
    let texts: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "review {i}: {}",
                "good ".repeat(i % 7) + &"bad ".repeat(i % 5)
            )
        })
        .collect();
    let bodies = texts
        .iter()
        .map(|t| json!({"inputs": t}).to_string())
        .collect();
    let answers = concurrently(&server, bodies);
    for (text, (status, answer)) in texts.iter().zip(answers) {
        assert_eq!(status, 200, "{answer}");
        let want = &predict(&classifier, &[text.as_str()])[0];
        assert_eq!(answer[0]["label"], want.label.as_str(), "{text}");
        let score = answer[0]["score"].as_f64().unwrap() as f32;
        assert!(
            (score - want.score).abs() < 1e-6,
            "{text}: {score} vs {}",
            want.score
        );
    }
    // They were batched: fewer forward rounds than requests.
    let metrics = server.get("/metrics").1;
    let rounds: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sentiment_batch_size_count "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(rounds < 50, "{rounds} rounds for 50 requests");
}

#[test]
fn a_flood_over_the_concurrency_limit_gets_429_and_nothing_else_fails() {
    let server = Server::start(&["--max-concurrent-requests", "2", "--long-text", "window"]);
    let body = json!({"inputs": vec![vec![long_text()]; 8]}).to_string();
    let answers = concurrently(&server, vec![body; 24]);
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let overloaded = answers.iter().find(|(s, _)| *s == 429).unwrap();
    assert_eq!(overloaded.1["error_type"], "Overloaded");
}

/// SIGTERM with requests in flight: each of them is answered, then the
/// server exits 0.
#[test]
#[cfg(unix)]
fn sigterm_finishes_the_requests_in_flight_then_exits_zero() {
    let mut server = Server::start(&["--long-text", "window"]);
    let body = json!({"inputs": vec![vec![long_text()]; 16]}).to_string();
    let url = Arc::new(server.url("/predict"));
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || send(ureq::post(&url), Some(&body)))
        })
        .collect();
    // Wait until every client is in (the /metrics request is one more).
    let started = Instant::now();
    loop {
        let metrics = server.get("/metrics").1;
        let in_flight: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sentiment_requests_in_flight "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if in_flight > 12 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "clients never got in"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) with the child's pid, which has not been reaped.
    let sent = unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    for client in clients {
        let (status, answer) = client.join().unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer.as_array().unwrap().len(), 16);
    }
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// The body parser never panics, and a well-formed body parses to what it
/// says, in TEI's forms and in /classify's.
mod parser {
    use proptest::prelude::*;
    use sentiment::serve::request::{InputForm, Inputs, PredictRequest, Sequence};

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PredictRequest::parse(&body, InputForm::Tei);
            let _ = PredictRequest::parse(&body, InputForm::Classify);
        }

        #[test]
        fn near_valid_bodies_parse_or_are_refused(
            inputs in prop_oneof![
                any::<String>().prop_map(serde_json::Value::from),
                proptest::collection::vec(any::<String>(), 0..4).prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
            ],
            truncate in prop_oneof![Just(None), any::<bool>().prop_map(Some), Just(Some(true))],
            extra in proptest::option::of("[a-z_]{1,10}"),
            tei in any::<bool>(),
        ) {
            let mut body = serde_json::json!({"inputs": inputs.clone()});
            if let Some(truncate) = truncate {
                body["truncate"] = truncate.into();
            }
            if let Some(extra) = &extra {
                body[extra] = 1.into();
            }
            let form = if tei { InputForm::Tei } else { InputForm::Classify };
            let parsed = PredictRequest::parse(body.to_string().as_bytes(), form);
            let known_extra = extra.as_deref().is_some_and(|e| {
                ["inputs", "truncate", "raw_scores", "truncation_direction"].contains(&e)
            });
            let texts = |items: &[serde_json::Value]| -> Vec<String> {
                items.iter().map(|t| t.as_str().unwrap().to_string()).collect()
            };
            match (&inputs, parsed) {
                (serde_json::Value::String(text), Ok(request)) => {
                    prop_assert_eq!(request.inputs, Inputs::One(Sequence::Single(text.clone())));
                    if !known_extra {
                        prop_assert_eq!(request.truncate, truncate);
                    }
                }
                // TEI: a list of strings is one text or one pair.
                (serde_json::Value::Array(items), Ok(request)) if tei => {
                    let mut texts = texts(items);
                    let want = match texts.len() {
                        1 => Inputs::One(Sequence::Single(texts.remove(0))),
                        2 => Inputs::One(Sequence::Pair(texts[0].clone(), texts[1].clone())),
                        n => return Err(TestCaseError::fail(format!("accepted {n} texts"))),
                    };
                    prop_assert_eq!(request.inputs, want);
                }
                // /classify: a list of strings is a batch of texts.
                (serde_json::Value::Array(items), Ok(request)) => {
                    let want = texts(items).into_iter().map(Sequence::Single).collect();
                    prop_assert_eq!(request.inputs, Inputs::Many(want));
                }
                (_, Ok(request)) => prop_assert!(false, "accepted {:?}", request),
                (serde_json::Value::Array(items), Err(_)) if tei && items.len() != 1 && items.len() != 2 => {}
                (serde_json::Value::String(_) | serde_json::Value::Array(_), Err(err)) => {
                    // Unknown fields are ignored: only a known one with a
                    // wrong value may make a valid body invalid.
                    prop_assert!(known_extra, "refused a valid body: {}", err);
                }
                (_, Err(_)) => {}
            }
        }
    }

    fn parse(form: InputForm, inputs: serde_json::Value) -> Result<Inputs, String> {
        let body = serde_json::json!({ "inputs": inputs }).to_string();
        PredictRequest::parse(body.as_bytes(), form)
            .map(|request| request.inputs)
            .map_err(|err| err.to_string())
    }

    fn single(text: &str) -> Sequence {
        Sequence::Single(text.into())
    }

    fn pair(first: &str, second: &str) -> Sequence {
        Sequence::Pair(first.into(), second.into())
    }

    /// Every form of TEI's `PredictInput`, read as TEI's own parser reads
    /// it, and the shapes it refuses, each with the reason.
    #[test]
    fn tei_forms_parse_as_tei_reads_them() {
        use serde_json::json;
        let tei = |inputs| parse(InputForm::Tei, inputs);
        assert_eq!(tei(json!("a")), Ok(Inputs::One(single("a"))));
        assert_eq!(tei(json!(["a"])), Ok(Inputs::One(single("a"))));
        assert_eq!(tei(json!(["a", "b"])), Ok(Inputs::One(pair("a", "b"))));
        assert_eq!(
            tei(json!([["a"], ["b", "c"], ["d"]])),
            Ok(Inputs::Many(vec![single("a"), pair("b", "c"), single("d")]))
        );
        assert!(tei(json!([])).unwrap_err().contains("not an empty list"));
        for (bad, says) in [
            (json!(["a", "b", "c"]), "inputs holds 3 texts"),
            (json!([["a", "b", "c"]]), "inputs[0] holds 3 texts"),
            (json!([["a"], []]), "inputs[1] holds 0 texts"),
            (
                json!([["a"], "b"]),
                "inputs[1] must be a list of one or two texts",
            ),
            (
                json!(["a", ["b"]]),
                "inputs[1] must be a string, not an array",
            ),
            (
                json!([["a", 1]]),
                "inputs[0][1] must be a string, not a number",
            ),
            (json!({"text": "a"}), "not an object"),
        ] {
            let err = tei(bad.clone()).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    /// /classify takes a list of texts as a batch, and pairs as HF's
    /// pipeline's objects or TEI's two-text lists.
    #[test]
    fn classify_forms_take_texts_and_pairs() {
        use serde_json::json;
        let classify = |inputs| parse(InputForm::Classify, inputs);
        assert_eq!(
            classify(json!(["a", "b"])),
            Ok(Inputs::Many(vec![single("a"), single("b")]))
        );
        assert_eq!(
            classify(json!({"text": "a", "text_pair": "b"})),
            Ok(Inputs::One(pair("a", "b")))
        );
        assert_eq!(classify(json!({"text": "a"})), Ok(Inputs::One(single("a"))));
        assert_eq!(classify(json!([])), Ok(Inputs::Many(Vec::new())));
        assert_eq!(
            classify(json!(["a", {"text": "b", "text_pair": "c"}, ["d", "e"], ["f"]])),
            Ok(Inputs::Many(vec![
                single("a"),
                pair("b", "c"),
                pair("d", "e"),
                single("f")
            ]))
        );
        for (bad, says) in [
            (json!({"text_pair": "b"}), "inputs has no \"text\" field"),
            (
                json!({"text": "a", "text_pairs": "b"}),
                "a field \"text_pairs\"",
            ),
            (
                json!([{"text": 1}]),
                "inputs[0].text must be a string, not a number",
            ),
            (json!([["a", "b", "c"]]), "inputs[0] holds 3 texts"),
            (json!([1]), "inputs[0] must be a text"),
        ] {
            let err = classify(bad.clone()).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}

/// An API key with surrounding whitespace could never match (the header's
/// token is trimmed, the key was not): it is refused at start, exit 2.
#[test]
fn an_api_key_that_could_never_match_is_refused_at_start() {
    for key in [" abc ", "abc\n", "\tabc"] {
        let mut child = sentiment_command(&["-m", tiny_model_dir().to_str().unwrap(), "serve"])
            .args(["--port", "0", "--api-key", key])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A server that starts anyway is killed after a minute (a guard
        // against a hang, not a speed check) and fails below.
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none()
            && started.elapsed() < std::time::Duration::from_secs(60)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{key:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--api-key") && stderr.contains("whitespace"),
            "{stderr}"
        );
    }
}
