//! Kernel ridge classification on the GPU: the training examples become the centres of an RBF
//! kernel, and the coefficients are the solution of (K + lambda diag(1 / w_y)) A = Y, with Y the
//! classes coded +1 / -1 and w_y each example's class weight (so a weighted least-squares fit),
//! found by conjugate gradients (ops::kernel::solve_ridge). Scores K(x, centres) A + b are
//! turned into probabilities by a softmax whose temperature is fitted on validation data and
//! folded into A and b.
//!
//! Its own classifier kind ("krr"). Files from before it had one hold the same numbers in the
//! shape of a layer network (Flatten -> RbfKernel -> Dense, e.g. the shipped model): they load
//! through [`KernelRidge::from_network`], so that every kernel ridge model predicts here.

use crate::dataset::Dataset;
use super::{Family, FitInput, Fitted, ModelKind, Validation, input_only};
use crate::nn::predict::{Calibration, fit_temperature, softmax_rows};
use crate::gpu::{DType, Gpu, Tensor};
use crate::nn::Layer;
use crate::nn::checkpoint::{self, ModelMeta};
use crate::ops::kernel::{self, CgReport};
use crate::store::{self, Loaded, Stored};
use anyhow::{Context, Result, bail};
use safetensors::Dtype;

/// A fitted model: centres [n, width] and their squared norms, coefficients [n, classes] and
/// offsets [classes] (temperature included), on the GPU and the host.
pub struct KernelRidge {
    centres: Tensor,
    centre_norms: Tensor,
    coef: Tensor,
    bias: Tensor,
    centres_host: Vec<f32>,
    coef_host: Vec<f32>,
    bias_host: Vec<f32>,
    width: usize,
    classes: usize,
    gamma: f32,
}

impl KernelRidge {
    /// Solves the weighted ridge problem on `train` with kernel width `gamma` (absolute: 1 /
    /// input size is scikit-learn's "scale" on standardised input) and penalty `lambda`.
    pub fn fit(gpu: &Gpu, train: &Dataset, classes: usize, class_weight: &[f32], gamma: f32, lambda: f32) -> Result<(KernelRidge, CgReport)> {
        let n = train.len();
        if n == 0 {
            bail!("kernel ridge: no training examples");
        }
        if class_weight.len() != classes || lambda.is_nan() || lambda <= 0.0 || !(gamma > 0.0 && gamma.is_finite()) {
            bail!("kernel ridge needs {classes} class weights, lambda > 0 and gamma > 0 (got {}, {lambda} and {gamma})", class_weight.len());
        }
        if let Some(y) = train.y.iter().find(|&&y| y as usize >= classes) {
            bail!("kernel ridge: class {y} of {classes}");
        }
        let bytes = (n * n * 4) as u64;
        if bytes > gpu.max_storage_binding() {
            let most = ((gpu.max_storage_binding() / 4) as f64).sqrt() as usize;
            bail!("kernel ridge keeps an n x n kernel matrix: {n} training examples need {} MiB, this adapter binds at most {} MiB (at most {most} examples)", bytes >> 20, gpu.max_storage_binding() >> 20);
        }
        let x = gpu.upload_f32(&train.x, &[n, train.width])?;
        let y: Vec<f32> = train.y.iter().flat_map(|&c| (0..classes).map(move |k| if k == c as usize { 1.0 } else { -1.0 })).collect();
        let d: Vec<f32> = train.y.iter().map(|&c| lambda / class_weight[c as usize].max(f32::MIN_POSITIVE)).collect();
        let (y, d) = (gpu.upload_f32(&y, &[n, classes])?, gpu.upload_f32(&d, &[n])?);
        let (norms, k) = (gpu.empty(&[n], DType::F32)?, gpu.empty(&[n, n], DType::F32)?);
        let mut step = gpu.step("kernel_ridge.gram");
        kernel::sq_norms(&mut step, &x, &norms)?;
        kernel::rbf(&mut step, &x, &norms, &x, &norms, gamma, &k)?;
        step.submit()?;
        let (a, report) = kernel::solve_ridge(gpu, &k, &d, &y, 1e-4, 3000)?;
        let coef_host = gpu.read_f32(&a)?;
        let model = KernelRidge::assemble(gpu, train.x.clone(), coef_host, vec![0.0; classes], train.width, classes, gamma)?;
        Ok((model, report))
    }

    fn assemble(gpu: &Gpu, centres_host: Vec<f32>, coef_host: Vec<f32>, bias_host: Vec<f32>, width: usize, classes: usize, gamma: f32) -> Result<KernelRidge> {
        let n = centres_host.len() / width.max(1);
        if n == 0 || centres_host.len() != n * width || coef_host.len() != n * classes || bias_host.len() != classes {
            bail!("kernel ridge: {} centre values, {} coefficients and {} offsets do not fit {width} columns and {classes} classes", centres_host.len(), coef_host.len(), bias_host.len());
        }
        for (part, values) in [("centres", &centres_host), ("coefficients", &coef_host), ("offsets", &bias_host)] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                bail!("kernel ridge: its {part} hold {} at element {i}: every value must be finite (the model is damaged)", values[i]);
            }
        }
        if !(gamma > 0.0 && gamma.is_finite()) {
            bail!("kernel ridge: gamma {gamma} must be finite and positive (the model is damaged)");
        }
        let centres = gpu.upload_f32(&centres_host, &[n, width])?;
        let centre_norms = gpu.empty(&[n], DType::F32)?;
        let mut step = gpu.step("kernel_ridge.norms");
        kernel::sq_norms(&mut step, &centres, &centre_norms)?;
        step.submit()?;
        let (coef, bias) = (gpu.upload_f32(&coef_host, &[n, classes])?, gpu.upload_f32(&bias_host, &[classes])?);
        Ok(KernelRidge { centres, centre_norms, coef, bias, centres_host, coef_host, bias_host, width, classes, gamma })
    }

    pub fn gamma(&self) -> f32 {
        self.gamma
    }

    pub fn centres(&self) -> usize {
        self.centres_host.len() / self.width
    }

    /// The centres as the host holds them (the training examples, exactly).
    pub fn centre_rows(&self) -> &[f32] {
        &self.centres_host
    }

    /// Scores [len, classes] (the softmax's logits) of every example of `x`, in blocks that fit
    /// the adapter's storage binding.
    pub fn scores(&self, gpu: &Gpu, x: &Dataset) -> Result<Vec<f32>> {
        if x.width != self.width {
            bail!("kernel ridge: examples have {} values, the model reads {}", x.width, self.width);
        }
        kernel::rbf_rows(gpu, &x.x, self.width, &self.centres, &self.centre_norms, self.gamma, Some((&self.coef, Some(&self.bias))))
    }

    /// Class probabilities [len][classes]: the softmax of the scores.
    pub fn predict_proba(&self, gpu: &Gpu, x: &Dataset) -> Result<Vec<Vec<f32>>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        Ok(softmax_rows(&self.scores(gpu, x)?, self.classes))
    }

    /// Multiplies the scores by `t` (the softmax temperature).
    pub fn scale_scores(&mut self, gpu: &Gpu, t: f32) -> Result<()> {
        self.coef_host.iter_mut().chain(self.bias_host.iter_mut()).for_each(|v| *v *= t);
        gpu.write(&self.coef, &self.coef_host)?;
        gpu.write(&self.bias, &self.bias_host)
    }

    /// The softmax temperature that minimises the cross-entropy of `val` (a log-spaced search),
    /// folded into the scores. With fewer than two validation clips per class there is nothing
    /// to calibrate on: the temperature stays 1 (the raw ridge scores), `calibrated` says so,
    /// and the caller warns.
    pub fn calibrate(&mut self, gpu: &Gpu, val: &Dataset) -> Result<Calibration> {
        let c = fit_temperature(&self.scores(gpu, val)?, &val.y, self.classes);
        if c.calibrated {
            self.scale_scores(gpu, c.temperature)?;
        }
        Ok(c)
    }

    /// The model file's bytes (kind "krr"): tensors `krr.centres` [n, width], `krr.coef` [n, classes]
    /// and `krr.bias` [classes] f32 (temperature included), metadata `krr` = {"gamma"}.
    pub fn to_bytes(&self, meta: &ModelMeta) -> Result<Vec<u8>> {
        let n = self.centres();
        let stored = [
            Stored { name: "krr.centres", dtype: Dtype::F32, shape: vec![n, self.width], bytes: bytemuck::cast_slice(&self.centres_host) },
            Stored { name: "krr.coef", dtype: Dtype::F32, shape: vec![n, self.classes], bytes: bytemuck::cast_slice(&self.coef_host) },
            Stored { name: "krr.bias", dtype: Dtype::F32, shape: vec![self.classes], bytes: bytemuck::cast_slice(&self.bias_host) },
        ];
        let mut metadata = checkpoint::meta_entries(meta)?;
        metadata.insert(checkpoint::KIND.to_string(), "krr".to_string());
        metadata.insert("krr".to_string(), serde_json::json!({"gamma": self.gamma}).to_string());
        store::to_safetensors(&stored, metadata)
    }

    /// Reads a model written by [`KernelRidge::to_bytes`].
    pub fn load(gpu: &Gpu, f: &Loaded) -> Result<(KernelRidge, ModelMeta)> {
        let meta = checkpoint::parse_meta(f)?;
        let cfg: serde_json::Value = serde_json::from_str(&f.meta("krr")?).with_context(|| format!("{}: bad krr settings", f.path))?;
        let gamma = cfg["gamma"].as_f64().with_context(|| format!("{}: krr settings have no gamma", f.path))? as f32;
        let width = meta.architecture.input.0 * meta.architecture.input.1;
        let (centres, cs) = f.tensor::<f32>("krr.centres", Dtype::F32)?;
        let (coef, ks) = f.tensor::<f32>("krr.coef", Dtype::F32)?;
        let (bias, _) = f.tensor::<f32>("krr.bias", Dtype::F32)?;
        let classes = meta.data.classes.len();
        if cs.len() != 2 || cs[1] != width || ks != [cs[0], classes] {
            bail!("{}: krr centres {cs:?} and coefficients {ks:?} do not fit {width} columns and {classes} classes", f.path);
        }
        let model = KernelRidge::assemble(gpu, centres, coef, bias, width, classes, gamma).with_context(|| f.path.clone())?;
        Ok((model, meta))
    }

    /// The same model from a file written before kernel ridge had its own kind, in the shape of
    /// a layer network (Flatten -> RbfKernel -> Dense); None when `meta` describes another
    /// network.
    pub fn from_network(gpu: &Gpu, f: &Loaded, meta: &ModelMeta) -> Result<Option<KernelRidge>> {
        let gamma = match meta.architecture.layers.as_slice() {
            [Layer::Flatten, Layer::RbfKernel { gamma, .. }, Layer::Dense { relu: false, .. }] => *gamma,
            _ => return Ok(None),
        };
        let (centres, _) = f.tensor::<f32>("1.rbf.centres", Dtype::F32)?;
        let (coef, _) = f.tensor::<f32>("2.dense.weight", Dtype::F32)?;
        let (bias, _) = f.tensor::<f32>("2.dense.bias", Dtype::F32)?;
        let width = meta.architecture.input.0 * meta.architecture.input.1;
        Ok(Some(KernelRidge::assemble(gpu, centres, coef, bias, width, meta.data.classes.len(), gamma).with_context(|| f.path.clone())?))
    }
}

pub static FAMILY: Family = Family { kind: "krr", models: &[ModelKind::Krr], validation: Validation::Calibration, load, fit: Some(fit) };

/// What `--model krr` is fitted with (`ser train`'s krr flags; the names in a training record).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// RBF width in units of 1 / input size (1 is scikit-learn's gamma="scale" on standardised
    /// input).
    #[serde(rename = "krr_gamma")]
    pub gamma: f32,
    /// Ridge penalty (scaled per example by 1 / its class weight). 0.1 rather than 0.01: better
    /// on speakers not in training (5-fold by actor 0.656 against 0.626, every fold better) for
    /// 0.9 points less on a random split (docs/results/history.md).
    #[serde(rename = "krr_lambda")]
    pub lambda: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { gamma: 1.0, lambda: 0.1 }
    }
}

/// Kernel ridge: fit on the training part, fit the probability scale on validation, then fit
/// again on every training clip (validation included) and keep that scale.
fn fit(p: &FitInput) -> Result<Fitted> {
    let (gpu, m, k) = (p.gpu, p.settings.krr, p.classes);
    // In units of 1 / input size: 1 is scikit-learn's gamma = "scale" on standardised input.
    let gamma = m.gamma / (p.input_shape.0 * p.input_shape.1) as f32;
    let (mut model, first) = KernelRidge::fit(gpu, p.train, k, &(p.class_weights)(p.train), gamma, m.lambda)?;
    let Calibration { temperature, val_loss, val_accuracy, calibrated } = model.calibrate(gpu, p.val)?;
    (p.log)(&format!(
        "kernel ridge on {} clips: {} CG iterations, residual {:.1e}; validation accuracy {val_accuracy:.4}, loss {val_loss:.4} at temperature {temperature:.2}",
        p.train.len(),
        first.iterations,
        first.relative_residual
    ));
    if !calibrated {
        (p.log)(&format!("warning: {} validation clips are too few to calibrate probabilities (2 per class needed); the temperature stays 1 (raise --val-fraction)", p.val.len()));
    } else if temperature <= 0.1001 {
        (p.log)(&format!(
            "warning: the validation clips are best served by the flattest probabilities searched (temperature 0.10, validation accuracy {val_accuracy:.2}): \
             the model does not generalise to them, and its probabilities will stay near uniform"
        ));
    }
    let full = p.full.expect("kernel ridge always refits");
    let started = std::time::Instant::now();
    let (mut model, last) = KernelRidge::fit(gpu, full, k, &(p.class_weights)(full), gamma, m.lambda)?;
    model.scale_scores(gpu, temperature)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    (p.log)(&format!("kernel ridge on all {} training clips: {} CG iterations, residual {:.1e}", full.len(), last.iterations, last.relative_residual));
    let record = serde_json::json!({"kernel_ridge": {"gamma_scale": m.gamma, "lambda": m.lambda, "temperature": temperature, "calibrated": calibrated,
        "validation_accuracy": val_accuracy, "validation_loss": val_loss, "cg": [first, last]}, "fit_seconds": fit_seconds});
    Ok((Box::new(model), input_only(p.input_shape), record))
}

super::fitted_in_one_go!(KernelRidge);
