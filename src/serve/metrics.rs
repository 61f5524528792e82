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
    pub cancelled: Counter,
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
        let cancelled = Counter::default();
        registry.register(
            "requests_cancelled",
            "Requests whose remaining forward passes were skipped because they timed out or their client disconnected",
            cancelled.clone(),
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
            cancelled,
        }
    }

    /// The OpenMetrics text format (prometheus-client's only encoding).
    pub fn render_openmetrics(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The classic Prometheus text format (0.0.4), which every scraper
    /// and parser reads: OpenMetrics less its `# EOF` and `# UNIT` lines,
    /// with each counter's HELP and TYPE under its samples' `_total` name.
    pub fn render_prometheus(&self) -> String {
        to_prometheus_text(&self.render_openmetrics())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// OpenMetrics text to Prometheus text 0.0.4 (see
/// [`Metrics::render_prometheus`]).
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample family has HELP and TYPE under its own name (a counter
    /// under `_total`), and nothing of OpenMetrics' is left.
    #[test]
    fn prometheus_text_names_every_family_as_its_samples() {
        let metrics = Metrics::new();
        metrics.tokens.inc_by(3);
        metrics.in_flight.inc();
        let text = metrics.render_prometheus();
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sentiment_tokens_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP sentiment_tokens_total Tokens"),
            "{text}"
        );
        assert!(text.contains("sentiment_tokens_total 3\n"), "{text}");
        assert!(
            text.contains("# TYPE sentiment_requests_in_flight gauge\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| text.contains(&format!("# TYPE {base} histogram")))
                .unwrap_or(name);
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family} in\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} in\n{text}"
            );
        }
    }
}
