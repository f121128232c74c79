//! Frame descriptors (shaders/descriptors.wgsl) as librosa 0.11 defines them: rms, spectral
//! centroid, bandwidth, rolloff and flatness from the power spectra the other features use;
//! the zero-crossing rate from the signal; deltas of any rows. Each has its float64 reference
//! here.

use super::stft::fft_frequencies;
use crate::gpu::{Access, KernelSpec, ShaderFile, Step, Tensor, Texture};
use anyhow::{Result, bail};

pub const DESCRIPTORS_WGSL: ShaderFile = ShaderFile {
    name: "descriptors.wgsl",
    source: include_str!("../../shaders/descriptors.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const SPECTRAL_SHAPE: KernelSpec = KernelSpec {
    shader: &DESCRIPTORS_WGSL,
    entry: "spectral_shape",
    bindings: &[Access::Texture, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite],
};
const ZERO_CROSSINGS: KernelSpec = KernelSpec { shader: &DESCRIPTORS_WGSL, entry: "zero_crossings", bindings: &[Access::Texture, Access::Read, Access::Read, Access::ReadWrite] };
const DELTA: KernelSpec = KernelSpec { shader: &DESCRIPTORS_WGSL, entry: "delta", bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite] };

/// librosa.feature.spectral_rolloff's default share of a frame's magnitude.
pub const ROLL_PERCENT: f64 = 0.85;
/// librosa.feature.spectral_flatness's floor on the power spectrum.
pub const FLATNESS_AMIN: f64 = 1e-10;
/// librosa.feature.zero_crossing_rate's threshold: values this close to zero count as zero
/// (positive).
pub const ZERO_THRESHOLD: f64 = 1e-10;
/// librosa.feature.delta's default window.
pub const DELTA_WIDTH: usize = 9;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    frames: u32,
    n_bins: u32,
    n_fft: u32,
    cols: u32,
    bin_hz: f32,
    roll_percent: f32,
    amin: f32,
    zero_threshold: f32,
    frame_length: u32,
    hop: u32,
    sig_width: u32,
    sig_shift: u32,
}

/// The spectral descriptors of each frame, [frames] each.
pub struct SpectralShape {
    pub rms: Tensor,
    pub centroid: Tensor,
    pub bandwidth: Tensor,
    pub rolloff: Tensor,
    pub flatness: Tensor,
}

/// Records rms, centroid, bandwidth, rolloff and flatness of the first `frames` rows of power
/// spectra (a texture of stride / 4 texels per row, n_fft / 2 + 1 bins) into `out`.
pub fn spectral_shape(step: &mut Step, spectra: &Texture, frames: usize, n_fft: usize, sample_rate: f64, out: &SpectralShape) -> Result<()> {
    let n_bins = n_fft / 2 + 1;
    let outputs = [&out.rms, &out.centroid, &out.bandwidth, &out.rolloff, &out.flatness];
    if outputs.iter().any(|t| t.len() != frames) || (spectra.height() as usize) < frames || (spectra.width() as usize) * 4 < n_bins {
        bail!("descriptors: spectra {spectra:?} and outputs do not hold {frames} frames of {n_bins} bins");
    }
    if frames == 0 {
        return Ok(());
    }
    super::check_loop_budget(step.gpu(), 2 * n_bins, "spectral descriptors")?;
    let p = Params {
        frames: frames as u32,
        n_bins: n_bins as u32,
        n_fft: n_fft as u32,
        bin_hz: (sample_rate / n_fft as f64) as f32,
        roll_percent: ROLL_PERCENT as f32,
        amin: FLATNESS_AMIN as f32,
        ..Default::default()
    };
    let grid = [super::groups(frames, 64)?, 1, 1];
    let bound = [spectra.into(), (&out.rms).into(), (&out.centroid).into(), (&out.bandwidth).into(), (&out.rolloff).into(), (&out.flatness).into()];
    step.dispatch_bound(&SPECTRAL_SHAPE, &[], &bound, bytemuck::bytes_of(&p), grid, "descriptors.spectral_shape")
}

/// Records the zero-crossing rate of every frame (`frame_clip` [frames], `clips` the batch's
/// clip table [clips, 4]: start sample, samples, first frame, frames) into `zcr` [frames]:
/// frames of `frame_length` samples centred on t * hop.
pub fn zero_crossing_rate(step: &mut Step, signal: &Texture, clips: &Tensor, frame_clip: &Tensor, frame_length: usize, hop: usize, zcr: &Tensor) -> Result<()> {
    let frames = frame_clip.len();
    if zcr.len() != frames || !clips.len().is_multiple_of(4) || frame_length < 2 || hop == 0 || !signal.width().is_power_of_two() {
        bail!("zero crossings: zcr {:?}, clips {:?}, frame length {frame_length}, hop {hop} do not match {frames} frames", zcr.shape(), clips.shape());
    }
    if frames == 0 {
        return Ok(());
    }
    super::check_loop_budget(step.gpu(), frame_length, "zero-crossing rate")?;
    let p = Params {
        frames: frames as u32,
        zero_threshold: ZERO_THRESHOLD as f32,
        frame_length: frame_length as u32,
        hop: hop as u32,
        sig_width: signal.width(),
        sig_shift: signal.width().trailing_zeros(),
        ..Default::default()
    };
    let grid = [super::groups(frames, 64)?, 1, 1];
    step.dispatch_bound(&ZERO_CROSSINGS, &[], &[signal.into(), clips.into(), frame_clip.into(), zcr.into()], bytemuck::bytes_of(&p), grid, "descriptors.zero_crossings")
}

/// Records the deltas of `x` [frames, cols] within each clip's frames (`frame_clip` [frames],
/// `clips` [clips, 4]) into `dx` [frames, cols].
pub fn delta(step: &mut Step, clips: &Tensor, frame_clip: &Tensor, x: &Tensor, dx: &Tensor) -> Result<()> {
    let frames = frame_clip.len();
    let cols = match x.shape() {
        [f, c] if *f == frames => *c,
        _ => bail!("delta: x {:?} is not [{frames}, cols]", x.shape()),
    };
    if dx.shape() != x.shape() || !clips.len().is_multiple_of(4) {
        bail!("delta: dx {:?} and clips {:?} do not match x {:?}", dx.shape(), clips.shape(), x.shape());
    }
    if frames * cols == 0 {
        return Ok(());
    }
    let p = Params { frames: frames as u32, cols: cols as u32, ..Default::default() };
    let grid = [super::groups(frames * cols, 64)?, 1, 1];
    step.dispatch(&DELTA, &[], &[frame_clip, clips, x, dx], bytemuck::bytes_of(&p), grid, "descriptors.delta")
}

/// Float64 reference of [`spectral_shape`] for one frame of power spectrum (n_fft / 2 + 1
/// bins): (rms, centroid, bandwidth, rolloff, flatness).
pub fn spectral_reference(power: &[f64], n_fft: usize, sample_rate: f64) -> [f64; 5] {
    let freq = fft_frequencies(sample_rate, n_fft);
    let m: Vec<f64> = power.iter().map(|p| p.max(0.0).sqrt()).collect();
    let last = power.len() - 1;
    let energy: f64 = power.iter().enumerate().map(|(b, p)| if b == 0 || (b == last && n_fft.is_multiple_of(2)) { 0.5 * p } else { *p }).sum();
    let rms = (2.0 * energy / (n_fft * n_fft) as f64).sqrt();
    let total: f64 = m.iter().sum();
    let norm = if total >= f32::MIN_POSITIVE as f64 { total } else { 1.0 };
    let centroid = m.iter().zip(&freq).map(|(m, f)| f * m / norm).sum::<f64>();
    let bandwidth = m.iter().zip(&freq).map(|(m, f)| m / norm * (f - centroid).powi(2)).sum::<f64>().sqrt();
    let mut running = 0.0;
    let rolloff = m.iter().zip(&freq).find_map(|(m, f)| {
        running += m;
        (running >= ROLL_PERCENT * total).then_some(*f)
    });
    let clamped: Vec<f64> = power.iter().map(|p| p.max(FLATNESS_AMIN)).collect();
    let n = clamped.len() as f64;
    let flatness = (clamped.iter().map(|v| v.ln()).sum::<f64>() / n).exp() / (clamped.iter().sum::<f64>() / n);
    [rms, centroid, bandwidth, rolloff.unwrap_or(0.0), flatness]
}

/// Float64 reference of [`zero_crossing_rate`] for one clip: one rate per frame.
pub fn zero_crossing_reference(clip: &[f32], frame_length: usize, hop: usize) -> Vec<f64> {
    let frames = 1 + clip.len() / hop;
    let last = clip.len() as i64 - 1;
    let negative = |i: i64| (clip[i.clamp(0, last) as usize] as f64) < -ZERO_THRESHOLD;
    (0..frames)
        .map(|t| {
            let origin = (t * hop) as i64 - (frame_length / 2) as i64;
            (1..frame_length as i64).filter(|&k| negative(origin + k) != negative(origin + k - 1)).count() as f64 / frame_length as f64
        })
        .collect()
}

/// Float64 reference of [`delta`] for one clip's rows of one column.
pub fn delta_reference(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let half = DELTA_WIDTH / 2;
    let slope = |window: &[f64]| {
        let mid = (window.len() as f64 - 1.0) / 2.0;
        let den: f64 = (0..window.len()).map(|k| (k as f64 - mid).powi(2)).sum();
        if den == 0.0 { 0.0 } else { window.iter().enumerate().map(|(k, v)| (k as f64 - mid) * v).sum::<f64>() / den }
    };
    (0..n)
        .map(|t| if n < DELTA_WIDTH { slope(x) } else { slope(&x[t.clamp(half, n - 1 - half) - half..][..DELTA_WIDTH]) })
        .collect()
}
