//! Inverted dropout from a counter-based hash (shaders/dropout.wgsl): the same (seed, index)
//! gives the same mask in the forward and backward passes, with nothing stored. Training-time
//! input augmentation (time and feature masks, Gaussian noise) from the same kind of hash.

use crate::gpu::{ShaderFile, Access, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const DROPOUT_WGSL: ShaderFile = ShaderFile {
    name: "dropout.wgsl",
    source: include_str!("../../shaders/dropout.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const DROPOUT: KernelSpec = KernelSpec { shader: &DROPOUT_WGSL, entry: "dropout", bindings: &[Access::Read, Access::ReadWrite] };
const AUGMENT: KernelSpec = KernelSpec { shader: &DROPOUT_WGSL, entry: "augment", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const MASK_PADDING: KernelSpec = KernelSpec { shader: &DROPOUT_WGSL, entry: "mask_padding", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    threshold: u32,
    scale: f32,
    row: u32,
    row_full: u32,
    _pad: f32,
}

/// y = x * keep / (1 - rate), keep drawn from (seed, index). Also the backward pass (on dy).
/// `rows`: (elements per example in x, per example at the model's full input length), when x
/// is a batch of sequences cut shorter than that: each element then draws what it would at
/// full length (its index there), so the mask does not depend on the batch's length.
pub fn apply(step: &mut Step, rate: f32, seed: u64, rows: Option<(usize, usize)>, x: &Tensor, y: &Tensor) -> Result<()> {
    if !(0.0..1.0).contains(&rate) || x.len() != y.len() {
        bail!("dropout: rate {rate} must be in [0, 1); x {:?} and y {:?} must match", x.shape(), y.shape());
    }
    let (row, row_full) = rows.unwrap_or((x.len(), x.len()));
    if row == 0 || row > row_full || !x.len().is_multiple_of(row) || (x.len() / row).checked_mul(row_full).is_none_or(|n| n > u32::MAX as usize) {
        bail!("dropout: {} elements are not whole rows of {row} within rows of {row_full}", x.len());
    }
    let p = Params {
        n: x.len() as u32,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        threshold: (rate as f64 * 4294967296.0).round().min(u32::MAX as f64) as u32,
        scale: 1.0 / (1.0 - rate),
        row: row as u32,
        row_full: row_full as u32,
        _pad: 0.0,
    };
    step.dispatch(&DROPOUT, &[], &[x, y], bytemuck::bytes_of(&p), [super::groups(x.len(), 256)?, 1, 1], "dropout")
}

fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The reference mask: whether element `i` is kept.
pub fn reference_keep(rate: f32, seed: u64, i: u32) -> bool {
    let threshold = (rate as f64 * 4294967296.0).round().min(u32::MAX as f64) as u32;
    pcg(pcg(i ^ seed as u32).wrapping_add((seed >> 32) as u32)) >= threshold
}

/// Training-time augmentation of standardised inputs [batch, steps, channels] within each
/// example's valid steps: one run of up to `time_mask` steps and one of up to `feature_mask`
/// channels set to zero (the training mean; SpecAugment's masks), and Gaussian noise of standard
/// deviation `noise` elsewhere. Drawn fresh for every batch; all zero: off.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Augment {
    pub noise: f32,
    pub time_mask: u32,
    pub feature_mask: u32,
}

impl Augment {
    pub fn is_on(&self) -> bool {
        self.noise > 0.0 || self.time_mask > 0 || self.feature_mask > 0
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AugParams {
    batch: u32,
    steps: u32,
    channels: u32,
    seed_lo: u32,
    seed_hi: u32,
    time_mask: u32,
    feature_mask: u32,
    noise: f32,
    full_steps: u32,
    _pad: [u32; 3],
}

/// y = `a` applied to x [batch, steps, channels] with `lengths` [batch] u32 valid steps; the
/// noise is drawn by (example, step, channel) in a batch of `full_steps` (the model's input
/// length), so a clip's draws do not depend on where its batch was cut.
#[allow(clippy::too_many_arguments)]
pub fn augment(step: &mut Step, a: &Augment, seed: u64, (batch, steps, channels): (usize, usize, usize), full_steps: usize, x: &Tensor, lengths: &Tensor, y: &Tensor) -> Result<()> {
    let n = batch * steps * channels;
    if x.len() != n || y.len() != n || lengths.len() != batch || channels == 0 || !(a.noise >= 0.0 && a.noise.is_finite()) || full_steps < steps {
        bail!("augment: x {:?}, y {:?}, lengths {:?} for [{batch}, {steps} of {full_steps}, {channels}], noise {}", x.shape(), y.shape(), lengths.shape(), a.noise);
    }
    if (batch * full_steps * channels).checked_mul(2).is_none_or(|n| n > u32::MAX as usize) {
        bail!("augment: [{batch}, {full_steps}, {channels}] is past the noise's 32-bit draw index");
    }
    let p = AugParams { batch: batch as u32, steps: steps as u32, channels: channels as u32, seed_lo: seed as u32, seed_hi: (seed >> 32) as u32, time_mask: a.time_mask, feature_mask: a.feature_mask, noise: a.noise, full_steps: full_steps as u32, _pad: [0; 3] };
    step.dispatch(&AUGMENT, &[], &[x, lengths, y], bytemuck::bytes_of(&p), [super::groups(n, 256)?, 1, 1], "augment")
}

/// y = x with every step past each example's length zeroed (x [batch, steps, channels],
/// `lengths` [batch] u32). Also its own backward pass (on dy).
pub fn mask_padding(step: &mut Step, (batch, steps, channels): (usize, usize, usize), x: &Tensor, lengths: &Tensor, y: &Tensor) -> Result<()> {
    let n = batch * steps * channels;
    if x.len() != n || y.len() != n || lengths.len() != batch {
        bail!("mask_padding: x {:?}, y {:?}, lengths {:?} for [{batch}, {steps}, {channels}]", x.shape(), y.shape(), lengths.shape());
    }
    let p = AugParams { batch: batch as u32, steps: steps as u32, channels: channels as u32, seed_lo: 0, seed_hi: 0, time_mask: 0, feature_mask: 0, noise: 0.0, full_steps: steps as u32, _pad: [0; 3] };
    step.dispatch(&MASK_PADDING, &[], &[x, lengths, y], bytemuck::bytes_of(&p), [super::groups(n, 256)?, 1, 1], "mask_padding")
}

/// Float64 reference of `mask_padding`.
pub fn reference_mask_padding((batch, steps, channels): (usize, usize, usize), x: &[f32], lengths: &[u32]) -> Vec<f64> {
    (0..batch * steps * channels).map(|e| if (e / channels) % steps < lengths[e / (steps * channels)] as usize { x[e] as f64 } else { 0.0 }).collect()
}

/// Float64 reference of `augment` (the same draws).
pub fn reference_augment(a: &Augment, seed: u64, (batch, steps, channels): (usize, usize, usize), full_steps: usize, x: &[f32], lengths: &[u32]) -> Vec<f64> {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    let example = |b: u32, k: u32| pcg(pcg((b * 4 + k) ^ hi).wrapping_add(lo).wrapping_add(0x9e3779b9));
    let element = |i: u32| pcg(pcg(i ^ lo).wrapping_add(hi));
    let mut y: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for (b, &valid) in lengths.iter().enumerate().take(batch) {
        let len = (valid as usize).min(steps);
        if len == 0 {
            continue;
        }
        let b32 = b as u32;
        let (tw, t0) = ((example(b32, 0) % (a.time_mask + 1)) as usize, example(b32, 1) as usize % len);
        let (fw, f0) = ((example(b32, 2) % (a.feature_mask + 1)) as usize, example(b32, 3) as usize % channels);
        for t in 0..len {
            for c in 0..channels {
                let (e, drawn) = ((b * steps + t) * channels + c, ((b * full_steps + t) * channels + c) as u32);
                let masked = (t >= t0 && t - t0 < tw) || (c >= f0 && c - f0 < fw);
                let u1 = ((element(2 * drawn) >> 8) as f64 + 1.0) / 16777216.0;
                let u2 = (element(2 * drawn + 1) >> 8) as f64 / 16777216.0;
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                y[e] = if masked { 0.0 } else { x[e] as f64 + a.noise as f64 * z };
            }
        }
    }
    y
}
