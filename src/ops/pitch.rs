//! Pitch (shaders/pitch.wgsl) as librosa 0.11's yin and pyin compute it: the cumulative mean
//! normalised difference function of every frame, yin's choice of period in it, and pyin's
//! observation probabilities and voiced probability. Float64 references beside each.

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
const PYIN_VITERBI: KernelSpec = KernelSpec {
    shader: &PITCH_WGSL,
    entry: "pyin_viterbi",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::Read],
};
const PYIN_BACKTRACK: KernelSpec = KernelSpec { shader: &PITCH_WGSL, entry: "pyin_backtrack", bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite] };
const PYIN_OBSERVE: KernelSpec = KernelSpec { shader: &PITCH_WGSL, entry: "pyin_observe", bindings: &[Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite] };

/// librosa.pyin's defaults.
pub const N_THRESHOLDS: usize = 100;
pub const BETA_PARAMETERS: (f64, f64) = (2.0, 18.0);
pub const BOLTZMANN_PARAMETER: f64 = 2.0;
pub const NO_TROUGH_PROB: f64 = 0.01;
pub const BINS_PER_SEMITONE: usize = 10;
/// The most troughs and pitch bins the observation kernel holds per frame.
pub const MAX_TROUGHS: usize = 512;
pub const MAX_PITCH_BINS: usize = 1024;

/// C2 and C7, the range the pitch features use (librosa.note_to_hz).
pub const FMIN: f64 = 65.406_391_325_149_66;
pub const FMAX: f64 = 2_093.004_522_404_789;
/// librosa.yin's trough_threshold.
pub const YIN_THRESHOLD: f64 = 0.1;
/// The longest frame the kernel holds in workgroup memory, and the most lags (max period + 1).
pub const MAX_FRAME: usize = 2048;
pub const MAX_LAGS: usize = 1024;

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
        if max >= MAX_LAGS {
            bail!("pitch: periods up to {max} samples ({fmin:.1} Hz at {sample_rate} Hz) are more than the {} the pitch kernel holds; lower the sample rate", MAX_LAGS - 1);
        }
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

/// How pitch frames a clip: frames of `length` samples centred on t * hop, zero outside the
/// clip (librosa's center=True, pad_mode "constant"), and the periods searched in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    pub length: usize,
    pub hop: usize,
    pub periods: Periods,
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
    fmin: f32,
    no_trough_prob: f32,
    pitch_bins: u32,
    width: u32,
    chunk_start: u32,
    chunk_frames: u32,
    clips: u32,
    log_tiny: f32,
    log_init: f32,
    _pad: u32,
}

/// Invocations of the cmndf and pyin_observe workgroups (WG in the shader): 64 on GPUs, 16 on
/// CPU adapters, where a workgroup's start costs in proportion to its lanes and the lanes run in
/// turn anyway (pyin's observations 1.35x faster on lavapipe, the same values).
pub fn pitch_lanes(gpu: &crate::gpu::Gpu) -> usize {
    if gpu.is_cpu() { PITCH_LANES[0] } else { PITCH_LANES[1] }
}

/// The widths [`pitch_lanes`] chooses from (the selftest runs both).
pub const PITCH_LANES: [usize; 2] = [16, 64];

/// Records the cumulative mean normalised difference function of every frame (`frame_clip`
/// [frames], `clips` [clips, 4]: start sample, samples, first frame, frames) into `out`
/// [frames, periods.len()].
pub fn cmndf(step: &mut Step, signal: &Texture, clips: &Tensor, frame_clip: &Tensor, framing: Framing, out: &Tensor) -> Result<()> {
    let lanes = pitch_lanes(step.gpu());
    cmndf_with(step, signal, clips, frame_clip, framing, out, lanes)
}

/// [`cmndf`] with `lanes` invocations a workgroup (one of [`PITCH_LANES`]).
pub fn cmndf_with(step: &mut Step, signal: &Texture, clips: &Tensor, frame_clip: &Tensor, framing: Framing, out: &Tensor, lanes: usize) -> Result<()> {
    if !PITCH_LANES.contains(&lanes) {
        bail!("cmndf: {lanes} lanes a workgroup; the kernel takes {PITCH_LANES:?}");
    }
    let Framing { length: frame_length, hop, periods } = framing;
    let frames = frame_clip.len();
    if out.len() != frames * periods.len() || !clips.len().is_multiple_of(4) || hop == 0 || frame_length > MAX_FRAME || periods.max >= frame_length || periods.min == 0 {
        bail!("cmndf: out {:?}, clips {:?}, frame length {frame_length}, hop {hop}, periods {periods:?} do not match {frames} frames", out.shape(), clips.shape());
    }
    if frames == 0 {
        return Ok(());
    }
    // One invocation's loops: the frame's load and the energy's tree, the products of its
    // sixteen lags (four samples a step) in each pass over the lags, the prefix sums and the
    // write-back.
    let passes = periods.max.div_ceil(16 * lanes);
    super::check_loop_budget(step.gpu(), frame_length / lanes + 64 + passes * (frame_length / 4 + 20) + periods.max / 2 + periods.max / lanes + 8, "pitch (cmndf)")?;
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
    step.dispatch_bound(&CMNDF, &[("WG", lanes as f64)], &[signal.into(), clips.into(), frame_clip.into(), out.into()], bytemuck::bytes_of(&p), [frames as u32, 1, 1], "pitch.cmndf")
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
        // librosa zeroes the first row of its running energy before it subtracts that row for
        // lag 1: its d(1) keeps y(0)^2.
        *d = 2.0 * (acf0 - acf(k)) - if k == 1 { 0.0 } else { energy };
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
    let global_min = (0..n).fold(0, |best, i| if cmndf[i] < cmndf[best] { i } else { best });
    let chosen = (0..n).find(|&i| cmndf[i] < YIN_THRESHOLD && is_trough(cmndf, i)).unwrap_or(global_min);
    sample_rate / ((periods.min + chosen) as f64 + parabolic_shift(cmndf, chosen))
}

/// librosa.util.localmin at `i` with pitch's edges: the first value is a trough when below the
/// second, the last when below the one before it.
fn is_trough(x: &[f64], i: usize) -> bool {
    let last = x.len() - 1;
    match i {
        0 => x[0] < x[1],
        i if i == last => x[i] < x[i - 1],
        i => x[i] < x[i - 1] && x[i] <= x[i + 1],
    }
}

/// librosa's parabolic interpolation at `i`: the optimum of the parabola through i - 1, i,
/// i + 1, relative to i; 0 at the ends and where it lies a bin or more away.
fn parabolic_shift(x: &[f64], i: usize) -> f64 {
    if i == 0 || i == x.len() - 1 {
        return 0.0;
    }
    let a = x[i + 1] + x[i - 1] - 2.0 * x[i];
    let b = (x[i + 1] - x[i - 1]) / 2.0;
    if b.abs() >= a.abs() { 0.0 } else { -b / a }
}

/// pyin's pitch bins between `fmin` and `fmax`: floor(120 log2(fmax / fmin)) + 1 (601 for C2-C7).
pub fn pitch_bins(fmin: f64, fmax: f64) -> usize {
    (12.0 * BINS_PER_SEMITONE as f64 * (fmax / fmin).log2()).floor() as usize + 1
}

/// pyin's thresholds: numpy.linspace(0, 1, 101)[1:].
fn thresholds() -> Vec<f64> {
    (1..=N_THRESHOLDS).map(|k| if k == N_THRESHOLDS { 1.0 } else { k as f64 * (1.0 / N_THRESHOLDS as f64) }).collect()
}

/// The beta(2, 18) distribution function (scipy.stats.beta.cdf; for integer parameters a
/// finite sum).
fn beta_cdf(x: f64) -> f64 {
    let (a, b) = (BETA_PARAMETERS.0 as usize, BETA_PARAMETERS.1 as usize);
    let n = a + b - 1;
    let choose = |n: usize, k: usize| (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64);
    1.0 - (0..a).map(|j| choose(n, j) * x.powi(j as i32) * (1.0 - x).powi((n - j) as i32)).sum::<f64>()
}

/// The mass of the beta prior on each threshold's interval (numpy.diff of its cdf).
fn beta_probs() -> Vec<f64> {
    let t: Vec<f64> = std::iter::once(0.0).chain(thresholds()).collect();
    t.windows(2).map(|w| beta_cdf(w[1]) - beta_cdf(w[0])).collect()
}

/// What the observation kernel reads: the thresholds rounded up to float32 (so that a float32
/// height is below one exactly when it is below the float64 threshold), the beta masses, and
/// their prefix sums.
pub fn observation_priors() -> Vec<f32> {
    let up = |t: f64| {
        let v = t as f32;
        if (v as f64) < t { f32::from_bits(v.to_bits() + 1) } else { v }
    };
    let beta = beta_probs();
    let mut prefix = vec![0.0];
    for b in &beta {
        prefix.push(prefix.last().unwrap() + b);
    }
    thresholds().into_iter().map(up).chain(beta.iter().map(|&b| b as f32)).chain(prefix.iter().map(|&s| s as f32)).collect()
}

/// Records pyin's observation probabilities of the voiced pitch bins `observed` [frames,
/// pitch_bins] and each frame's voiced probability `voiced` [frames] from the difference
/// function `cmndf` [frames, periods.len()]; `priors` is [`observation_priors`] on the device.
pub fn pyin_observe(step: &mut Step, cmndf: &Tensor, periods: Periods, sample_rate: f64, priors: &Tensor, observed: &Tensor, voiced: &Tensor) -> Result<()> {
    let lanes = pitch_lanes(step.gpu());
    pyin_observe_with(step, cmndf, periods, sample_rate, priors, observed, voiced, lanes)
}

/// [`pyin_observe`] with `lanes` invocations a workgroup (one of [`PITCH_LANES`]).
#[allow(clippy::too_many_arguments)]
pub fn pyin_observe_with(step: &mut Step, cmndf: &Tensor, periods: Periods, sample_rate: f64, priors: &Tensor, observed: &Tensor, voiced: &Tensor, lanes: usize) -> Result<()> {
    if !PITCH_LANES.contains(&lanes) {
        bail!("pyin: {lanes} lanes a workgroup; the kernel takes {PITCH_LANES:?}");
    }
    let frames = voiced.len();
    let bins = pitch_bins(FMIN, FMAX);
    if cmndf.len() != frames * periods.len() || observed.len() != frames * bins || priors.len() != 3 * N_THRESHOLDS + 1 {
        bail!("pyin: cmndf {:?}, observed {:?}, priors {:?} do not match {frames} frames of {} periods and {bins} bins", cmndf.shape(), observed.shape(), priors.shape(), periods.len());
    }
    if periods.len() > 2 * MAX_TROUGHS || bins > MAX_PITCH_BINS {
        bail!("pyin: {} periods per frame are more than the kernel holds ({}); lower the sample rate or n_fft", periods.len(), 2 * MAX_TROUGHS);
    }
    if frames == 0 {
        return Ok(());
    }
    super::check_loop_budget(step.gpu(), periods.len() + 4 * MAX_TROUGHS + 3 * N_THRESHOLDS + bins, "pyin")?;
    let p = Params {
        frames: frames as u32,
        min_period: periods.min as u32,
        max_period: periods.max as u32,
        periods: periods.len() as u32,
        sample_rate: sample_rate as f32,
        fmin: FMIN as f32,
        no_trough_prob: NO_TROUGH_PROB as f32,
        pitch_bins: bins as u32,
        ..Default::default()
    };
    step.dispatch(&PYIN_OBSERVE, &[("WG", lanes as f64)], &[cmndf, priors, observed, voiced], bytemuck::bytes_of(&p), [frames as u32, 1, 1], "pitch.pyin_observe")
}

/// What [`pyin_observe_reference`] finds for one frame.
pub struct Observation {
    /// The observation probabilities of the voiced pitch bins.
    pub observed: Vec<f64>,
    pub voiced: f64,
    /// A candidate's f0 lies within 1e-4 of a bin's rounding boundary, where float32 and
    /// float64 may bin it differently.
    pub near_boundary: bool,
}

/// Float64 reference of [`pyin_observe`] for one frame's difference function (librosa's
/// __pyin_helper).
pub fn pyin_observe_reference(cmndf: &[f64], periods: Periods, sample_rate: f64) -> Observation {
    let n = cmndf.len();
    let bins = pitch_bins(FMIN, FMAX);
    let mut observed = vec![0.0; bins + 1];
    let troughs: Vec<usize> = (0..n).filter(|&i| is_trough(cmndf, i)).collect();
    if troughs.is_empty() {
        return Observation { observed: observed[..bins].to_vec(), voiced: 0.0, near_boundary: false };
    }
    let thresholds = thresholds();
    let beta = beta_probs();
    let below = |t: usize, j: usize| (cmndf[troughs[t]] as f32 as f64) < thresholds[j];
    let lambda = BOLTZMANN_PARAMETER;
    let mut probs = vec![0.0; troughs.len()];
    for (j, beta_j) in beta.iter().enumerate() {
        let count = (0..troughs.len()).filter(|&t| below(t, j)).count();
        let mut rank = 0;
        for (t, prob) in probs.iter_mut().enumerate() {
            if below(t, j) {
                let prior = (1.0 - (-lambda).exp()) * (-lambda * rank as f64).exp() / (1.0 - (-lambda * count as f64).exp());
                *prob += prior * beta_j;
                rank += 1;
            }
        }
    }
    let global_min = (0..troughs.len()).fold(0, |best, t| if cmndf[troughs[t]] < cmndf[troughs[best]] { t } else { best });
    let not_below = (0..N_THRESHOLDS).filter(|&j| !below(global_min, j)).count();
    probs[global_min] += NO_TROUGH_PROB * beta[..not_below].iter().sum::<f64>();
    let mut near_boundary = false;
    for (t, &i) in troughs.iter().enumerate() {
        if probs[t] == 0.0 {
            continue;
        }
        let f0 = sample_rate / ((periods.min + i) as f64 + parabolic_shift(cmndf, i));
        let position = 12.0 * BINS_PER_SEMITONE as f64 * (f0 / FMIN).log2();
        near_boundary |= (position - position.floor() - 0.5).abs() < 1e-4;
        let bin = position.round_ties_even().clamp(0.0, bins as f64) as usize;
        observed[bin] = probs[t];
    }
    observed.truncate(bins);
    let voiced = observed.iter().sum::<f64>().clamp(0.0, 1.0);
    Observation { observed, voiced, near_boundary }
}

/// librosa.pyin's max_transition_rate (octaves per second) and switch_prob.
pub const MAX_TRANSITION_RATE: f64 = 35.92;
pub const SWITCH_PROB: f64 = 0.01;
/// float64's smallest normal value, which librosa's Viterbi adds before every log.
pub const TINY64: f64 = f64::MIN_POSITIVE;
/// The most states the Viterbi kernel's workgroup holds (shaders/pitch.wgsl, MAX_STATES).
const VITERBI_MAX_STATES: usize = 1216;
/// MAX_PER_LANE in the shader: the targets one invocation decodes in a frame.
const VITERBI_MAX_TARGETS_PER_LANE: usize = 32;

/// Invocations of the Viterbi kernel's workgroup (V_WG in the shader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViterbiLanes {
    /// 256: for GPUs, where a clip's frame is latency-bound and barriers are cheap.
    Wide = 256,
    /// 64: for CPU adapters, where each barrier resumes every group of lanes in turn (1.4x
    /// faster on lavapipe than 256, the same values).
    Narrow = 64,
}

impl ViterbiLanes {
    /// The kernel's width for a device.
    pub fn for_device(gpu: &crate::gpu::Gpu) -> ViterbiLanes {
        if gpu.is_cpu() { ViterbiLanes::Narrow } else { ViterbiLanes::Wide }
    }
}

/// COARSE in the shader: the stride of the Viterbi's first level.
const VITERBI_COARSE: usize = 32;

/// The Viterbi kernel's levels, as the shader walks them: (stride, the bins of one half it
/// decodes). The first holds every bin q with q + 1 a multiple of 32, each level below the bins
/// with q + 1 an odd multiple of its stride.
fn viterbi_levels(bins: usize) -> Vec<(usize, Vec<usize>)> {
    let coarse = (VITERBI_COARSE, (1..=bins / VITERBI_COARSE).map(|m| VITERBI_COARSE * m - 1).collect());
    let finer = (0..VITERBI_COARSE.trailing_zeros()).rev().map(|k| {
        let stride = 1 << k;
        (stride, (0..(bins / stride).div_ceil(2)).map(|m| stride * (2 * m + 1) - 1).collect())
    });
    std::iter::once(coarse).chain(finer).collect()
}

/// The targets one invocation of the Viterbi kernel decodes in a frame: each level's bins of
/// both halves, spread over the lanes.
fn viterbi_targets_per_lane(bins: usize, lanes: ViterbiLanes) -> usize {
    viterbi_levels(bins).iter().map(|(_, targets)| (2 * targets.len()).div_ceil(lanes as usize)).sum()
}

/// The width of pyin's transition band at this hop: round(35.92 x 12 x hop / sr) semitones per
/// frame at 10 bins each, plus one.
pub fn transition_width(sample_rate: f64, hop: usize) -> usize {
    (MAX_TRANSITION_RATE * 12.0 * hop as f64 / sample_rate).round_ties_even() as usize * BINS_PER_SEMITONE + 1
}

/// scipy's triang(width), symmetric (fftbins=False): the band librosa's transition_local uses.
fn triangle(width: usize) -> Vec<f64> {
    let centre = (width as f64 - 1.0) / 2.0;
    let denominator = if width % 2 == 1 { (width as f64 + 1.0) / 2.0 } else { width as f64 / 2.0 };
    (0..width).map(|n| 1.0 - (n as f64 - centre).abs() / denominator).collect()
}

/// Row i of the band before normalisation: the triangle `w` centred on bin i, as (column,
/// weight) where it lies inside the bins (wrap=False cuts the band at both ends).
fn band_row(w: &[f64], i: usize, bins: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
    let half = w.len() / 2;
    w.iter().enumerate().filter_map(move |(n, &v)| (i + n).checked_sub(half).filter(|&j| j < bins).map(|j| (j, v)))
}

/// Each row's sum of the triangle where it lies inside the bins: transition_local's
/// normalisation.
fn row_sums(bins: usize, width: usize) -> Vec<f64> {
    let w = triangle(width);
    (0..bins).map(|i| band_row(&w, i, bins).map(|(_, v)| v).sum()).collect()
}

/// librosa.sequence.transition_local(bins, width, window="triangle", wrap=False): row i the
/// triangle centred on i, cut at the ends and renormalised. Row-major [bins][bins], float64.
fn transition_local(bins: usize, width: usize) -> Vec<Vec<f64>> {
    let (w, sums) = (triangle(width), row_sums(bins, width));
    (0..bins)
        .map(|i| {
            let mut row = vec![0.0; bins];
            for (j, v) in band_row(&w, i, bins) {
                row[j] = v / sums[i];
            }
            row
        })
        .collect()
}

/// What the Viterbi kernel reads: a band transition from source s to q is log(p w(d) /
/// rowsum(s)) with d = s - q + width / 2 (the tiny librosa adds is far below it), so it is given
/// as log w [width], log rowsum [bins], then log p within a voicing and across it; then, from
/// the next multiple of four, log w again four weights an element for the band search: padded
/// by four (f32::MIN) before it and after, in four copies shifted by 0..3 weights (copy r's
/// element i holds the padded weights 4i + r ..= 4i + r + 3), so that the weights of any four
/// consecutive sources are one aligned element. Float32 values of the same float64 logarithms
/// in both places.
pub fn transition_band(bins: usize, width: usize) -> Vec<f32> {
    let logs = |v: Vec<f64>| v.into_iter().map(|x| x.ln() as f32);
    let log_w: Vec<f32> = logs(triangle(width)).collect();
    let mut band: Vec<f32> = log_w.iter().copied().chain(logs(row_sums(bins, width))).chain([(1.0 - SWITCH_PROB).ln() as f32, SWITCH_PROB.ln() as f32]).collect();
    band.resize(4 * band_table_offset(bins, width), 0.0);
    let padded = |x: usize| x.checked_sub(4).and_then(|i| log_w.get(i)).copied().unwrap_or(f32::MIN);
    for shift in 0..4 {
        band.extend((0..4 * band_blocks(width)).map(|n| padded(n + shift)));
    }
    band
}

/// The length of [`transition_band`].
pub fn transition_band_len(bins: usize, width: usize) -> usize {
    4 * (band_table_offset(bins, width) + 4 * band_blocks(width))
}

/// Where the shifted copies start (in elements of four), and each copy's elements: as the
/// shader's band_table() and band_blocks() compute them.
fn band_table_offset(bins: usize, width: usize) -> usize {
    (width + bins + 2).div_ceil(4)
}

fn band_blocks(width: usize) -> usize {
    width.div_ceil(4) + 1
}

/// Records pyin's decoding: from the voiced observation probabilities `observed` [frames,
/// bins] and the voiced probabilities `voiced` [frames] of the clips of `clips` [clips, 4]
/// (first frame, frames in its last two columns), the f0 of every frame into `f0` [frames]
/// (Hz; 0 where the decoded state is unvoiced). `band` is [`transition_band`] on the device.
#[allow(clippy::too_many_arguments)]
pub fn pyin_decode(step: &mut Step, observed: &Tensor, voiced: &Tensor, clips: &Tensor, max_clip_frames: usize, band: &Tensor, width: usize, f0: &Tensor) -> Result<()> {
    let lanes = ViterbiLanes::for_device(step.gpu());
    pyin_decode_with(step, observed, voiced, clips, max_clip_frames, band, width, f0, lanes)
}

/// [`pyin_decode`] with the Viterbi kernel's width chosen by the caller (the selftest runs both).
#[allow(clippy::too_many_arguments)]
pub fn pyin_decode_with(step: &mut Step, observed: &Tensor, voiced: &Tensor, clips: &Tensor, max_clip_frames: usize, band: &Tensor, width: usize, f0: &Tensor, lanes: ViterbiLanes) -> Result<()> {
    let frames = voiced.len();
    let bins = pitch_bins(FMIN, FMAX);
    let n_clips = clips.len() / 4;
    if observed.len() != frames * bins || f0.len() != frames || band.len() != transition_band_len(bins, width) || !clips.len().is_multiple_of(4) || 2 * bins > VITERBI_MAX_STATES {
        bail!("pyin decode: observed {:?}, voiced {:?}, band {:?}, f0 {:?} do not match {frames} frames of {bins} bins", observed.shape(), voiced.shape(), band.shape(), f0.shape());
    }
    if frames == 0 || n_clips == 0 {
        return Ok(());
    }
    let gpu = step.gpu();
    // Frames per dispatch: as many as keep one invocation's loops inside llvmpipe's limit: its
    // targets at every level, each over at most the band and the two half maxima (twice: the
    // search, then the write-back), the reductions, the combination and the pointers.
    let targets = viterbi_targets_per_lane(bins, lanes);
    if targets > VITERBI_MAX_TARGETS_PER_LANE {
        bail!("pyin decode: {bins} bins need {targets} targets an invocation, more than the kernel's {VITERBI_MAX_TARGETS_PER_LANE}");
    }
    let per_frame = targets * (width + 3) + 4 * bins.div_ceil(lanes as usize) + 2 * lanes as usize + 64;
    let chunk = (super::CPU_LOOP_BUDGET / per_frame).max(1);
    super::check_loop_budget(gpu, chunk * per_frame, "pyin decoding")?;
    let values = gpu.empty(&[n_clips, 2 * bins], crate::gpu::DType::F32)?;
    let pointers = gpu.empty(&[frames, bins], crate::gpu::DType::U32)?;
    let base = Params {
        pitch_bins: bins as u32,
        width: width as u32,
        chunk_frames: chunk as u32,
        clips: n_clips as u32,
        fmin: FMIN as f32,
        log_tiny: TINY64.ln() as f32,
        log_init: (1.0 / (2 * bins) as f64 + TINY64).ln() as f32,
        ..Default::default()
    };
    for start in (0..max_clip_frames.max(1)).step_by(chunk) {
        let p = Params { chunk_start: start as u32, ..base };
        step.dispatch(&PYIN_VITERBI, &[("V_WG", lanes as usize as f64)], &[observed, voiced, band, clips, &values, &pointers, band], bytemuck::bytes_of(&p), [n_clips as u32, 1, 1], "pitch.pyin_viterbi")?;
    }
    step.dispatch(&PYIN_BACKTRACK, &[], &[&values, &pointers, clips, f0], bytemuck::bytes_of(&base), [super::groups(n_clips, 64)?, 1, 1], "pitch.pyin_backtrack")
}

/// Float64 reference of [`pyin_decode`] for one clip: librosa.sequence.viterbi over the full
/// transition matrix (every pair of states), then the f0 of each decoded state.
#[allow(clippy::needless_range_loop)]
pub fn pyin_decode_reference(observed: &[Vec<f64>], voiced: &[f64], width: usize) -> Vec<f64> {
    let bins = pitch_bins(FMIN, FMAX);
    let states = 2 * bins;
    let t_local = transition_local(bins, width);
    let log_trans: Vec<Vec<f64>> = (0..states)
        .map(|k| {
            (0..states)
                .map(|j| {
                    let switch = if (k < bins) == (j < bins) { 1.0 - SWITCH_PROB } else { SWITCH_PROB };
                    (switch * t_local[k % bins][j % bins] + TINY64).ln()
                })
                .collect()
        })
        .collect();
    let log_obs = |t: usize, j: usize| if j < bins { (observed[t][j] + TINY64).ln() } else { ((1.0 - voiced[t]) / bins as f64 + TINY64).ln() };
    let n = voiced.len();
    let mut value: Vec<f64> = (0..states).map(|j| log_obs(0, j) + (1.0 / states as f64 + TINY64).ln()).collect();
    let mut pointers = vec![vec![0usize; states]; n];
    for t in 1..n {
        let mut next = vec![0.0; states];
        for j in 0..states {
            let (mut best, mut arg) = (f64::NEG_INFINITY, 0);
            for (k, v) in value.iter().enumerate() {
                let x = v + log_trans[k][j];
                if x > best {
                    best = x;
                    arg = k;
                }
            }
            pointers[t][j] = arg;
            next[j] = best + log_obs(t, j);
        }
        value = next;
    }
    let mut state = (0..states).fold(0, |b, j| if value[j] > value[b] { j } else { b });
    let mut f0 = vec![0.0; n];
    for t in (0..n).rev() {
        f0[t] = if state < bins { FMIN * 2f64.powf(state as f64 / (12 * BINS_PER_SEMITONE) as f64) } else { 0.0 };
        state = pointers[t][state];
    }
    f0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librosa's d(1) keeps y(0)^2 (its running energy's first row is zeroed before lag 1
    /// subtracts it). For an impulse at the frame's start the true difference function is 1 at
    /// every lag; librosa's d(1) is 2, so its cumulative mean at lag k is (k + 1) / k and the
    /// normalised difference k / (k + 1). On speech it decides the global minimum of quiet
    /// frames whose energy lies low (docs/RESULTS.md, "Frame descriptors against librosa").
    #[test]
    fn the_reference_difference_function_keeps_librosa_s_first_lag() {
        let mut frame = vec![0.0; 64];
        frame[0] = 1.0;
        let periods = Periods { min: 2, max: 40 };
        let got = cmndf_reference(&frame, periods);
        for (k, v) in (periods.min..=periods.max).zip(got) {
            let want = k as f64 / (k as f64 + 1.0);
            assert!((v - want).abs() < 1e-12, "lag {k}: {v} against librosa's {want}");
        }
    }

    /// The band search reads the weights of four consecutive sources as one element of the
    /// shifted copies: for every target and every aligned step of its band, the element the
    /// shader computes holds each source's weight, and the band's first part is unchanged.
    #[test]
    fn the_band_table_holds_any_four_consecutive_weights_in_one_element() {
        for (bins, width) in [(601, 71), (601, 141), (37, 11), (5, 3)] {
            let band = transition_band(bins, width);
            assert_eq!(band.len(), transition_band_len(bins, width));
            let half_w = width / 2;
            let log_w: Vec<f32> = triangle(width).into_iter().map(|x| x.ln() as f32).collect();
            assert_eq!(&band[..width], &log_w[..]);
            let (table, blocks) = (band_table_offset(bins, width), band_blocks(width));
            for q in 0..bins {
                let (lo, hi) = (q.saturating_sub(half_w), (q + half_w).min(bins - 1));
                for s4 in (lo & !3..=hi).step_by(4) {
                    let padded = s4 + half_w + 4 - q;
                    let element = 4 * (table + (padded & 3) * blocks + (padded >> 2));
                    for s in (s4..s4 + 4).filter(|s| (lo..=hi).contains(s)) {
                        assert_eq!(band[element + s - s4], log_w[s + half_w - q], "{bins} bins, width {width}: target {q}, source {s}");
                    }
                }
            }
        }
    }

    /// The Viterbi kernel's coarse-to-fine walk: every bin of a half is decoded exactly once,
    /// after both neighbours it searches between (the coarse level searches none), and no
    /// invocation holds more targets than the kernel keeps.
    #[test]
    fn the_viterbi_levels_decode_every_bin_once_after_its_neighbours() {
        for bins in [1usize, 2, 3, 7, 31, 32, 33, 64, 65, 255, 601, 608] {
            let mut level_of = vec![usize::MAX; bins];
            for (level, (stride, targets)) in viterbi_levels(bins).into_iter().enumerate() {
                for q in targets {
                    assert!(q < bins && level_of[q] == usize::MAX, "{bins} bins: bin {q} twice or out of range");
                    if stride < VITERBI_COARSE {
                        for neighbour in [q.checked_sub(stride), Some(q + stride).filter(|&r| r < bins)].into_iter().flatten() {
                            assert!(level_of[neighbour] < level, "{bins} bins: bin {q} at level {level} before its neighbour {neighbour}");
                        }
                    }
                    level_of[q] = level;
                }
            }
            assert!(level_of.iter().all(|&l| l != usize::MAX), "{bins} bins: a bin never decoded");
        }
        assert_eq!(viterbi_targets_per_lane(pitch_bins(FMIN, FMAX), ViterbiLanes::Wide), 9);
        for lanes in [ViterbiLanes::Wide, ViterbiLanes::Narrow] {
            assert!(viterbi_targets_per_lane(VITERBI_MAX_STATES / 2, lanes) <= VITERBI_MAX_TARGETS_PER_LANE, "{lanes:?}");
        }
    }
}
