//! Fused Adam update (shaders/optim.wgsl).

use crate::gpu::{Access, KernelSpec, OPTIM_WGSL, Step, Tensor};
use anyhow::{Result, bail};

const ADAM: KernelSpec =
    KernelSpec { shader: &OPTIM_WGSL, entry: "adam", bindings: &[Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite] };

/// Adam's hyper-parameters (Keras defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay per step (AdamW); 0 is plain Adam.
    pub weight_decay: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-7, weight_decay: 0.0 }
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
    _pad1: [f32; 3],
}

/// One Adam step `t` (1-based) on `weight` with its moment buffers.
pub fn adam(step: &mut Step, o: &Adam, t: u32, grad: &Tensor, weight: &Tensor, m: &Tensor, v: &Tensor) -> Result<()> {
    let n = weight.len();
    if grad.len() != n || m.len() != n || v.len() != n || t == 0 {
        bail!("adam: grad {:?}, m {:?}, v {:?} for weight {:?} at step {t}", grad.shape(), m.shape(), v.shape(), weight.shape());
    }
    let p = Params { n: n as u32, _pad0: [0; 3], lr_t: o.lr_t(t), b1: o.beta1, b2: o.beta2, eps: o.eps, decay: o.lr * o.weight_decay, _pad1: [0.0; 3] };
    let grid = [super::groups(n, 256)?, 1, 1];
    step.dispatch(&ADAM, &[], &[grad, weight, m, v], bytemuck::bytes_of(&p), grid, "optim.adam")
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
