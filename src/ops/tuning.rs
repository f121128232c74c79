//! Per-clip tuning estimation on the GPU (shaders/tuning.wgsl), librosa.estimate_tuning's
//! algorithm: piptrack on the power spectrogram, median magnitude, residual histogram.

use super::stft::fft_frequencies;
use crate::gpu::{ShaderFile, Access, DType, Gpu, KernelSpec, Step, Tensor, Texture};
use anyhow::{Result, bail};

pub const TUNING_WGSL: ShaderFile = ShaderFile {
    name: "tuning.wgsl",
    source: include_str!("../../shaders/tuning.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const BINDINGS: &[Access] =
    &[Access::Texture, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite];
const FRAME_MAX: KernelSpec = KernelSpec { shader: &TUNING_WGSL, entry: "frame_max", bindings: BINDINGS };
const PIPTRACK: KernelSpec = KernelSpec { shader: &TUNING_WGSL, entry: "piptrack", bindings: BINDINGS };
const TUNING: KernelSpec = KernelSpec { shader: &TUNING_WGSL, entry: "tuning", bindings: BINDINGS };

/// librosa.piptrack's defaults as estimate_tuning uses them.
pub const FMIN: f64 = 150.0;
pub const FMAX: f64 = 4000.0;
pub const THRESHOLD: f32 = 0.1;
/// Histogram resolution: 0.01 of a chroma bin.
pub const BINS: usize = 100;

/// numpy.linspace(-0.5, 0.5, 101): the histogram edges librosa's pitch_tuning uses.
pub fn edges() -> Vec<f64> {
    let step = 1.0 / BINS as f64;
    (0..=BINS).map(|i| if i == BINS { 0.5 } else { -0.5 + i as f64 * step }).collect()
}

/// The smallest float32 at or above x, so that `r >= edge` compares as in float64.
fn f32_at_or_above(x: f64) -> f32 {
    let f = x as f32;
    if (f as f64) < x { f.next_up() } else { f }
}

/// Bins [k_lo, k_hi) with fmin <= frequency < fmax.
pub fn bin_range(sample_rate: f64, n_fft: usize) -> (usize, usize) {
    let fmax = FMAX.min(sample_rate / 2.0);
    let freq = fft_frequencies(sample_rate, n_fft);
    let lo = freq.iter().position(|&f| f >= FMIN).unwrap_or(freq.len());
    let hi = freq.iter().position(|&f| f >= fmax).unwrap_or(freq.len()).max(lo);
    (lo, hi)
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    frames: u32,
    stride: u32,
    k_lo: u32,
    k_hi: u32,
    n_bins: u32,
    clips: u32,
    _pad0: [u32; 2],
    threshold: f32,
    hz_per_bin: f32,
    _pad1: [f32; 2],
}

/// GPU buffers of one estimation, kept until the step that uses them has run.
pub struct TuningBuffers {
    pub out: Tensor,
    /// Pitch candidates found per clip.
    counts: Tensor,
    _keep: Vec<Tensor>,
}

impl TuningBuffers {
    /// After submission: refuses, by clip, an estimate that llvmpipe's loop limit cut short.
    /// One workgroup walks a clip's candidates about 64 + 2 times (two order statistics of 32
    /// bit passes, a count and the histogram), each pass n / 64 iterations per invocation;
    /// a long recording can pass the limit there, and the estimate would silently use part of
    /// the candidates. `clip_names` name the clips in the error.
    pub fn check_complete(&self, gpu: &Gpu, clip_names: &dyn Fn(usize) -> String) -> Result<()> {
        if !gpu.is_cpu() {
            return Ok(());
        }
        for (c, n) in gpu.read::<u32>(&self.counts)?.into_iter().enumerate() {
            let per_lane = (n as usize).div_ceil(64);
            let iterations = 66 * per_lane + 2 * 32 * 6 + 100;
            super::check_loop_budget(gpu, iterations, &format!("--tuning estimate on {} ({n} pitch candidates; cut it with --segment, or give a fixed --tuning)", clip_names(c)))?;
        }
        Ok(())
    }
}

/// Records the estimation for every clip of a batch. `clip_frames` is (first frame, frames) per
/// clip, `frame_clip` the clip of every frame, `spectra` the power spectra texture (one row per
/// frame, four bins per texel) with `n_bins` used.
/// After submission, `out` holds per clip the fullest histogram bin, or -1 (no pitch found).
pub fn record(step: &mut Step, spectra: &Texture, n_bins: usize, frame_clip: &Tensor, clip_frames: &[(usize, usize)], sample_rate: f64, n_fft: usize) -> Result<TuningBuffers> {
    let gpu = step.gpu();
    let frames = frame_clip.len();
    let stride = spectra.width() as usize * 4;
    if (spectra.height() as usize) < frames || n_bins > stride {
        bail!("tuning: spectra {spectra:?} do not hold {frames} frames of {n_bins} bins");
    }
    let (k_lo, k_hi) = bin_range(sample_rate, n_fft);
    let per_frame = (k_hi - k_lo).div_ceil(2) + 1;
    let mut slots = Vec::with_capacity(clip_frames.len() * 2);
    let mut total = 0u32;
    for &(_, n) in clip_frames {
        let cap = (n * per_frame) as u32;
        slots.extend_from_slice(&[total, cap]);
        total += cap;
    }
    let n = clip_frames.len();
    let slots = gpu.upload(&slots, &[n, 2], DType::U32)?;
    let edges: Vec<f32> = edges().iter().map(|&e| f32_at_or_above(e)).collect();
    let edges = gpu.upload_f32(&edges, &[BINS + 1])?;
    let ref_value = gpu.empty(&[frames], DType::F32)?;
    let counts = gpu.empty(&[n], DType::U32)?;
    let cand = gpu.empty(&[total.max(1) as usize, 2], DType::F32)?;
    let out = gpu.empty(&[n], DType::F32)?;
    let p = Params {
        frames: frames as u32,
        stride: stride as u32,
        k_lo: k_lo as u32,
        k_hi: k_hi as u32,
        n_bins: n_bins as u32,
        clips: n as u32,
        threshold: THRESHOLD,
        hz_per_bin: (sample_rate / n_fft as f64) as f32,
        ..Default::default()
    };
    let params = bytemuck::bytes_of(&p);
    step.zero(&counts);
    let s = spectra.into();
    step.dispatch_bound(&FRAME_MAX, &[], &[s, frame_clip.into(), (&slots).into(), (&ref_value).into(), (&counts).into(), (&cand).into()], params, [super::groups(frames, 64)?, 1, 1], "tuning.frame_max")?;
    step.dispatch_bound(&PIPTRACK, &[], &[s, frame_clip.into(), (&slots).into(), (&ref_value).into(), (&counts).into(), (&cand).into()], params, [super::groups(frames * (k_hi - k_lo), 64)?, 1, 1], "tuning.piptrack")?;
    step.dispatch_bound(&TUNING, &[], &[s, (&edges).into(), (&slots).into(), (&out).into(), (&counts).into(), (&cand).into()], params, [n as u32, 1, 1], "tuning.histogram")?;
    Ok(TuningBuffers { out, counts, _keep: vec![slots, edges, ref_value, cand] })
}

/// The tuning of a clip from the kernel's output: librosa's float64 bin edge, 0 when no pitch.
pub fn tuning_of(bin: f32) -> f64 {
    if bin < 0.0 { 0.0 } else { edges()[bin as usize] }
}
