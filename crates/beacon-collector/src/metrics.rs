//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Items by outcome: `beacon_items_total{channel, outcome, reason}`.
pub const ITEMS_TOTAL: &str = "beacon_items_total";
/// Unknown fields that were ignored, by channel.
pub const UNKNOWN_FIELDS_TOTAL: &str = "beacon_unknown_fields_total";
/// Redactions made by scrubbing, by channel and rule (`email`, `ip`, … and `extra_dropped`,
/// `tags_dropped`).
pub const REDACTIONS_TOTAL: &str = "beacon_scrub_redactions_total";
/// Request latency by route: `beacon_http_request_duration_seconds{route, method, status}`.
pub const REQUEST_DURATION: &str = "beacon_http_request_duration_seconds";
/// Items per committed batch.
pub const STORE_BATCH_SIZE: &str = "beacon_store_batch_size";
/// Time to commit one batch.
pub const STORE_COMMIT_SECONDS: &str = "beacon_store_commit_seconds";
/// Dead letters removed to keep each channel under `[deadletters] max_per_channel`, by channel.
pub const DEAD_LETTERS_DROPPED_TOTAL: &str = "beacon_dead_letters_dropped_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder's handle, installing the recorder on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(REQUEST_DURATION.into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        10.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(STORE_COMMIT_SECONDS.into()),
                        &[
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(STORE_BATCH_SIZE.into()),
                        &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
                    )
                })
                .expect("static bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed (a host embedding the collector); then the
            // host's recorder receives the metrics and /metrics renders this empty one.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            // Histograms keep raw samples until they are folded into buckets; fold them regularly so
            // memory stays flat between scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn metrics upkeep thread");
            handle
        })
        .clone()
}
