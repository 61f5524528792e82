//! `sentiment serve`: an HTTP service over one loaded [`Classifier`],
//! compatible with text-embeddings-inference's classification API
//! (`POST /predict`), with our richer `POST /classify`, `GET /health`,
//! `GET /info` and Prometheus `GET /metrics` (feature `serve`).
//!
//! Requests are tokenized off the model thread (small ones inline, larger
//! ones on tokio's blocking pool), queued, and batched by one model thread
//! ([`queue`]). Past `max_concurrent_requests` a request
//! gets 429 at once; nothing queues without bound.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sentiment::serve::{Server, ServerConfig};
//!
//! let classifier = Arc::new(sentiment::Classifier::builder().build()?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Server::new(classifier, ServerConfig::default())
//!     .run(listener, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(()) }
//! ```

mod budget;
mod errors;
mod listen;
pub mod metrics;
pub mod queue;
pub mod request;
mod routes;
mod settings;
mod state;
mod tokens;

pub use settings::{defaults, ServerConfig};

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::classifier::Classifier;
use metrics::Metrics;
use queue::{BatchLimits, Queue};

/// A configured server over one model.
pub struct Server {
    classifier: Arc<Classifier>,
    config: ServerConfig,
}

impl Server {
    pub fn new(classifier: Arc<Classifier>, config: ServerConfig) -> Self {
        Self { classifier, config }
    }

    /// Serves on `listener` until `shutdown` completes; then stops
    /// accepting, answers the requests already in within the shutdown
    /// deadline, drops the rest, and returns.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let metrics = Arc::new(Metrics::new());
        let queue = Queue::new();
        let limits = BatchLimits {
            max_batch_tokens: self.config.max_batch_tokens.max(1),
            max_batch_requests: self.config.max_batch_requests.max(1),
        };
        let worker = {
            let (classifier, queue, metrics) =
                (self.classifier.clone(), queue.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("sentiment-model".into())
                .spawn(move || queue::run_worker(classifier, queue, limits, metrics))?
        };
        let limits = listen::ConnectionLimits {
            max_connections: self.config.max_connections,
            header_timeout: self.config.header_timeout,
            shutdown_deadline: self.config.shutdown_deadline,
        };
        let app = routes::router(state::AppState::new(
            self.classifier,
            self.config,
            queue.clone(),
            metrics,
        ));
        let served = listen::serve(listener, app, limits, shutdown).await;
        // Every handler has returned: nothing more will be queued.
        queue.close();
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        served
    }
}
