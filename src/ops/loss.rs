//! Softmax cross-entropy with class weights, fused with its gradient (shaders/loss.wgsl).

use crate::gpu::{ShaderFile, Access, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const LOSS_WGSL: ShaderFile = ShaderFile {
    name: "loss.wgsl",
    source: include_str!("../../shaders/loss.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const SOFTMAX_CE: KernelSpec = KernelSpec {
    shader: &LOSS_WGSL,
    entry: "softmax_cross_entropy",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    classes: u32,
    _pad: [u32; 2],
}

/// Per-row losses [batch] and dlogits [batch, classes] (the gradient of the batch mean).
pub fn softmax_cross_entropy(step: &mut Step, logits: &Tensor, labels: &Tensor, class_weight: &Tensor, loss: &Tensor, dlogits: &Tensor) -> Result<()> {
    let [batch, classes] = logits.shape()[..] else { bail!("logits must be [batch, classes], got {:?}", logits.shape()) };
    if labels.len() != batch || class_weight.len() != classes || loss.len() != batch || dlogits.len() != batch * classes {
        bail!("softmax_cross_entropy: labels {:?}, weights {:?}, loss {:?}, dlogits {:?} for logits {:?}", labels.shape(), class_weight.shape(), loss.shape(), dlogits.shape(), logits.shape());
    }
    let p = Params { batch: batch as u32, classes: classes as u32, _pad: [0; 2] };
    let grid = [super::groups(batch, 64)?, 1, 1];
    step.dispatch(&SOFTMAX_CE, &[], &[logits, labels, class_weight, loss, dlogits], bytemuck::bytes_of(&p), grid, "loss.softmax_ce")
}

/// Float64 reference: (per-row losses, dlogits).
pub fn reference(logits: &[f64], labels: &[u32], class_weight: &[f64], classes: usize) -> (Vec<f64>, Vec<f64>) {
    let batch = labels.len();
    let mut loss = Vec::with_capacity(batch);
    let mut grad = Vec::with_capacity(batch * classes);
    for (i, &y) in labels.iter().enumerate() {
        let z = &logits[i * classes..(i + 1) * classes];
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let w = class_weight[y as usize];
        loss.push(-w * (z[y as usize] - m - log_sum));
        for (j, v) in z.iter().enumerate() {
            let p = (v - m - log_sum).exp();
            grad.push(w * (p - if j == y as usize { 1.0 } else { 0.0 }) / batch as f64);
        }
    }
    (loss, grad)
}
