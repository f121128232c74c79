//! Column sums and batch normalisation over [rows, cols] (shaders/norm.wgsl): every reduction
//! in two passes, one invocation per (group of rows, column) then one per column.

use crate::gpu::{ShaderFile, Access, DType, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const NORM_WGSL: ShaderFile = ShaderFile {
    name: "norm.wgsl",
    source: include_str!("../../shaders/norm.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const BINDINGS: &[Access] =
    &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::Read];
const GROUP_SUMS: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "column_group_sums", bindings: BINDINGS };
const COLUMN_SUM: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "column_sum", bindings: BINDINGS };
const STAT_PARTS: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "bn_stat_parts", bindings: BINDINGS };
const STATS: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "bn_stats", bindings: BINDINGS };
const FORWARD: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "bn_forward", bindings: BINDINGS };
const GRAD_PARTS: KernelSpec = KernelSpec { shader: &NORM_WGSL, entry: "bn_grad_parts", bindings: BINDINGS };
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

/// The parameters of `x` as rows of `cols` in groups of `steps` (one example's rows).
fn dims(x: &Tensor, cols: usize, steps: usize) -> Result<(usize, Params)> {
    if cols == 0 || !x.len().is_multiple_of(cols) {
        bail!("{:?} is not a whole number of rows of {cols} columns", x.shape());
    }
    let rows = x.len() / cols;
    if steps == 0 || !rows.is_multiple_of(steps) {
        bail!("{rows} rows are not whole groups of {steps}");
    }
    let d = BatchNorm::default();
    Ok((rows, Params { rows: rows as u32, cols: cols as u32, steps: steps as u32, valid_rows: rows as u32, eps: d.eps, momentum: d.momentum, _pad1: [0.0; 2] }))
}

/// Each group's valid rows, where only a prefix of each group counts (the sequence models'
/// batch norm over frames: shaders/norm.wgsl's VALID_STEPS).
#[derive(Clone, Copy)]
pub struct ValidSteps<'a> {
    /// [groups] u32: each group's valid steps (clamped to the group's rows).
    pub lengths: &'a Tensor,
    /// The rows that count: the sum of the clamped lengths.
    pub valid_rows: usize,
}

/// What the batch-norm passes bind and set for `x` [rows, cols] in groups of `steps` rows: the
/// parameters, the lengths (a placeholder without `valid`), the VALID_STEPS override, and the
/// grids of the per-(group, column), per-column and elementwise passes.
struct Layout {
    rows: usize,
    params: Params,
    lengths: Tensor,
    valid_steps: f64,
    group_grid: [u32; 3],
    column_grid: [u32; 3],
    block_grid: [u32; 3],
}

fn layout(step: &Step, x: &Tensor, cols: usize, steps: usize, valid: Option<ValidSteps>) -> Result<Layout> {
    let (rows, mut params) = dims(x, cols, steps)?;
    let groups = rows / steps;
    let grids = |lengths: Tensor, valid_steps: f64, params: Params| -> Result<Layout> {
        Ok(Layout {
            rows,
            params,
            lengths,
            valid_steps,
            group_grid: [super::groups(groups * cols, 64)?, 1, 1],
            column_grid: [super::groups(cols, 64)?, 1, 1],
            block_grid: [super::groups(rows.div_ceil(BN_ROWS) * cols, 256)?, 1, 1],
        })
    };
    let Some(v) = valid else {
        return grids(step.gpu().placeholder().clone(), 0.0, params);
    };
    if v.lengths.len() != groups || v.valid_rows > rows {
        bail!("batch norm over sequences: {rows} rows are not {} sequences of {steps} steps with {} valid rows", v.lengths.len(), v.valid_rows);
    }
    if v.valid_rows == 0 {
        bail!("batch norm over sequences: no valid step in the batch");
    }
    params.valid_rows = v.valid_rows as u32;
    grids(v.lengths.clone(), 1.0, params)
}

/// out [cols] = sum over rows of x [rows, cols], the rows summed in groups of `group_rows` (an
/// example's rows: a group's sum then does not depend on the rows the batch carries past it).
pub fn column_sum(step: &mut Step, x: &Tensor, cols: usize, group_rows: usize, out: &Tensor) -> Result<()> {
    let (rows, p) = dims(x, cols, group_rows)?;
    if out.len() != cols {
        bail!("column sum: out {:?} for {cols} columns", out.shape());
    }
    let groups = rows / group_rows;
    let gpu = step.gpu();
    // Slots the entry points do not use: a shared read-only placeholder, and scratch buffers
    // for the writable ones (a buffer may not be bound both ways at once).
    let ph = gpu.placeholder().clone();
    let (s1, s2) = (gpu.empty(&[4], DType::F32)?, gpu.empty(&[4], DType::F32)?);
    let column_grid = [super::groups(cols, 64)?, 1, 1];
    if groups == 1 || group_rows == 1 {
        super::check_loop_budget(gpu, rows, "column sum")?;
        return step.dispatch(&COLUMN_SUM, &[], &[x, &ph, &ph, &s1, &s2, out, &ph], bytemuck::bytes_of(&p), column_grid, "norm.column_sum");
    }
    super::check_loop_budget(gpu, group_rows.max(groups), "column sum")?;
    let parts = gpu.empty(&[groups, cols], DType::F32)?;
    step.dispatch(&GROUP_SUMS, &[], &[x, &ph, &ph, &s1, &s2, &parts, &ph], bytemuck::bytes_of(&p), [super::groups(groups * cols, 64)?, 1, 1], "norm.column_group_sums")?;
    let (_, p_parts) = dims(&parts, cols, 1)?;
    step.dispatch(&COLUMN_SUM, &[], &[&parts, &ph, &ph, &s1, &s2, out, &ph], bytemuck::bytes_of(&p_parts), column_grid, "norm.column_sum")
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

/// Training forward over `x` [rows, cols] in groups of `steps` rows (one example's; 1 for flat
/// layers): batch statistics (over each group's valid steps only, with `valid`), moving
/// averages updated, y normalised (zero past each group's valid steps, with `valid`).
#[allow(clippy::too_many_arguments)]
pub fn forward_train(step: &mut Step, o: &BatchNorm, t: &BnTensors, x: &Tensor, y: &Tensor, steps: usize, valid: Option<ValidSteps>) -> Result<()> {
    let cols = t.affine.len() / 2;
    let mut l = layout(step, x, cols, steps, valid)?;
    // bn_stat_parts: two passes over a group's rows; bn_stats: one over the groups.
    super::check_loop_budget(step.gpu(), (2 * steps).max(l.rows / steps), "batch normalisation statistics")?;
    (l.params.eps, l.params.momentum) = (o.eps, o.momentum);
    let gpu = step.gpu();
    let (ph, parts) = (gpu.placeholder().clone(), gpu.empty(&[l.rows / steps * cols * 3], DType::F32)?);
    let over = [("VALID_STEPS", l.valid_steps)];
    let p = bytemuck::bytes_of(&l.params);
    step.dispatch(&STAT_PARTS, &over, &[x, t.affine, &ph, t.stats, t.moving, &parts, &l.lengths], p, l.group_grid, "norm.bn_stat_parts")?;
    step.dispatch(&STATS, &over, &[&parts, t.affine, &ph, t.stats, t.moving, y, &l.lengths], p, l.column_grid, "norm.bn_stats")?;
    step.dispatch(&FORWARD, &[("EVAL", 0.0), ("VALID_STEPS", l.valid_steps), ("BN_ROWS", BN_ROWS as f64)], &[x, t.affine, &ph, t.stats, t.moving, y, &l.lengths], p, l.block_grid, "norm.bn_forward")
}

/// Inference forward with the moving statistics (zero past each group's valid steps, with
/// `valid`).
#[allow(clippy::too_many_arguments)]
pub fn forward_eval(step: &mut Step, o: &BatchNorm, t: &BnTensors, x: &Tensor, y: &Tensor, steps: usize, valid: Option<ValidSteps>) -> Result<()> {
    let cols = t.affine.len() / 2;
    let mut l = layout(step, x, cols, steps, valid)?;
    l.params.eps = o.eps;
    let ph = step.gpu().placeholder().clone();
    step.dispatch(&FORWARD, &[("EVAL", 1.0), ("VALID_STEPS", l.valid_steps), ("BN_ROWS", BN_ROWS as f64)], &[x, t.affine, &ph, t.stats, t.moving, y, &l.lengths], bytemuck::bytes_of(&l.params), l.block_grid, "norm.bn_forward")
}

/// Backward of the training forward: dx, and the parameter gradients in `grad_stats` [cols, 2]
/// as (dbeta, dgamma); with `valid`, sums over the valid steps and zero dx past them.
#[allow(clippy::too_many_arguments)]
pub fn backward(step: &mut Step, t: &BnTensors, x: &Tensor, dy: &Tensor, grad_stats: &Tensor, dx: &Tensor, steps: usize, valid: Option<ValidSteps>) -> Result<()> {
    let cols = t.affine.len() / 2;
    let l = layout(step, x, cols, steps, valid)?;
    // bn_grad_parts: one pass over a group's rows; bn_grad_stats: one over the groups.
    super::check_loop_budget(step.gpu(), steps.max(l.rows / steps), "batch normalisation gradients")?;
    if dy.len() != x.len() || dx.len() != x.len() || grad_stats.len() != 2 * cols {
        bail!("batchnorm backward: dy {:?}, dx {:?}, grad_stats {:?} for x {:?}", dy.shape(), dx.shape(), grad_stats.shape(), x.shape());
    }
    let parts = step.gpu().empty(&[l.rows / steps * cols * 2], DType::F32)?;
    let over = [("VALID_STEPS", l.valid_steps)];
    let p = bytemuck::bytes_of(&l.params);
    step.dispatch(&GRAD_PARTS, &over, &[x, t.affine, dy, t.stats, t.moving, &parts, &l.lengths], p, l.group_grid, "norm.bn_grad_parts")?;
    step.dispatch(&GRAD_STATS, &over, &[&parts, t.affine, dy, t.stats, t.moving, grad_stats, &l.lengths], p, l.column_grid, "norm.bn_grad_stats")?;
    step.dispatch(&BACKWARD, &[("VALID_STEPS", l.valid_steps), ("BN_ROWS", BN_ROWS as f64)], &[x, t.affine, dy, t.stats, grad_stats, dx, &l.lengths], p, l.block_grid, "norm.bn_backward")
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
