//! Column sums and batch normalisation over [rows, cols] (shaders/norm.wgsl).

use crate::gpu::{Access, KernelSpec, NORM_WGSL, Step, Tensor};
use anyhow::{Result, bail};

const BINDINGS: &[Access] =
    &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::Read];
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
    steps: u32,
    valid_rows: u32,
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
    let p = Params { rows: rows as u32, cols: cols as u32, steps: rows as u32, valid_rows: rows as u32, eps: d.eps, momentum: d.momentum, _pad1: [0.0; 2] };
    Ok((rows, p))
}

/// Rows that are the steps of sequences, of which only each sequence's first `lengths` count
/// (the sequence models' batch norm, shaders/norm.wgsl's VALID_STEPS).
#[derive(Clone, Copy)]
pub struct ValidSteps<'a> {
    /// [sequences] u32: each sequence's valid steps (clamped to `steps`).
    pub lengths: &'a Tensor,
    /// Steps (rows) per sequence.
    pub steps: usize,
    /// The rows that count: the sum of the clamped lengths.
    pub valid_rows: usize,
}

/// The parameters, the lengths to bind and the VALID_STEPS override for `x` over `valid`.
fn layout(step: &Step, x: &Tensor, cols: usize, valid: Option<ValidSteps>) -> Result<(usize, Params, Tensor, f64)> {
    let (rows, mut p) = dims(x, cols)?;
    let Some(v) = valid else {
        return Ok((rows, p, step.gpu().placeholder().clone(), 0.0));
    };
    if v.steps == 0 || !rows.is_multiple_of(v.steps) || v.lengths.len() != rows / v.steps || v.valid_rows > rows {
        bail!("batch norm over sequences: {rows} rows are not {} sequences of {} steps with {} valid rows", v.lengths.len(), v.steps, v.valid_rows);
    }
    if v.valid_rows == 0 {
        bail!("batch norm over sequences: no valid step in the batch");
    }
    (p.steps, p.valid_rows) = (v.steps as u32, v.valid_rows as u32);
    Ok((rows, p, v.lengths.clone(), 1.0))
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
    step.dispatch(&COLUMN_SUM, &[], &[x, &ph, &ph, &s1, &s2, out, &ph], bytemuck::bytes_of(&p), grid, "norm.column_sum")
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

/// Training forward: batch statistics (over the valid steps only, with `valid`), moving
/// averages updated, y normalised (zero past each sequence's length, with `valid`).
pub fn forward_train(step: &mut Step, o: &BatchNorm, t: &BnTensors, x: &Tensor, y: &Tensor, valid: Option<ValidSteps>) -> Result<()> {
    let cols = t.affine.len() / 2;
    let (rows, mut p, lengths, over_steps) = layout(step, x, cols, valid)?;
    // bn_stats: two passes over the rows per column.
    super::check_loop_budget(step.gpu(), 2 * rows, "batch normalisation statistics")?;
    (p.eps, p.momentum) = (o.eps, o.momentum);
    let ph = step.gpu().placeholder().clone();
    let bind = [x, t.affine, &ph, t.stats, t.moving, y, &lengths];
    step.dispatch(&STATS, &[("VALID_STEPS", over_steps)], &bind, bytemuck::bytes_of(&p), [super::groups(cols, 64)?, 1, 1], "norm.bn_stats")?;
    step.dispatch(&FORWARD, &[("EVAL", 0.0), ("VALID_STEPS", over_steps), ("BN_ROWS", BN_ROWS as f64)], &bind, bytemuck::bytes_of(&p), [super::groups(rows.div_ceil(BN_ROWS) * cols, 256)?, 1, 1], "norm.bn_forward")
}

/// Inference forward with the moving statistics (zero past each sequence's length, with
/// `valid`).
pub fn forward_eval(step: &mut Step, o: &BatchNorm, t: &BnTensors, x: &Tensor, y: &Tensor, valid: Option<ValidSteps>) -> Result<()> {
    let cols = t.affine.len() / 2;
    let (rows, mut p, lengths, over_steps) = layout(step, x, cols, valid)?;
    p.eps = o.eps;
    let ph = step.gpu().placeholder().clone();
    step.dispatch(&FORWARD, &[("EVAL", 1.0), ("VALID_STEPS", over_steps), ("BN_ROWS", BN_ROWS as f64)], &[x, t.affine, &ph, t.stats, t.moving, y, &lengths], bytemuck::bytes_of(&p), [super::groups(rows.div_ceil(BN_ROWS) * cols, 256)?, 1, 1], "norm.bn_forward")
}

/// Backward of the training forward: dx, and the parameter gradients in `grad_stats` [cols, 2]
/// as (dbeta, dgamma); with `valid`, sums over the valid steps and zero dx past them.
pub fn backward(step: &mut Step, t: &BnTensors, x: &Tensor, dy: &Tensor, grad_stats: &Tensor, dx: &Tensor, valid: Option<ValidSteps>) -> Result<()> {
    let cols = t.affine.len() / 2;
    let (rows, p, lengths, over_steps) = layout(step, x, cols, valid)?;
    super::check_loop_budget(step.gpu(), rows, "batch normalisation gradients")?;
    if dy.len() != x.len() || dx.len() != x.len() || grad_stats.len() != 2 * cols {
        bail!("batchnorm backward: dy {:?}, dx {:?}, grad_stats {:?} for x {:?}", dy.shape(), dx.shape(), grad_stats.shape(), x.shape());
    }
    step.dispatch(&GRAD_STATS, &[("VALID_STEPS", over_steps)], &[x, t.affine, dy, t.stats, t.moving, grad_stats, &lengths], bytemuck::bytes_of(&p), [super::groups(cols, 64)?, 1, 1], "norm.bn_grad_stats")?;
    step.dispatch(&BACKWARD, &[("VALID_STEPS", over_steps), ("BN_ROWS", BN_ROWS as f64)], &[x, t.affine, dy, t.stats, grad_stats, dx, &lengths], bytemuck::bytes_of(&p), [super::groups(rows.div_ceil(BN_ROWS) * cols, 256)?, 1, 1], "norm.bn_backward")
}

/// Float64 reference of the training forward: (y, mean, var). With `valid` (a flag per row)
/// the statistics come from the valid rows alone and the other rows' outputs are zero.
pub fn reference_forward(x: &[f64], cols: usize, gamma: &[f64], beta: &[f64], eps: f64, valid: Option<&[bool]>) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / cols;
    let counts = |i: usize| valid.is_none_or(|v| v[i]);
    let n = (0..rows).filter(|&i| counts(i)).count() as f64;
    let mean: Vec<f64> = (0..cols).map(|j| (0..rows).filter(|&i| counts(i)).map(|i| x[i * cols + j]).sum::<f64>() / n).collect();
    let var: Vec<f64> = (0..cols).map(|j| (0..rows).filter(|&i| counts(i)).map(|i| (x[i * cols + j] - mean[j]).powi(2)).sum::<f64>() / n).collect();
    let y = (0..rows * cols).map(|i| {
        let j = i % cols;
        if counts(i / cols) { gamma[j] * (x[i] - mean[j]) / (var[j] + eps).sqrt() + beta[j] } else { 0.0 }
    });
    (y.collect(), mean, var)
}
