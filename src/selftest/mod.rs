//! Checks of every kernel family against its float64 CPU reference on fresh random inputs, of
//! the feature pipeline against librosa golden files, and of the built-in model end to end on
//! the bundled clips. `ser selftest` runs them on a user's adapter; the GPU test suites run the
//! same checks (tests/selftest.rs), so there is one set of checks, not two copies.
//!
//! A check compares many values and reports the worst as a ratio to its tolerance
//! (|got - want| / (atol + rtol |want|)): it passes when that ratio is at most 1.

mod kernels;
mod pipeline;

pub use kernels::check_gemm;
pub use pipeline::{Golden, MODEL_TOLERANCE, compare_with_librosa};

use crate::gpu::Gpu;
use crate::rng::SplitMix64;
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;

/// How much of each check runs: `Quick` a few shapes per family, `Full` all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Quick,
    Full,
}

/// One named check of one kernel family.
pub struct Check {
    pub name: &'static str,
    pub family: &'static str,
    pub run: fn(&Gpu, &mut SplitMix64, Size, &mut Tally) -> Result<()>,
}

/// Every check, in the order the product's data flows (kernels, then layers, then pipelines).
pub fn checks() -> Vec<Check> {
    let mut all = kernels::checks();
    all.extend(pipeline::checks());
    all
}

/// The worst comparison of a check so far, and how many values it compared.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    /// Worst |got - want| / (atol + rtol |want|); infinite for a NaN where a number was due.
    pub worst_ratio: f64,
    /// |got - want| at the worst ratio.
    pub worst_abs: f64,
    /// What was compared where the worst ratio is, and the values.
    pub worst_at: String,
    pub compared: usize,
    /// Failures that are not a numeric comparison (a wrong index, a refused shape).
    pub faults: Vec<String>,
    /// Why the check's kernels cannot run on this adapter (a missing feature), when they cannot;
    /// the check then verifies only that they are refused with an error.
    pub skipped: Option<String>,
}

impl Tally {
    /// Compares `got` with the reference `want` element by element.
    pub fn close(&mut self, what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
        self.compare(what, got, want, |_, w| atol + rtol * w.abs());
    }

    /// Compares element by element, each within its own absolute bound.
    pub fn within(&mut self, what: &str, got: &[f32], want: &[f64], bounds: &[f64]) {
        if bounds.len() != got.len() {
            self.fault(format!("{what}: {} values, {} bounds", got.len(), bounds.len()));
            return;
        }
        self.compare(what, got, want, |i, _| bounds[i]);
    }

    /// The one comparison: element i passes within `tolerance(i, want[i])`.
    fn compare(&mut self, what: &str, got: &[f32], want: &[f64], tolerance: impl Fn(usize, f64) -> f64) {
        if got.len() != want.len() {
            self.fault(format!("{what}: {} values, the reference has {}", got.len(), want.len()));
            return;
        }
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let g = *g as f64;
            let (ratio, abs) = if g == *w || (g.is_nan() && w.is_nan()) {
                (0.0, 0.0)
            } else if !g.is_finite() || !w.is_finite() {
                (f64::INFINITY, f64::INFINITY)
            } else {
                ((g - w).abs() / tolerance(i, *w), (g - w).abs())
            };
            // `!(ratio <= worst)` also catches a NaN ratio (0/0 with zero tolerance).
            if !(ratio <= self.worst_ratio) {
                self.worst_ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
                self.worst_abs = abs;
                self.worst_at = format!("{what}: element {i} is {g} but the reference says {w}");
            }
        }
        self.compared += got.len();
    }

    /// Records a failure that is not a tolerance (wrong winner index, a value that must be exact).
    pub fn fault(&mut self, what: String) {
        self.faults.push(what);
    }

    /// Records `what` as a fault unless `ok`.
    pub fn require(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fault(what());
        }
    }

    pub fn passed(&self) -> bool {
        self.faults.is_empty() && self.worst_ratio <= 1.0
    }
}

/// What one check found.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub family: String,
    pub passed: bool,
    /// The worst comparison, the count and the faults (its fields sit beside these in JSON).
    #[serde(flatten)]
    pub tally: Tally,
    /// Set when the check could not run at all (a kernel failed to compile, say).
    pub error: Option<String>,
    pub seconds: f64,
    /// The run's seed: `ser selftest --only NAME --seed SEED` replays this check's inputs.
    pub seed: u64,
}

/// Runs the checks whose name or family matches one of `only` (all when empty), each with its
/// own seed derived from `seed`, reporting each result to `progress` as it comes.
pub fn run(gpu: &Gpu, only: &[String], seed: u64, size: Size, mut progress: impl FnMut(&CheckResult)) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for check in checks() {
        if !only.is_empty() && !only.iter().any(|o| o == check.name || o == check.family) {
            continue;
        }
        let r = run_one(gpu, &check, seed, size);
        progress(&r);
        out.push(r);
    }
    out
}

/// One check, its inputs drawn from `seed` and its name (so that a check's inputs do not depend
/// on which others run).
pub fn run_one(gpu: &Gpu, check: &Check, seed: u64, size: Size) -> CheckResult {
    let name_hash = check.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut rng = SplitMix64::new(crate::rng::splitmix64(seed ^ name_hash));
    let mut tally = Tally::default();
    let start = Instant::now();
    let error = (check.run)(gpu, &mut rng, size, &mut tally).err().map(|e| format!("{e:#}"));
    CheckResult {
        name: check.name.to_string(),
        family: check.family.to_string(),
        passed: error.is_none() && tally.passed(),
        tally,
        error,
        seconds: start.elapsed().as_secs_f64(),
        seed,
    }
}

/// The check named `name`, for the test suites.
pub fn by_name(name: &str) -> Option<Check> {
    checks().into_iter().find(|c| c.name == name)
}

/// A Markdown table of results, one row per check.
pub fn table(adapter: &str, results: &[CheckResult]) -> String {
    let mut s = format!("selftest on {adapter}\n\n| check | family | result | worst error / tolerance | worst abs error | values | seconds |\n|---|---|---|---:|---:|---:|---:|\n");
    for r in results {
        let verdict = match (&r.tally.skipped, r.passed) {
            (_, false) => "FAIL".to_string(),
            (Some(why), true) => format!("skipped: {why}"),
            (None, true) => "pass".to_string(),
        };
        s += &format!("| {} | {} | {verdict} | {:.3} | {:.2e} | {} | {:.2} |\n", r.name, r.family, r.tally.worst_ratio, r.tally.worst_abs, r.tally.compared, r.seconds);
    }
    for r in results.iter().filter(|r| !r.passed) {
        s += &format!("\n{} failed (replay: ser selftest --only {} --seed {}):\n", r.name, r.name, r.seed);
        if let Some(e) = &r.error {
            s += &format!("  error: {e}\n");
        }
        for f in &r.tally.faults {
            s += &format!("  {f}\n");
        }
        if r.tally.worst_ratio > 1.0 {
            s += &format!("  worst: {}\n", r.tally.worst_at);
        }
    }
    s
}
