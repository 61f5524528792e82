//! The routes, their middleware (API key, concurrency limit, metrics) and
//! the JSON shapes of their answers and errors.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tokio::sync::oneshot;

use super::budget::{check_batch_size, check_request_tokens, take_permit};
use super::errors::{ApiError, ErrorType};
use super::metrics::{Metrics, RequestLabels};
use super::queue::Job;
use super::request::{InputForm, Inputs, PredictRequest};
use super::state::AppState;
use crate::batch::{CancelFlag, EncodedText};
use crate::classifier::{ClassifyOptions, LongText};
use crate::error::Result;
use crate::postprocess::Prediction;

/// Requests with at most this much text are tokenized on the async thread
/// itself; larger ones on tokio's blocking pool, so that a long text never
/// stalls the other connections.
const INLINE_TOKENIZE_BYTES: usize = 8 << 10;

pub fn router(state: AppState) -> Router {
    let inference = Router::new()
        // TEI serves predict at / and /invocations too; huggingface_hub's
        // InferenceClient posts to / and reads the HF Inference API's shape.
        .route("/", post(predict_per_input))
        .route("/invocations", post(predict))
        .route("/predict", post(predict))
        .route("/classify", post(classify));
    let protected = Router::new()
        .merge(inference)
        .route("/info", get(info))
        .route("/tokenize", post(super::tokens::tokenize))
        .route("/decode", post(super::tokens::decode))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    Router::new()
        .merge(protected)
        .route("/health", get(health))
        .route("/ping", get(health))
        .route("/", get(health))
        .route("/api-doc/openapi.json", get(openapi))
        .route("/docs", get(docs))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.payload_limit,
        ))
        .layer(middleware::from_fn(super::errors::json_errors))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    // The gauge goes down when the request ends however it ends: the
    // timeout layer and a client that goes away drop this future midway.
    let _in_flight = InFlight::enter(&state.metrics);
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { route, status })
        .inc();
    response
}

/// One request in the in-flight gauge, for as long as it lives.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn enter(metrics: &Arc<Metrics>) -> Self {
        metrics.in_flight.inc();
        Self(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn require_api_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = bearer(request.headers());
        if !given.is_some_and(|given| constant_time_eq(given.as_bytes(), key.as_bytes())) {
            drain(request, state.config.payload_limit).await;
            return ApiError::validation(
                "a valid \"Authorization: Bearer <key>\" header is required",
            )
            .with_status(StatusCode::UNAUTHORIZED)
            .into_response();
        }
    }
    next.run(request).await
}

/// Reads and drops a refused request's body (up to `limit` bytes): a
/// client still sending it would otherwise see its connection reset
/// instead of the answer.
async fn drain(request: Request, limit: usize) {
    let _ = axum::body::to_bytes(request.into_body(), limit).await;
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell an attacker how much of a guessed key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::validation(
        "no such route: try POST /predict, POST /classify, GET /health, GET /info or GET /metrics",
    )
    .with_status(StatusCode::NOT_FOUND)
}

/// The OpenAPI document (src/serve/openapi.json, made from TEI's by
/// tools/make_openapi.py).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// Swagger UI over the OpenAPI document, as TEI's /docs; the page loads
/// Swagger UI's script from a CDN in the reader's browser, so the server
/// ships none of it.
async fn docs() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("docs.html"))
}

async fn health() -> StatusCode {
    StatusCode::OK
}

/// Prometheus text (as TEI serves it), or OpenMetrics when the scraper's
/// Accept header asks for it.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render_openmetrics(),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render_prometheus(),
        )
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    let classifier = &state.classifier;
    let config = classifier.config();
    let id2label: serde_json::Map<String, serde_json::Value> = classifier
        .labels()
        .iter()
        .enumerate()
        .map(|(i, label)| (i.to_string(), json!(label)))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = classifier
        .labels()
        .iter()
        .enumerate()
        .map(|(i, label)| (label.clone(), json!(i)))
        .collect();
    let model_dtype = match classifier.precision() {
        crate::Precision::Bf16 => "bfloat16",
        crate::Precision::Int8 => "int8",
        _ => "float32",
    };
    let tokenization_workers = std::thread::available_parallelism().map_or(1, usize::from);
    Json(json!({
        "model_id": state.config.model_id,
        "model_sha": null,
        "model_dtype": model_dtype,
        "served_model_name": state.config.model_id,
        "model_type": {"classifier": {"id2label": id2label, "label2id": label2id}},
        "auto_truncate": true,
        "tokenization_workers": tokenization_workers,
        "architecture": config.class_name,
        "labels": classifier.labels(),
        "precision": classifier.precision().as_str(),
        "max_input_length": classifier.max_input_tokens(),
        "max_batch_tokens": state.config.max_batch_tokens,
        "max_batch_requests": state.config.max_batch_requests,
        "max_concurrent_requests": state.config.max_concurrent_requests,
        "max_client_batch_size": state.config.max_client_batch_size,
        "long_text": match state.config.options.long_text {
            LongText::Truncate => "truncate",
            LongText::TruncateStart => "truncate_start",
            LongText::Window { .. } => "window",
        },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// TEI's answer: every label with its score, best first.
#[derive(Serialize)]
struct LabelScore {
    label: String,
    score: f32,
}

async fn predict(
    State(state): State<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    predict_shaped(&state, body, false).await
}

/// `POST /`: the HF Inference API's text-classification answer, one list of
/// labels per input (`[[...]]` for one text), cut to `parameters.top_k`.
/// huggingface_hub's InferenceClient takes the first list of the answer,
/// so TEI's bare `[...]` for one text reached its users as one label.
async fn predict_per_input(
    State(state): State<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    predict_shaped(&state, body, true).await
}

async fn predict_shaped(
    state: &AppState,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    per_input: bool,
) -> Response {
    let (request, predictions) = match run(state, body, InputForm::Tei).await {
        Ok(done) => done,
        Err(err) => return err.into_response(),
    };
    let labels = state.classifier.labels();
    let top_k = request.top_k.filter(|_| per_input);
    let shape = |prediction: Prediction| -> Vec<LabelScore> {
        let mut scores: Vec<LabelScore> = match request.raw_scores {
            true => labels
                .iter()
                .zip(prediction.logits)
                .map(|(label, score)| LabelScore {
                    label: label.clone(),
                    score,
                })
                .collect(),
            false => prediction
                .scores
                .into_iter()
                .map(|s| LabelScore {
                    label: s.label,
                    score: s.score,
                })
                .collect(),
        };
        scores.sort_by(|a, b| b.score.total_cmp(&a.score));
        scores.truncate(top_k.unwrap_or(usize::MAX));
        scores
    };
    let mut shaped: Vec<Vec<LabelScore>> = predictions.into_iter().map(shape).collect();
    match (request.inputs, per_input) {
        (Inputs::One(_), false) => Json(shaped.pop().unwrap_or_default()).into_response(),
        (Inputs::One(_), true) | (Inputs::Many(_), _) => Json(shaped).into_response(),
    }
}

async fn classify(
    State(state): State<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    match run(&state, body, InputForm::Classify).await {
        Ok((request, mut predictions)) => match request.inputs {
            Inputs::One(_) => Json(predictions.pop()).into_response(),
            Inputs::Many(_) => Json(predictions).into_response(),
        },
        Err(err) => err.into_response(),
    }
}

/// Parses, validates, tokenizes (off the model thread: inline when the
/// request is small, else on tokio's blocking pool), queues, and waits for
/// the model thread's answer.
async fn run(
    state: &AppState,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    form: InputForm,
) -> Result<(PredictRequest, Vec<Prediction>), ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => format!(
                "the body is over the {} byte limit",
                state.config.payload_limit
            ),
            _ => rejection.body_text(),
        };
        ApiError::validation(message).with_status(status)
    })?;
    let _permit = take_permit(state)?;
    let request = PredictRequest::parse(&body, form).map_err(|err| ApiError::validation(err.0))?;
    let count = request.inputs.len();
    if count == 0 {
        return Err(ApiError::new(
            ErrorType::Empty,
            "\"inputs\" is an empty list",
        ));
    }
    if let Inputs::One(sequence) = &request.inputs {
        if sequence.input().is_empty() {
            return Err(ApiError::new(
                ErrorType::Empty,
                "\"inputs\" cannot be empty",
            ));
        }
    }
    check_batch_size(state, count)?;
    // The end a long text is cut from: the request's truncation_direction,
    // else the server's (`--long-text truncate-start` keeps the end).
    let server_keeps_end = state.config.options.long_text == LongText::TruncateStart;
    let truncation = match request.truncate_start.unwrap_or(server_keeps_end) {
        true => LongText::TruncateStart,
        false => LongText::Truncate,
    };
    // "truncate": true, or the server's truncation with a direction asked
    // for, truncates from that end; otherwise the server's setting holds.
    let options = match (request.truncate, state.config.options.long_text) {
        (Some(true), _) | (_, LongText::Truncate | LongText::TruncateStart) => {
            state.config.options.with_long_text(truncation)
        }
        _ => state.config.options,
    };
    let refuse_long = request.truncate == Some(false);
    let sequences = request.inputs.sequences();
    let bytes: usize = sequences.iter().map(|s| s.input().len()).sum();
    let encoded = if bytes <= INLINE_TOKENIZE_BYTES {
        // A few sentences tokenize in tens of microseconds: less than
        // handing them to another thread would cost.
        // One text at a time: `encode_all` would hand them to the
        // tokenizer's rayon pool, whose wake-ups and spinning cost more
        // than these texts and compete with the model's threads.
        let batcher = state.classifier.batcher(options);
        sequences
            .iter()
            .map(|s| batcher.encode(s.input()))
            .collect()
    } else {
        let classifier = state.classifier.clone();
        let sequences = sequences.to_vec();
        tokio::task::spawn_blocking(move || {
            let inputs: Vec<_> = sequences.iter().map(|s| s.input()).collect();
            classifier.batcher(options).encode_all(&inputs)
        })
        .await
        .map_err(|_| ApiError::new(ErrorType::Tokenizer, "tokenization failed"))?
    };
    check_encoded(
        &encoded,
        refuse_long,
        state.classifier.max_input_tokens(),
        &options,
    )?;
    let tokens: usize = encoded
        .iter()
        .map(|text| text.as_ref().map_or(0, EncodedText::tokens))
        .sum();
    check_request_tokens(state, tokens)?;

    let (reply, answer) = oneshot::channel();
    // Dropped with this future, however it ends (answered, timed out, the
    // client gone): the model thread skips what is left of the job.
    let cancel = CancelOnDrop(CancelFlag::new());
    let job = Job {
        texts: encoded,
        options,
        enqueued: Instant::now(),
        reply,
        cancel: cancel.0.clone(),
    };
    if !state.queue.push(job) {
        return Err(ApiError::new(
            ErrorType::Unhealthy,
            "the server is shutting down",
        ));
    }
    let results = answer
        .await
        .map_err(|_| ApiError::new(ErrorType::Backend, "the model thread stopped"))?;
    let mut predictions = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(prediction) => predictions.push(prediction),
            Err(err) => {
                return Err(ApiError::new(
                    ErrorType::Backend,
                    format!("inputs[{index}]: {}", err.chain_message()),
                ))
            }
        }
    }
    Ok((request, predictions))
}

/// Cancels its flag when dropped.
struct CancelOnDrop(CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A text that cannot be tokenized is the client's error (422); one over
/// the limit with `"truncate": false` is too (422 Validation, as in TEI).
fn check_encoded(
    encoded: &[Result<EncodedText>],
    refuse_long: bool,
    limit: usize,
    options: &ClassifyOptions,
) -> Result<(), ApiError> {
    for (index, text) in encoded.iter().enumerate() {
        match text {
            Err(err) => {
                return Err(ApiError::new(
                    ErrorType::Tokenizer,
                    format!("inputs[{index}]: {}", err.chain_message()),
                ))
            }
            Ok(text)
                if refuse_long
                    && !matches!(options.long_text, LongText::Window { .. })
                    && text.truncated() =>
            {
                return Err(ApiError::validation(format!(
                    "inputs[{index}] is longer than the model's {limit} tokens and \"truncate\" is false"
                )))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
