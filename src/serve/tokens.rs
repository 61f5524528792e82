//! TEI's `/tokenize` and `/decode`: the model's tokenizer over HTTP.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

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

/// Every input's tokens, as a list per input (one list for one text).
pub async fn tokenize(State(state): State<AppState>, body: Bytes) -> Response {
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
    let classifier = state.classifier.clone();
    let tokenized = tokio::task::spawn_blocking(move || {
        texts
            .iter()
            .map(|text| {
                classifier
                    .tokenizer()
                    .token_spans(text, request.add_special_tokens)
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match tokenized {
        Ok(Ok(lists)) => Json(lists).into_response(),
        Ok(Err(err)) => ApiError::new(ErrorType::Tokenizer, err.to_string()).into_response(),
        Err(_) => ApiError::new(ErrorType::Tokenizer, "tokenization failed").into_response(),
    }
}

/// Every id list's text, as a list of strings.
pub async fn decode(State(state): State<AppState>, body: Bytes) -> Response {
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
