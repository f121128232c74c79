//! RBF kernel machines (shaders/kernel.wgsl): the Gaussian kernel between two sets of rows, and
//! kernel ridge regression solved by conjugate gradients on the GPU, many right-hand sides at
//! once, with per-column scalars kept on the GPU so that iterations need no readback.

use super::gemm::{self, GemmOptions};
use super::rows_cols;
use crate::gpu::{ShaderFile, Access, DType, Gpu, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const KERNEL_WGSL: ShaderFile = ShaderFile {
    name: "kernel.wgsl",
    source: include_str!("../../shaders/kernel.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const REDUCE: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
const SOLVER: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite];
const SQ_NORMS: KernelSpec = KernelSpec { shader: &KERNEL_WGSL, entry: "sq_norms", bindings: REDUCE };
const COL_DOT: KernelSpec = KernelSpec { shader: &KERNEL_WGSL, entry: "col_dot", bindings: REDUCE };
const RBF: KernelSpec = KernelSpec { shader: &KERNEL_WGSL, entry: "rbf", bindings: REDUCE };
const CG_APPLY: KernelSpec = KernelSpec { shader: &KERNEL_WGSL, entry: "cg_apply", bindings: SOLVER };
const CG_UPDATE: KernelSpec = KernelSpec { shader: &KERNEL_WGSL, entry: "cg_update", bindings: SOLVER };
const CG_DIRECTION: KernelSpec = KernelSpec { shader: &KERNEL_WGSL, entry: "cg_direction", bindings: SOLVER };

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    _pad0: [u32; 2],
    gamma: f32,
    _pad1: [f32; 3],
}

/// out [rows] = squared Euclidean norm of each row of x [rows, cols].
pub fn sq_norms(step: &mut Step, x: &Tensor, out: &Tensor) -> Result<()> {
    let (rows, cols) = rows_cols(x, "sq_norms: x")?;
    if out.len() != rows {
        bail!("sq_norms: {rows} rows into {:?}", out.shape());
    }
    // One invocation per row loops over its columns.
    super::check_loop_budget(step.gpu(), cols, "squared norms")?;
    let p = Params { rows: rows as u32, cols: cols as u32, ..Default::default() };
    let ph = step.gpu().placeholder().clone();
    step.dispatch(&SQ_NORMS, &[], &[x, &ph, out], bytemuck::bytes_of(&p), [super::groups(rows, 64)?, 1, 1], "kernel.sq_norms")
}

/// out [cols] = column-wise dot products of a and b [rows, cols].
pub fn col_dot(step: &mut Step, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let (rows, cols) = rows_cols(a, "col_dot: a")?;
    if b.shape() != a.shape() || out.len() != cols {
        bail!("col_dot: {:?} . {:?} into {:?}", a.shape(), b.shape(), out.shape());
    }
    super::check_loop_budget(step.gpu(), rows, "column dot products")?;
    let p = Params { rows: rows as u32, cols: cols as u32, ..Default::default() };
    step.dispatch(&COL_DOT, &[], &[a, b, out], bytemuck::bytes_of(&p), [super::groups(cols, 64)?, 1, 1], "kernel.col_dot")
}

/// k [rows(x), rows(centres)] = exp(-gamma |x_i - c_j|^2), from the rows' squared norms (`x_norms`,
/// `centre_norms`) and one GEMM of dot products.
pub fn rbf(step: &mut Step, x: &Tensor, x_norms: &Tensor, centres: &Tensor, centre_norms: &Tensor, gamma: f32, k: &Tensor) -> Result<()> {
    let (rows, d) = rows_cols(x, "rbf: x")?;
    let (cols, dc) = rows_cols(centres, "rbf: centres")?;
    if d != dc || k.shape() != [rows, cols] || x_norms.len() != rows || centre_norms.len() != cols {
        bail!("rbf: x {:?}, centres {:?} into {:?}", x.shape(), centres.shape(), k.shape());
    }
    gemm::gemm(step, x, centres, None, k, &GemmOptions { trans_b: true, ..Default::default() })?;
    let p = Params { rows: rows as u32, cols: cols as u32, gamma, ..Default::default() };
    step.dispatch(&RBF, &[], &[x_norms, centre_norms, k], bytemuck::bytes_of(&p), [super::groups(rows * cols, 256)?, 1, 1], "kernel.rbf")
}

/// How a conjugate-gradient solve ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CgReport {
    pub iterations: usize,
    /// Largest relative residual |r_c| / |y_c| over the columns.
    pub relative_residual: f64,
}

/// The RBF kernel of host rows `x` [n, width] against `centres` (with their squared norms), in
/// blocks of rows that fit the adapter's storage binding: K [n, centres], or, given `times` =
/// (A [centres, out], optional bias [out]), K A + bias [n, out]. What kernel machines (SVM,
/// kernel ridge) compute to fit and to score.
pub fn rbf_rows(gpu: &Gpu, x: &[f32], width: usize, centres: &Tensor, centre_norms: &Tensor, gamma: f32, times: Option<(&Tensor, Option<&Tensor>)>) -> Result<Vec<f32>> {
    let (n_centres, dc) = rows_cols(centres, "rbf_rows: centres")?;
    if dc != width || !x.len().is_multiple_of(width.max(1)) {
        bail!("rbf_rows: {} values of {width} columns against centres {:?}", x.len(), centres.shape());
    }
    let out_cols = match times {
        Some((a, _)) => rows_cols(a, "rbf_rows: A")?.1,
        None => n_centres,
    };
    let per_block = ((gpu.max_storage_binding() / 4) as usize / n_centres.max(out_cols).max(1)).clamp(1, 4096);
    let mut out = Vec::with_capacity(x.len() / width.max(1) * out_cols);
    for block in x.chunks(per_block * width) {
        let r = block.len() / width;
        let q = gpu.upload_f32(block, &[r, width])?;
        let (norms, k) = (gpu.empty(&[r], DType::F32)?, gpu.empty(&[r, n_centres], DType::F32)?);
        let mut step = gpu.step("kernel.rbf_rows");
        sq_norms(&mut step, &q, &norms)?;
        rbf(&mut step, &q, &norms, centres, centre_norms, gamma, &k)?;
        let result = match times {
            Some((a, bias)) => {
                let y = gpu.empty(&[r, out_cols], DType::F32)?;
                gemm::gemm(&mut step, &k, a, bias, &y, &GemmOptions::default())?;
                y
            }
            None => k,
        };
        step.submit()?;
        out.extend(gpu.read_f32(&result)?);
    }
    Ok(out)
}

/// Solves (K + diag(d)) A = Y for A [n, C] by conjugate gradients (K [n, n] symmetric positive
/// semi-definite, d > 0), every column its own system. Checks convergence every `check_every`
/// iterations (one readback of C floats) and stops when every column's residual is below `tol`
/// relative to its right-hand side, or after `max_iter` iterations.
pub fn solve_ridge(gpu: &Gpu, k: &Tensor, d: &Tensor, y: &Tensor, tol: f64, max_iter: usize) -> Result<(Tensor, CgReport)> {
    let (n, c) = rows_cols(y, "solve_ridge: y")?;
    if k.shape() != [n, n] || d.len() != n {
        bail!("solve_ridge: K {:?}, d {:?} for y {:?}", k.shape(), d.shape(), y.shape());
    }
    let p = Params { rows: n as u32, cols: c as u32, ..Default::default() };
    let grid = [super::groups(n * c, 256)?, 1, 1];
    let x = gpu.empty(&[n, c], DType::F32)?;
    let r = gpu.empty(&[n, c], DType::F32)?;
    let dir = gpu.empty(&[n, c], DType::F32)?;
    let ap = gpu.empty(&[n, c], DType::F32)?;
    let pap = gpu.empty(&[c], DType::F32)?;
    let (mut rr, mut rr_new) = (gpu.empty(&[c], DType::F32)?, gpu.empty(&[c], DType::F32)?);
    let mut step = gpu.step("kernel.cg.init");
    step.zero(&x);
    step.copy(y, &r)?;
    step.copy(y, &dir)?;
    col_dot(&mut step, y, y, &rr)?;
    step.submit()?;
    let y_norms: Vec<f64> = gpu.read_f32(&rr)?.iter().map(|v| (*v as f64).sqrt().max(f64::MIN_POSITIVE)).collect();
    let ph = gpu.placeholder().clone();
    // K is read every iteration and never changes: prepare it for the GEMM once.
    let mut step = gpu.step("kernel.cg.pack");
    let k_fixed = gemm::FixedA::new(&mut step, k, false, c, &GemmOptions::default())?;
    step.submit()?;
    let check_every = 20;
    let mut iterations = 0;
    let mut residual = f64::INFINITY;
    while iterations < max_iter {
        let mut step = gpu.step("kernel.cg");
        for _ in 0..check_every.min(max_iter - iterations) {
            gemm::gemm_fixed_a(&mut step, &k_fixed, &dir, None, &ap, &GemmOptions::default())?;
            step.dispatch(&CG_APPLY, &[], &[&ph, &ph, d, &ap, &dir, &pap], bytemuck::bytes_of(&p), grid, "kernel.cg_apply")?;
            col_dot(&mut step, &dir, &ap, &pap)?;
            step.dispatch(&CG_UPDATE, &[], &[&rr, &pap, &dir, &x, &r, &ap], bytemuck::bytes_of(&p), grid, "kernel.cg_update")?;
            col_dot(&mut step, &r, &r, &rr_new)?;
            step.dispatch(&CG_DIRECTION, &[], &[&rr, &rr_new, &ph, &dir, &r, &pap], bytemuck::bytes_of(&p), grid, "kernel.cg_direction")?;
            std::mem::swap(&mut rr, &mut rr_new);
            iterations += 1;
        }
        step.submit()?;
        let rr_host = gpu.read_f32(&rr)?;
        if rr_host.iter().any(|v| !v.is_finite()) {
            bail!("kernel ridge solve diverged after {iterations} iterations (non-finite residual)");
        }
        residual = rr_host.iter().zip(&y_norms).map(|(v, n)| (*v as f64).sqrt() / n).fold(0.0, f64::max);
        if residual < tol {
            break;
        }
    }
    Ok((x, CgReport { iterations, relative_residual: residual }))
}

/// Float64 reference of the RBF kernel between rows of x [rows, d] and centres [cols, d].
pub fn reference_rbf(x: &[f32], centres: &[f32], d: usize, gamma: f64) -> Vec<f64> {
    let mut out = Vec::new();
    for xi in x.chunks(d) {
        for cj in centres.chunks(d) {
            let d2: f64 = xi.iter().zip(cj).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
            out.push((-gamma * d2).exp());
        }
    }
    out
}

/// Float64 reference solve of (K + diag(d)) A = Y by Gaussian elimination with partial pivoting.
pub fn reference_solve(k: &[f64], d: &[f64], y: &[f64], n: usize, c: usize) -> Vec<f64> {
    let mut m: Vec<f64> = k.to_vec();
    for i in 0..n {
        m[i * n + i] += d[i];
    }
    let mut b = y.to_vec();
    for col in 0..n {
        let piv = (col..n).max_by(|&a, &b2| m[a * n + col].abs().total_cmp(&m[b2 * n + col].abs())).unwrap();
        for j in 0..n {
            m.swap(col * n + j, piv * n + j);
        }
        for j in 0..c {
            b.swap(col * c + j, piv * c + j);
        }
        for row in col + 1..n {
            let f = m[row * n + col] / m[col * n + col];
            for j in col..n {
                m[row * n + j] -= f * m[col * n + j];
            }
            for j in 0..c {
                b[row * c + j] -= f * b[col * c + j];
            }
        }
    }
    let mut x = vec![0.0; n * c];
    for row in (0..n).rev() {
        for j in 0..c {
            let s: f64 = (row + 1..n).map(|k2| m[row * n + k2] * x[k2 * c + j]).sum();
            x[row * c + j] = (b[row * c + j] - s) / m[row * n + row];
        }
    }
    x
}
