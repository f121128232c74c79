//! Column sums and batch normalisation over [rows, cols] (shaders/norm.wgsl).

use crate::gpu::{Access, KernelSpec, NORM_WGSL, Step, Tensor};
use anyhow::{Result, bail};

const BINDINGS: &[Access] =
    &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite];
const COLUMN_SUM: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "column_sum", bindings: BINDINGS };
const STATS: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "bn_stats", bindings: BINDINGS };
const FORWARD: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "bn_forward", bindings: BINDINGS };
const GRAD_STATS: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "bn_grad_stats", bindings: BINDINGS };
const BACKWARD: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "bn_backward", bindings: BINDINGS };

/// Rows per invocation of the elementwise batch-norm passes (the BN_ROWS override of
/// shaders/norm.wgsl).
const BN_ROWS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    _pad0: [u32; 2],
    eps: f32,
    momentum: f32,
    _pad1: [f32; 2],
}

fn dims(x: &Tensor, cols: usize) -> Result<(usize, Params)> {
    if cols == 0 || !x.len().is_multiple_of(cols) {
        bail!("{:?} is not a whole number of rows of {cols} columns", x.shape());
    }
    let rows = x.len() / cols;
    let d = BatchNorm::default();
    Ok((rows, Params { rows: rows as u32, cols: cols as u32, _pad0: [0; 2], eps: d.eps, momentum: d.momentum, _pad1: [0.0; 2] }))
}

/// out [cols] = sum over rows of x [rows, cols].
pub fn column_sum(step: &mut Step, x: &Tensor, cols: usize, out: &Tensor) -> Result<()> {
    let (rows, p) = dims(x, cols)?;
    // One invocation per column loops over every row.
    super::check_loop_budget(step.gpu(), rows, "column sum")?;
    // Slots this entry point does not use: a shared read-only placeholder, and two scratch
    // buffers for the writable ones (a buffer may not be bound both ways at once).
    let gpu = step.gpu();
    let ph = gpu.placeholder().clone();
    let (s1, s2) = (gpu.empty(&[4], crate::gpu::DType::F32)?, gpu.empty(&[4], crate::gpu::DType::F32)?);
    let grid = [super::groups(cols, 64)?, 1, 1];
    step.dispatch(&COLUMN_SUM, &[], &[x, &ph, &ph, &s1, &s2, out], bytemuck::bytes_of(&p), grid, "norm.column_sum")
}

/// Batch normalisation options: Keras's epsilon (1e-3), and a moving-average momentum of 0.9
/// rather than Keras's 0.99. With 0.99 the moving statistics keep a fifth of their (0, 1)
/// starting values after 150 updates; on RAVDESS (about 50 batches an epoch) evaluation-mode
/// predictions collapsed to one class for the first epochs, which early stopping then locked in.
/// 0.9 forgets the start within one epoch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchNorm {
    pub eps: f32,
    pub momentum: f32,
}

impl Default for BatchNorm {
    fn default() -> Self {
        BatchNorm { eps: 1e-3, momentum: 0.9 }
    }
}

/// The tensors of one batch-norm layer over `cols` channels.
pub struct BnTensors<'a> {
    /// [cols, 2]: (beta, gamma) per channel, the layout of their gradient.
    pub affine: &'a Tensor,
    /// [cols, 2]: batch mean and 1/sqrt(var + eps), written in training.
    pub stats: &'a Tensor,
    /// [cols, 2]: moving mean and variance.
    pub moving: &'a Tensor,
}

/// Training forward: batch statistics, moving averages updated, y normalised.
pub fn forward_train(step: &mut Step, o: &BatchNorm, t: &BnTensors, x: &Tensor, y: &Tensor) -> Result<()> {
    let cols = t.affine.len() / 2;
    let (rows, mut p) = dims(x, cols)?;
    // bn_stats: two passes over the rows per column.
    super::check_loop_budget(step.gpu(), 2 * rows, "batch normalisation statistics")?;
    (p.eps, p.momentum) = (o.eps, o.momentum);
    let ph = step.gpu().placeholder().clone();
    step.dispatch(&STATS, &[], &[x, t.affine, &ph, t.stats, t.moving, y], bytemuck::bytes_of(&p), [super::groups(cols, 64)?, 1, 1], "norm.bn_stats")?;
    step.dispatch(&FORWARD, &[("EVAL", 0.0), ("BN_ROWS", BN_ROWS as f64)], &[x, t.affine, &ph, t.stats, t.moving, y], bytemuck::bytes_of(&p), [super::groups(rows.div_ceil(BN_ROWS) * cols, 256)?, 1, 1], "norm.bn_forward")
}

/// Inference forward with the moving statistics.
pub fn forward_eval(step: &mut Step, o: &BatchNorm, t: &BnTensors, x: &Tensor, y: &Tensor) -> Result<()> {
    let cols = t.affine.len() / 2;
    let (rows, mut p) = dims(x, cols)?;
    p.eps = o.eps;
    let ph = step.gpu().placeholder().clone();
    step.dispatch(&FORWARD, &[("EVAL", 1.0), ("BN_ROWS", BN_ROWS as f64)], &[x, t.affine, &ph, t.stats, t.moving, y], bytemuck::bytes_of(&p), [super::groups(rows.div_ceil(BN_ROWS) * cols, 256)?, 1, 1], "norm.bn_forward")
}

/// Backward of the training forward: dx, and the parameter gradients in `grad_stats` [cols, 2]
/// as (dbeta, dgamma).
pub fn backward(step: &mut Step, t: &BnTensors, x: &Tensor, dy: &Tensor, grad_stats: &Tensor, dx: &Tensor) -> Result<()> {
    let cols = t.affine.len() / 2;
    let (rows, p) = dims(x, cols)?;
    super::check_loop_budget(step.gpu(), rows, "batch normalisation gradients")?;
    if dy.len() != x.len() || dx.len() != x.len() || grad_stats.len() != 2 * cols {
        bail!("batchnorm backward: dy {:?}, dx {:?}, grad_stats {:?} for x {:?}", dy.shape(), dx.shape(), grad_stats.shape(), x.shape());
    }
    step.dispatch(&GRAD_STATS, &[], &[x, t.affine, dy, t.stats, t.moving, grad_stats], bytemuck::bytes_of(&p), [super::groups(cols, 64)?, 1, 1], "norm.bn_grad_stats")?;
    step.dispatch(&BACKWARD, &[("BN_ROWS", BN_ROWS as f64)], &[x, t.affine, dy, t.stats, grad_stats, dx], bytemuck::bytes_of(&p), [super::groups(rows.div_ceil(BN_ROWS) * cols, 256)?, 1, 1], "norm.bn_backward")
}

/// Float64 reference of the training forward: (y, mean, var).
pub fn reference_forward(x: &[f64], cols: usize, gamma: &[f64], beta: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / cols;
    let mean: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| x[i * cols + j]).sum::<f64>() / rows as f64).collect();
    let var: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| (x[i * cols + j] - mean[j]).powi(2)).sum::<f64>() / rows as f64).collect();
    let y = (0..rows * cols).map(|i| {
        let j = i % cols;
        gamma[j] * (x[i] - mean[j]) / (var[j] + eps).sqrt() + beta[j]
    });
    (y.collect(), mean, var)
}
