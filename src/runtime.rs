//! The runtime as configured: a device opened with its settings and its GEMM kernel table (the
//! tuner's mode, a pinned kernel, the tuning file it loads and keeps), set up before any work.
//!
//! Settings come from the edge. The command line reads them once from the environment
//! ([`Settings::from_env`]); the Python bindings take them as arguments. Nothing below this
//! module reads the environment.

use crate::choice::Choice;
use crate::gpu::{AdapterSelector, Gpu, GpuSettings};
use crate::ops::autotune::{self, AutotuneMode};
use crate::ops::gemm::GemmKernel;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// How GEMM kernels are chosen on a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub mode: AutotuneMode,
    /// A kernel every multiply uses, whatever the tuner would pick (reproducibility).
    pub pin: Option<GemmKernel>,
    /// Where choices are read and kept; None: in memory only.
    pub file: Option<PathBuf>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { mode: AutotuneMode::Fast, pin: None, file: None }
    }
}

/// Everything the runtime is told by the edge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub gpu: GpuSettings,
    pub tuning: Tuning,
}

/// `$XDG_CACHE_HOME/ser`, else `~/.cache/ser`.
fn cache_home() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ser"))
}

/// The feature cache folder: `$SER_CACHE`, else `$XDG_CACHE_HOME/ser/features`, else
/// `~/.cache/ser/features`.
pub fn feature_cache_from_env() -> Option<PathBuf> {
    match std::env::var_os("SER_CACHE") {
        Some(d) => Some(PathBuf::from(d)),
        None => cache_home().map(|h| h.join("features")),
    }
}

/// The tuning file: `$SER_AUTOTUNE_FILE`, else `autotune.json` in `$SER_CACHE`,
/// `$XDG_CACHE_HOME/ser` or `~/.cache/ser`.
pub fn tuning_file_from_env() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("SER_AUTOTUNE_FILE") {
        return Some(PathBuf::from(f));
    }
    match std::env::var_os("SER_CACHE") {
        Some(d) => Some(PathBuf::from(d).join("autotune.json")),
        None => cache_home().map(|h| h.join("autotune.json")),
    }
}

/// A variable's value, None when unset or empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// The settings the environment gives, each checked (a typo is an error naming the variable):
    /// `SER_AUTOTUNE=off|fast|full`, `SER_GEMM_KERNEL=<kernel>|auto`, `SER_AUTOTUNE_FILE` (or
    /// the cache folder), `SER_PROFILE_CLOCK=gpu|host`, `SER_SHADER_CHECKS=on|off`,
    /// `SER_COOPERATIVE_MATRIX=off`, `SER_LSTM_KERNEL=workgroup|lane`.
    pub fn from_env() -> Result<Settings> {
        let mode = match var("SER_AUTOTUNE") {
            None => AutotuneMode::Fast,
            Some(v) => AutotuneMode::from_name(&v).with_context(|| format!("SER_AUTOTUNE={v}: expected off, fast or full"))?,
        };
        let pin = match var("SER_GEMM_KERNEL").filter(|v| v != "auto") {
            None => None,
            Some(name) => Some(GemmKernel::from_name(&name).with_context(|| {
                let names: Vec<String> = GemmKernel::ALL.iter().map(|k| k.name()).collect();
                format!("SER_GEMM_KERNEL={name}: not a kernel (one of auto, {})", names.join(", "))
            })?),
        };
        let on_off = |name: &str, on: &str, off: &str| -> Result<Option<bool>> {
            match var(name) {
                None => Ok(None),
                Some(v) if v == on => Ok(Some(true)),
                Some(v) if v == off => Ok(Some(false)),
                Some(v) => bail!("{name}={v}: expected {on} or {off}"),
            }
        };
        let lstm_kernel = match var("SER_LSTM_KERNEL") {
            None => None,
            Some(v) if v == "workgroup" || v == "lane" => Some(v),
            Some(v) => bail!("SER_LSTM_KERNEL={v}: expected workgroup or lane"),
        };
        let gpu = GpuSettings {
            gpu_timestamps: on_off("SER_PROFILE_CLOCK", "gpu", "host")?,
            bounds_checks: on_off("SER_SHADER_CHECKS", "on", "off")?,
            cooperative_matrix: on_off("SER_COOPERATIVE_MATRIX", "on", "off")?.unwrap_or(true),
            lstm_kernel,
        };
        Ok(Settings { gpu, tuning: Tuning { mode, pin, file: tuning_file_from_env() } })
    }
}

/// Opens the adapter `selector` picks with `settings`, its kernel table configured and its
/// stored choices loaded before any work.
pub fn open(selector: &AdapterSelector, settings: &Settings) -> Result<Gpu> {
    let gpu = Gpu::with_settings(selector, settings.gpu.clone())?;
    autotune::configure(&gpu, settings.tuning.mode, settings.tuning.pin, settings.tuning.file.clone());
    Ok(gpu)
}
