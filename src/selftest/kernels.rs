//! Kernel-level checks: every GEMM variant in both precisions, elementwise ops, the training
//! layers forward and backward (gradients against finite differences of the references), the
//! loss, Adam, RBF kernels and the kernel-ridge solve, the neighbour search and the forest's
//! growth and evaluation kernels.

use super::{Check, Size, Tally};
use crate::gpu::{DType, Gpu, Tensor};
use crate::ops::elementwise::{self, BinaryOp, UnaryOp};
use crate::ops::gemm::{self, GemmKernel, GemmOptions, Precision};
use crate::ops::{conv, embedding as embedding_op, forest as forest_op, kernel, knn as knn_op, loss, lstm as lstm_op, norm, optim, pool, segment as segment_op};
use crate::rng::SplitMix64;
use anyhow::Result;

pub(super) fn checks() -> Vec<Check> {
    vec![
        Check { name: "gemm.f32", family: "gemm", run: gemm_f32 },
        Check { name: "gemm.shared", family: "gemm", run: gemm_shared },
        Check { name: "gemm.bf16", family: "gemm", run: gemm_bf16 },
        Check { name: "gemm.bf16-exact", family: "gemm", run: gemm_bf16_exact },
        Check { name: "gemm.f16", family: "gemm", run: gemm_f16 },
        Check { name: "gemm.f16-exact", family: "gemm", run: gemm_f16_exact },
        Check { name: "elementwise", family: "elementwise", run: elementwise },
        Check { name: "conv1d", family: "layers", run: conv1d },
        Check { name: "batch-norm", family: "layers", run: batch_norm },
        Check { name: "max-pool", family: "layers", run: max_pool },
        Check { name: "softmax-cross-entropy", family: "layers", run: softmax_cross_entropy },
        Check { name: "augment", family: "layers", run: augment },
        Check { name: "adam", family: "optimiser", run: adam },
        Check { name: "rbf-kernel", family: "kernel-ridge", run: rbf_kernel },
        Check { name: "ridge-solve", family: "kernel-ridge", run: ridge_solve },
        Check { name: "knn", family: "classical", run: knn },
        Check { name: "embedding", family: "classical", run: embedding },
        Check { name: "voicing-moments", family: "classical", run: voicing_moments },
        Check { name: "forest", family: "classical", run: forest },
        Check { name: "lstm", family: "layers", run: lstm },
    ]
}

/// Sizes that catch indexing bugs: 1, primes, and values just off workgroup and tile multiples.
const AWKWARD: [usize; 7] = [1, 3, 7, 13, 31, 33, 67];

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

/// tex8-shared's ROW_LANES values: the adapter's default, then every tile from one invocation
/// per 8-row block (every subgroup of 2+ lanes spans rows: the plain loop) to 64 (subgroups of
/// up to 64 consecutive lanes on one row block: the broadcast loop), so both loops run.
const ROW_LANES: [Option<u32>; 8] = [None, Some(1), Some(2), Some(4), Some(8), Some(16), Some(32), Some(64)];

fn poisoned(g: &Gpu, shape: &[usize]) -> Result<Tensor> {
    g.upload_f32(&vec![f32::NAN; shape.iter().product()], shape)
}

fn up(g: &Gpu, v: &[f64], shape: &[usize]) -> Result<Tensor> {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    g.upload_f32(&f, shape)
}

/// Values representable in f32, so the GPU and the reference start from the same numbers.
fn rand64(rng: &mut SplitMix64, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f64).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central finite difference of f at x along every coordinate.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-5;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let keep = x[i];
            x[i] = keep + h;
            let up = f(&x);
            x[i] = keep - h;
            let down = f(&x);
            x[i] = keep;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// One GEMM on the device and its float64 reference: `want`, and `scale` = |alpha| * sum over k
/// of |a| |b| per output, what rounding errors of the operands are relative to.
pub struct GemmCase {
    pub got: Vec<f32>,
    pub want: Vec<f64>,
    pub scale: Vec<f64>,
}

/// Runs one GEMM with operands from `values` (C poisoned with NaN, or random when beta != 0).
/// `batch` None is rank 2; `broadcast_b` shares one B across the batch.
#[allow(clippy::too_many_arguments)] // the GEMM's shape and options, as selftest and tests/gpu_runtime.rs vary them
pub fn run_gemm(g: &Gpu, rng: &mut SplitMix64, batch: Option<usize>, broadcast_b: bool, (m, n, k): (usize, usize, usize), bias: bool, o: GemmOptions, values: impl Fn(&mut SplitMix64, usize) -> Vec<f32>) -> Result<GemmCase> {
    let lead = |r: usize, c: usize, shared: bool| -> Vec<usize> {
        match batch {
            Some(b) if !shared => vec![b, r, c],
            _ => vec![r, c],
        }
    };
    let a_shape = if o.trans_a { lead(k, m, false) } else { lead(m, k, false) };
    let b_shape = if o.trans_b { lead(n, k, broadcast_b) } else { lead(k, n, broadcast_b) };
    let c_shape = lead(m, n, false);
    let a = values(rng, a_shape.iter().product());
    let b = values(rng, b_shape.iter().product());
    let bias_v = values(rng, n);
    let c0 = if o.beta == 0.0 { vec![f32::NAN; c_shape.iter().product()] } else { values(rng, c_shape.iter().product()) };
    let ta = g.upload_f32(&a, &a_shape)?;
    let tb = g.upload_f32(&b, &b_shape)?;
    let tbias = g.upload_f32(&bias_v, &[n])?;
    let tc = g.upload_f32(&c0, &c_shape)?;
    let mut step = g.step("selftest.gemm");
    let d = gemm::gemm(&mut step, &ta, &tb, bias.then_some(&tbias), &tc, &o)?;
    step.submit()?;
    let got = g.read_f32(&tc)?;
    let want = gemm::reference(&a, &b, bias.then_some(&bias_v[..]), &c0, &d, &o);
    let abs = |x: &[f32]| x.iter().map(|v| v.abs()).collect::<Vec<f32>>();
    let plain = GemmOptions { alpha: o.alpha.abs(), beta: 0.0, relu: false, ..o };
    let scale = gemm::reference(&abs(&a), &abs(&b), None, &[], &d, &plain);
    Ok(GemmCase { got, want, scale })
}

/// One f32 GEMM case against the reference, operands uniform in [-1, 1).
#[allow(clippy::too_many_arguments)]
pub fn check_gemm(g: &Gpu, rng: &mut SplitMix64, t: &mut Tally, batch: Option<usize>, broadcast_b: bool, (m, n, k): (usize, usize, usize), bias: bool, o: GemmOptions) -> Result<()> {
    let case = run_gemm(g, rng, batch, broadcast_b, (m, n, k), bias, o, |rng, len| rng.vec(len, -1.0, 1.0))?;
    // f32 accumulation over k terms of magnitude <= 1: error grows like k * eps in the worst case.
    let atol = 4.0 * k as f64 * f32::EPSILON as f64 + 1e-6;
    t.close(&format!("gemm {:?} b{batch:?} {m}x{n}x{k} bias={bias} {o:?}", o.kernel), &case.got, &case.want, atol, 1e-5);
    Ok(())
}

/// Every kernel shape and transpose at awkward sizes, then the epilogues and batches.
fn gemm_f32(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let sizes: &[usize] = if size == Size::Quick { &[1, 13, 67] } else { &AWKWARD };
    // The cooperative-matrix kernel is checked where the adapter has matrix units for it.
    for kernel in GemmKernel::ALL.into_iter().filter(|k| k.runs_on(g)) {
        for (trans_a, trans_b) in TRANSPOSES {
            for &m in sizes {
                let n = AWKWARD[rng.next_u64() as usize % AWKWARD.len()];
                let k = AWKWARD[rng.next_u64() as usize % AWKWARD.len()];
                check_gemm(g, rng, t, None, false, (m, n, k), false, GemmOptions { trans_a, trans_b, kernel, ..Default::default() })?;
            }
        }
        for (relu, bias, alpha, beta) in [(true, true, 1.0, 0.0), (false, true, -0.5, 1.0), (true, false, 2.0, 0.25)] {
            let o = GemmOptions { relu, alpha, beta, kernel, trans_b: rng.next_u64().is_multiple_of(2), ..Default::default() };
            check_gemm(g, rng, t, None, false, (37, 45, 12), bias, o)?;
            check_gemm(g, rng, t, Some(3), false, (9, 72, 8), bias, o)?;
            check_gemm(g, rng, t, Some(5), true, (13, 33, 4), bias, o)?;
        }
        // K long enough that a packed row spans several pack workgroups (32 texels each).
        let o = GemmOptions { kernel, trans_a: rng.next_u64().is_multiple_of(2), trans_b: rng.next_u64().is_multiple_of(2), ..Default::default() };
        check_gemm(g, rng, t, None, false, (11, 9, 300), false, o)?;
    }
    Ok(())
}

/// tex8-shared at every ROW_LANES on outputs wide enough for it (N > 32; narrower ones take the
/// tall kernel): lanes past N and subgroups past M must still take part in the broadcasts.
fn gemm_shared(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let kernel = GemmKernel::Tex8Shared;
    let shapes: &[(usize, usize, usize)] = if size == Size::Quick { &[(70, 130, 64), (9, 513, 3)] } else { &[(1, 33, 5), (13, 67, 31), (70, 130, 64), (200, 40, 7), (9, 513, 3)] };
    for row_lanes in ROW_LANES {
        for (trans_a, trans_b) in TRANSPOSES {
            for &shape in shapes {
                check_gemm(g, rng, t, None, false, shape, false, GemmOptions { trans_a, trans_b, kernel, row_lanes, ..Default::default() })?;
            }
        }
        let o = GemmOptions { relu: true, alpha: -0.5, beta: 1.0, kernel, row_lanes, trans_b: true, ..Default::default() };
        check_gemm(g, rng, t, Some(3), false, (9, 72, 8), true, o)?;
        check_gemm(g, rng, t, Some(5), true, (13, 33, 4), true, o)?;
    }
    Ok(())
}

/// The kernels that take each reduced precision, with the ROW_LANES values worth covering.
fn reduced_kernels(precision: Precision) -> Vec<(GemmKernel, Option<u32>)> {
    match precision {
        Precision::Bf16 => vec![(GemmKernel::Tex8, None), (GemmKernel::Tex8Shared, None), (GemmKernel::Tex8Shared, Some(1)), (GemmKernel::Tex8Shared, Some(64))],
        _ => GemmKernel::ALL.into_iter().filter(|k| k.takes(precision) && k.tile_config().is_some()).map(|k| (k, None)).collect(),
    }
}

/// f16 kernels need SHADER_F16: without it the check only verifies that they are refused.
fn f16_missing(g: &Gpu, t: &mut Tally) -> bool {
    if g.has_f16() {
        return false;
    }
    let o = GemmOptions { kernel: GemmKernel::Tile64, precision: Precision::F16, ..Default::default() };
    let refused = run_gemm(g, &mut SplitMix64::new(1), None, false, (4, 4, 4), false, o, |rng, len| rng.vec(len, -1.0, 1.0));
    t.require(refused.as_ref().is_err_and(|e| e.to_string().contains("shader-f16")), || "f16 operands on an adapter without shader-f16 were not refused".into());
    t.skipped = Some("no shader-f16 on this adapter".into());
    true
}

/// Rounding each operand to `precision` (round to nearest even, u = 2^-8 for bfloat16, 2^-11
/// for f16) moves each product by at most (2 u + u^2) of its size; the f32 sums add k * eps. So
/// every output must lie within 2u(1 + u) * sum_k |a| |b| (+ the f32 term) of the float64
/// reference, whatever the shape, transposes, batches and epilogue. K values not a multiple of 8
/// check the zero padding of the last texel (bf16) and of the last tile stage (f16).
fn gemm_reduced(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally, precision: Precision, u: f64) -> Result<()> {
    let transposes: &[(bool, bool)] = if size == Size::Quick { &[(false, true)] } else { &TRANSPOSES };
    for (kernel, row_lanes) in reduced_kernels(precision) {
        let mut largest = 0.0f64;
        for &(trans_a, trans_b) in transposes {
            for (batch, broadcast, (m, n, k)) in [(None, false, (13, 67, 31)), (None, false, (70, 130, 64)), (Some(3), true, (9, 40, 5)), (Some(2), false, (33, 7, 100))] {
                for (relu, bias, alpha, beta) in [(false, false, 1.0, 0.0), (true, true, -0.5, 1.0)] {
                    let o = GemmOptions { trans_a, trans_b, relu, alpha, beta, kernel, row_lanes, precision };
                    let case = run_gemm(g, rng, batch, broadcast, (m, n, k), bias, o, |rng, len| rng.vec(len, -1.0, 1.0))?;
                    let bounds: Vec<f64> = case.scale.iter().map(|s| s * 2.0 * u * (1.0 + u) + 4.0 * k as f64 * f32::EPSILON as f64 + 1e-6).collect();
                    t.within(&format!("{precision:?} {kernel:?} {o:?} {m}x{n}x{k}"), &case.got, &case.want, &bounds);
                    for ((got, want), scale) in case.got.iter().zip(&case.want).zip(&case.scale) {
                        largest = largest.max((*got as f64 - want).abs() / scale.max(1e-30));
                    }
                }
            }
        }
        // The rounding is really there (a silent f32 fallback would pass the bound too).
        t.require(largest > u / 16.0, || format!("{kernel:?} row_lanes {row_lanes:?}: {precision:?} errors at most {largest} of the scale: operands were not rounded"));
    }
    Ok(())
}

fn gemm_bf16(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    gemm_reduced(g, rng, size, t, Precision::Bf16, 2f64.powi(-8))
}

fn gemm_f16(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    if f16_missing(g, t) {
        return Ok(());
    }
    gemm_reduced(g, rng, size, t, Precision::F16, 2f64.powi(-11))
}

/// Small integers are exact in bfloat16 and f16 and their products and sums exact in f32, so
/// any mismatch is a layout fault (pairing of even and odd k, padding, batch or row offsets).
fn gemm_exact(g: &Gpu, rng: &mut SplitMix64, t: &mut Tally, precision: Precision) -> Result<()> {
    let ints = |rng: &mut SplitMix64, len: usize| (0..len).map(|_| (rng.next_u64() % 17) as f32 - 8.0).collect::<Vec<f32>>();
    for (kernel, row_lanes) in reduced_kernels(precision) {
        for (trans_a, trans_b) in [(false, false), (true, true)] {
            // The last: packed rows of 38 bfloat16 texels, past one pack workgroup's 32.
            for (batch, broadcast, (m, n, k)) in [(None, false, (1, 33, 1)), (None, false, (19, 45, 23)), (Some(4), true, (11, 64, 17)), (Some(2), false, (8, 9, 8)), (Some(2), false, (5, 7, 300))] {
                let o = GemmOptions { trans_a, trans_b, kernel, row_lanes, precision, ..Default::default() };
                let case = run_gemm(g, rng, batch, broadcast, (m, n, k), true, o, ints)?;
                t.close(&format!("exact {precision:?} {kernel:?} {m}x{n}x{k} {o:?}"), &case.got, &case.want, 0.0, 0.0);
            }
        }
    }
    Ok(())
}

fn gemm_bf16_exact(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    gemm_exact(g, rng, t, Precision::Bf16)
}

fn gemm_f16_exact(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    if f16_missing(g, t) {
        return Ok(());
    }
    gemm_exact(g, rng, t, Precision::F16)
}

fn elementwise(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let sizes: &[usize] = if size == Size::Quick { &[7, 1025] } else { &[1, 7, 255, 256, 1023, 1025, 4099] };
    for &n in sizes {
        // Positive inputs for log and sqrt; mixed signs for the rest.
        for op in UnaryOp::ALL {
            let lo = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt) { 0.01 } else { -3.0 };
            let mut x = rng.vec(n, lo, 3.0);
            if op == UnaryOp::Positive {
                // Its edge: unvoiced frames are exactly zero.
                x.iter_mut().step_by(3).for_each(|v| *v = 0.0);
            }
            let (tx, ty) = (g.upload_f32(&x, &[n])?, poisoned(g, &[n])?);
            let mut step = g.step("selftest.unary");
            elementwise::unary(&mut step, op, &tx, &ty)?;
            step.submit()?;
            let want: Vec<f64> = x.iter().map(|&v| op.reference(v as f64)).collect();
            // Transcendentals on GPUs are not correctly rounded; a few ulp is the norm.
            t.close(&format!("{op:?} n={n}"), &g.read_f32(&ty)?, &want, 1e-6, 1e-5);
        }
        for op in BinaryOp::ALL {
            let x = rng.vec(n, -3.0, 3.0);
            // Divisors kept away from zero.
            let y: Vec<f32> = rng.vec(n, 0.5, 3.0).iter().map(|v| if rng.next_u64().is_multiple_of(2) { *v } else { -*v }).collect();
            let (tx, ty, tz) = (g.upload_f32(&x, &[n])?, g.upload_f32(&y, &[n])?, poisoned(g, &[n])?);
            let mut step = g.step("selftest.binary");
            elementwise::binary(&mut step, op, &tx, &ty, &tz)?;
            step.submit()?;
            let want: Vec<f64> = x.iter().zip(&y).map(|(&a, &b)| op.reference(a as f64, b as f64)).collect();
            t.close(&format!("{op:?} n={n}"), &g.read_f32(&tz)?, &want, 1e-6, 1e-6);
        }
        let filled = poisoned(g, &[n])?;
        let mut step = g.step("selftest.fill");
        elementwise::fill(&mut step, &filled, 2.5)?;
        step.submit()?;
        t.close(&format!("fill n={n}"), &g.read_f32(&filled)?, &vec![2.5; n], 0.0, 0.0);
    }
    // Transposes of awkward shapes (a row, a column, sizes past a workgroup's 1024 elements).
    for (rows, cols) in [(1, 7), (7, 1), (5, 3), (33, 65), (130, 59)] {
        let x = rng.vec(rows * cols, -3.0, 3.0);
        let (tx, ty) = (g.upload_f32(&x, &[rows, cols])?, poisoned(g, &[cols, rows])?);
        let mut step = g.step("selftest.transpose");
        elementwise::transpose(&mut step, &tx, &ty)?;
        step.submit()?;
        let mut want = vec![0f64; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                want[c * rows + r] = x[r * cols + c] as f64;
            }
        }
        t.close(&format!("transpose {rows}x{cols}"), &g.read_f32(&ty)?, &want, 0.0, 0.0);
    }
    Ok(())
}

/// im2col + GEMM forward, and the backward of L = sum(y * r) against finite differences.
fn conv1d(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    for (batch, l_in, c_in, c_out, k, same) in [(2, 7, 3, 5, 5, true), (3, 11, 1, 4, 3, true), (1, 9, 4, 3, 4, false), (2, 5, 2, 7, 5, false), (1, 6, 3, 2, 2, true)] {
        let s = conv::ConvShape::new(batch, l_in, c_in, k, same)?;
        let x = rand64(rng, batch * l_in * c_in);
        let w = rand64(rng, k * c_in * c_out);
        let bias = rand64(rng, c_out);
        let r = rand64(rng, batch * s.l_out * c_out);
        let (tx, tw, tb, tr) = (up(g, &x, &[batch, l_in, c_in])?, up(g, &w, &[k * c_in, c_out])?, up(g, &bias, &[c_out])?, up(g, &r, &[batch * s.l_out, c_out])?);
        let cols = poisoned(g, &[batch * s.l_out, s.width()])?;
        let y = poisoned(g, &[batch * s.l_out, c_out])?;
        let dcols = poisoned(g, &[batch * s.l_out, s.width()])?;
        let dx = poisoned(g, &[batch, l_in, c_in])?;
        let dw = poisoned(g, &[k * c_in, c_out])?;
        let mut step = g.step("selftest.conv");
        conv::im2col(&mut step, &s, &tx, &cols)?;
        gemm::gemm(&mut step, &cols, &tw, Some(&tb), &y, &GemmOptions::default())?;
        // dW = cols^T r, dcols = r W^T, dx = col2im(dcols).
        gemm::gemm(&mut step, &cols, &tr, None, &dw, &GemmOptions { trans_a: true, ..Default::default() })?;
        gemm::gemm(&mut step, &tr, &tw, None, &dcols, &GemmOptions { trans_b: true, ..Default::default() })?;
        conv::col2im(&mut step, &s, &dcols, &dx)?;
        step.submit()?;
        let what = format!("conv b{batch} l{l_in} c{c_in}->{c_out} k{k} same={same}");
        t.close(&format!("{what} forward"), &g.read_f32(&y)?, &conv::reference(&s, &x, &w, &bias, c_out), 1e-5, 1e-5);
        let loss_x = |xv: &[f64]| dot(&conv::reference(&s, xv, &w, &bias, c_out), &r);
        let loss_w = |wv: &[f64]| dot(&conv::reference(&s, &x, wv, &bias, c_out), &r);
        t.close(&format!("{what} dx"), &g.read_f32(&dx)?, &numeric_grad(&x, loss_x), 1e-4, 1e-4);
        t.close(&format!("{what} dw"), &g.read_f32(&dw)?, &numeric_grad(&w, loss_w), 1e-4, 1e-4);
    }
    Ok(())
}

/// Batch norm in training mode (two-pass statistics, moving averages), its backward against
/// finite differences, evaluation mode, and the column sums its gradients use; over plain rows
/// and over sequences' valid steps (padded steps hold garbage, which must change nothing, bit
/// for bit, and come out zero in y and dx).
fn batch_norm(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    let o = norm::BatchNorm::default();
    // (rows, cols, rows per group, each group's valid steps when only those count): groups of
    // one row, one group, several, and sequences with lengths of none, some, all and more.
    type Case = (usize, usize, usize, Option<Vec<u32>>);
    let cases: [Case; 6] = [(2, 1, 1, None), (13, 5, 13, None), (67, 3, 1, None), (24, 4, 6, None), (21, 5, 7, Some(vec![7, 2, 5])), (36, 3, 9, Some(vec![1, 9, 12, 0]))];
    for (rows, cols, steps, lengths) in cases {
        // An offset mean checks the two-pass variance.
        let x: Vec<f64> = rand64(rng, rows * cols).iter().map(|v| 3.0 + v).collect();
        let valid: Option<Vec<bool>> = lengths.as_ref().map(|n| (0..rows).map(|r| r % steps < n[r / steps] as usize).collect());
        let counts = |r: usize| valid.as_ref().is_none_or(|v| v[r]);
        let gamma = rand64(rng, cols);
        let beta = rand64(rng, cols);
        let r = rand64(rng, rows * cols);
        let moving0: Vec<f64> = (0..cols).flat_map(|_| [0.0, 1.0]).collect();
        let affine: Vec<f64> = (0..cols).flat_map(|j| [beta[j], gamma[j]]).collect();
        let lengths_gpu = match &lengths {
            Some(n) => Some(g.upload(n, &[n.len()], DType::U32)?),
            None => None,
        };
        let valid_rows = (0..rows).filter(|&r| counts(r)).count();
        let over = || lengths_gpu.as_ref().map(|l| norm::ValidSteps { lengths: l, valid_rows });
        let what = format!("bn {rows}x{cols} in groups of {steps}{}", lengths.as_ref().map_or(String::new(), |n| format!(", valid steps {n:?}")));
        // One training step (forward, backward) and one evaluation forward on x with `padding`
        // in the padded rows: (y, dx, (dbeta, dgamma), moving averages, column sums, y in eval).
        let run = |padding: f64| -> Result<[Vec<f32>; 6]> {
            let xv: Vec<f64> = x.iter().enumerate().map(|(i, &v)| if counts(i / cols) { v } else { padding + v }).collect();
            let ta = up(g, &affine, &[cols, 2])?;
            let stats = poisoned(g, &[cols, 2])?;
            let moving = up(g, &moving0, &[cols, 2])?;
            let bn = norm::BnTensors { affine: &ta, stats: &stats, moving: &moving };
            let tx = up(g, &xv, &[rows, cols])?;
            let (y, dx, gs, sums, ye) = (poisoned(g, &[rows, cols])?, poisoned(g, &[rows, cols])?, poisoned(g, &[cols, 2])?, poisoned(g, &[cols])?, poisoned(g, &[rows, cols])?);
            let mut step = g.step("selftest.bn");
            norm::forward_train(&mut step, &o, &bn, &tx, &y, steps, over())?;
            norm::backward(&mut step, &bn, &tx, &up(g, &r, &[rows, cols])?, &gs, &dx, steps, over())?;
            norm::column_sum(&mut step, &tx, cols, steps, &sums)?;
            norm::forward_eval(&mut step, &o, &bn, &tx, &ye, steps, over())?;
            step.submit()?;
            Ok([g.read_f32(&y)?, g.read_f32(&dx)?, g.read_f32(&gs)?, g.read_f32(&moving)?, g.read_f32(&sums)?, g.read_f32(&ye)?])
        };
        let [y, dx, gs, moving, sums, ye] = run(0.0)?;
        let eps = o.eps as f64;
        let mask = valid.as_deref();
        let (want_y, mean, var) = norm::reference_forward(&x, cols, &gamma, &beta, eps, mask);
        t.close(&format!("{what} forward"), &y, &want_y, 1e-4, 1e-4);
        let loss_x = |xv: &[f64]| dot(&norm::reference_forward(xv, cols, &gamma, &beta, eps, mask).0, &r);
        t.close(&format!("{what} dx"), &dx, &numeric_grad(&x, loss_x), 2e-3, 2e-3);
        let loss_g = |gv: &[f64]| dot(&norm::reference_forward(&x, cols, gv, &beta, eps, mask).0, &r);
        let loss_b = |bv: &[f64]| dot(&norm::reference_forward(&x, cols, &gamma, bv, eps, mask).0, &r);
        let (dg, db) = (numeric_grad(&gamma, loss_g), numeric_grad(&beta, loss_b));
        let want_gs: Vec<f64> = (0..cols).flat_map(|j| [db[j], dg[j]]).collect();
        t.close(&format!("{what} (dbeta, dgamma)"), &gs, &want_gs, 1e-3, 1e-3);
        let m = o.momentum as f64;
        let want_moving: Vec<f64> = (0..cols).flat_map(|j| [(1.0 - m) * mean[j], m + (1.0 - m) * var[j]]).collect();
        t.close(&format!("{what} moving averages"), &moving, &want_moving, 1e-6, 1e-5);
        let want_sums: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| x[i * cols + j]).sum()).collect();
        t.close(&format!("{what} column sums"), &sums, &want_sums, 1e-5, 1e-5);
        // Evaluation mode normalises with the moving statistics.
        let want_e: Vec<f64> = (0..rows * cols)
            .map(|i| {
                let j = i % cols;
                if counts(i / cols) { gamma[j] * (x[i] - want_moving[2 * j]) / (want_moving[2 * j + 1] + eps).sqrt() + beta[j] } else { 0.0 }
            })
            .collect();
        t.close(&format!("{what} eval"), &ye, &want_e, 1e-4, 1e-4);
        if lengths.is_some() {
            // Garbage in the padded steps: y, dx, the parameters' gradients and the moving
            // averages the same, bit for bit (the column sums read every row, as they should).
            let zero_past = |v: &[f32]| v.iter().enumerate().all(|(i, &a)| counts(i / cols) || a == 0.0);
            t.require(zero_past(&y) && zero_past(&dx) && zero_past(&ye), || format!("{what}: padded steps are not zero in y, dx or eval y"));
            let [y2, dx2, gs2, moving2, _, ye2] = run(1e3)?;
            t.require(y2 == y && dx2 == dx && gs2 == gs && moving2 == moving && ye2 == ye, || format!("{what}: garbage in the padded steps changed the result"));
        }
    }
    Ok(())
}

fn max_pool(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    for (batch, l_in, ch, size, stride) in [(2, 7, 3, 2, 2), (1, 9, 2, 3, 2), (3, 5, 1, 2, 1), (1, 4, 5, 4, 4)] {
        let s = pool::PoolShape::new(batch, l_in, ch, size, stride)?;
        // Distinct values (no ties) so the finite differences see a smooth function.
        let mut x: Vec<f64> = (0..batch * l_in * ch).map(|i| i as f64 / 64.0).collect();
        for i in (1..x.len()).rev() {
            x.swap(i, rng.next_u64() as usize % (i + 1));
        }
        let r = rand64(rng, batch * s.l_out * ch);
        let out = batch * s.l_out * ch;
        let (y, winner, dx) = (poisoned(g, &[out])?, g.empty(&[out], DType::U32)?, poisoned(g, &[batch * l_in * ch])?);
        let mut step = g.step("selftest.pool");
        pool::forward(&mut step, &s, &up(g, &x, &[x.len()])?, &winner, &y)?;
        pool::backward(&mut step, &s, &up(g, &r, &[out])?, &winner, &dx)?;
        step.submit()?;
        let (want_y, want_w) = pool::reference(&s, &x);
        t.close("maxpool forward", &g.read_f32(&y)?, &want_y, 0.0, 0.0);
        let got_w = g.read::<u32>(&winner)?;
        t.require(got_w.iter().zip(&want_w).all(|(a, b)| *a as usize == *b), || format!("maxpool {s:?}: winners {got_w:?}, reference {want_w:?}"));
        let loss = |xv: &[f64]| dot(&pool::reference(&s, xv).0, &r);
        t.close(&format!("maxpool dx {s:?}"), &g.read_f32(&dx)?, &numeric_grad(&x, loss), 1e-6, 1e-5);
    }
    Ok(())
}

fn softmax_cross_entropy(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    for (batch, classes) in [(1, 2), (5, 7), (67, 8)] {
        // Large logits check the max subtraction.
        let z: Vec<f64> = rand64(rng, batch * classes).iter().map(|v| 30.0 * v).collect();
        let labels: Vec<u32> = (0..batch).map(|_| (rng.next_u64() % classes as u64) as u32).collect();
        let w: Vec<f64> = (0..classes).map(|_| rng.uniform(0.5, 2.0) as f64).collect();
        let (loss_t, dz) = (poisoned(g, &[batch])?, poisoned(g, &[batch, classes])?);
        let mut step = g.step("selftest.ce");
        loss::softmax_cross_entropy(&mut step, &up(g, &z, &[batch, classes])?, &g.upload(&labels, &[batch], DType::U32)?, &up(g, &w, &[classes])?, &loss_t, &dz)?;
        step.submit()?;
        let (want_loss, want_grad) = loss::reference(&z, &labels, &w, classes);
        t.close("ce loss", &g.read_f32(&loss_t)?, &want_loss, 1e-4, 1e-5);
        t.close("ce grad", &g.read_f32(&dz)?, &want_grad, 1e-6, 1e-5);
        let mean_loss = |zv: &[f64]| loss::reference(zv, &labels, &w, classes).0.iter().sum::<f64>() / batch as f64;
        t.close("ce grad vs finite differences", &g.read_f32(&dz)?, &numeric_grad(&z, mean_loss), 1e-5, 1e-4);
    }
    Ok(())
}

/// Training-time augmentation against its float64 reference (the same hash draws): masks
/// inside each example's valid steps only, noise of the asked size, padding untouched; and the
/// padding mask of the convolution blocks over sequences.
fn augment(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    use crate::ops::dropout::{self, Augment};
    let mut zeroed = 0;
    // (batch, steps, the model's input length, channels, lengths, augmentation): noise drawn
    // at the index an element has at full length.
    for (batch, steps, full_steps, channels, lengths, a) in [
        (3usize, 7usize, 7usize, 5usize, vec![7u32, 3, 0], Augment { noise: 0.3, time_mask: 2, feature_mask: 1 }),
        (2, 40, 56, 59, vec![40, 17], Augment { noise: 0.1, time_mask: 10, feature_mask: 8 }),
        (4, 9, 13, 3, vec![9, 1, 5, 8], Augment { noise: 0.0, time_mask: 0, feature_mask: 2 }),
    ] {
        let seed = rng.next_u64();
        let mut x = rng.vec(batch * steps * channels, -2.0, 2.0);
        // Padding is zero in the inputs the model gets, and must stay so.
        for b in 0..batch {
            x[(b * steps + lengths[b] as usize) * channels..(b + 1) * steps * channels].fill(0.0);
        }
        let (tx, tl, ty) = (g.upload_f32(&x, &[batch * steps, channels])?, g.upload(&lengths, &[batch], crate::gpu::DType::U32)?, poisoned(g, &[batch * steps, channels])?);
        let mut step = g.step("selftest.augment");
        dropout::augment(&mut step, &a, seed, (batch, steps, channels), full_steps, &tx, &tl, &ty)?;
        step.submit()?;
        let want = dropout::reference_augment(&a, seed, (batch, steps, channels), full_steps, &x, &lengths);
        let got = g.read_f32(&ty)?;
        t.close(&format!("augment {batch}x{steps}(of {full_steps})x{channels} {a:?}"), &got, &want, 1e-5, 1e-5);
        zeroed += want.iter().zip(&x).filter(|(w, v)| **w == 0.0 && **v != 0.0).count();
    }
    // Each example draws its mask widths from 0 up: over all of them (about one chance in a
    // million of none) some elements must have been masked for the check to mean anything.
    t.require(zeroed > 0, || "augment: no element was masked in any case; the check needs some".to_string());
    // Padding masked to zero (the sequence models' convolution blocks), garbage in the padding
    // and lengths of none, some and every step (and past them).
    for (batch, steps, channels, lengths) in [(3usize, 7usize, 5usize, vec![7u32, 3, 0]), (2, 40, 59, vec![40, 17]), (4, 9, 3, vec![9, 1, 5, 12])] {
        let x = rng.vec(batch * steps * channels, -2.0, 2.0);
        let (tx, tl, ty) = (g.upload_f32(&x, &[batch * steps, channels])?, g.upload(&lengths, &[batch], crate::gpu::DType::U32)?, poisoned(g, &[batch * steps, channels])?);
        let mut step = g.step("selftest.mask_padding");
        dropout::mask_padding(&mut step, (batch, steps, channels), &tx, &tl, &ty)?;
        step.submit()?;
        let want = dropout::reference_mask_padding((batch, steps, channels), &x, &lengths);
        t.close(&format!("mask_padding {batch}x{steps}x{channels} {lengths:?}"), &g.read_f32(&ty)?, &want, 0.0, 0.0);
    }
    Ok(())
}

/// Adam on several tensors at once (awkward sizes, one past a workgroup's 256 lanes many
/// times), plain, with weight decay, and clipped by global norm at a norm some steps' gradients
/// pass and others do not: against the float64 reference.
fn adam(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    let sizes = [1031usize, 7, 70_001];
    let configs = [
        optim::Adam::default(),
        optim::Adam { lr: 0.01, weight_decay: 0.01, ..Default::default() },
        // Gradients below have global norms of about 1.5 to 240: clipping at 60 engages on some.
        optim::Adam { lr: 0.01, clip_norm: 60.0, ..Default::default() },
    ];
    for o in configs {
        let mut w: Vec<Vec<f64>> = sizes.iter().map(|&n| rand64(rng, n)).collect();
        let (mut m, mut v): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (sizes.iter().map(|&n| vec![0.0; n]).collect(), sizes.iter().map(|&n| vec![0.0; n]).collect());
        let tw = w.iter().map(|x| up(g, x, &[x.len()])).collect::<Result<Vec<_>>>()?;
        let tm = m.iter().map(|x| up(g, x, &[x.len()])).collect::<Result<Vec<_>>>()?;
        let tv = v.iter().map(|x| up(g, x, &[x.len()])).collect::<Result<Vec<_>>>()?;
        let mut clipped_steps = 0;
        for step_no in 1..=6 {
            let scale = [0.01, 1.0, 0.2, 1.5, 0.05, 0.5][step_no as usize - 1];
            let grads: Vec<Vec<f64>> = sizes.iter().map(|&n| rand64(rng, n).iter().map(|x| x * scale).collect()).collect();
            let tg = grads.iter().map(|x| up(g, x, &[x.len()])).collect::<Result<Vec<_>>>()?;
            let updates: Vec<optim::Update> = (0..sizes.len()).map(|i| optim::Update { grad: &tg[i], weight: &tw[i], m: &tm[i], v: &tv[i] }).collect();
            let mut step = g.step("selftest.adam");
            optim::adam(&mut step, &o, step_no, &updates)?;
            step.submit()?;
            let factor = optim::clip_scale(&o, &grads.iter().map(|x| x.as_slice()).collect::<Vec<_>>());
            clipped_steps += (factor < 1.0) as usize;
            for i in 0..sizes.len() {
                let scaled: Vec<f64> = grads[i].iter().map(|x| x * factor).collect();
                optim::reference(&o, step_no, &scaled, &mut w[i], &mut m[i], &mut v[i]);
            }
        }
        if o.clip_norm > 0.0 {
            t.require((1..6).contains(&clipped_steps), || format!("adam clipping: {clipped_steps} of 6 steps clipped; the check needs some of each"));
        }
        for i in 0..sizes.len() {
            t.close(&format!("adam {o:?} weights {}", sizes[i]), &g.read_f32(&tw[i])?, &w[i], 1e-6, 1e-5);
            t.close("adam m", &g.read_f32(&tm[i])?, &m[i], 1e-7, 1e-5);
            t.close("adam v", &g.read_f32(&tv[i])?, &v[i], 1e-8, 1e-5);
        }
    }
    Ok(())
}

fn rbf_kernel(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    for (rows, cols, d) in [(1, 1, 1), (7, 13, 5), (33, 70, 118), (130, 9, 3)] {
        let x = rng.vec(rows * d, -2.0, 2.0);
        let c = rng.vec(cols * d, -2.0, 2.0);
        let gamma = 1.0 / d as f32;
        let (tx, tc) = (g.upload_f32(&x, &[rows, d])?, g.upload_f32(&c, &[cols, d])?);
        let (xn, cn) = (g.empty(&[rows], DType::F32)?, g.empty(&[cols], DType::F32)?);
        let k = poisoned(g, &[rows, cols])?;
        let mut step = g.step("selftest.rbf");
        kernel::sq_norms(&mut step, &tx, &xn)?;
        kernel::sq_norms(&mut step, &tc, &cn)?;
        kernel::rbf(&mut step, &tx, &xn, &tc, &cn, gamma, &k)?;
        step.submit()?;
        // exp(-gamma d2) with d2 from norms minus dots: cancellation costs ~1e-6 of |x|^2 in d2.
        t.close(&format!("rbf {rows}x{cols}x{d}"), &g.read_f32(&k)?, &kernel::reference_rbf(&x, &c, d, gamma as f64), 2e-5, 1e-4);
    }
    Ok(())
}

/// The conjugate-gradient solve of (K + D) A = Y for every column of Y, one of them zero (it
/// must stay zero, not turn into NaN).
fn ridge_solve(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    let (n, c, dim) = (67, 5, 6);
    let pts = rng.vec(n * dim, -1.0, 1.0);
    let k64 = kernel::reference_rbf(&pts, &pts, dim, 0.5);
    let d64: Vec<f64> = (0..n).map(|_| rng.uniform(0.02, 0.3) as f64).collect();
    let mut y = rng.vec(n * c, -1.0, 1.0);
    for i in 0..n {
        y[i * c + 2] = 0.0;
    }
    let k = g.upload_f32(&k64.iter().map(|v| *v as f32).collect::<Vec<_>>(), &[n, n])?;
    let d = g.upload_f32(&d64.iter().map(|v| *v as f32).collect::<Vec<_>>(), &[n])?;
    let ty = g.upload_f32(&y, &[n, c])?;
    let (a, report) = kernel::solve_ridge(g, &k, &d, &ty, 1e-5, 2000)?;
    let want = kernel::reference_solve(&k64, &d64, &y.iter().map(|v| *v as f64).collect::<Vec<_>>(), n, c);
    t.require(report.relative_residual < 1e-5 && report.iterations < 2000, || format!("ridge solve did not converge: {report:?}"));
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    t.close("ridge solution", &g.read_f32(&a)?, &want, 1e-3 * scale, 1e-3);
    Ok(())
}

/// k nearest neighbours against a brute-force float64 search, at awkward sizes, including
/// duplicated training rows (exact ties, which go to the lower index) and k up to its maximum.
/// Distances are f32 from norms and a GEMM, so a neighbour may differ from the reference's only
/// where the two distances are within rounding: every returned neighbour must be as near as the
/// reference's k-th (within the tolerance) and its reported distance right.
fn knn(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let shapes: &[(usize, usize, usize, usize)] = if size == Size::Quick { &[(7, 33, 5, 3), (13, 130, 59, 16)] } else { &[(1, 1, 1, 1), (7, 33, 5, 3), (13, 130, 59, 16), (70, 517, 118, 5), (3, 20, 2, 7)] };
    for &(m, n, d, k) in shapes {
        let mut train = rng.vec(n * d, -1.0, 1.0);
        // Exact duplicates of row 0 at the end: ties broken by index.
        if n > 4 {
            let first = train[..d].to_vec();
            train[(n - 1) * d..].copy_from_slice(&first);
        }
        let queries = rng.vec(m * d, -1.0, 1.0);
        let (tq, tt) = (g.upload_f32(&queries, &[m, d])?, g.upload_f32(&train, &[n, d])?);
        let (index, dist) = knn_op::neighbours(g, &tq, &tt, k)?;
        let want = knn_op::reference(&queries, &train, d, k);
        let exact = |q: usize, j: u32| -> f64 { queries[q * d..(q + 1) * d].iter().zip(&train[j as usize * d..(j as usize + 1) * d]).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum() };
        // f32 sums of d terms of size up to 4 each: the tolerance the distances are compared at.
        let tol = 1e-5 * (d as f64 + 4.0);
        let mut got_d = Vec::new();
        let mut want_d = Vec::new();
        for q in 0..m {
            let kth = want[q][k - 1].1;
            for r in 0..k {
                let j = index[q * k + r];
                if j as usize >= n {
                    t.fault(format!("knn {m}x{n}x{d} k={k}: query {q} neighbour {r} is {j}, past {n} rows"));
                    continue;
                }
                t.require(exact(q, j) <= kth + tol, || format!("knn {m}x{n}x{d} k={k}: query {q} got row {j} at {} beyond the k-th {kth}", exact(q, j)));
                t.require(index[q * k..(q + 1) * k].iter().filter(|&&i| i == j).count() == 1, || format!("knn: query {q} lists row {j} twice"));
                got_d.push(dist[q * k + r]);
                want_d.push(exact(q, j));
            }
        }
        t.close(&format!("knn distances {m}x{n}x{d} k={k}"), &got_d, &want_d, tol, 1e-5);
    }
    // Exact ties: every training row the same; the neighbours are 0..k in order.
    let same = vec![0.5f32; 10 * 3];
    let (index, _) = knn_op::neighbours(g, &g.upload_f32(&[0.1, 0.2, 0.3], &[1, 3])?, &g.upload_f32(&same, &[10, 3])?, 4)?;
    t.require(index == [0, 1, 2, 3], || format!("ties: {index:?}, want [0, 1, 2, 3]"));
    Ok(())
}

/// The frame-distribution embedding against its float64 reference: clips of awkward lengths
/// (none, one frame, a constant column), blocks small enough that clips are split across them
/// and large enough to hold many, at awkward numbers of columns and features.
fn embedding(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let shapes: &[(usize, usize, usize)] = if size == Size::Quick { &[(7, 33, 5), (13, 67, 1000)] } else { &[(1, 1, 1), (7, 33, 5), (13, 67, 1000), (65, 130, 31), (3, 64, 7)] };
    for &(columns, width, limit) in shapes {
        let projection = embedding_op::Projection::new(columns, width, 1.0, rng.next_u64());
        let lengths = [0usize, 1, 2, 31, 67, 3];
        let clips: Vec<Vec<f32>> = lengths
            .iter()
            .enumerate()
            .map(|(c, &n)| {
                let mut f: Vec<f32> = rng.vec(n * columns, -3.0, 3.0).into_iter().map(|v| v * (1 + c) as f32 + 100.0 * c as f32).collect();
                // A column constant within clip 4.
                if c == 4 {
                    f.iter_mut().step_by(columns).for_each(|v| *v = 42.5);
                }
                f
            })
            .collect();
        let views: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
        let got = embedding_op::embed_in_blocks(g, &views, &projection, limit)?;
        let want: Vec<f64> = clips.iter().flat_map(|f| embedding_op::reference(f, &projection)).collect();
        t.close(&format!("embedding {columns} columns, {width} features, blocks of {limit} rows"), &got, &want, 2e-4, 1e-4);
    }
    Ok(())
}

/// Each clip's moments over its flagged (voiced) frames and over the others against the float64
/// reference: clips with no frame, one frame, every frame flagged, none flagged, a large offset
/// (a one-pass variance would cancel it), blocks that hold several clips or one.
fn voicing_moments(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let shapes: &[(usize, usize)] = if size == Size::Quick { &[(5, 40)] } else { &[(1, 1), (5, 40), (11, 3), (65, 1000)] };
    for &(columns, limit) in shapes {
        let flag = rng.below(columns);
        let take: Vec<usize> = (0..columns).filter(|&j| j != flag || columns == 1).take(8).collect();
        let lengths = [0usize, 1, 17, 2, 31, 9];
        let clips: Vec<Vec<f32>> = lengths
            .iter()
            .enumerate()
            .map(|(c, &n)| {
                let mut f: Vec<f32> = rng.vec(n * columns, -3.0, 3.0).into_iter().map(|v| v * (1 + c) as f32 + 1000.0 * c as f32).collect();
                for row in 0..n {
                    // Clip 3 all flagged, clip 5 none, the others about half.
                    f[row * columns + flag] = match c {
                        3 => 1.0,
                        5 => 0.0,
                        _ => (rng.below(2) as f32).max(if row == 0 { 1.0 } else { 0.0 }),
                    };
                }
                f
            })
            .collect();
        let views: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
        let got = segment_op::split_moments_in_blocks(g, &views, columns, &take, flag, limit)?;
        let want: Vec<f64> = clips.iter().flat_map(|f| segment_op::reference_split_moments(f, columns, &take, flag)).collect();
        t.close(&format!("voicing moments of {} of {columns} columns, blocks of {limit} rows", take.len()), &got, &want, 1e-5, 2e-6);
    }
    Ok(())
}

/// The forest's kernels on random levels: histograms equal to the reference count for count
/// (integers: exact), each node's split as good as the best the float64 reference finds (f32
/// scores may pick another of nearly equal ones) and "no split" exactly when none is allowed,
/// totals exact, the histogram left zero, routing exact; then evaluation of random forests
/// against a float64 walk. Outputs start poisoned.
fn forest(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    use forest_op::{GrowShape, NONE};
    // (rows, features, trees, candidates, bins, classes, level nodes, chunk, min_leaf)
    let shapes: &[[usize; 9]] = if size == Size::Quick {
        &[[31, 7, 3, 2, 5, 3, 5, 2, 1], [130, 13, 4, 3, 16, 7, 9, 9, 2]]
    } else {
        &[[1, 1, 1, 1, 2, 1, 1, 1, 1], [31, 7, 3, 2, 5, 3, 5, 2, 1], [130, 13, 4, 3, 16, 7, 9, 9, 2], [67, 33, 7, 5, 64, 16, 13, 4, 3], [200, 3, 2, 3, 256, 2, 3, 1, 1]]
    };
    for &[n, f, trees, candidates, bins, classes, l, chunk, min_leaf] in shapes {
        let s = GrowShape { rows: n, features: f, trees, candidates, bins, classes, min_leaf };
        let what = format!("forest n={n} F={f} T={trees} cand={candidates} B={bins} C={classes} L={l}");
        // Few distinct bins per feature in some shapes, so that "no split" happens too.
        let used: Vec<usize> = (0..f).map(|_| 1 + rng.below(bins)).collect();
        let bin_vals: Vec<u32> = (0..n * f).map(|e| rng.below(used[e % f]) as u32).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
        let boot: Vec<u32> = (0..trees * n).map(|_| rng.below(4) as u32).collect();
        let node: Vec<u32> = (0..trees * n).map(|_| if rng.below(5) == 0 { NONE } else { rng.below(l) as u32 }).collect();
        let cand: Vec<u32> = (0..l * candidates).map(|_| rng.below(f) as u32).collect();
        let weight: Vec<f32> = (0..classes).map(|_| rng.uniform(0.25, 4.0)).collect();
        let tb = g.upload(&bin_vals, &[n, f], DType::U32)?;
        let (tl, tbo, tn) = (g.upload(&labels, &[n], DType::U32)?, g.upload(&boot, &[trees, n], DType::U32)?, g.upload(&node, &[trees, n], DType::U32)?);
        let (tc, tw) = (g.upload(&cand, &[l, candidates], DType::U32)?, g.upload_f32(&weight, &[classes])?);
        let hist = g.empty(&[chunk * s.per_node()], DType::U32)?;
        let poison = |len: usize| g.upload(&vec![0xdead_beefu32; len], &[len], DType::U32);
        let (best, totals) = (poison(l * 3)?, poison(l * (classes + 1))?);
        let mut step = g.step("selftest.forest.clear");
        step.zero(&hist);
        step.submit()?;
        for lo in (0..l).step_by(chunk) {
            let hi = (lo + chunk).min(l);
            let mut step = g.step("selftest.forest.histogram");
            forest_op::histogram(&mut step, &s, &tb, &tl, &tbo, &tn, &tc, &hist, lo, hi)?;
            step.submit()?;
            let got = g.read::<u32>(&hist)?;
            let want = forest_op::histogram_reference(&s, &bin_vals, &labels, &boot, &node, &cand, lo, hi);
            t.require(got[..want.len()] == want[..], || format!("{what}: histogram of nodes {lo}..{hi} differs from the reference"));
            t.compared += want.len();
            let mut step = g.step("selftest.forest.split");
            forest_op::split(&mut step, &s, &tw, &hist, &best, &totals, lo, hi)?;
            step.submit()?;
            let (best_v, totals_v) = (g.read::<u32>(&best)?, g.read::<u32>(&totals)?);
            let ch = classes + 1;
            for v in lo..hi {
                let node_h = &want[(v - lo) * s.per_node()..(v - lo + 1) * s.per_node()];
                let mut total = vec![0u32; ch];
                for (k, x) in node_h[..bins * ch].iter().enumerate() {
                    total[k % ch] += x;
                }
                t.require(totals_v[v * ch..(v + 1) * ch] == total[..], || format!("{what}: node {v} totals {:?}, want {total:?}", &totals_v[v * ch..(v + 1) * ch]));
                let score = |c: usize, b: usize| forest_op::split_score(&node_h[c * bins * ch..(c + 1) * bins * ch], classes, &weight, b, min_leaf);
                let top = (0..candidates).flat_map(|c| (0..bins).filter_map(move |b| score(c, b))).fold(f64::NEG_INFINITY, f64::max);
                let (c, b, next) = (best_v[v * 3], best_v[v * 3 + 1], best_v[v * 3 + 2]);
                if top == f64::NEG_INFINITY || !forest_op::may_split(&total, &weight, min_leaf) {
                    t.require(c == NONE, || format!("{what}: node {v} split at ({c}, {b}) where no split is allowed"));
                } else if c as usize >= candidates || b as usize >= bins {
                    t.fault(format!("{what}: node {v} got split ({c}, {b}), best score {top}"));
                } else {
                    match score(c as usize, b as usize) {
                        Some(sc) => t.close(&format!("{what}: node {v} split score"), &[sc as f32], &[top], 0.0, 1e-5),
                        None => t.fault(format!("{what}: node {v} split at ({c}, {b}), which leaves a side too small")),
                    }
                    // The next non-empty bin of the chosen candidate, and none between.
                    let rows_at = |k: usize| node_h[(c as usize * bins + k) * ch + classes];
                    let want_next = (b as usize + 1..bins).find(|&k| rows_at(k) > 0).map_or(NONE, |k| k as u32);
                    t.require(next == want_next, || format!("{what}: node {v} next non-empty bin {next}, want {want_next}"));
                }
            }
        }
        // Routing: random splits (some leaves, some nodes staying to retry) for every level node.
        let splits: Vec<u32> = (0..l)
            .flat_map(|v| match rng.below(4) {
                0 => [NONE, 0, 0],
                1 => [forest_op::STAY, 0, rng.below(2 * l) as u32],
                _ => [rng.below(f) as u32, rng.below(bins) as u32, 2 * v as u32],
            })
            .collect();
        let ts = g.upload(&splits, &[l, 3], DType::U32)?;
        let mut step = g.step("selftest.forest.route");
        forest_op::route(&mut step, &s, &tb, &ts, &tn)?;
        step.submit()?;
        let got = g.read::<u32>(&tn)?;
        let want: Vec<u32> = node
            .iter()
            .enumerate()
            .map(|(e, &v)| match v {
                NONE => NONE,
                v if splits[v as usize * 3] == NONE => NONE,
                v if splits[v as usize * 3] == forest_op::STAY => splits[v as usize * 3 + 2],
                v => {
                    let sp = &splits[v as usize * 3..v as usize * 3 + 3];
                    sp[2] + (bin_vals[(e % n) * f + sp[0] as usize] > sp[1]) as u32
                }
            })
            .collect();
        t.require(got == want, || format!("{what}: routing differs from the reference"));
    }
    // Evaluation: random trees (each node a leaf with probability 1/3 below the root, at most 9
    // deep), queries near the thresholds.
    for (m, width, trees, classes) in [(1, 1, 1, 1), (13, 5, 7, 3), (70, 118, 33, 7)] {
        let (mut feature, mut threshold, mut left, mut roots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut max_depth = 0;
        for _ in 0..trees {
            roots.push(feature.len() as u32);
            let mut open = vec![(feature.len(), 0usize)];
            feature.push(NONE);
            threshold.push(0.0f32);
            left.push(0u32);
            while let Some((v, d)) = open.pop() {
                max_depth = max_depth.max(d);
                if d >= 9 || (d > 0 && rng.below(3) == 0) {
                    continue;
                }
                feature[v] = rng.below(width) as u32;
                threshold[v] = rng.uniform(-1.0, 1.0);
                left[v] = feature.len() as u32;
                for _ in 0..2 {
                    open.push((feature.len(), d + 1));
                    feature.push(NONE);
                    threshold.push(0.0);
                    left.push(0);
                }
            }
        }
        let nodes = feature.len();
        let value: Vec<f32> = (0..nodes * classes).map(|_| rng.uniform(0.0, 1.0)).collect();
        let mut x = rng.vec(m * width, -1.2, 1.2);
        // Values exactly at thresholds too (x <= threshold goes left).
        let internal: Vec<usize> = (0..nodes).filter(|&v| feature[v] != NONE).collect();
        for q in 0..m {
            for _ in 0..width.min(internal.len()) {
                let v = internal[rng.below(internal.len())];
                x[q * width + feature[v] as usize] = threshold[v];
            }
        }
        let ft = [g.upload(&roots, &[trees], DType::U32)?, g.upload(&feature, &[nodes], DType::U32)?, g.upload_f32(&threshold, &[nodes])?, g.upload(&left, &[nodes], DType::U32)?, g.upload_f32(&value, &[nodes, classes])?];
        let tensors = forest_op::ForestTensors { roots: &ft[0], feature: &ft[1], threshold: &ft[2], left: &ft[3], value: &ft[4], classes, depth: max_depth };
        let (tx, leaf, proba) = (g.upload_f32(&x, &[m, width])?, g.upload(&vec![0xdead_beefu32; m * trees], &[m, trees], DType::U32)?, poisoned(g, &[m, classes])?);
        let mut step = g.step("selftest.forest.evaluate");
        forest_op::evaluate(&mut step, &tensors, &tx, &leaf, &proba)?;
        step.submit()?;
        let mut want = vec![0f64; m * classes];
        for q in 0..m {
            for &r in &roots {
                let v = forest_op::walk_reference(&x[q * width..(q + 1) * width], r, &feature, &threshold, &left) as usize;
                for c in 0..classes {
                    want[q * classes + c] += value[v * classes + c] as f64 / trees as f64;
                }
            }
        }
        t.close(&format!("forest evaluation {m}x{width}, {trees} trees, {classes} classes"), &g.read_f32(&proba)?, &want, 1e-6, 1e-5);
    }
    Ok(())
}

/// What one run of the LSTM kernels returns, read back: the sequence and last-state outputs,
/// each direction's [dWx, dWh, db] and dx.
struct LstmOutputs {
    h_seq: Vec<f32>,
    h_last: Vec<f32>,
    grads: Vec<[Vec<f32>; 3]>,
    dx: Vec<f32>,
}

/// The LSTM through time, both directions into one output: forward against the float64
/// reference; every gradient (inputs, both kernels, bias) against central differences of the
/// reference's loss sum(h_seq R) + sum(h_last S), through sequences of different lengths (one
/// empty); the masked time mean and its gradient; and masking itself: garbage in the padded
/// steps instead of zeros changes no output or gradient, bit for bit.
fn lstm(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    use lstm_op::{LstmKernel, LstmShape, LstmWeights};
    let shapes: &[(usize, usize, usize, usize)] = if size == Size::Quick { &[(3, 5, 4, 3)] } else { &[(3, 5, 4, 3), (4, 7, 2, 5), (1, 3, 1, 1), (2, 4, 3, 64), (2, 4, 3, 67), (11, 3, 2, 4)] };
    // Each shape with each kernel that takes its units (the lane kernel up to 64), in one
    // dispatch and in dispatches of 2 steps (as on adapters that bound an invocation's loop
    // iterations).
    let runs = shapes.iter().flat_map(|s| LstmKernel::ALL.into_iter().filter(|k| k.supports(g, s.3)).flat_map(move |k| [(s, k, None), (s, k, Some(2))]));
    // Past that the lane kernel refuses by name instead of reading past its uniform binding.
    {
        let (batch, steps, input, units) = (1, 2, 1, lstm_op::LANE_MAX_UNITS + 1);
        let s = LstmShape { batch, steps, input, units, reverse: false, out_stride: units, out_col: 0, kernel: LstmKernel::Lane, steps_per_dispatch: None, precision: Default::default() };
        let z = |n: usize| g.empty(&[n], crate::gpu::DType::F32);
        let (x, wx, wh, b, hs, hl) = (z(steps * input)?, z(input * 4 * units)?, z(units * 4 * units)?, z(4 * units)?, z(steps * units)?, z(units)?);
        let lens = lstm_op::lengths_tensor(g, &[steps as u32])?;
        let mut step = g.step("selftest.lstm.refusal");
        let refused = lstm_op::forward(&mut step, &s, &x, &LstmWeights { wx: &wx, wh: &wh, b: &b }, &lens, &hs, &hl).err().map(|e| e.to_string());
        t.require(refused.as_deref().is_some_and(|e| e.contains("units")), || format!("lstm Lane with {units} units: not refused by name ({refused:?})"));
    }
    for (&(batch, steps, input, units), kernel, steps_per_dispatch) in runs {
        let what = format!("lstm {kernel:?} B={batch} T={steps} D={input} H={units} steps per dispatch {steps_per_dispatch:?}");
        let mut lengths: Vec<u32> = (0..batch).map(|i| if i == 0 { steps as u32 } else { rng.below(steps + 1) as u32 }).collect();
        if batch > 2 {
            lengths[2] = 0;
        }
        let g4 = 4 * units;
        let x = rand64(rng, batch * steps * input);
        // Two directions, each its own weights, scaled to keep the gates off saturation.
        let dirs: Vec<[Vec<f64>; 3]> = (0..2).map(|_| [rand64(rng, input * g4).iter().map(|v| v * 0.8).collect(), rand64(rng, units * g4).iter().map(|v| v * 0.5).collect(), rand64(rng, g4).iter().map(|v| v * 0.3).collect()]).collect();
        let r = rand64(rng, batch * steps * 2 * units);
        let sw = rand64(rng, batch * 2 * units);
        let loss = |x: &[f64], dirs: &[[Vec<f64>; 3]]| -> f64 {
            let mut total = 0.0;
            for (d, [wx, wh, b]) in dirs.iter().enumerate() {
                let (hs, hl) = lstm_op::reference(x, wx, wh, b, &lengths, steps, units, d == 1);
                for row in 0..batch * steps {
                    for j in 0..units {
                        total += hs[row * units + j] * r[row * 2 * units + d * units + j];
                    }
                }
                for bi in 0..batch {
                    for j in 0..units {
                        total += hl[bi * units + j] * sw[bi * 2 * units + d * units + j];
                    }
                }
            }
            total
        };
        let run = |x_values: &[f64]| -> Result<LstmOutputs> {
            let tx = up(g, x_values, &[batch * steps, input])?;
            let len_t = lstm_op::lengths_tensor(g, &lengths)?;
            let ws: Vec<[Tensor; 3]> = dirs.iter().map(|[wx, wh, b]| Ok([up(g, wx, &[input, g4])?, up(g, wh, &[units, g4])?, up(g, b, &[g4])?])).collect::<Result<_>>()?;
            let h_seq = poisoned(g, &[batch * steps, 2 * units])?;
            let h_last = poisoned(g, &[batch, 2 * units])?;
            let (tr, ts) = (up(g, &r, &[batch * steps, 2 * units])?, up(g, &sw, &[batch, 2 * units])?);
            let dx = poisoned(g, &[batch * steps, input])?;
            let mut step = g.step("selftest.lstm");
            step.zero(&h_seq);
            step.zero(&h_last);
            let mut grads = Vec::new();
            let mut saved = Vec::new();
            for (d, [wx, wh, b]) in ws.iter().enumerate() {
                let s = LstmShape { batch, steps, input, units, reverse: d == 1, out_stride: 2 * units, out_col: d * units, kernel, steps_per_dispatch, precision: Default::default() };
                saved.push((s, lstm_op::forward(&mut step, &s, &tx, &LstmWeights { wx, wh, b }, &len_t, &h_seq, &h_last)?));
            }
            for (d, (s, sv)) in saved.iter().enumerate() {
                let [wx, wh, b] = &ws[d];
                grads.push(lstm_op::backward(&mut step, s, &tx, &LstmWeights { wx, wh, b }, &len_t, sv, &tr, &ts, Some((&dx, d == 1)))?);
            }
            step.submit()?;
            let grads = grads.iter().map(|[a, b, c]| Ok([g.read_f32(a)?, g.read_f32(b)?, g.read_f32(c)?])).collect::<Result<Vec<_>>>()?;
            Ok(LstmOutputs { h_seq: g.read_f32(&h_seq)?, h_last: g.read_f32(&h_last)?, grads, dx: g.read_f32(&dx)? })
        };
        let LstmOutputs { h_seq, h_last, grads, dx } = run(&x)?;
        // Forward against the reference.
        let (mut want_seq, mut want_last) = (vec![0f64; batch * steps * 2 * units], vec![0f64; batch * 2 * units]);
        for (d, [wx, wh, b]) in dirs.iter().enumerate() {
            let (hs, hl) = lstm_op::reference(&x, wx, wh, b, &lengths, steps, units, d == 1);
            for row in 0..batch * steps {
                want_seq[row * 2 * units + d * units..row * 2 * units + (d + 1) * units].copy_from_slice(&hs[row * units..(row + 1) * units]);
            }
            for bi in 0..batch {
                want_last[bi * 2 * units + d * units..bi * 2 * units + (d + 1) * units].copy_from_slice(&hl[bi * units..(bi + 1) * units]);
            }
        }
        t.close(&format!("{what} outputs"), &h_seq, &want_seq, 1e-5, 1e-4);
        t.close(&format!("{what} final states"), &h_last, &want_last, 1e-5, 1e-4);
        // Gradients against central differences (every element of small shapes, a sample of
        // the large one).
        let eps = 1e-5;
        let numeric = |perturb: &mut dyn FnMut(f64) -> f64| (perturb(eps) - perturb(-eps)) / (2.0 * eps);
        let sample = |n: usize, rng: &mut SplitMix64| -> Vec<usize> { if n <= 64 { (0..n).collect() } else { (0..24).map(|_| rng.below(n)).collect() } };
        let mut got = Vec::new();
        let mut want = Vec::new();
        for i in sample(x.len(), rng) {
            let mut xp = x.clone();
            want.push(numeric(&mut |e| {
                xp[i] = x[i] + e;
                loss(&xp, &dirs)
            }));
            got.push(dx[i]);
        }
        for d in 0..2 {
            for which in 0..3 {
                for i in sample(dirs[d][which].len(), rng) {
                    let mut dp = dirs.clone();
                    want.push(numeric(&mut |e| {
                        dp[d][which][i] = dirs[d][which][i] + e;
                        loss(&x, &dp)
                    }));
                    got.push(grads[d][which][i]);
                }
            }
        }
        t.close(&format!("{what} gradients vs central differences"), &got, &want, 1e-4, 1e-3);
        // Masking: garbage in the padded steps changes nothing, bit for bit.
        let mut garbage = x.clone();
        for bi in 0..batch {
            for ti in lengths[bi] as usize..steps {
                for di in 0..input {
                    garbage[(bi * steps + ti) * input + di] = 3.0 + rng.uniform(0.0, 5.0) as f64;
                }
            }
        }
        let LstmOutputs { h_seq: h2, h_last: l2, grads: g2, dx: dx2 } = run(&garbage)?;
        t.require(h2 == h_seq && l2 == h_last, || format!("{what}: padding changed the outputs"));
        t.require(g2 == grads, || format!("{what}: padding changed the weight gradients"));
        let valid = |i: usize| ((i / input) % steps) < lengths[i / input / steps] as usize;
        t.require(dx2.iter().zip(&dx).enumerate().all(|(i, (a, b))| if valid(i) { a == b } else { *a == 0.0 && *b == 0.0 }), || format!("{what}: padding changed the input gradients, or they are not zero there"));
    }
    // The masked time mean and its gradient.
    let (batch, steps, ch) = (4, 6, 5);
    let lengths = [6u32, 1, 0, 4];
    let x = rand64(rng, batch * steps * ch);
    let dy = rand64(rng, batch * ch);
    let len_t = lstm_op::lengths_tensor(g, &lengths)?;
    let (tx, tdy, y, dx) = (up(g, &x, &[batch * steps, ch])?, up(g, &dy, &[batch, ch])?, poisoned(g, &[batch, ch])?, poisoned(g, &[batch * steps, ch])?);
    let mut step = g.step("selftest.time_mean");
    lstm_op::time_mean(&mut step, batch, steps, ch, &tx, &len_t, &y)?;
    lstm_op::time_mean_backward(&mut step, batch, steps, ch, &tdy, &len_t, &dx)?;
    step.submit()?;
    let mut want_y = vec![0f64; batch * ch];
    let mut want_dx = vec![0f64; batch * steps * ch];
    for b in 0..batch {
        let len = lengths[b] as usize;
        for c in 0..ch {
            if len > 0 {
                want_y[b * ch + c] = (0..len).map(|ti| x[(b * steps + ti) * ch + c]).sum::<f64>() / len as f64;
            }
            for ti in 0..len {
                want_dx[(b * steps + ti) * ch + c] = dy[b * ch + c] / len as f64;
            }
        }
    }
    t.close("time mean", &g.read_f32(&y)?, &want_y, 1e-6, 1e-5);
    t.close("time mean gradient", &g.read_f32(&dx)?, &want_dx, 1e-6, 1e-5);
    attention_pool(g, rng, t)
}

/// f32 rounding bounds of attention pooling's output and weights, per element. A score is a dot
/// product of `ch` terms, so it is off by at most ch eps sum_c |w_c x_tc| (the GEMM check's k eps
/// count); exp adds (3 + 2 |s_t - top|) ulp (WGSL's accuracy) and the softmax's sum and division
/// (steps + 2) eps. The shift by the top score cancels, so alpha_t's relative error is at most
/// its score's error plus the largest one plus those, and y_c = sum_t alpha_t x_tc is off by at
/// most sum_t alpha_t |x_tc| (alpha_t's relative error + steps eps). A fixed tolerance failed on
/// 70 channels whose output cancelled to 0.004 (CI, seed 1796134355611265380 through GL).
fn attention_bounds(x: &[f64], w: &[f64], lengths: &[u32], steps: usize, alpha: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (batch, ch) = (lengths.len(), w.len());
    let eps = f32::EPSILON as f64;
    let (mut y_bounds, mut alpha_bounds) = (vec![1e-9; batch * ch], vec![1e-9; batch * steps]);
    for b in 0..batch {
        let len = (lengths[b] as usize).min(steps);
        let rows = |t: usize| &x[(b * steps + t) * ch..(b * steps + t + 1) * ch];
        let scores: Vec<f64> = (0..len).map(|t| dot(rows(t), w)).collect();
        let score_errors: Vec<f64> = (0..len).map(|t| ch as f64 * eps * rows(t).iter().zip(w).map(|(a, b)| (a * b).abs()).sum::<f64>()).collect();
        let top = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let worst = score_errors.iter().cloned().fold(0.0, f64::max);
        for t in 0..len {
            let relative = score_errors[t] + worst + (3.0 + 2.0 * (scores[t] - top).abs() + steps as f64 + 2.0) * eps;
            let a = alpha[b * steps + t];
            alpha_bounds[b * steps + t] += a * relative;
            for (c, v) in rows(t).iter().enumerate() {
                y_bounds[b * ch + c] += a * v.abs() * (relative + steps as f64 * eps);
            }
        }
    }
    (y_bounds, alpha_bounds)
}

/// Attention pooling against its float64 reference, its gradients (input and attention vector)
/// against central differences of that reference, and its masking: more steps than a
/// workgroup's 64 lanes, more channels than 64, an empty and a one-step sequence.
fn attention_pool(g: &Gpu, rng: &mut SplitMix64, t: &mut Tally) -> Result<()> {
    for (steps, ch, lengths) in [(130usize, 7usize, vec![130u32, 1, 0, 67]), (9, 70, vec![9, 5, 2])] {
        let batch = lengths.len();
        let what = format!("attention pooling {batch}x{steps}x{ch}");
        let x = rand64(rng, batch * steps * ch);
        let w = rand64(rng, ch);
        let dy = rand64(rng, batch * ch);
        let len_t = lstm_op::lengths_tensor(g, &lengths)?;
        // (output, weights, input gradient, scores' gradient)
        let run = |x: &[f64]| -> Result<[Vec<f32>; 4]> {
            let (tx, tw, tdy) = (up(g, x, &[batch * steps, ch])?, up(g, &w, &[ch])?, up(g, &dy, &[batch, ch])?);
            let (y, alpha, dx, dscore) = (poisoned(g, &[batch, ch])?, poisoned(g, &[batch, steps])?, poisoned(g, &[batch * steps, ch])?, poisoned(g, &[batch, steps])?);
            let mut step = g.step("selftest.attention_pool");
            lstm_op::attention_pool(&mut step, batch, steps, ch, &tx, &tw, &len_t, &y, &alpha)?;
            lstm_op::attention_pool_backward(&mut step, batch, steps, ch, &tx, &tw, &len_t, &alpha, &tdy, &dx, &dscore)?;
            step.submit()?;
            Ok([g.read_f32(&y)?, g.read_f32(&alpha)?, g.read_f32(&dx)?, g.read_f32(&dscore)?])
        };
        let [y, alpha, dx, dscore] = run(&x)?;
        let (want_y, want_alpha) = lstm_op::attention_reference(&x, &w, &lengths, steps);
        let (y_bounds, alpha_bounds) = attention_bounds(&x, &w, &lengths, steps, &want_alpha);
        t.within(&format!("{what} output"), &y, &want_y, &y_bounds);
        t.within(&format!("{what} weights"), &alpha, &want_alpha, &alpha_bounds);
        // The loss sum(dy . y) differentiated numerically, in float64.
        let loss = |x: &[f64], w: &[f64]| -> f64 { lstm_op::attention_reference(x, w, &lengths, steps).0.iter().zip(&dy).map(|(a, b)| a * b).sum() };
        let h = 1e-5;
        let fd = |i: usize, of_w: bool| -> f64 {
            let (mut xp, mut xm, mut wp, mut wm) = (x.clone(), x.clone(), w.clone(), w.clone());
            if of_w {
                wp[i] += h;
                wm[i] -= h;
            } else {
                xp[i] += h;
                xm[i] -= h;
            }
            (loss(&xp, &wp) - loss(&xm, &wm)) / (2.0 * h)
        };
        let want_dx: Vec<f64> = (0..x.len()).map(|i| fd(i, false)).collect();
        t.close(&format!("{what} input gradient vs central differences"), &dx, &want_dx, 1e-4, 1e-3);
        // dw = dscore^T x, as the layer forms it.
        let dw: Vec<f32> = (0..ch).map(|c| (0..batch * steps).map(|r| dscore[r] as f64 * x[r * ch + c]).sum::<f64>() as f32).collect();
        let want_dw: Vec<f64> = (0..ch).map(|i| fd(i, true)).collect();
        t.close(&format!("{what} attention-vector gradient vs central differences"), &dw, &want_dw, 1e-4, 1e-3);
        // Garbage past each length changes nothing, bit for bit, and gets no gradient.
        let mut garbage = x.clone();
        for (b, &len) in lengths.iter().enumerate() {
            for r in (b * steps + len as usize)..(b + 1) * steps {
                for c in 0..ch {
                    garbage[r * ch + c] = 4.0 + rng.uniform(0.0, 5.0) as f64;
                }
            }
        }
        let [y2, alpha2, dx2, dscore2] = run(&garbage)?;
        t.require(y2 == y && alpha2 == alpha && dscore2 == dscore, || format!("{what}: padding changed the output, the weights or the scores' gradient"));
        let valid = |r: usize| r % steps < lengths[r / steps] as usize;
        t.require(dx2 == dx && dx.chunks(ch).enumerate().all(|(r, v)| valid(r) || v.iter().all(|&g| g == 0.0)), || format!("{what}: padded steps got a gradient"));
    }
    Ok(())
}
