//! Per-kernel timing: GPU timestamps where the adapter has them, host timing where it does not.

use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

pub(crate) struct Profiler {
    pub enabled: bool,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    /// label -> (launches, nanoseconds, floating-point operations).
    stats: HashMap<String, (u64, f64, f64)>,
}

/// One row of the profile table.
#[derive(Clone, Debug, Serialize)]
pub struct KernelStat {
    pub kernel: String,
    pub count: u64,
    pub total_ms: f64,
    pub mean_us: f64,
    /// Achieved rate for kernels that declare their FLOPs (GEMMs), else 0.
    pub gflop_per_s: f64,
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

    /// Totals per scope (the part of each label before '/'; labels without one are their own
    /// scope), slowest first: (scope, total ms, GFLOP/s of its counted kernels, share of the
    /// scope's time spent in kernels that count FLOPs).
    pub fn scopes(&self) -> Vec<(String, f64, f64, f64)> {
        let mut by: HashMap<String, (f64, f64, f64)> = HashMap::new();
        for k in &self.kernels {
            let scope = k.kernel.split_once('/').map_or(k.kernel.as_str(), |(s, _)| s).to_string();
            let e = by.entry(scope).or_insert((0.0, 0.0, 0.0));
            e.0 += k.total_ms;
            if k.gflop_per_s > 0.0 {
                e.1 += k.gflop_per_s * k.total_ms * 1e6;
                e.2 += k.total_ms;
            }
        }
        let mut rows: Vec<(String, f64, f64, f64)> =
            by.into_iter().map(|(s, (ms, flops, counted_ms))| (s, ms, if counted_ms > 0.0 { flops / (counted_ms * 1e6) } else { 0.0 }, counted_ms / ms.max(f64::MIN_POSITIVE))).collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows
    }

    pub fn scope_table(&self) -> String {
        let total = self.total_ms().max(f64::MIN_POSITIVE);
        let mut out = format!("{:<34} {:>12} {:>7} {:>9} {:>10}\n", format!("scope ({} clock)", self.clock), "total ms", "share", "GFLOP/s", "GEMM time");
        for (scope, ms, rate, gemm_share) in self.scopes() {
            let rate = if rate > 0.0 { format!("{rate:.2}") } else { String::new() };
            out += &format!("{:<34} {:>12.1} {:>6.1}% {:>9} {:>9.0}%\n", scope, ms, 100.0 * ms / total, rate, 100.0 * gemm_share);
        }
        out
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<40} {:>8} {:>12} {:>12} {:>7} {:>8}\n",
            format!("kernel ({} clock)", self.clock),
            "count",
            "total ms",
            "mean us",
            "share",
            "GFLOP/s"
        );
        let total = self.total_ms().max(f64::MIN_POSITIVE);
        for k in &self.kernels {
            let rate = if k.gflop_per_s > 0.0 { format!("{:.2}", k.gflop_per_s) } else { String::new() };
            out += &format!(
                "{:<40} {:>8} {:>12.3} {:>12.1} {:>6.1}% {:>8}\n",
                k.kernel,
                k.count,
                k.total_ms,
                k.mean_us,
                100.0 * k.total_ms / total,
                rate
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

    fn add(&mut self, label: &str, ns: f64, flops: f64) {
        let e = self.stats.entry(label.to_string()).or_insert((0, 0.0, 0.0));
        e.0 += 1;
        e.1 += ns;
        e.2 += flops;
    }

    /// `ticks` holds a (begin, end) pair per (label, FLOPs), in order.
    pub fn record_ticks<'a>(&mut self, labels: impl Iterator<Item = (&'a str, f64)>, ticks: &[u64]) {
        for ((label, flops), pair) in labels.zip(ticks.chunks_exact(2)) {
            let ns = pair[1].saturating_sub(pair[0]) as f64 * self.period_ns;
            self.add(label, ns, flops);
        }
    }

    pub fn record_host(&mut self, label: &str, flops: f64, elapsed: Duration) {
        self.add(label, elapsed.as_nanos() as f64, flops);
    }

    pub fn report(&self, timestamps: bool) -> ProfileReport {
        let mut kernels: Vec<KernelStat> = self
            .stats
            .iter()
            .map(|(k, &(count, ns, flops))| KernelStat {
                kernel: k.clone(),
                count,
                total_ms: ns / 1e6,
                mean_us: ns / 1e3 / count as f64,
                gflop_per_s: if ns > 0.0 { flops / ns } else { 0.0 },
            })
            .collect();
        kernels.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        ProfileReport { clock: if timestamps { "gpu-timestamps" } else { "host" }, kernels }
    }
}
