//! The audio front end: finding clips, reading RAVDESS names, decoding WAV and FLAC to mono f32,
//! and converting sample rates. Everything here runs on the CPU; what follows runs on the GPU.

pub mod dataset;
pub mod decode;
pub mod ravdess;
pub mod resample;

pub use dataset::{Discovery, LabelledClip, Selection, VocalFilter, discover};
pub use decode::{Audio, decode_bytes, decode_file};
pub use ravdess::{Emotion, RavdessName, VocalChannel};
pub use resample::resample;

use anyhow::Result;
use std::path::{Path, PathBuf};

/// Decodes a file and brings it to `sample_rate`.
pub fn load(path: &Path, sample_rate: u32) -> Result<Vec<f32>> {
    let audio = decode_file(path)?;
    resample(&audio.samples, audio.sample_rate, sample_rate).map_err(|e| e.context(path.display().to_string()))
}

/// Every `.wav` and `.flac` file below `root` (any depth), sorted by path.
pub fn find_audio_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    if !root.exists() {
        anyhow::bail!("{}: no such file or folder", root.display());
    }
    if root.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_audio(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav") || e.eq_ignore_ascii_case("flac"))
}
