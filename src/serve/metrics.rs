//! Per-model counters for `GET /metrics`, in Prometheus' text format: requests, errors by
//! status, latency and batch-size histograms, queue depth. Lock-free: every request
//! touches them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency bucket bounds, in seconds.
const LATENCY_BOUNDS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Batch-size bucket bounds, in examples.
const BATCH_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A cumulative histogram with fixed bounds.
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or under each bound, then the total count.
    counts: Vec<AtomicU64>,
    /// The sum of observations, in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counts[self.bounds.len()].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, model: &str) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let n = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"{bound}\"}} {n}");
        }
        let total = self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {total}");
    }
}

/// One model's counters.
pub struct ModelMetrics {
    requests: AtomicU64,
    /// Answers by status code: 400, 500, 503, 504.
    errors: [(u16, AtomicU64); 4],
    latency: Histogram,
    batch_size: Histogram,
    queue_depth: AtomicU64,
}

impl Default for ModelMetrics {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: [400, 500, 503, 504].map(|code| (code, AtomicU64::new(0))),
            latency: Histogram::new(&LATENCY_BOUNDS),
            batch_size: Histogram::new(&BATCH_BOUNDS),
            queue_depth: AtomicU64::new(0),
        }
    }
}

impl ModelMetrics {
    /// A finished infer request: its status and how long it took.
    pub fn answered(&self, status: u16, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some((_, count)) = self.errors.iter().find(|(code, _)| *code == status) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(took.as_secs_f64());
    }

    pub fn batch(&self, examples: usize) {
        self.batch_size.observe(examples as f64);
    }

    pub fn enqueued(&self) {
        self.queue_depth.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dequeued(&self, jobs: usize) {
        self.queue_depth.fetch_sub(jobs as u64, Ordering::Relaxed);
    }

    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.load(Ordering::Relaxed)
    }
}

/// The text of `GET /metrics` for `models` (name, counters).
pub fn render<'a>(models: impl Iterator<Item = (&'a str, &'a ModelMetrics)> + Clone) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut out, "shopnet_requests_total", "counter", "Infer requests answered.");
    for (model, m) in models.clone() {
        let n = m.requests.load(Ordering::Relaxed);
        let _ = writeln!(out, "shopnet_requests_total{{model=\"{model}\"}} {n}");
    }
    family(
        &mut out,
        "shopnet_request_errors_total",
        "counter",
        "Infer requests answered with an error, by HTTP status.",
    );
    for (model, m) in models.clone() {
        for (code, count) in &m.errors {
            let n = count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "shopnet_request_errors_total{{model=\"{model}\",code=\"{code}\"}} {n}"
            );
        }
    }
    family(
        &mut out,
        "shopnet_request_duration_seconds",
        "histogram",
        "Infer request latency, queueing included.",
    );
    for (model, m) in models.clone() {
        m.latency.render(&mut out, "shopnet_request_duration_seconds", model);
    }
    family(&mut out, "shopnet_batch_size", "histogram", "Examples per batch run on the device.");
    for (model, m) in models.clone() {
        m.batch_size.render(&mut out, "shopnet_batch_size", model);
    }
    family(&mut out, "shopnet_queue_depth", "gauge", "Requests waiting for a batch.");
    for (model, m) in models {
        let _ = writeln!(out, "shopnet_queue_depth{{model=\"{model}\"}} {}", m.queue_depth());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counts_add_up() {
        let m = ModelMetrics::default();
        m.answered(200, Duration::from_millis(3));
        m.answered(400, Duration::from_millis(30));
        m.batch(5);
        let text = render([("s", &m)].into_iter());
        for line in [
            "shopnet_requests_total{model=\"s\"} 2",
            "shopnet_request_errors_total{model=\"s\",code=\"400\"} 1",
            "shopnet_request_errors_total{model=\"s\",code=\"503\"} 0",
            "shopnet_request_duration_seconds_bucket{model=\"s\",le=\"0.0025\"} 0",
            "shopnet_request_duration_seconds_bucket{model=\"s\",le=\"0.005\"} 1",
            "shopnet_request_duration_seconds_bucket{model=\"s\",le=\"0.05\"} 2",
            "shopnet_request_duration_seconds_bucket{model=\"s\",le=\"+Inf\"} 2",
            "shopnet_request_duration_seconds_count{model=\"s\"} 2",
            "shopnet_batch_size_bucket{model=\"s\",le=\"4\"} 0",
            "shopnet_batch_size_bucket{model=\"s\",le=\"8\"} 1",
            "shopnet_queue_depth{model=\"s\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }
}
