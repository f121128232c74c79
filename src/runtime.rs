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

/// The cache home in this process's environment ([`cache_home_in`]).
fn cache_home() -> Option<PathBuf> {
    cache_home_in(|name| std::env::var_os(name))
}

/// `$XDG_CACHE_HOME/ser`, else `$HOME/.cache/ser`, else `%LOCALAPPDATA%\ser` (Windows, where
/// HOME is usually unset: without it nothing would be cached), in the variables `var` gives
/// (empty ones are unset).
fn cache_home_in(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = set("XDG_CACHE_HOME").or_else(|| set("HOME").map(|h| h.join(".cache"))).or_else(|| set("LOCALAPPDATA"))?;
    Some(base.join("ser"))
}

/// The feature cache folder: `$SER_CACHE`, else `features` in the cache home
/// (`$XDG_CACHE_HOME/ser`, `~/.cache/ser` or `%LOCALAPPDATA%\ser`).
pub fn feature_cache_from_env() -> Option<PathBuf> {
    match std::env::var_os("SER_CACHE") {
        Some(d) => Some(PathBuf::from(d)),
        None => cache_home().map(|h| h.join("features")),
    }
}

/// The tuning file: `$SER_AUTOTUNE_FILE`, else `autotune.json` in `$SER_CACHE` or the cache
/// home (`$XDG_CACHE_HOME/ser`, `~/.cache/ser` or `%LOCALAPPDATA%\ser`).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// XDG first, then HOME's .cache, then Windows' LOCALAPPDATA; empty values count as unset,
    /// and with none of them nothing is cached.
    #[test]
    fn the_cache_home_follows_xdg_then_home_then_localappdata() {
        let home = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            cache_home_in(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into()))
        };
        let all = [("XDG_CACHE_HOME", "/x"), ("HOME", "/h"), ("LOCALAPPDATA", "C:/Users/u/AppData/Local")];
        assert_eq!(home(&all), Some(PathBuf::from("/x/ser")));
        assert_eq!(home(&all[1..]), Some(PathBuf::from("/h/.cache/ser")));
        assert_eq!(home(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")]), Some(PathBuf::from("/h/.cache/ser")));
        assert_eq!(home(&all[2..]), Some(PathBuf::from("C:/Users/u/AppData/Local/ser")));
        assert_eq!(home(&[("HOME", "")]), None);
    }
}
