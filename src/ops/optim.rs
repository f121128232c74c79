//! Fused Adam update with optional clipping by global norm (shaders/optim.wgsl).

use crate::gpu::{ShaderFile, Access, DType, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const OPTIM_WGSL: ShaderFile = ShaderFile {
    name: "optim.wgsl",
    source: include_str!("../../shaders/optim.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const ADAM: KernelSpec = KernelSpec {
    shader: &OPTIM_WGSL,
    entry: "adam",
    bindings: &[Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::Read],
};
const SQ_SUM: KernelSpec = KernelSpec { shader: &OPTIM_WGSL, entry: "grad_sq_sum", bindings: &[Access::Read, Access::ReadWrite] };

/// Adam's hyper-parameters (Keras defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay per step (AdamW); 0 is plain Adam.
    pub weight_decay: f32,
    /// Clip the gradients by their global norm (all of a step's gradient tensors together, as
    /// Keras's `global_clipnorm`) to at most this; 0 does not clip.
    #[serde(default)]
    pub clip_norm: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-7, weight_decay: 0.0, clip_norm: 0.0 }
    }
}

impl Adam {
    /// The bias-corrected rate of step `t` (1-based).
    pub fn lr_t(&self, t: u32) -> f32 {
        let t = t as i32;
        (self.lr as f64 * (1.0 - (self.beta2 as f64).powi(t)).sqrt() / (1.0 - (self.beta1 as f64).powi(t))) as f32
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad0: [u32; 3],
    lr_t: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    decay: f32,
    clip: f32,
    parts: u32,
    _pad1: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SqParams {
    n: u32,
    slot: u32,
    _pad: [u32; 2],
}

/// One parameter tensor's update: its gradient, value and Adam moments.
pub struct Update<'a> {
    pub grad: &'a Tensor,
    pub weight: &'a Tensor,
    pub m: &'a Tensor,
    pub v: &'a Tensor,
}

/// One Adam step `t` (1-based) on every parameter tensor of a model, each with its moment
/// buffers; with `o.clip_norm` > 0 the gradients are first clipped by their global norm
/// (computed on the GPU: no wait for the host).
pub fn adam(step: &mut Step, o: &Adam, t: u32, updates: &[Update]) -> Result<()> {
    for u in updates {
        let n = u.weight.len();
        if u.grad.len() != n || u.m.len() != n || u.v.len() != n || t == 0 {
            bail!("adam: grad {:?}, m {:?}, v {:?} for weight {:?} at step {t}", u.grad.shape(), u.m.shape(), u.v.shape(), u.weight.shape());
        }
    }
    if o.clip_norm < 0.0 || !o.clip_norm.is_finite() {
        bail!("adam: the clipping norm must be a finite value >= 0, not {}", o.clip_norm);
    }
    let gpu = step.gpu();
    let clipping = o.clip_norm > 0.0 && !updates.is_empty();
    let parts = gpu.empty(&[updates.len().max(1)], DType::F32)?;
    if clipping {
        for (slot, u) in updates.iter().enumerate() {
            let n = u.grad.len();
            super::check_loop_budget(gpu, n.div_ceil(256), "adam: a gradient's sum of squares")?;
            let p = SqParams { n: n as u32, slot: slot as u32, _pad: [0; 2] };
            step.dispatch(&SQ_SUM, &[], &[u.grad, &parts], bytemuck::bytes_of(&p), [1, 1, 1], "optim.grad_sq_sum")?;
        }
    }
    for u in updates {
        let n = u.weight.len();
        let p = Params {
            n: n as u32,
            _pad0: [0; 3],
            lr_t: o.lr_t(t),
            b1: o.beta1,
            b2: o.beta2,
            eps: o.eps,
            decay: o.lr * o.weight_decay,
            clip: if clipping { o.clip_norm } else { 0.0 },
            parts: updates.len() as u32,
            _pad1: 0.0,
        };
        let grid = [super::groups(n, 256)?, 1, 1];
        step.dispatch(&ADAM, &[], &[u.grad, u.weight, u.m, u.v, &parts], bytemuck::bytes_of(&p), grid, "optim.adam")?;
    }
    Ok(())
}

/// The factor a step's gradients are scaled by before Adam: clip / max(global norm, clip), 1
/// without clipping (float64 reference).
pub fn clip_scale(o: &Adam, grads: &[&[f64]]) -> f64 {
    if o.clip_norm <= 0.0 {
        return 1.0;
    }
    let norm = grads.iter().flat_map(|g| g.iter()).map(|v| v * v).sum::<f64>().sqrt();
    let clip = o.clip_norm as f64;
    clip / norm.max(clip)
}

/// Float64 reference of one step on (w, m, v).
pub fn reference(o: &Adam, t: u32, g: &[f64], w: &mut [f64], m: &mut [f64], v: &mut [f64]) {
    let (b1, b2) = (o.beta1 as f64, o.beta2 as f64);
    let lr_t = o.lr as f64 * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32));
    for i in 0..w.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        w[i] -= lr_t * m[i] / (v[i].sqrt() + o.eps as f64) + o.lr as f64 * o.weight_decay as f64 * w[i];
    }
}
