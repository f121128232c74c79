//! Kernel ridge classification on the GPU: the training examples become the centres of an RBF
//! kernel, and the last layer is the solution of (K + lambda diag(1 / w_y)) A = Y, with Y the
//! classes coded +1 / -1 and w_y each example's class weight (so a weighted least-squares fit),
//! found by conjugate gradients (ops::kernel::solve_ridge). Scores are turned into
//! probabilities by a softmax whose temperature is fitted on validation data.

use super::{Dataset, loss_and_accuracy, predict};
use crate::gpu::{DType, Gpu, Tensor};
use crate::nn::{Layer, Model};
use crate::ops::kernel::{self, CgReport};
use anyhow::{Context, Result, bail};

fn named<'m>(model: &'m Model, suffix: &str) -> Result<&'m Tensor> {
    model.tensors().into_iter().rev().find(|(n, _)| n.ends_with(suffix)).map(|(_, t)| t).with_context(|| format!("the model has no {suffix} tensor"))
}

/// Fits a model made by `Architecture::kernel_ridge` to `train` (which must hold exactly as many
/// examples as the model has centres).
pub fn fit(gpu: &Gpu, model: &mut Model, train: &Dataset, class_weight: &[f32], lambda: f32) -> Result<CgReport> {
    let (centres, gamma) = match model.arch.layers.as_slice() {
        [Layer::Flatten, Layer::RbfKernel { centres, gamma }, Layer::Dense { relu: false, .. }] => (*centres, *gamma),
        _ => bail!("kernel ridge needs Flatten -> RbfKernel -> Dense, not {:?}", model.arch.layers),
    };
    let classes = model.arch.classes()?;
    let n = train.len();
    if n != centres {
        bail!("the model has {centres} centres for {n} training examples");
    }
    if class_weight.len() != classes || lambda.is_nan() || lambda <= 0.0 {
        bail!("kernel ridge needs {classes} class weights and lambda > 0 (got {} and {lambda})", class_weight.len());
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
    let k = gpu.empty(&[n, n], DType::F32)?;
    let (c_tensor, norms) = (named(model, ".rbf.centres")?.clone(), named(model, ".rbf.centre_sq_norms")?.clone());
    let mut step = gpu.step("kernel_ridge.gram");
    step.copy(&x, &c_tensor)?;
    kernel::sq_norms(&mut step, &x, &norms)?;
    kernel::rbf(&mut step, &x, &norms, &x, &norms, gamma, &k)?;
    step.submit()?;
    let (a, report) = kernel::solve_ridge(gpu, &k, &d, &y, 1e-4, 3000)?;
    let mut step = gpu.step("kernel_ridge.weights");
    step.copy(&a, named(model, ".dense.weight")?)?;
    step.zero(named(model, ".dense.bias")?);
    step.submit()?;
    Ok(report)
}

/// A fitted softmax temperature and the validation loss and accuracy at it.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    pub temperature: f32,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// False when the validation part was too small to fit a temperature (it is then 1).
    pub calibrated: bool,
}

/// The softmax temperature that minimises the cross-entropy of `val` (a log-spaced search),
/// folded into the last layer so that the model's logits are calibrated scores.
/// With fewer than two validation clips per class there is nothing to calibrate on: the
/// temperature stays 1 (the raw ridge scores), `calibrated` says so, and the caller warns.
pub fn calibrate(gpu: &Gpu, model: &mut Model, val: &Dataset) -> Result<Calibration> {
    let classes = model.arch.classes()?;
    if val.len() < 2 * classes {
        return Ok(Calibration { temperature: 1.0, val_loss: f64::NAN, val_accuracy: f64::NAN, calibrated: false });
    }
    let logits = predict(gpu, model, val, 256)?;
    let at = |t: f32| loss_and_accuracy(&logits.iter().map(|v| v * t).collect::<Vec<_>>(), &val.y, classes);
    // Each candidate is scored once; the first of equal losses wins, as before.
    let (temperature, (val_loss, val_accuracy)) = (0..=60)
        .map(|i| 10f32.powf(-1.0 + 3.0 * i as f32 / 60.0))
        .map(|t| (t, at(t)))
        .min_by(|a, b| a.1.0.total_cmp(&b.1.0))
        .unwrap();
    scale_scores(gpu, model, temperature)?;
    Ok(Calibration { temperature, val_loss, val_accuracy, calibrated: true })
}

/// Multiplies the model's scores (its last layer) by `t`.
pub fn scale_scores(gpu: &Gpu, model: &Model, t: f32) -> Result<()> {
    for name in [".dense.weight", ".dense.bias"] {
        let tensor = named(model, name)?;
        let scaled: Vec<f32> = gpu.read_f32(tensor)?.iter().map(|v| v * t).collect();
        gpu.write(tensor, &scaled)?;
    }
    Ok(())
}
