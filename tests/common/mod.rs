//! Shared by the GPU test binaries: one device per process, used by one test at a time
//! (lavapipe is slow and flaky with many devices), and a seeded random source.
#![allow(dead_code)]

use ser::gpu::{AdapterSelector, Gpu};
use ser::ops::autotune::{self, AutotuneMode};
use std::sync::{Mutex, MutexGuard, OnceLock};

pub struct Shared {
    pub gpu: Gpu,
}

static GPU: OnceLock<Mutex<Shared>> = OnceLock::new();

/// The process-wide device, locked for the duration of one test.
pub fn gpu() -> MutexGuard<'static, Shared> {
    let lock = GPU.get_or_init(|| {
        let gpu = Gpu::new(&AdapterSelector::default()).unwrap_or_else(|e| panic!("no GPU for tests: {e:#}"));
        // Untuned unless the run asks (SER_AUTOTUNE): results do not hang on timing noise, and
        // tests never write the user's tuning file. tests/autotune.rs covers the tuner.
        let mode = if std::env::var_os("SER_AUTOTUNE").is_some() { AutotuneMode::from_env().unwrap() } else { AutotuneMode::Off };
        autotune::configure(&gpu, mode, autotune::pin_from_env().unwrap(), None);
        eprintln!("tests run on {}", gpu.label());
        Mutex::new(Shared { gpu })
    });
    // A failed test poisons the lock; the device itself is still fine for the others.
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lowered device limits for one test, restored when dropped (the library's, which
/// `ser selftest` uses too).
#[allow(unused_imports)]
pub use ser::gpu::LoweredLimits;

/// The library's seeded generator (SplitMix64), with `uniform` and `vec` for test data.
#[allow(unused_imports)]
pub use ser::rng::SplitMix64 as Rng;

/// A seed that differs per run unless SER_TEST_SEED pins it; printed so a failure can be replayed.
pub fn fresh_seed(test: &str) -> u64 {
    let seed = std::env::var("SER_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{test}: SER_TEST_SEED={seed}");
    seed
}

/// Max |got - want| / (atol + rtol * |want|) must stay <= 1; reports the worst element. The
/// comparison is `ser selftest`'s (a NaN where a number is due fails).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    let mut t = ser::selftest::Tally::default();
    t.close(what, got, want, atol, rtol);
    assert!(t.passed(), "{} (error ratio {}){}", t.worst_at, t.worst_ratio, t.faults.join("; "));
}

/// The `ser` binary, untuned unless SER_AUTOTUNE says otherwise (as the shared device above).
pub fn ser_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ser"));
    c.env("SER_AUTOTUNE", std::env::var("SER_AUTOTUNE").unwrap_or_else(|_| "off".into()));
    c
}
