//! The server's limits and settings, and their defaults.

use std::time::Duration;

use crate::classifier::ClassifyOptions;

/// The server's limits and settings (TEI's names where TEI has one).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// What a request without `"truncate"` gets: truncation (the default)
    /// or windows.
    pub options: ClassifyOptions,
    /// Padded tokens per forward pass.
    pub max_batch_tokens: usize,
    /// Sequences per forward pass.
    pub max_batch_requests: usize,
    /// Requests handled at once; more get 429.
    pub max_concurrent_requests: usize,
    /// Texts in one request; more get 422.
    pub max_client_batch_size: usize,
    /// Tokens one request may run through the model, every window of every
    /// text counted; more get 422. Only long-text windows come near it.
    pub max_request_tokens: usize,
    /// Request body bytes; more get 413.
    pub payload_limit: usize,
    /// A request not answered by then gets 408, and its remaining work on
    /// the model thread is stopped.
    pub request_timeout: Duration,
    /// Open connections at once; more wait to be accepted.
    pub max_connections: usize,
    /// Time a connection has to send a request's headers, and the longest
    /// a keep-alive connection may sit idle.
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown; then the rest
    /// are dropped.
    pub shutdown_deadline: Duration,
    /// Required as `Authorization: Bearer <key>` on every route but /health.
    pub api_key: Option<String>,
    /// The model's name in /info.
    pub model_id: String,
}

/// The server's defaults, which `sentiment serve`'s flags show.
pub mod defaults {
    /// Padded tokens per forward pass (TEI's count).
    pub const MAX_BATCH_TOKENS: usize = 16_384;
    /// Sequences per forward pass (`batch`'s default batch size).
    pub const MAX_BATCH_REQUESTS: usize = crate::batch::DEFAULT_BATCH_SIZE;
    /// Requests handled at once.
    pub const MAX_CONCURRENT_REQUESTS: usize = 512;
    /// Texts in one request.
    pub const MAX_CLIENT_BATCH_SIZE: usize = 32;
    /// Tokens one request may run through the model (64 full windows).
    pub const MAX_REQUEST_TOKENS: usize = 32_768;
    /// Open connections at once (the binary keeps it under the descriptor limit).
    pub const MAX_CONNECTIONS: usize = 1024;
    /// Seconds to send a request's headers, and the longest keep-alive idle.
    pub const HEADER_TIMEOUT_SECS: u64 = 10;
    /// Seconds in-flight requests get to finish at shutdown.
    pub const SHUTDOWN_DEADLINE_SECS: u64 = 30;
    /// Request body bytes.
    pub const PAYLOAD_LIMIT: usize = 2_000_000;
    /// Seconds before an unanswered request gets 408.
    pub const REQUEST_TIMEOUT_SECS: u64 = 60;
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            options: ClassifyOptions::default(),
            max_batch_tokens: defaults::MAX_BATCH_TOKENS,
            max_batch_requests: defaults::MAX_BATCH_REQUESTS,
            max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS,
            max_client_batch_size: defaults::MAX_CLIENT_BATCH_SIZE,
            max_request_tokens: defaults::MAX_REQUEST_TOKENS,
            payload_limit: defaults::PAYLOAD_LIMIT,
            request_timeout: Duration::from_secs(defaults::REQUEST_TIMEOUT_SECS),
            max_connections: defaults::MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(defaults::HEADER_TIMEOUT_SECS),
            shutdown_deadline: Duration::from_secs(defaults::SHUTDOWN_DEADLINE_SECS),
            api_key: None,
            model_id: String::new(),
        }
    }
}

impl ServerConfig {
    /// These settings with another model name for /info.
    pub fn with_model_id(mut self, model_id: impl Into<String>) -> Self {
        self.model_id = model_id.into();
        self
    }
}
