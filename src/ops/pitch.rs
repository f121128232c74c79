//! Pitch (shaders/pitch.wgsl) as librosa 0.11's yin computes it: the cumulative mean
//! normalised difference function of every frame, and yin's choice of period in it. Float64
//! references beside each.

use crate::gpu::{Access, KernelSpec, ShaderFile, Step, Tensor, Texture};
use anyhow::{Result, bail};

pub const PITCH_WGSL: ShaderFile = ShaderFile {
    name: "pitch.wgsl",
    source: include_str!("../../shaders/pitch.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const CMNDF: KernelSpec = KernelSpec { shader: &PITCH_WGSL, entry: "cmndf", bindings: &[Access::Texture, Access::Read, Access::Read, Access::ReadWrite] };
const YIN_SELECT: KernelSpec = KernelSpec { shader: &PITCH_WGSL, entry: "yin_select", bindings: &[Access::Read, Access::ReadWrite] };

/// C2 and C7, the range the pitch features use (librosa.note_to_hz).
pub const FMIN: f64 = 65.406_391_325_149_66;
pub const FMAX: f64 = 2_093.004_522_404_789;
/// librosa.yin's trough_threshold.
pub const YIN_THRESHOLD: f64 = 0.1;
/// The longest frame the kernel holds in workgroup memory.
pub const MAX_FRAME: usize = 2048;

/// The periods (in samples) searched for `sample_rate` and `frame_length`: librosa's
/// floor(sr / fmax) ..= min(ceil(sr / fmin), frame_length - 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periods {
    pub min: usize,
    pub max: usize,
}

impl Periods {
    pub fn new(sample_rate: f64, frame_length: usize, fmin: f64, fmax: f64) -> Result<Periods> {
        if !(fmin > 0.0 && fmin < fmax && fmax <= sample_rate / 2.0) {
            bail!("pitch: the range {fmin}..{fmax} Hz must lie inside 0..{} Hz (Nyquist)", sample_rate / 2.0);
        }
        if sample_rate / fmin >= frame_length as f64 - 1.0 {
            bail!("pitch: a frame of {frame_length} samples holds less than one period of {fmin:.1} Hz at {sample_rate} Hz; raise n_fft");
        }
        if frame_length > MAX_FRAME {
            bail!("pitch: frames of {frame_length} samples are longer than the {MAX_FRAME} the pitch kernel holds; use n_fft {MAX_FRAME} or less");
        }
        let min = (sample_rate / fmax).floor() as usize;
        let max = ((sample_rate / fmin).ceil() as usize).min(frame_length - 1);
        Ok(Periods { min, max })
    }

    /// Values per frame of the difference function: max - min + 1.
    pub fn len(&self) -> usize {
        self.max - self.min + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    frames: u32,
    frame_length: u32,
    hop: u32,
    min_period: u32,
    max_period: u32,
    sig_width: u32,
    sig_shift: u32,
    periods: u32,
    sample_rate: f32,
    threshold: f32,
    _pad: [f32; 2],
}

/// Records the cumulative mean normalised difference function of every frame (`frame_clip`
/// [frames], `clips` [clips, 4]: start sample, samples, first frame, frames) into `out`
/// [frames, periods.len()]: frames of `frame_length` samples centred on t * hop, zero outside
/// their clip (librosa's center=True, pad_mode "constant").
pub fn cmndf(step: &mut Step, signal: &Texture, clips: &Tensor, frame_clip: &Tensor, frame_length: usize, hop: usize, periods: Periods, out: &Tensor) -> Result<()> {
    let frames = frame_clip.len();
    if out.len() != frames * periods.len() || !clips.len().is_multiple_of(4) || hop == 0 || frame_length > MAX_FRAME || periods.max >= frame_length || periods.min == 0 {
        bail!("cmndf: out {:?}, clips {:?}, frame length {frame_length}, hop {hop}, periods {periods:?} do not match {frames} frames", out.shape(), clips.shape());
    }
    if frames == 0 {
        return Ok(());
    }
    super::check_loop_budget(step.gpu(), frame_length + periods.max.div_ceil(256) * (frame_length + 2 * periods.max), "pitch (cmndf)")?;
    let p = Params {
        frames: frames as u32,
        frame_length: frame_length as u32,
        hop: hop as u32,
        min_period: periods.min as u32,
        max_period: periods.max as u32,
        sig_width: signal.width(),
        sig_shift: signal.width().trailing_zeros(),
        periods: periods.len() as u32,
        ..Default::default()
    };
    step.dispatch_bound(&CMNDF, &[], &[signal.into(), clips.into(), frame_clip.into(), out.into()], bytemuck::bytes_of(&p), [frames as u32, 1, 1], "pitch.cmndf")
}

/// Records yin's f0 (Hz) of every frame from its difference function `cmndf` [frames,
/// periods.len()] into `f0` [frames].
pub fn yin(step: &mut Step, cmndf: &Tensor, periods: Periods, sample_rate: f64, f0: &Tensor) -> Result<()> {
    let frames = f0.len();
    if cmndf.len() != frames * periods.len() || periods.len() < 2 {
        bail!("yin: cmndf {:?} is not [{frames}, {}]", cmndf.shape(), periods.len());
    }
    if frames == 0 {
        return Ok(());
    }
    super::check_loop_budget(step.gpu(), periods.len(), "yin")?;
    let p = Params { frames: frames as u32, min_period: periods.min as u32, max_period: periods.max as u32, periods: periods.len() as u32, sample_rate: sample_rate as f32, threshold: YIN_THRESHOLD as f32, ..Default::default() };
    step.dispatch(&YIN_SELECT, &[], &[cmndf, f0], bytemuck::bytes_of(&p), [super::groups(frames, 64)?, 1, 1], "pitch.yin")
}

/// The frames of one clip as pitch reads them: `frame_length` samples centred on t * hop, zero
/// outside the clip.
pub fn frames_of(clip: &[f32], frame_length: usize, hop: usize) -> Vec<Vec<f64>> {
    (0..1 + clip.len() / hop)
        .map(|t| {
            let origin = (t * hop) as i64 - (frame_length / 2) as i64;
            (0..frame_length as i64).map(|m| usize::try_from(origin + m).ok().and_then(|s| clip.get(s)).map_or(0.0, |&v| v as f64)).collect()
        })
        .collect()
}

/// Float64 reference of [`cmndf`] for one frame.
pub fn cmndf_reference(frame: &[f64], periods: Periods) -> Vec<f64> {
    let l = frame.len();
    let acf = |k: usize| (0..l - k).map(|m| frame[m] * frame[m + k]).sum::<f64>();
    let acf0 = acf(0);
    let mut energy = 0.0;
    let mut diff = vec![0.0; periods.max + 1];
    for (k, d) in diff.iter_mut().enumerate().skip(1) {
        energy += frame[k - 1] * frame[k - 1];
        *d = 2.0 * (acf0 - acf(k)) - energy;
    }
    let mut running = 0.0;
    let mut out = Vec::with_capacity(periods.len());
    for (k, d) in diff.iter().enumerate().skip(1) {
        running += d;
        if k >= periods.min {
            out.push(d / (running / k as f64 + f32::MIN_POSITIVE as f64));
        }
    }
    out
}

/// Float64 reference of [`yin`]'s choice for one frame's difference function: f0 in Hz.
pub fn yin_reference(cmndf: &[f64], periods: Periods, sample_rate: f64) -> f64 {
    let n = cmndf.len();
    let trough = |i: usize| match i {
        0 => cmndf[0] < cmndf[1],
        i if i == n - 1 => cmndf[i] < cmndf[i - 1],
        i => cmndf[i] < cmndf[i - 1] && cmndf[i] <= cmndf[i + 1],
    };
    let global_min = (0..n).fold(0, |best, i| if cmndf[i] < cmndf[best] { i } else { best });
    let chosen = (0..n).find(|&i| cmndf[i] < YIN_THRESHOLD && trough(i)).unwrap_or(global_min);
    let shift = if chosen == 0 || chosen == n - 1 {
        0.0
    } else {
        let a = cmndf[chosen + 1] + cmndf[chosen - 1] - 2.0 * cmndf[chosen];
        let b = (cmndf[chosen + 1] - cmndf[chosen - 1]) / 2.0;
        if b.abs() >= a.abs() { 0.0 } else { -b / a }
    };
    sample_rate / ((periods.min + chosen) as f64 + shift)
}
