//! Code already instrumented with the `metrics` crate's macros (`counter!`, `gauge!`,
//! `histogram!`, `describe_*!`) recording into shardmetrics: install
//! `shardmetrics::facade::Recorder` once at start-up and every macro call writes the calling
//! thread's shard of a `Registry`, which all of shardmetrics' exporters then read.
//!
//! ```sh
//! cargo run --example metrics_facade --features metrics-facade
//! ```
//!
//! Prints the Prometheus text render of what four worker threads recorded: `jobs_total` by queue
//! (`jobs_total{queue="emails"} 50`, …), the `jobs_waiting` gauge (100 jobs, all done: 0) and
//! `job_duration_seconds` (the facade's `job.duration`: name sanitised, `Unit::Seconds` values
//! kept in nanoseconds inside and exported in seconds), then the recorder's count of failed
//! registrations.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use shardmetrics::{export::prometheus, facade::Recorder, Registry};

/// "Library" code: it knows only the `metrics` facade, not which backend records.
fn process_job(queue: &'static str, n: u64) {
    let start = std::time::Instant::now();
    std::thread::sleep(Duration::from_micros(50 * (n % 4 + 1)));
    // A macro call looks the key up in a per-thread cache; holding the returned handle
    // (`let jobs = counter!(..)`) skips even that in a hot loop.
    counter!("jobs_total", "queue" => queue).increment(1);
    histogram!("job.duration").record(start.elapsed().as_secs_f64());
    gauge!("jobs_waiting").decrement(1.0);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::new();
    let recorder = Recorder::new(registry.clone());
    // Process-wide, once; fails if another recorder is already installed. (A clone is kept to
    // ask it about registrations later; clones share their state.)
    recorder.clone().install()?;

    // Descriptions may come before or after first use. A time unit keeps nanosecond resolution
    // and exports the histogram as `_seconds`.
    describe_counter!("jobs_total", "Jobs processed, by queue");
    describe_gauge!("jobs_waiting", "Jobs not processed yet");
    describe_histogram!("job.duration", Unit::Seconds, "Time to process one job");

    // Four threads record concurrently, each into its own shard; two of them serve "emails",
    // and their counts add up in the merged series.
    gauge!("jobs_waiting").set(100.0);
    std::thread::scope(|s| {
        for queue in ["emails", "reports", "emails", "thumbnails"] {
            s.spawn(move || (0..25).for_each(|n| process_job(queue, n)));
        }
    });

    // Merge the shards now (otherwise the next tick, within a second, would) and render.
    let snapshot = registry.flush();
    print!("{}", prometheus::render(&snapshot));

    // Facade calls never panic: a key that cannot be registered gets a handle that drops and
    // counts its values (`shardmetrics_rejected_values_total`); the recorder says why.
    println!("# registration errors: {}", recorder.registration_errors());
    if let Some(e) = recorder.last_error() {
        println!("# last: {e}");
    }
    Ok(())
}
