//! Shared by the GPU test binaries: one device per process, used by one test at a time
//! (lavapipe is slow and flaky with many devices), and a seeded random source.
#![allow(dead_code)]

use ser::gpu::{AdapterSelector, Gpu};
use std::sync::{Mutex, MutexGuard, OnceLock};

pub struct Shared {
    pub gpu: Gpu,
}

static GPU: OnceLock<Mutex<Shared>> = OnceLock::new();

/// The process-wide device, locked for the duration of one test.
pub fn gpu() -> MutexGuard<'static, Shared> {
    let lock = GPU.get_or_init(|| {
        let gpu = Gpu::new(&AdapterSelector::default()).unwrap_or_else(|e| panic!("no GPU for tests: {e:#}"));
        eprintln!("tests run on {}", gpu.label());
        Mutex::new(Shared { gpu })
    });
    // A failed test poisons the lock; the device itself is still fine for the others.
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lowered device limits for one test (split dispatches, chunked textures without huge
/// inputs); the device limits come back when this is dropped, even if the test fails.
pub struct LoweredLimits<'a>(&'a Gpu);

impl<'a> LoweredLimits<'a> {
    pub fn new(gpu: &'a Gpu) -> Self {
        LoweredLimits(gpu)
    }

    pub fn texture_side(&self, limit: u32) {
        self.0.set_texture_side_limit_for_tests(limit);
    }

    pub fn dispatch_dim(&self, limit: u32) {
        self.0.set_dispatch_dim_limit_for_tests(limit);
    }
}

impl Drop for LoweredLimits<'_> {
    fn drop(&mut self) {
        self.0.set_texture_side_limit_for_tests(u32::MAX);
        self.0.set_dispatch_dim_limit_for_tests(u32::MAX);
    }
}

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

/// Max |got - want| / (atol + rtol * |want|) must stay <= 1; reports the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = *g as f64;
        let bad = if g == *w {
            0.0
        } else if w.is_nan() { if g.is_nan() { 0.0 } else { f64::INFINITY } } else if !g.is_finite() && g != *w {
            f64::INFINITY
        } else {
            (g - w).abs() / (atol + rtol * w.abs())
        };
        if !(bad <= worst.0) {
            worst = (bad, i);
        }
    }
    let i = worst.1;
    assert!(worst.0 <= 1.0, "{what}: element {i} is {} but the reference says {} (error ratio {})", got[i], want[i], worst.0);
}
