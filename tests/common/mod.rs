//! Shared by the GPU test binaries: one device per process, used by one test at a time
//! (lavapipe is slow and flaky with many devices), and a seeded random source.
#![allow(dead_code)]

use ser::gpu::{AdapterSelector, Gpu};
use ser::ops::autotune::AutotuneMode;
use ser::runtime::Settings;
use std::sync::{Mutex, MutexGuard, OnceLock};

pub struct Shared {
    pub gpu: Gpu,
}

static GPU: OnceLock<Mutex<Shared>> = OnceLock::new();

/// A device as the command line opens one (the environment's adapter, backend and settings),
/// except that it is untuned unless the run asks (SER_AUTOTUNE), so that results do not hang on
/// timing noise, and never writes the user's tuning file. tests/autotune.rs covers the tuner.
pub fn device() -> anyhow::Result<Gpu> {
    let mut settings = Settings::from_env()?;
    if std::env::var_os("SER_AUTOTUNE").is_none() {
        settings.tuning.mode = AutotuneMode::Off;
    }
    settings.tuning.file = None;
    ser::runtime::open(&AdapterSelector::default().with_env()?, &settings)
}

/// The process-wide device, locked for the duration of one test.
pub fn gpu() -> MutexGuard<'static, Shared> {
    let lock = GPU.get_or_init(|| {
        let gpu = device().unwrap_or_else(|e| panic!("no GPU for tests: {e:#}"));
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

/// 7 classes x 4 actors x 6 clips; every clip's frames scatter around a class-specific pattern,
/// with a small per-actor shift.
pub fn synthetic_set() -> ser::features::set::FeatureSet {
    synthetic_set_with_voices(|actor, _| (1.0, actor as f32 * 0.1))
}

/// As `synthetic_set`, each actor's frames scaled and shifted per column: `voice(actor, column)`
/// gives (gain, offset).
/// A feature set of the default configuration with no clips yet, frames up to `t_max`.
pub fn empty_set(t_max: usize) -> ser::features::set::FeatureSet {
    let config = ser::features::FeatureConfig::default();
    let dim = config.dim();
    ser::features::set::FeatureSet { config, clips: vec![], frames: vec![], lengths: vec![], t_max, vectors: vec![], stds: vec![], dim, label_map: vec![], distribution: vec![], distribution_width: 0, durations: vec![], voicing: vec![] }
}

pub fn synthetic_set_with_voices(voice: impl Fn(u8, usize) -> (f32, f32)) -> ser::features::set::FeatureSet {
    let classes: Vec<ser::audio::Emotion> = ser::audio::Emotion::RAVDESS.iter().copied().filter(|e| *e != ser::audio::Emotion::Disgust).collect();
    let t_max = 12;
    let mut rng = ser::rng::SplitMix64::new(3);
    let mut uniform = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
    let mut set = empty_set(t_max);
    let dim = set.dim;
    for (k, e) in classes.iter().enumerate() {
        for actor in 1..=4u8 {
            for rep in 0..6 {
                let len = 8 + rep % 5;
                let mut frames = vec![0f32; t_max * dim];
                for t in 0..len {
                    for j in 0..dim {
                        let pattern = if j % classes.len() == k { 2.0 } else { 0.0 };
                        let (gain, offset) = voice(actor, j);
                        frames[t * dim + j] = gain * (pattern + uniform() * 2.0) + offset;
                    }
                }
                let col = |j: usize| (0..len).map(|t| frames[t * dim + j]).collect::<Vec<f32>>();
                for j in 0..dim {
                    let c = col(j);
                    let m = c.iter().sum::<f32>() / len as f32;
                    set.vectors.push(m);
                    set.stds.push((c.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / len as f32).sqrt());
                }
                set.frames.extend(frames);
                set.lengths.push(len as u32);
                set.clips.push(ser::features::set::ClipInfo { path: format!("Actor_{actor:02}/{k}-{rep}.wav"), emotion: Some(*e), actor: Some(actor), vocal: None, intensity: None, statement: None, repetition: None, speed: None, speaker: None, corpus: None, segment: None, split: None });
            }
        }
    }
    set
}


/// The folder of the repository's own test clips (tests/clips, see its README).
pub fn clips_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clips")
}

/// The eight 48 kHz RAVDESS originals as downloaded (one stereo, some with extra chunks), in one
/// folder of their own: the four of examples/clips and the four of tests/clips/48k, gathered once
/// per test process under cargo's temporary folder. Tests pass the folder to `ser` as a user would.
pub fn originals_dir() -> std::path::PathBuf {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ravdess-48k-sample");
        // Built beside its final place and renamed into it, so test processes running at once never
        // see a half-filled folder; whichever rename comes second finds the folder there and stops.
        if !dir.exists() {
            let building = dir.with_extension(format!("building-{}", std::process::id()));
            std::fs::create_dir_all(&building).unwrap();
            for source in [root.join("examples/clips"), clips_dir().join("48k")] {
                for entry in std::fs::read_dir(&source).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_some_and(|e| e == "wav") {
                        std::fs::copy(&path, building.join(path.file_name().unwrap())).unwrap();
                    }
                }
            }
            if std::fs::rename(&building, &dir).is_err() {
                std::fs::remove_dir_all(&building).unwrap();
            }
        }
        let count = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(count, 8, "{} holds {count} files, not the eight originals", dir.display());
        dir
    })
    .clone()
}

/// One of the eight 48 kHz originals by file name.
pub fn original(name: &str) -> std::path::PathBuf {
    originals_dir().join(name)
}

/// The 16 kHz FLAC training copy of an original (tests/clips/16k), by stem.
pub fn copy_16k(stem: &str) -> std::path::PathBuf {
    clips_dir().join(format!("16k/{stem}.flac"))
}

/// A fresh folder under the system's temporary folder, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ser-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
