//! What every handler shares: the model, the settings, the queue to the
//! model thread, the metrics and the concurrency permits.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::queue::Queue;
use super::settings::ServerConfig;
use crate::classifier::Classifier;

#[derive(Clone)]
pub struct AppState {
    pub(super) classifier: Arc<Classifier>,
    pub(super) config: Arc<ServerConfig>,
    pub(super) queue: Arc<Queue>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) permits: Arc<Semaphore>,
}

impl AppState {
    pub fn new(
        classifier: Arc<Classifier>,
        config: ServerConfig,
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
        Self {
            classifier,
            config: Arc::new(config),
            queue,
            metrics,
            permits,
        }
    }
}
