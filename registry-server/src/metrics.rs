//! Process-wide counters exported at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    upload_sessions: AtomicI64,
    gc_runs: AtomicU64,
    gc_freed_bytes: AtomicU64,
    storage_errors: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, status)).or_default() += 1;
        }
    }
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }
    pub fn upload_started(&self) {
        self.upload_sessions.fetch_add(1, Ordering::Relaxed);
    }
    pub fn upload_ended(&self) {
        self.upload_sessions.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn gc_run(&self, freed: u64) {
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        self.gc_freed_bytes.fetch_add(freed, Ordering::Relaxed);
    }
    pub fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# TYPE berth_registry_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "berth_registry_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let scalars: [(&str, &str, i128); 6] = [
            (
                "berth_registry_bytes_received_total",
                "counter",
                self.bytes_in.load(Ordering::Relaxed).into(),
            ),
            (
                "berth_registry_bytes_sent_total",
                "counter",
                self.bytes_out.load(Ordering::Relaxed).into(),
            ),
            (
                "berth_registry_upload_sessions",
                "gauge",
                self.upload_sessions.load(Ordering::Relaxed).into(),
            ),
            (
                "berth_registry_gc_runs_total",
                "counter",
                self.gc_runs.load(Ordering::Relaxed).into(),
            ),
            (
                "berth_registry_gc_freed_bytes_total",
                "counter",
                self.gc_freed_bytes.load(Ordering::Relaxed).into(),
            ),
            (
                "berth_registry_storage_errors_total",
                "counter",
                self.storage_errors.load(Ordering::Relaxed).into(),
            ),
        ];
        for (name, kind, value) in scalars {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}
