//! Per-kernel timing: GPU timestamps where the adapter has them, host timing where it does not.

use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

pub(crate) struct Profiler {
    pub enabled: bool,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    stats: HashMap<String, (u64, f64)>,
}

/// One row of the profile table.
#[derive(Clone, Debug, Serialize)]
pub struct KernelStat {
    pub kernel: String,
    pub count: u64,
    pub total_ms: f64,
    pub mean_us: f64,
}

/// Per-kernel totals, slowest first, and how they were measured.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileReport {
    /// "gpu-timestamps" or "host" (one submission per dispatch, so it includes launch overhead).
    pub clock: &'static str,
    pub kernels: Vec<KernelStat>,
}

impl ProfileReport {
    pub fn total_ms(&self) -> f64 {
        self.kernels.iter().map(|k| k.total_ms).sum()
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<40} {:>8} {:>12} {:>12} {:>7}\n",
            format!("kernel ({} clock)", self.clock),
            "count",
            "total ms",
            "mean us",
            "share"
        );
        let total = self.total_ms().max(f64::MIN_POSITIVE);
        for k in &self.kernels {
            out += &format!(
                "{:<40} {:>8} {:>12.3} {:>12.1} {:>6.1}%\n",
                k.kernel,
                k.count,
                k.total_ms,
                k.mean_us,
                100.0 * k.total_ms / total
            );
        }
        out
    }
}

impl Profiler {
    pub fn new(period_ns: f32) -> Self {
        Profiler { enabled: false, period_ns: period_ns as f64, stats: HashMap::new() }
    }

    pub fn reset(&mut self) {
        self.stats.clear();
    }

    fn add(&mut self, label: &str, ns: f64) {
        let e = self.stats.entry(label.to_string()).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += ns;
    }

    /// `ticks` holds a (begin, end) pair per label, in order.
    pub fn record_ticks<'a>(&mut self, labels: impl Iterator<Item = &'a str>, ticks: &[u64]) {
        for (label, pair) in labels.zip(ticks.chunks_exact(2)) {
            let ns = pair[1].saturating_sub(pair[0]) as f64 * self.period_ns;
            self.add(label, ns);
        }
    }

    pub fn record_host(&mut self, label: &str, elapsed: Duration) {
        self.add(label, elapsed.as_nanos() as f64);
    }

    pub fn report(&self, timestamps: bool) -> ProfileReport {
        let mut kernels: Vec<KernelStat> = self
            .stats
            .iter()
            .map(|(k, &(count, ns))| KernelStat {
                kernel: k.clone(),
                count,
                total_ms: ns / 1e6,
                mean_us: ns / 1e3 / count as f64,
            })
            .collect();
        kernels.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        ProfileReport { clock: if timestamps { "gpu-timestamps" } else { "host" }, kernels }
    }
}
