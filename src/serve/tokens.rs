//! TEI's `/tokenize` and `/decode`: the model's tokenizer over HTTP.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::budget::{check_batch_size, check_request_tokens, take_permit};
use super::errors::{ApiError, ErrorType};
use super::state::AppState;

/// One text or several, as TEI's TokenizeInput.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrTexts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct TokenizeRequest {
    inputs: TextOrTexts,
    #[serde(default = "yes")]
    add_special_tokens: bool,
}

/// One list of ids or several, as TEI's InputIds.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdsOrIdLists {
    One(Vec<u32>),
    Many(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
struct DecodeRequest {
    ids: IdsOrIdLists,
    #[serde(default = "yes")]
    skip_special_tokens: bool,
}

fn yes() -> bool {
    true
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::validation(err.to_string()))
}

/// Every input's tokens, as a list per input (one list for one text),
/// within /predict's budgets: a concurrency slot, the client batch limit,
/// the model's input limit per text (read a bounded piece at a time, as
/// /predict reads it, so a 2 MB text costs what its first tokens cost) and
/// the request's token budget.
pub async fn tokenize(State(state): State<AppState>, body: Bytes) -> Response {
    let _permit = match take_permit(&state) {
        Ok(permit) => permit,
        Err(err) => return err.into_response(),
    };
    let request: TokenizeRequest = match parse(&body) {
        Ok(request) => request,
        Err(err) => return err.into_response(),
    };
    let texts = match request.inputs {
        TextOrTexts::One(text) => vec![text],
        TextOrTexts::Many(texts) => texts,
    };
    if texts.is_empty() {
        return ApiError::new(ErrorType::Empty, "\"inputs\" is an empty list").into_response();
    }
    if let Err(err) = check_batch_size(&state, texts.len()) {
        return err.into_response();
    }
    let worker = state.clone();
    let tokenized = tokio::task::spawn_blocking(move || {
        let tokenizer = worker.classifier.tokenizer();
        let limit = tokenizer.max_tokens();
        let mut tokens = 0;
        let mut lists = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let tokenizer_error = |err: crate::tokenize::TokenizerError| {
                ApiError::new(ErrorType::Tokenizer, format!("inputs[{index}]: {err}"))
            };
            let encoded = tokenizer.encode(text).map_err(tokenizer_error)?;
            if encoded.truncated {
                return Err(ApiError::validation(format!(
                    "inputs[{index}] is longer than the model's {limit} tokens, the most \
                     /tokenize lists"
                )));
            }
            tokens += encoded.len();
            check_request_tokens(&worker, tokens)?;
            let spans = tokenizer
                .token_spans(text, request.add_special_tokens)
                .map_err(tokenizer_error)?;
            lists.push(spans);
        }
        Ok(lists)
    })
    .await;
    match tokenized {
        Ok(Ok(lists)) => Json(lists).into_response(),
        Ok(Err(err)) => err.into_response(),
        Err(_) => ApiError::new(ErrorType::Tokenizer, "tokenization failed").into_response(),
    }
}

/// Every id list's text, as a list of strings.
pub async fn decode(State(state): State<AppState>, body: Bytes) -> Response {
    let _permit = match take_permit(&state) {
        Ok(permit) => permit,
        Err(err) => return err.into_response(),
    };
    let request: DecodeRequest = match parse(&body) {
        Ok(request) => request,
        Err(err) => return err.into_response(),
    };
    let lists = match request.ids {
        IdsOrIdLists::One(ids) => vec![ids],
        IdsOrIdLists::Many(lists) => lists,
    };
    if lists.is_empty() || lists.iter().any(Vec::is_empty) {
        return ApiError::new(ErrorType::Empty, "\"ids\" is empty").into_response();
    }
    if let Err(err) = check_batch_size(&state, lists.len()) {
        return err.into_response();
    }
    let tokenizer = state.classifier.tokenizer();
    let decoded: Result<Vec<String>, _> = lists
        .iter()
        .map(|ids| tokenizer.decode(ids, request.skip_special_tokens))
        .collect();
    match decoded {
        Ok(texts) => Json(texts).into_response(),
        Err(err) => ApiError::new(ErrorType::Tokenizer, err.to_string()).into_response(),
    }
}
