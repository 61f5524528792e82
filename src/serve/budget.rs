//! The budgets every route keeps, /predict's and the tokenizer's alike: a
//! concurrency slot, the client batch limit, the tokens of one request.

use tokio::sync::OwnedSemaphorePermit;

use super::errors::{ApiError, ErrorType};
use super::state::AppState;

/// A concurrency slot, taken once the body has been read (as TEI does), so
/// that slow uploads do not hold slots while they trickle in.
pub(super) fn take_permit(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state.permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            ErrorType::Overloaded,
            format!(
                "the server is handling {} requests, its limit; retry later",
                state.config.max_concurrent_requests
            ),
        )
    })
}

/// The client batch limit, which every route with a list of inputs keeps.
pub(super) fn check_batch_size(state: &AppState, count: usize) -> Result<(), ApiError> {
    match count > state.config.max_client_batch_size {
        true => Err(ApiError::validation(format!(
            "{count} inputs in one request, over the limit of {}",
            state.config.max_client_batch_size
        ))),
        false => Ok(()),
    }
}

/// The tokens one request may bring, which every route that tokenizes keeps.
pub(super) fn check_request_tokens(state: &AppState, tokens: usize) -> Result<(), ApiError> {
    match tokens > state.config.max_request_tokens {
        true => Err(ApiError::validation(format!(
            "the inputs come to {tokens} tokens, over the server's budget of {} per request \
             (--max-request-tokens)",
            state.config.max_request_tokens
        ))),
        false => Ok(()),
    }
}
