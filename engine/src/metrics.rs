//! Counters for `/metrics`, in the Prometheus text format: tasks ended per
//! tenant, job and state, their fuel, their HTTP usage and their durations
//! (a histogram),
//! kept by this node as its workers record endings; and the time each
//! tenant's `is-due` calls cost the scheduler (charged to the tenant).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::egress::HttpUsage;

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0];

#[derive(Default)]
struct Series {
    count: u64,
    fuel: u64,
    http: HttpUsage,
    seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

/// A counter of HTTP usage: its name, its help, and its value in a series.
type HttpCounter = (&'static str, &'static str, fn(&HttpUsage) -> u64);

/// This node's task counters.
#[derive(Default)]
pub struct Metrics {
    ended: Mutex<BTreeMap<(String, String, &'static str), Series>>,
    /// `is-due` calls per tenant: how many, and the seconds they took.
    asked: Mutex<BTreeMap<String, (u64, f64)>>,
    /// Finished tasks this node deleted past their retention.
    pruned: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// Counts a task of `tenant`'s `job` that ended (this attempt) in `state`.
    pub fn ended(&self, tenant: &str, job: &str, state: &'static str, fuel: u64, http: HttpUsage, wall_time: Duration) {
        let mut ended = self.ended.lock().unwrap();
        let series = ended.entry((tenant.to_owned(), job.to_owned(), state)).or_default();
        let seconds = wall_time.as_secs_f64();
        series.count += 1;
        series.fuel += fuel;
        series.http.requests += http.requests;
        series.http.bytes_sent += http.bytes_sent;
        series.http.bytes_received += http.bytes_received;
        series.seconds += seconds;
        for (bucket, bound) in series.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Counts `n` finished tasks deleted past their retention.
    pub fn pruned(&self, n: u64) {
        self.pruned.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Charges an `is-due` call that took `wall_time` to `tenant`.
    pub fn asked(&self, tenant: &str, wall_time: Duration) {
        let mut asked = self.asked.lock().unwrap();
        let (count, seconds) = asked.entry(tenant.to_owned()).or_default();
        *count += 1;
        *seconds += wall_time.as_secs_f64();
    }

    /// The text exposition, with queue depth per tenant and tasks per
    /// tenant, job and state from the store. Counters are this node's (a
    /// scraper's `instance` label tells nodes apart: sum them); the store's
    /// gauges are the cluster's, the same on every node (take their max).
    pub fn render(&self, waiting: &[(String, u64)], states: &[(String, String, &str, u64)]) -> String {
        let mut out = String::new();
        let labels = |tenant: &str, job: &str, state: &str| {
            format!("tenant=\"{}\",job=\"{}\",state=\"{}\"", escape(tenant), escape(job), state)
        };
        out.push_str("# HELP wasmjob_tasks_ended_total Task attempts ended on this node.\n");
        out.push_str("# TYPE wasmjob_tasks_ended_total counter\n");
        let ended = self.ended.lock().unwrap();
        for ((tenant, job, state), s) in ended.iter() {
            let _ = writeln!(out, "wasmjob_tasks_ended_total{{{}}} {}", labels(tenant, job, state), s.count);
        }
        out.push_str("# HELP wasmjob_fuel_consumed_total Fuel consumed by ended task attempts.\n");
        out.push_str("# TYPE wasmjob_fuel_consumed_total counter\n");
        for ((tenant, job, state), s) in ended.iter() {
            let _ = writeln!(out, "wasmjob_fuel_consumed_total{{{}}} {}", labels(tenant, job, state), s.fuel);
        }
        let http: [HttpCounter; 3] = [
            ("wasmjob_http_requests_total", "HTTP requests made by ended task attempts.", |h| h.requests),
            ("wasmjob_http_sent_bytes_total", "HTTP request body bytes sent by ended task attempts.", |h| h.bytes_sent),
            ("wasmjob_http_received_bytes_total", "HTTP response body bytes received by ended task attempts.", |h| {
                h.bytes_received
            }),
        ];
        for (name, help, value) in http {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((tenant, job, state), s) in ended.iter() {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(tenant, job, state), value(&s.http));
            }
        }
        out.push_str("# HELP wasmjob_task_duration_seconds Wall time of ended task attempts.\n");
        out.push_str("# TYPE wasmjob_task_duration_seconds histogram\n");
        for ((tenant, job, state), s) in ended.iter() {
            let l = labels(tenant, job, state);
            for (bucket, bound) in s.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(out, "wasmjob_task_duration_seconds_bucket{{{l},le=\"{bound}\"}} {bucket}");
            }
            let _ = writeln!(out, "wasmjob_task_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "wasmjob_task_duration_seconds_sum{{{l}}} {}", s.seconds);
            let _ = writeln!(out, "wasmjob_task_duration_seconds_count{{{l}}} {}", s.count);
        }
        out.push_str("# HELP wasmjob_tasks_pruned_total Finished tasks this node deleted past their retention.\n");
        out.push_str("# TYPE wasmjob_tasks_pruned_total counter\n");
        let pruned = self.pruned.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(out, "wasmjob_tasks_pruned_total {pruned}");
        out.push_str("# HELP wasmjob_is_due_seconds_total Time the scheduler spent in each tenant's is-due.\n");
        out.push_str("# TYPE wasmjob_is_due_seconds_total counter\n");
        for (tenant, (count, seconds)) in self.asked.lock().unwrap().iter() {
            let _ = writeln!(out, "wasmjob_is_due_seconds_total{{tenant=\"{}\"}} {seconds}", escape(tenant));
            let _ = writeln!(out, "wasmjob_is_due_calls_total{{tenant=\"{}\"}} {count}", escape(tenant));
        }
        out.push_str("# HELP wasmjob_queue_depth Tasks queued or waiting to retry, in the whole cluster.\n");
        out.push_str("# TYPE wasmjob_queue_depth gauge\n");
        for (tenant, n) in waiting {
            let _ = writeln!(out, "wasmjob_queue_depth{{tenant=\"{}\"}} {n}", escape(tenant));
        }
        out.push_str("# HELP wasmjob_tasks Tasks in the store (the whole cluster) by tenant, job and state.\n");
        out.push_str("# TYPE wasmjob_tasks gauge\n");
        for (tenant, job, state, n) in states {
            let _ = writeln!(out, "wasmjob_tasks{{{}}} {n}", labels(tenant, job, state));
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
