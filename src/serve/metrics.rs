//! Prometheus metrics for `GET /metrics`, with the `prometheus-client`
//! crate (the Prometheus project's own Rust client) and its text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A request's route and the status it was answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

/// Every series the server exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub in_flight: Gauge,
    pub queue_time: Histogram,
    pub inference_time: Histogram,
    pub batch_size: Histogram,
    pub tokens: Counter,
    pub dropped: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sentiment");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled now",
            in_flight.clone(),
        );
        // 0.25 ms .. ~8 s.
        let queue_time = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register(
            "queue_duration_seconds",
            "Time a request's texts waited for the model thread",
            queue_time.clone(),
        );
        let inference_time = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register(
            "inference_duration_seconds",
            "Time the model thread spent on one batch of requests",
            inference_time.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "batch_size",
            "Sequences the model thread took in one batch",
            batch_size.clone(),
        );
        let tokens = Counter::default();
        registry.register(
            "tokens",
            "Tokens run through the model, special tokens included",
            tokens.clone(),
        );
        let dropped = Counter::default();
        registry.register(
            "requests_dropped",
            "Queued requests dropped because their client disconnected",
            dropped.clone(),
        );
        Self {
            registry,
            requests,
            in_flight,
            queue_time,
            inference_time,
            batch_size,
            tokens,
            dropped,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
