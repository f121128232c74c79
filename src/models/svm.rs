//! RBF support vector classification as libsvm (scikit-learn's SVC) does it: one binary machine
//! per pair of classes (one-vs-one, class i as +1 against j as -1 for i < j), each the solution
//! of the C-SVC dual by SMO with libsvm's second-order working-set selection, per-class bounds
//! C * class weight; probabilities by Platt scaling of each pair's decision values (fitted on
//! 5-fold cross-validated values, libsvm's procedure) coupled into one distribution by Wu, Lin &
//! Weng's method 2 (2004).
//!
//! What runs where: every kernel value comes from the GPU (ops::kernel::rbf, a GEMM of dot
//! products and the rows' squared norms), the training Gram matrix once per fit and, at
//! prediction, the queries against the support vectors, whose decision values for every pair are
//! one more GEMM with the coefficient matrix. SMO's steps run on the host over the Gram matrix
//! the GPU computed: each step reads two kernel rows of the pair's few hundred examples and
//! updates as many gradients, far less work than one dispatch costs.

use crate::dataset::Dataset;
use super::{Family, FitInput, Fitted, ModelKind, Validation, input_only};
use crate::gpu::{DType, Gpu, Tensor};
use crate::nn::checkpoint::{self, ModelMeta};
use crate::ops::kernel;
use crate::rng::SplitMix64;
use crate::store::{self, Loaded, Stored};
use anyhow::{Context, Result, bail};
use safetensors::Dtype;

/// What `--model svm` is fitted with (`ser train`'s svm flags; the names in a training
/// record); the rest of [`SvmConfig`] stays at its defaults.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The penalty C. 10 rather than scikit-learn's 1: validation accuracy 0.82 against 0.79 on
    /// RAVDESS (docs/results/history.md).
    #[serde(rename = "svm_c")]
    pub c: f64,
    /// RBF width; None: scikit-learn's "scale".
    #[serde(rename = "svm_gamma")]
    pub gamma: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        let fit = SvmConfig::default();
        Settings { c: fit.c, gamma: fit.gamma }
    }
}

/// What an SVM is fitted with; defaults are scikit-learn's SVC but for C (10, not 1: better on
/// validation, docs/results/history.md, "The study's classical models against scikit-learn").
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SvmConfig {
    /// The penalty C (each class's bound is C times its class weight).
    pub c: f64,
    /// RBF width; None is scikit-learn's gamma = "scale", 1 / (width * variance of the inputs).
    pub gamma: Option<f64>,
    /// SMO stops when the maximal KKT violation is below this (libsvm's eps).
    pub tolerance: f64,
    /// Cross-validation folds for the Platt fits (libsvm: 5).
    pub probability_folds: usize,
    /// Seeds the folds' permutation.
    pub seed: u64,
}

impl Default for SvmConfig {
    fn default() -> Self {
        SvmConfig { c: 10.0, gamma: None, tolerance: 1e-3, probability_folds: 5, seed: 0 }
    }
}

/// The pairs (i, j), i < j, in libsvm's order.
pub fn pairs(classes: usize) -> Vec<(usize, usize)> {
    (0..classes).flat_map(|i| (i + 1..classes).map(move |j| (i, j))).collect()
}

/// A fitted classifier.
pub struct Svm {
    /// Support vectors [s, width] (rows with a non-zero coefficient in some pair), on the GPU
    /// with their squared norms, and on the host for saving.
    sv: Tensor,
    sv_norms: Tensor,
    sv_rows: Vec<f32>,
    /// Coefficients alpha * y [s, pairs]: zero where a vector is not in the pair.
    coef: Tensor,
    coef_host: Vec<f32>,
    /// Per pair: the offset rho (decision = sum coef K - rho) and the Platt sigmoid A, B.
    rho: Vec<f64>,
    prob_a: Vec<f64>,
    prob_b: Vec<f64>,
    width: usize,
    classes: usize,
    gamma: f64,
}

/// One binary machine: coefficients alpha_i (0 <= alpha_i <= C_i), the offset, SMO steps, and
/// whether SMO converged (false: it stopped at its iteration cap, as libsvm's "reaching max
/// number of iterations").
#[derive(Clone, Debug)]
pub struct BinaryFit {
    pub alpha: Vec<f64>,
    pub rho: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// SMO steps a binary machine may take (libsvm's cap is of this order: max(10^7, 100 n)).
pub const MAX_SMO_ITERATIONS: usize = 10_000_000;

/// libsvm's floor for a non-positive curvature.
const TAU: f64 = 1e-12;

/// Solves min 1/2 a'Qa - e'a subject to y'a = 0, 0 <= a_i <= bound_i, with Q_ij = y_i y_j K_ij,
/// `k(i, j)` the kernel and `y` +1 / -1 (libsvm's Solver without shrinking). Stops at a maximal
/// violation below `eps`, or after `max_iter` steps.
pub fn smo(n: usize, k: impl Fn(usize, usize) -> f64, y: &[f64], bound: &[f64], eps: f64, max_iter: usize) -> BinaryFit {
    let mut alpha = vec![0f64; n];
    let mut grad = vec![-1f64; n];
    let up = |a: f64, i: usize| a >= bound[i];
    let low = |a: f64| a <= 0.0;
    let mut iterations = 0;
    let mut converged = false;
    while iterations < max_iter {
        // i: the most violating index among those that can move up.
        let (mut gmax, mut i) = (f64::NEG_INFINITY, usize::MAX);
        for t in 0..n {
            let can = if y[t] > 0.0 { !up(alpha[t], t) } else { !low(alpha[t]) };
            if can && -y[t] * grad[t] >= gmax {
                gmax = -y[t] * grad[t];
                i = t;
            }
        }
        if i == usize::MAX {
            converged = true;
            break;
        }
        // j: the second-order choice among those that can move down.
        let (mut gmax2, mut j, mut best) = (f64::NEG_INFINITY, usize::MAX, f64::INFINITY);
        let kii = k(i, i);
        for t in 0..n {
            let can = if y[t] > 0.0 { !low(alpha[t]) } else { !up(alpha[t], t) };
            if !can {
                continue;
            }
            let yg = y[t] * grad[t];
            gmax2 = gmax2.max(yg);
            let diff = gmax + yg;
            if diff > 0.0 {
                // libsvm's two cases (y_t = +1 or -1) both come to K_ii + K_tt - 2 K_it.
                let quad = kii + k(t, t) - 2.0 * k(i, t);
                let quad = if quad > 0.0 { quad } else { TAU };
                let obj = -diff * diff / quad;
                if obj <= best {
                    best = obj;
                    j = t;
                }
            }
        }
        if gmax + gmax2 < eps || j == usize::MAX {
            converged = true;
            break;
        }
        iterations += 1;
        let (old_i, old_j) = (alpha[i], alpha[j]);
        let (ci, cj) = (bound[i], bound[j]);
        let kij = k(i, j);
        let quad = (kii + k(j, j) - 2.0 * kij).max(0.0);
        let quad = if quad > 0.0 { quad } else { TAU };
        if y[i] != y[j] {
            let delta = (-grad[i] - grad[j]) / quad;
            let diff = alpha[i] - alpha[j];
            alpha[i] += delta;
            alpha[j] += delta;
            if diff > 0.0 {
                if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = diff;
                }
            } else if alpha[i] < 0.0 {
                alpha[i] = 0.0;
                alpha[j] = -diff;
            }
            if diff > ci - cj {
                if alpha[i] > ci {
                    alpha[i] = ci;
                    alpha[j] = ci - diff;
                }
            } else if alpha[j] > cj {
                alpha[j] = cj;
                alpha[i] = cj + diff;
            }
        } else {
            let delta = (grad[i] - grad[j]) / quad;
            let sum = alpha[i] + alpha[j];
            alpha[i] -= delta;
            alpha[j] += delta;
            if sum > ci {
                if alpha[i] > ci {
                    alpha[i] = ci;
                    alpha[j] = sum - ci;
                }
            } else if alpha[j] < 0.0 {
                alpha[j] = 0.0;
                alpha[i] = sum;
            }
            if sum > cj {
                if alpha[j] > cj {
                    alpha[j] = cj;
                    alpha[i] = sum - cj;
                }
            } else if alpha[i] < 0.0 {
                alpha[i] = 0.0;
                alpha[j] = sum;
            }
        }
        let (di, dj) = (alpha[i] - old_i, alpha[j] - old_j);
        for t in 0..n {
            grad[t] += y[t] * (y[i] * k(t, i) * di + y[j] * k(t, j) * dj);
        }
    }
    // The offset: the mean of y_i G_i over free vectors, else the middle of the feasible range.
    let (mut ub, mut lb, mut sum, mut free) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for t in 0..n {
        let yg = y[t] * grad[t];
        if up(alpha[t], t) {
            if y[t] < 0.0 { ub = ub.min(yg) } else { lb = lb.max(yg) }
        } else if low(alpha[t]) {
            if y[t] > 0.0 { ub = ub.min(yg) } else { lb = lb.max(yg) }
        } else {
            free += 1;
            sum += yg;
        }
    }
    let rho = if free > 0 { sum / free as f64 } else { (ub + lb) / 2.0 };
    BinaryFit { alpha, rho, iterations, converged }
}

/// Platt's sigmoid P(+1 | f) = 1 / (1 + exp(A f + B)) fitted to decision values `dec` of
/// examples labelled `positive` (Lin, Lin & Weng's Newton method with backtracking, as libsvm).
pub fn platt(dec: &[f64], positive: &[bool]) -> (f64, f64) {
    let prior1 = positive.iter().filter(|&&p| p).count() as f64;
    let prior0 = positive.len() as f64 - prior1;
    let (hi, lo) = ((prior1 + 1.0) / (prior1 + 2.0), 1.0 / (prior0 + 2.0));
    let t: Vec<f64> = positive.iter().map(|&p| if p { hi } else { lo }).collect();
    let objective = |a: f64, b: f64| -> f64 {
        dec.iter().zip(&t).map(|(&d, &t)| {
            let f = d * a + b;
            if f >= 0.0 { t * f + (-f).exp().ln_1p() } else { (t - 1.0) * f + f.exp().ln_1p() }
        }).sum()
    };
    let (mut a, mut b) = (0.0, ((prior0 + 1.0) / (prior1 + 1.0)).ln());
    let mut fval = objective(a, b);
    for _ in 0..100 {
        let (mut h11, mut h22, mut h21, mut g1, mut g2) = (1e-12, 1e-12, 0.0, 0.0, 0.0);
        for (&d, &t) in dec.iter().zip(&t) {
            let f = d * a + b;
            let (p, q) = if f >= 0.0 { ((-f).exp() / (1.0 + (-f).exp()), 1.0 / (1.0 + (-f).exp())) } else { (1.0 / (1.0 + f.exp()), f.exp() / (1.0 + f.exp())) };
            let d2 = p * q;
            h11 += d * d * d2;
            h22 += d2;
            h21 += d * d2;
            g1 += d * (t - p);
            g2 += t - p;
        }
        if g1.abs() < 1e-5 && g2.abs() < 1e-5 {
            break;
        }
        let det = h11 * h22 - h21 * h21;
        let (da, db) = (-(h22 * g1 - h21 * g2) / det, -(-h21 * g1 + h11 * g2) / det);
        let gd = g1 * da + g2 * db;
        let mut step = 1.0;
        while step >= 1e-10 {
            let (na, nb) = (a + step * da, b + step * db);
            let nf = objective(na, nb);
            if nf < fval + 1e-4 * step * gd {
                (a, b, fval) = (na, nb, nf);
                break;
            }
            step /= 2.0;
        }
        if step < 1e-10 {
            break;
        }
    }
    (a, b)
}

/// Wu, Lin & Weng's method 2: the distribution p whose pairwise ratios best match `r[i][j]` =
/// P(i | i or j) (libsvm's multiclass_probability).
pub fn couple(r: &[Vec<f64>]) -> Vec<f64> {
    let k = r.len();
    let mut q = vec![vec![0f64; k]; k];
    for t in 0..k {
        for j in 0..k {
            if j != t {
                q[t][t] += r[j][t] * r[j][t];
                q[t][j] = -r[j][t] * r[t][j];
            }
        }
    }
    let mut p = vec![1.0 / k as f64; k];
    let mut qp = vec![0f64; k];
    let eps = 0.005 / k as f64;
    for _ in 0..100.max(k) {
        let mut pqp = 0.0;
        for t in 0..k {
            qp[t] = (0..k).map(|j| q[t][j] * p[j]).sum();
            pqp += p[t] * qp[t];
        }
        if qp.iter().all(|v| (v - pqp).abs() < eps) {
            break;
        }
        for t in 0..k {
            let diff = (-qp[t] + pqp) / q[t][t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t][t] + 2.0 * qp[t])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[t][j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

/// scikit-learn's gamma = "scale": 1 / (width * variance of every input value).
pub fn scale_gamma(x: &[f32], width: usize) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    if var > 0.0 { 1.0 / (width as f64 * var) } else { 1.0 }
}

/// Decision values of held-out examples, from a machine fitted on the rest (one fold of the
/// Platt fit): `idx` are the pair's examples, `k` their Gram matrix.
/// Also returns how many of the folds' machines stopped at the iteration cap.
fn cross_validated(idx_len: usize, k: &dyn Fn(usize, usize) -> f64, y: &[f64], bound: &[f64], cfg: &SvmConfig, rng: &mut SplitMix64) -> (Vec<f64>, usize) {
    let mut unconverged = 0;
    let n = idx_len;
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    let folds = cfg.probability_folds.max(2).min(n);
    let mut dec = vec![0f64; n];
    for f in 0..folds {
        let (start, end) = (f * n / folds, (f + 1) * n / folds);
        let held = &perm[start..end];
        let rest: Vec<usize> = perm[..start].iter().chain(&perm[end..]).copied().collect();
        let (pos, neg) = (rest.iter().filter(|&&i| y[i] > 0.0).count(), rest.iter().filter(|&&i| y[i] < 0.0).count());
        if pos == 0 || neg == 0 {
            // libsvm: a fold that saw one class gives its sign to every held example.
            let v = if pos > 0 { 1.0 } else { -1.0 };
            held.iter().for_each(|&i| dec[i] = v);
            continue;
        }
        let ry: Vec<f64> = rest.iter().map(|&i| y[i]).collect();
        let rb: Vec<f64> = rest.iter().map(|&i| bound[i]).collect();
        let fit = smo(rest.len(), |a, b| k(rest[a], rest[b]), &ry, &rb, cfg.tolerance, MAX_SMO_ITERATIONS);
        unconverged += !fit.converged as usize;
        for &h in held {
            dec[h] = rest.iter().zip(&fit.alpha).filter(|(_, a)| **a > 0.0).map(|(&r, a)| a * y[r] * k(h, r)).sum::<f64>() - fit.rho;
        }
    }
    (dec, unconverged)
}

impl Svm {
    /// Fits one machine per pair of classes on `train` (every class must have examples), with
    /// per-class weights `class_weight` scaling C.
    pub fn fit(gpu: &Gpu, train: &Dataset, classes: usize, class_weight: &[f32], cfg: &SvmConfig) -> Result<(Svm, SvmReport)> {
        let (n, width) = (train.len(), train.width);
        if !(cfg.c > 0.0 && cfg.c.is_finite()) || cfg.gamma.is_some_and(|g| !(g > 0.0 && g.is_finite())) || class_weight.len() != classes {
            bail!("svm: C {} and gamma {:?} must be positive, with {classes} class weights", cfg.c, cfg.gamma);
        }
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for (i, &y) in train.y.iter().enumerate() {
            members.get_mut(y as usize).with_context(|| format!("svm: class {y} of {classes}"))?.push(i);
        }
        if let Some(c) = members.iter().position(|m| m.is_empty()) {
            bail!("svm: class {c} has no training examples (every class needs some for its pairs)");
        }
        let gamma = cfg.gamma.unwrap_or_else(|| scale_gamma(&train.x, width));
        let started = std::time::Instant::now();
        let x = gpu.upload_f32(&train.x, &[n, width])?;
        let norms = gpu.empty(&[n], DType::F32)?;
        let mut step = gpu.step("svm.norms");
        kernel::sq_norms(&mut step, &x, &norms)?;
        step.submit()?;
        let k = kernel::rbf_rows(gpu, &train.x, width, &x, &norms, gamma as f32, None)?;
        let gram_s = started.elapsed().as_secs_f64();
        let pairs = pairs(classes);
        let mut rng = SplitMix64::new(cfg.seed);
        // Per pair: the members' coefficients alpha * y, rho, Platt's A and B.
        let mut coef_of: Vec<Vec<(usize, f64)>> = Vec::new();
        let (mut rho, mut prob_a, mut prob_b) = (Vec::new(), Vec::new(), Vec::new());
        let (mut iterations, mut unconverged) = (0, 0);
        for &(ci, cj) in &pairs {
            let idx: Vec<usize> = members[ci].iter().chain(&members[cj]).copied().collect();
            let y: Vec<f64> = idx.iter().map(|&i| if train.y[i] as usize == ci { 1.0 } else { -1.0 }).collect();
            let bound: Vec<f64> = idx.iter().map(|&i| cfg.c * class_weight[train.y[i] as usize] as f64).collect();
            let kp = |a: usize, b: usize| k[idx[a] * n + idx[b]] as f64;
            let fit = smo(idx.len(), kp, &y, &bound, cfg.tolerance, MAX_SMO_ITERATIONS);
            iterations += fit.iterations;
            unconverged += !fit.converged as usize;
            let (dec, folds_unconverged) = cross_validated(idx.len(), &kp, &y, &bound, cfg, &mut rng);
            unconverged += folds_unconverged;
            let (a, b) = platt(&dec, &y.iter().map(|&v| v > 0.0).collect::<Vec<_>>());
            coef_of.push(idx.iter().zip(&fit.alpha).zip(&y).filter(|((_, a), _)| **a > 0.0).map(|((&i, a), y)| (i, a * y)).collect());
            rho.push(fit.rho);
            prob_a.push(a);
            prob_b.push(b);
        }
        // The support vectors: every row with a coefficient in some pair, in training order.
        let mut slot = vec![usize::MAX; n];
        let mut sv_index = Vec::new();
        for &(i, _) in coef_of.iter().flatten() {
            if slot[i] == usize::MAX {
                slot[i] = 0;
                sv_index.push(i);
            }
        }
        sv_index.sort_unstable();
        for (s, &i) in sv_index.iter().enumerate() {
            slot[i] = s;
        }
        let mut coef = vec![0f32; sv_index.len() * pairs.len()];
        for (p, list) in coef_of.iter().enumerate() {
            for &(i, c) in list {
                coef[slot[i] * pairs.len() + p] = c as f32;
            }
        }
        let sv_rows: Vec<f32> = sv_index.iter().flat_map(|&i| train.x[i * width..(i + 1) * width].iter().copied()).collect();
        let svm = Svm::assemble(gpu, sv_rows, coef, rho, prob_a, prob_b, width, classes, gamma)?;
        if unconverged > 0 {
            eprintln!(
                "warning: svm: {unconverged} SMO solves (of the {} pairs' machines and their probability folds) stopped at {MAX_SMO_ITERATIONS} iterations before converging; they are used as they stand (libsvm warns the same); a larger C or unscaled inputs make this likelier",
                pairs.len()
            );
        }
        let report = SvmReport { support_vectors: sv_index.len(), smo_iterations: iterations, unconverged, gamma, gram_seconds: gram_s, seconds: started.elapsed().as_secs_f64() };
        Ok((svm, report))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(gpu: &Gpu, sv_rows: Vec<f32>, coef: Vec<f32>, rho: Vec<f64>, prob_a: Vec<f64>, prob_b: Vec<f64>, width: usize, classes: usize, gamma: f64) -> Result<Svm> {
        let s = sv_rows.len() / width.max(1);
        let p = pairs(classes).len();
        // An SVM without support vectors (every pair's alphas zero) still has its offsets: one
        // zero row keeps the tensors non-empty and changes no decision.
        let (rows, coefs) = if s == 0 { (vec![0f32; width], vec![0f32; p]) } else { (sv_rows.clone(), coef.clone()) };
        let s1 = s.max(1);
        let sv = gpu.upload_f32(&rows, &[s1, width])?;
        let sv_norms = gpu.empty(&[s1], DType::F32)?;
        let mut step = gpu.step("svm.sv_norms");
        kernel::sq_norms(&mut step, &sv, &sv_norms)?;
        step.submit()?;
        let coef_t = gpu.upload_f32(&coefs, &[s1, p])?;
        Ok(Svm { sv, sv_norms, sv_rows, coef: coef_t, coef_host: coef, rho, prob_a, prob_b, width, classes, gamma })
    }

    pub fn support_vectors(&self) -> usize {
        self.sv_rows.len() / self.width.max(1)
    }

    /// Decision values [len, pairs] (positive: the pair's first class) of every example of `x`.
    pub fn decisions(&self, gpu: &Gpu, x: &Dataset) -> Result<Vec<f64>> {
        let p = self.rho.len();
        let dec = kernel::rbf_rows(gpu, &x.x, self.width, &self.sv, &self.sv_norms, self.gamma as f32, Some((&self.coef, None)))?;
        Ok(dec.chunks(p).flat_map(|row| row.iter().zip(&self.rho).map(|(&d, r)| d as f64 - r)).collect())
    }

    /// Float64 reference of [`Svm::decisions`] from the stored support vectors and coefficients.
    pub fn decisions_reference(&self, x: &Dataset) -> Vec<f64> {
        let p = self.rho.len();
        let mut out = Vec::with_capacity(x.len() * p);
        for q in x.x.chunks(self.width) {
            let k: Vec<f64> = self.sv_rows.chunks(self.width).map(|s| (-self.gamma * q.iter().zip(s).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>()).exp()).collect();
            for pair in 0..p {
                out.push(k.iter().enumerate().map(|(s, kv)| kv * self.coef_host[s * p + pair] as f64).sum::<f64>() - self.rho[pair]);
            }
        }
        out
    }

    /// Class probabilities [len][classes]: each pair's Platt probability, coupled.
    pub fn predict_proba(&self, gpu: &Gpu, x: &Dataset) -> Result<Vec<Vec<f32>>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = pairs(self.classes);
        let dec = self.decisions(gpu, x)?;
        Ok(dec
            .chunks(pairs.len().max(1))
            .map(|row| {
                let mut r = vec![vec![0f64; self.classes]; self.classes];
                for (p, &(i, j)) in pairs.iter().enumerate() {
                    let f = row[p] * self.prob_a[p] + self.prob_b[p];
                    let pij = if f >= 0.0 { (-f).exp() / (1.0 + (-f).exp()) } else { 1.0 / (1.0 + f.exp()) };
                    let pij = pij.clamp(1e-7, 1.0 - 1e-7);
                    r[i][j] = pij;
                    r[j][i] = 1.0 - pij;
                }
                if self.classes == 1 { vec![1.0] } else { couple(&r).iter().map(|&v| v as f32).collect() }
            })
            .collect())
    }

    /// The model file's bytes (kind "svm"): tensors `svm.support_vectors` [s, width], `svm.coef`
    /// [s, pairs] (alpha * y per pair), `svm.rho`, `svm.prob_a`, `svm.prob_b` [pairs] (f64),
    /// metadata `svm` = {"gamma"}.
    pub fn to_bytes(&self, meta: &ModelMeta) -> Result<Vec<u8>> {
        let s = self.support_vectors();
        let p = self.rho.len();
        let f64s = |v: &[f64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (rho, a, b) = (f64s(&self.rho), f64s(&self.prob_a), f64s(&self.prob_b));
        let stored = [
            Stored { name: "svm.support_vectors", dtype: Dtype::F32, shape: vec![s, self.width], bytes: bytemuck::cast_slice(&self.sv_rows) },
            Stored { name: "svm.coef", dtype: Dtype::F32, shape: vec![s, p], bytes: bytemuck::cast_slice(&self.coef_host) },
            Stored { name: "svm.rho", dtype: Dtype::F64, shape: vec![p], bytes: &rho },
            Stored { name: "svm.prob_a", dtype: Dtype::F64, shape: vec![p], bytes: &a },
            Stored { name: "svm.prob_b", dtype: Dtype::F64, shape: vec![p], bytes: &b },
        ];
        let mut metadata = checkpoint::meta_entries(meta)?;
        metadata.insert(checkpoint::KIND.to_string(), "svm".to_string());
        metadata.insert("svm".to_string(), serde_json::json!({"gamma": self.gamma}).to_string());
        store::to_safetensors(&stored, metadata)
    }

    /// Reads a model written by [`Svm::to_bytes`], checking every part against the metadata.
    pub fn load(gpu: &Gpu, f: &Loaded) -> Result<(Svm, ModelMeta)> {
        let meta = checkpoint::parse_meta(f)?;
        let cfg: serde_json::Value = serde_json::from_str(&f.meta("svm")?).with_context(|| format!("{}: bad svm settings", f.path))?;
        let gamma = cfg["gamma"].as_f64().filter(|g| *g > 0.0 && g.is_finite()).with_context(|| format!("{}: svm settings have no positive gamma", f.path))?;
        let classes = meta.data.classes.len();
        let p = pairs(classes).len();
        // The model's input as the dataset lays it out (frames flattened for --input frames).
        let width = meta.architecture.input.0 * meta.architecture.input.1;
        let (sv, sv_shape) = f.tensor::<f32>("svm.support_vectors", Dtype::F32)?;
        let (coef, c_shape) = f.tensor::<f32>("svm.coef", Dtype::F32)?;
        let mut per_pair = Vec::new();
        for name in ["svm.rho", "svm.prob_a", "svm.prob_b"] {
            let (v, shape) = f.tensor::<f64>(name, Dtype::F64)?;
            if shape != [p] {
                bail!("{}: {name} has shape {shape:?}, not [{p}] for {classes} classes", f.path);
            }
            per_pair.push(v);
        }
        let s = sv_shape.first().copied().unwrap_or(0);
        if sv_shape != [s, width] || c_shape != [s, p] {
            bail!("{}: support vectors {sv_shape:?} and coefficients {c_shape:?} do not fit {width} columns and {p} pairs", f.path);
        }
        let bad = sv.iter().chain(&coef).any(|v| !v.is_finite()) || per_pair.iter().flatten().any(|v| !v.is_finite());
        if bad {
            bail!("{}: the svm holds non-finite values; the model is damaged", f.path);
        }
        let [rho, a, b] = <[Vec<f64>; 3]>::try_from(per_pair).expect("three");
        let svm = Svm::assemble(gpu, sv, coef, rho, a, b, width, classes, gamma).with_context(|| f.path.clone())?;
        Ok((svm, meta))
    }
}

/// What one fit did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SvmReport {
    pub support_vectors: usize,
    pub smo_iterations: usize,
    /// SMO solves (pairs' machines and probability folds) that stopped at the iteration cap.
    pub unconverged: usize,
    pub gamma: f64,
    pub gram_seconds: f64,
    pub seconds: f64,
}

pub static FAMILY: Family = Family { kind: "svm", models: &[ModelKind::Svm], validation: Validation::Unused, load, fit: Some(fit) };

/// One fit on every training clip (its probabilities are Platt-scaled on cross-validated
/// decision values inside it: no validation part needed).
fn fit(p: &FitInput) -> Result<Fitted> {
    let m = p.settings.svm;
    let cfg = SvmConfig { c: m.c, gamma: m.gamma, seed: p.seed, ..Default::default() };
    let (model, report) = Svm::fit(p.gpu, p.train, p.classes, &(p.class_weights)(p.train), &cfg)?;
    (p.log)(&format!(
        "svm (C {}, gamma {:.4}) on {} clips: {} support vectors, {} SMO steps, {:.2} s",
        cfg.c,
        report.gamma,
        p.train.len(),
        report.support_vectors,
        report.smo_iterations,
        report.seconds
    ));
    let record = serde_json::json!({"svm": {"config": cfg, "fits": [report]}, "fit_seconds": report.seconds});
    Ok((Box::new(model), input_only(p.input_shape), record))
}

super::fitted_in_one_go!(Svm);

#[cfg(test)]
mod tests {
    use super::*;

    /// KKT conditions of a C-SVC solution: y'a = 0, and each alpha's gradient sign fits its
    /// bound, within the stopping tolerance.
    fn check_kkt(k: &[f64], n: usize, y: &[f64], bound: &[f64], fit: &BinaryFit, eps: f64) {
        let sum: f64 = fit.alpha.iter().zip(y).map(|(a, y)| a * y).sum();
        assert!(sum.abs() < 1e-9, "y'a = {sum}");
        for i in 0..n {
            // y_i f(x_i) - 1 where f = sum a_j y_j K - rho.
            let f: f64 = (0..n).map(|j| fit.alpha[j] * y[j] * k[i * n + j]).sum::<f64>() - fit.rho;
            let m = y[i] * f - 1.0;
            let a = fit.alpha[i];
            assert!((0.0..=bound[i]).contains(&a), "alpha {i} = {a} outside [0, {}]", bound[i]);
            if a <= 0.0 {
                assert!(m >= -eps, "alpha {i} = 0 but margin {m}");
            } else if a >= bound[i] {
                assert!(m <= eps, "alpha {i} at bound but margin {m}");
            } else {
                assert!(m.abs() <= eps, "free alpha {i} with margin {m}");
            }
        }
    }

    #[test]
    fn smo_meets_the_kkt_conditions_on_random_problems() {
        let mut rng = SplitMix64::new(7);
        for (n, d, c) in [(9, 2, 1.0), (40, 3, 10.0), (61, 5, 0.3)] {
            let x: Vec<f64> = (0..n * d).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
            let y: Vec<f64> = (0..n).map(|i| if x[i * d] + 0.3 * x[i * d + 1] + rng.uniform(-0.3, 0.3) as f64 > 0.0 { 1.0 } else { -1.0 }).collect();
            let k: Vec<f64> = (0..n * n).map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (-(0..d).map(|t| (x[i * d + t] - x[j * d + t]).powi(2)).sum::<f64>()).exp()
            }).collect();
            // Unequal bounds, as class weights make them.
            let bound: Vec<f64> = y.iter().map(|&v| if v > 0.0 { c } else { 1.7 * c }).collect();
            let fit = smo(n, |i, j| k[i * n + j], &y, &bound, 1e-6, 1_000_000);
            assert!(fit.converged, "n {n}: {} iterations", fit.iterations);
            // The violation is below eps in the gradient; the margins then agree to ~2 eps.
            check_kkt(&k, n, &y, &bound, &fit, 1e-5);
            // Cut at fewer steps than it took, the same solve says it did not converge.
            let cut = smo(n, |i, j| k[i * n + j], &y, &bound, 1e-6, fit.iterations - 1);
            assert!(!cut.converged && cut.iterations == fit.iterations - 1, "n {n}");
        }
    }

    #[test]
    fn coupling_recovers_a_consistent_distribution() {
        let p = [0.5, 0.3, 0.2];
        let r: Vec<Vec<f64>> = (0..3).map(|i| (0..3).map(|j| if i == j { 0.0 } else { p[i] / (p[i] + p[j]) }).collect()).collect();
        let got = couple(&r);
        for (g, w) in got.iter().zip(p) {
            assert!((g - w).abs() < 1e-3, "{got:?}");
        }
    }

    #[test]
    fn platt_fits_a_known_sigmoid() {
        // Decision values whose labels follow P(+) = 1 / (1 + exp(-2 f)), i.e. A = -2, B = 0,
        // laid out deterministically (fractions of positives per value).
        let (mut dec, mut pos) = (Vec::new(), Vec::new());
        for i in -20..=20 {
            let f = i as f64 / 10.0;
            let p = 1.0 / (1.0 + (-2.0 * f).exp());
            for j in 0..200 {
                dec.push(f);
                pos.push((j as f64 + 0.5) / 200.0 < p);
            }
        }
        let (a, b) = platt(&dec, &pos);
        assert!((a + 2.0).abs() < 0.05 && b.abs() < 0.05, "A {a}, B {b}");
    }
}
