//! Inverted dropout from a counter-based hash (shaders/dropout.wgsl): the same (seed, index)
//! gives the same mask in the forward and backward passes, with nothing stored.

use crate::gpu::{Access, DROPOUT_WGSL, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

const DROPOUT: KernelSpec = KernelSpec { shader: &DROPOUT_WGSL, entry: "dropout", bindings: &[Access::Read, Access::ReadWrite] };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    threshold: u32,
    scale: f32,
    _pad: [f32; 3],
}

/// y = x * keep / (1 - rate), keep drawn from (seed, index). Also the backward pass (on dy).
pub fn apply(step: &mut Step, rate: f32, seed: u64, x: &Tensor, y: &Tensor) -> Result<()> {
    if !(0.0..1.0).contains(&rate) || x.len() != y.len() {
        bail!("dropout: rate {rate} must be in [0, 1); x {:?} and y {:?} must match", x.shape(), y.shape());
    }
    let p = Params {
        n: x.len() as u32,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        threshold: (rate as f64 * 4294967296.0).round().min(u32::MAX as f64) as u32,
        scale: 1.0 / (1.0 - rate),
        _pad: [0.0; 3],
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
