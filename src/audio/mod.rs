//! The audio front end: finding clips, reading RAVDESS names, decoding WAV and FLAC to mono f32,
//! and converting sample rates. Everything here runs on the CPU; what follows runs on the GPU.

pub mod dataset;
pub mod decode;
pub mod ravdess;
pub mod resample;

pub use dataset::{Selection, VocalFilter};
pub use decode::{Audio, Integrity, decode_bytes, decode_file};
pub use ravdess::{Emotion, RavdessName, VocalChannel};
pub use resample::resample;

use anyhow::Result;
use std::path::{Path, PathBuf};

/// Decodes a file and brings it to `sample_rate`.
pub fn load(path: &Path, sample_rate: u32) -> Result<Vec<f32>> {
    let audio = decode_file(path)?;
    to_rate(&audio, sample_rate).map_err(|e| e.context(path.display().to_string()))
}

/// Decoded audio at `sample_rate`. Resampled audio is requantised to 16 bits with TPDF dither,
/// as SoX writes it: the 16 kHz RAVDESS copy models are trained on was made that way, and the
/// dither's noise floor shows in the features that normalise quiet frames (chroma) or compare
/// against the quietest bins (spectral contrast). Without it, a 48 kHz original and its 16 kHz
/// copy give visibly different features (top contrast band 46 dB against 17 dB).
pub fn to_rate(audio: &Audio, sample_rate: u32) -> Result<Vec<f32>> {
    if audio.sample_rate == sample_rate {
        return Ok(audio.samples.clone());
    }
    let mut out = resample(&audio.samples, audio.sample_rate, sample_rate)?;
    let seed = out.len() as u64;
    dither_to_16_bits(&mut out, seed);
    Ok(out)
}

/// Shortest clip worth a label: 0.1 s (a few analysis frames).
pub const MIN_SECONDS: f64 = 0.1;

/// Quietest signal worth a label: an RMS (about its mean) of 1e-4, -80 dBFS, three 16-bit steps;
/// resampling dither alone is 0.5 steps, speech is 1e-3 to 1e-1.
pub const MIN_RMS: f64 = 1e-4;

/// Refuses audio with no usable signal (too short, silent or constant) with the reason, so that
/// it is skipped and listed rather than given a label (a model answers something for anything).
pub fn check_signal(samples: &[f32], rate: u32) -> Result<()> {
    let seconds = samples.len() as f64 / rate.max(1) as f64;
    if seconds < MIN_SECONDS {
        anyhow::bail!("too short to label: {} samples ({seconds:.3} s; at least {MIN_SECONDS} s)", samples.len());
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&v| v as f64).sum::<f64>() / n;
    let rms = (samples.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    if rms < MIN_RMS {
        anyhow::bail!("no usable signal: silent or constant (RMS {rms:.1e} about its mean, below {MIN_RMS:.0e})");
    }
    Ok(())
}

/// Rounds to the 16-bit grid after adding triangular (TPDF, +-1 LSB) noise, seeded so that the
/// same input gives the same output.
pub fn dither_to_16_bits(samples: &mut [f32], seed: u64) {
    let mut rng = crate::rng::SplitMix64::new(seed ^ 0xD17E_5EED);
    let mut uniform = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
    for x in samples.iter_mut() {
        let d = uniform() - uniform();
        *x = ((*x * 32768.0 + d).round().clamp(-32768.0, 32767.0)) / 32768.0;
    }
}

/// Every `.wav` and `.flac` file below `root` (any depth), sorted by path. Symbolic links are
/// followed, but each folder is entered and each file listed once (by its canonical path), so a
/// link loop or a second link to the same clip cannot repeat it. Entries that are not regular
/// files (a FIFO or a device named `.wav`) are listed so that decoding refuses them by name.
pub fn find_audio_files(root: &Path) -> Result<Vec<PathBuf>> {
    use std::collections::HashSet;
    if std::fs::symlink_metadata(root).is_err() {
        anyhow::bail!("{}: no such file or folder", root.display());
    }
    if !root.is_dir() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut seen_dirs: HashSet<PathBuf> = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // A folder reached twice (a link loop, or two links to one folder) is walked once.
        if !seen_dirs.insert(std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone())) {
            continue;
        }
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
    let mut seen_files: HashSet<PathBuf> = HashSet::new();
    out.retain(|p| seen_files.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    Ok(out)
}

fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav") || e.eq_ignore_ascii_case("flac"))
}

#[cfg(test)]
mod dither_tests {
    #[test]
    fn dither_lands_on_the_16_bit_grid_with_tpdf_noise_power() {
        // A slow ramp well inside full scale: the error is the dither plus rounding, whose
        // variance is 1/6 + 1/12 = 1/4 LSB^2 and whose mean is zero.
        let input: Vec<f32> = (0..200_000).map(|i| 0.3 * ((i as f32) * 1e-4).sin()).collect();
        let mut out = input.clone();
        super::dither_to_16_bits(&mut out, 7);
        let mut again = input.clone();
        super::dither_to_16_bits(&mut again, 7);
        assert_eq!(out, again, "seeded: the same output twice");
        let err: Vec<f64> = out.iter().zip(&input).map(|(o, i)| (*o as f64 - *i as f64) * 32768.0).collect();
        assert!(out.iter().all(|o| (o * 32768.0).fract() == 0.0), "every sample on the grid");
        assert!(err.iter().all(|e| e.abs() <= 1.5), "error within 1.5 LSB");
        let mean = err.iter().sum::<f64>() / err.len() as f64;
        let var = err.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / err.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 0.25).abs() < 0.01, "mean {mean}, variance {var}");
    }
}
