//! Gaussian naive Bayes (scikit-learn's GaussianNB): per class, each feature's mean and
//! variance (every variance raised by `var_smoothing` times the largest feature variance) and
//! the class's share of the training clips as its prior. The joint log-likelihood of a query
//! is one GEMM on the GPU: [x², x] times the coefficients [-1 / 2σ², μ / σ²] plus a per-class
//! constant; the probabilities are its softmax.
//!
//! The worked example of docs/guide/contributing.md: a whole family in one module and one
//! registry line.

use super::{Family, FitInput, Fitted, ModelKind, Validation, input_only};
use crate::dataset::Dataset;
use crate::gpu::{DType, Gpu, Tensor};
use crate::nn::checkpoint::{self, ModelMeta};
use crate::nn::predict::softmax_rows;
use crate::ops::gemm::{self, GemmOptions};
use crate::store::{self, Loaded, Stored};
use anyhow::{Result, bail};
use safetensors::Dtype;

pub static FAMILY: Family = Family { kind: "gnb", models: &[ModelKind::Gnb], validation: Validation::Unused, load, fit: Some(fit) };

/// scikit-learn's default share of the largest variance added to every variance.
pub const VAR_SMOOTHING: f64 = 1e-9;

/// A fitted model: per class and feature the mean and the (smoothed) variance, and the priors.
pub struct NaiveBayes {
    /// [classes, width] row-major.
    means: Vec<f32>,
    vars: Vec<f32>,
    priors: Vec<f32>,
    width: usize,
    classes: usize,
    /// The GEMM's operands: coefficients [2 * width, classes] and the per-class constant.
    coef: Tensor,
    bias: Tensor,
}

impl NaiveBayes {
    /// Fits on `train` (every class must have a clip: a class without one has no mean).
    pub fn fit(gpu: &Gpu, train: &Dataset, classes: usize) -> Result<NaiveBayes> {
        let w = train.width;
        let mut count = vec![0usize; classes];
        let mut sum = vec![0f64; classes * w];
        for (row, &y) in train.x.chunks(w).zip(&train.y) {
            let y = y as usize;
            if y >= classes {
                bail!("naive bayes: class {y} of {classes}");
            }
            count[y] += 1;
            sum[y * w..(y + 1) * w].iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
        }
        if let Some(c) = count.iter().position(|&n| n == 0) {
            bail!("naive bayes: class {c} has no training clip");
        }
        let means: Vec<f64> = sum.iter().enumerate().map(|(i, s)| s / count[i / w] as f64).collect();
        let mut var = vec![0f64; classes * w];
        for (row, &y) in train.x.chunks(w).zip(&train.y) {
            let y = y as usize;
            for (j, &v) in row.iter().enumerate() {
                var[y * w + j] += (v as f64 - means[y * w + j]).powi(2);
            }
        }
        var.iter_mut().enumerate().for_each(|(i, v)| *v /= count[i / w] as f64);
        // The largest variance of any feature over all clips, as scikit-learn's epsilon.
        let n = train.len() as f64;
        let widest = (0..w)
            .map(|j| {
                let mean = train.x.chunks(w).map(|r| r[j] as f64).sum::<f64>() / n;
                train.x.chunks(w).map(|r| (r[j] as f64 - mean).powi(2)).sum::<f64>() / n
            })
            .fold(0.0, f64::max);
        let epsilon = VAR_SMOOTHING * widest;
        let vars: Vec<f64> = var.iter().map(|v| v + epsilon).collect();
        if let Some(i) = vars.iter().position(|v| *v <= 0.0) {
            bail!("naive bayes: feature {} has no variance in any class (every clip has the same value)", i % w);
        }
        let priors: Vec<f32> = count.iter().map(|&c| (c as f64 / n) as f32).collect();
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        NaiveBayes::from_parts(gpu, f32s(&means), f32s(&vars), priors, w)
    }

    /// The model from its statistics, with the GEMM operands built from them in float64.
    fn from_parts(gpu: &Gpu, means: Vec<f32>, vars: Vec<f32>, priors: Vec<f32>, width: usize) -> Result<NaiveBayes> {
        let classes = priors.len();
        let (coef, bias) = joint_log_likelihood_terms(&means, &vars, &priors, width);
        let coef = gpu.upload_f32(&coef, &[2 * width, classes])?;
        let bias = gpu.upload_f32(&bias, &[classes])?;
        Ok(NaiveBayes { means, vars, priors, width, classes, coef, bias })
    }

    /// Class probabilities [len][classes] of every example of `x`.
    pub fn predict_proba(&self, gpu: &Gpu, x: &Dataset) -> Result<Vec<Vec<f32>>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        if x.width != self.width {
            bail!("naive bayes: examples have {} values, the model reads {}", x.width, self.width);
        }
        let squares_then_values: Vec<f32> = x.x.chunks(self.width).flat_map(|r| r.iter().map(|v| v * v).chain(r.iter().copied()).collect::<Vec<f32>>()).collect();
        let a = gpu.upload_f32(&squares_then_values, &[x.len(), 2 * self.width])?;
        let scores = gpu.empty(&[x.len(), self.classes], DType::F32)?;
        let mut step = gpu.step("naive_bayes");
        gemm::gemm(&mut step, &a, &self.coef, Some(&self.bias), &scores, &GemmOptions::default())?;
        step.submit()?;
        Ok(softmax_rows(&gpu.read_f32(&scores)?, self.classes))
    }

    /// The model file's bytes (kind "gnb"): tensors `gnb.means` and `gnb.vars` [classes, width] and
    /// `gnb.priors` [classes], f32.
    pub fn to_bytes(&self, meta: &ModelMeta) -> Result<Vec<u8>> {
        let stored = [
            Stored { name: "gnb.means", dtype: Dtype::F32, shape: vec![self.classes, self.width], bytes: bytemuck::cast_slice(&self.means) },
            Stored { name: "gnb.vars", dtype: Dtype::F32, shape: vec![self.classes, self.width], bytes: bytemuck::cast_slice(&self.vars) },
            Stored { name: "gnb.priors", dtype: Dtype::F32, shape: vec![self.classes], bytes: bytemuck::cast_slice(&self.priors) },
        ];
        let mut metadata = checkpoint::meta_entries(meta)?;
        metadata.insert(checkpoint::KIND.to_string(), "gnb".to_string());
        store::to_safetensors(&stored, metadata)
    }

    /// Reads a model written by [`NaiveBayes::to_bytes`], checking every part against the metadata.
    pub fn load(gpu: &Gpu, f: &Loaded) -> Result<(NaiveBayes, ModelMeta)> {
        let meta = checkpoint::parse_meta(f)?;
        let width = meta.architecture.input.0 * meta.architecture.input.1;
        let classes = meta.data.classes.len();
        let (means, ms) = f.tensor::<f32>("gnb.means", Dtype::F32)?;
        let (vars, vs) = f.tensor::<f32>("gnb.vars", Dtype::F32)?;
        let (priors, ps) = f.tensor::<f32>("gnb.priors", Dtype::F32)?;
        if ms != [classes, width] || vs != [classes, width] || ps != [classes] {
            bail!("{}: naive bayes tensors {ms:?}, {vs:?}, {ps:?} do not fit {classes} classes of {width} values", f.path);
        }
        if means.iter().any(|v| !v.is_finite()) || vars.iter().any(|v| !(v.is_finite() && *v > 0.0)) || priors.iter().any(|p| !(p.is_finite() && *p > 0.0)) {
            bail!("{}: naive bayes means, variances or priors are not finite and positive where they must be; the model is damaged", f.path);
        }
        Ok((NaiveBayes::from_parts(gpu, means, vars, priors, width)?, meta))
    }
}

/// The joint log-likelihood log P(c) + Σ_j log N(x_j; μ_cj, σ²_cj) as a linear function of
/// [x², x]: coefficients [2 * width, classes] (rows -1 / 2σ², then μ / σ²) and the constant
/// per class, log P(c) - ½ Σ_j (log 2πσ²_cj + μ²_cj / σ²_cj), computed in float64.
pub fn joint_log_likelihood_terms(means: &[f32], vars: &[f32], priors: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let classes = priors.len();
    let mut coef = vec![0f32; 2 * width * classes];
    let mut bias = vec![0f32; classes];
    for c in 0..classes {
        let mut constant = (priors[c] as f64).ln();
        for j in 0..width {
            let (mu, var) = (means[c * width + j] as f64, vars[c * width + j] as f64);
            coef[j * classes + c] = (-0.5 / var) as f32;
            coef[(width + j) * classes + c] = (mu / var) as f32;
            constant -= 0.5 * ((2.0 * std::f64::consts::PI * var).ln() + mu * mu / var);
        }
        bias[c] = constant as f32;
    }
    (coef, bias)
}

/// The probabilities in float64 on the host: the reference the GPU's are tested against.
pub fn predict_proba_reference(means: &[f32], vars: &[f32], priors: &[f32], width: usize, x: &[f32]) -> Vec<Vec<f64>> {
    x.chunks(width)
        .map(|row| {
            let jll: Vec<f64> = (0..priors.len())
                .map(|c| {
                    (priors[c] as f64).ln()
                        - 0.5
                            * (0..width)
                                .map(|j| {
                                    let (mu, var) = (means[c * width + j] as f64, vars[c * width + j] as f64);
                                    (2.0 * std::f64::consts::PI * var).ln() + (row[j] as f64 - mu).powi(2) / var
                                })
                                .sum::<f64>()
                })
                .collect();
            let m = jll.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = jll.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        })
        .collect()
}

impl NaiveBayes {
    /// The fitted statistics (means, variances, priors), for tests and peers.
    pub fn parts(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.means, &self.vars, &self.priors)
    }
}

/// One fit on every training clip: nothing to validate.
fn fit(p: &FitInput) -> Result<Fitted> {
    let started = std::time::Instant::now();
    let model = NaiveBayes::fit(p.gpu, p.train, p.classes)?;
    (p.log)(&format!("naive bayes on {} clips", p.train.len()));
    let record = serde_json::json!({"gnb": {"var_smoothing": VAR_SMOOTHING, "rows": p.train.len()}, "fit_seconds": started.elapsed().as_secs_f64()});
    Ok((Box::new(model), input_only(p.input_shape), record))
}

super::fitted_in_one_go!(NaiveBayes);
