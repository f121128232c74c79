//! Batched STFT to the power spectrum (shaders/stft.wgsl), librosa's framing (center=True, zero
//! padding) and periodic Hann window.

use crate::gpu::{Access, KernelSpec, STFT_WGSL, Step, Tensor};
use anyhow::{Result, bail};

const POWER: KernelSpec = KernelSpec {
    shader: &STFT_WGSL,
    entry: "stft_power",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

/// Shape of a batch of spectra: rows of `stride` floats, the first `n_bins` of them used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpectrumLayout {
    pub n_fft: usize,
    pub hop: usize,
    pub n_bins: usize,
    /// Row length: n_bins rounded up to a multiple of 4 (zeros past n_bins).
    pub stride: usize,
}

impl SpectrumLayout {
    pub fn new(n_fft: usize, hop: usize) -> Result<SpectrumLayout> {
        if !n_fft.is_power_of_two() || n_fft < 4 {
            bail!("n_fft = {n_fft}: the GPU FFT needs a power of two of at least 4");
        }
        if hop == 0 {
            bail!("hop length must be positive");
        }
        let n_bins = n_fft / 2 + 1;
        Ok(SpectrumLayout { n_fft, hop, n_bins, stride: n_bins.next_multiple_of(4) })
    }

    /// Frames librosa produces for `len` samples with center=True.
    pub fn frames(&self, len: usize) -> usize {
        1 + len / self.hop
    }

    /// Workgroup memory the FFT needs: two halves of n_fft / 2 complex values.
    pub fn workgroup_bytes(&self) -> usize {
        self.n_fft * 8
    }
}

/// scipy's `get_window("hann", n, fftbins=True)`: the periodic Hann window, in float64.
pub fn hann(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).collect()
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_fft: u32,
    hop: u32,
    stride: u32,
    frames: u32,
}

/// Records the power spectra of every frame of every clip.
/// `clips` holds (sample offset, sample count, first frame, frame count) per clip as u32;
/// `frame_clip` the clip of each frame; `window` n_fft floats; `power` is [frames, stride].
pub fn power(step: &mut Step, layout: &SpectrumLayout, signal: &Tensor, clips: &Tensor, frame_clip: &Tensor, window: &Tensor, power: &Tensor) -> Result<()> {
    let frames = frame_clip.len();
    if power.len() != frames * layout.stride || window.len() != layout.n_fft || clips.len() % 4 != 0 {
        bail!("stft: power {:?}, window {:?}, clips {:?} do not match {frames} frames of {layout:?}", power.shape(), window.shape(), clips.shape());
    }
    let limit = step.gpu().max_workgroup_bytes();
    if layout.workgroup_bytes() > limit {
        bail!("n_fft = {} needs {} bytes of workgroup memory; this adapter has {limit}", layout.n_fft, layout.workgroup_bytes());
    }
    let half = layout.n_fft / 2;
    let constants = [("HALF", half as f64), ("LOG2_HALF", half.trailing_zeros() as f64)];
    let p = Params { n_fft: layout.n_fft as u32, hop: layout.hop as u32, stride: layout.stride as u32, frames: frames as u32 };
    let grid = [u32::try_from(frames)?, 1, 1];
    step.dispatch(&POWER, &constants, &[signal, clips, frame_clip, window, power], bytemuck::bytes_of(&p), grid, format!("stft.power[{}]", layout.n_fft))
}

/// Float64 reference: power spectra [frames][n_bins] of one clip by direct DFT.
pub fn reference(signal: &[f32], layout: &SpectrumLayout) -> Vec<Vec<f64>> {
    let window = hann(layout.n_fft);
    let n = layout.n_fft;
    (0..layout.frames(signal.len()))
        .map(|t| {
            let start = (t * layout.hop) as i64 - (n / 2) as i64;
            let frame: Vec<f64> = (0..n)
                .map(|i| {
                    let j = start + i as i64;
                    if j >= 0 && (j as usize) < signal.len() { signal[j as usize] as f64 * window[i] } else { 0.0 }
                })
                .collect();
            (0..layout.n_bins)
                .map(|k| {
                    let (mut re, mut im) = (0.0, 0.0);
                    for (i, x) in frame.iter().enumerate() {
                        let a = -2.0 * std::f64::consts::PI * ((k * i) % n) as f64 / n as f64;
                        re += x * a.cos();
                        im += x * a.sin();
                    }
                    re * re + im * im
                })
                .collect()
        })
        .collect()
}
