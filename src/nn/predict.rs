//! A network's outputs over a dataset: examples gathered into batches, logits in evaluation
//! mode, their softmax, and the temperature that calibrates them.

use super::Model;
use crate::dataset::Dataset;
use crate::gpu::Gpu;
use crate::report;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Examples `idx` as one batch for `model`: their inputs, labels and lengths. Where the
/// model takes shorter batches, the steps past the batch's longest example (padding in
/// every one of them) are cut, to a multiple of 16 steps and of the model's step quantum.
pub fn gather(data: &Dataset, idx: &[usize], model: &Model) -> (Vec<f32>, Vec<u32>, Option<Vec<u32>>) {
    let (l0, c0) = model.arch.input;
    let lengths: Option<Vec<u32>> = (!data.lengths.is_empty()).then(|| idx.iter().map(|&i| data.lengths[i]).collect());
    let quantum = lcm(16, model.arch.step_quantum());
    let steps = match &lengths {
        Some(ls) if model.arch.takes_shorter_batches() && data.width == l0 * c0 => {
            let cut = (ls.iter().copied().max().unwrap_or(0) as usize).max(1).next_multiple_of(quantum);
            if cut < l0 { cut } else { l0 }
        }
        _ => data.width / c0.max(1),
    };
    let keep = (steps * c0).min(data.width);
    let mut x = Vec::with_capacity(idx.len() * keep);
    for &i in idx {
        x.extend_from_slice(&data.x[i * data.width..i * data.width + keep]);
    }
    (x, idx.iter().map(|&i| data.y[i]).collect(), lengths)
}

fn lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// Logits [n, classes] for every example, in batches, in evaluation mode.
pub fn predict(gpu: &Gpu, model: &Model, data: &Dataset, batch_size: usize) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(batch_size.max(1)) {
        let (x, _, lengths) = gather(data, chunk, model);
        let tx = gpu.upload_f32(&x, &[chunk.len(), x.len() / chunk.len()])?;
        let mut step = gpu.step("predict");
        let logits = model.logits(&mut step, &tx, lengths.as_deref(), chunk.len())?;
        step.submit()?;
        out.extend(gpu.read_f32(&logits)?);
    }
    Ok(out)
}

/// Softmax of each row of logits [n, classes].
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<Vec<f32>> {
    logits
        .chunks(classes)
        .map(|z| {
            let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        })
        .collect()
}

/// A number JSON stored as null (how it writes a NaN), read back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A fitted softmax temperature and the validation loss and accuracy at it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The factor on the output scores (logits) before the softmax.
    pub temperature: f32,
    /// NaN where nothing was fitted (JSON writes it as null).
    #[serde(deserialize_with = "nan_if_null")]
    pub val_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_accuracy: f64,
    /// False when the validation part was too small to fit a temperature (it is then 1).
    pub calibrated: bool,
}

/// Temperature scaling (Guo et al., 2017): the factor on `scores` ([n, classes], row-major)
/// that minimises the cross-entropy of `labels`, searched over 61 log-spaced values from 0.1 to
/// 100 (each scored once; the first of equal losses wins). It changes no prediction, only how
/// sure each one is, which is what an ensemble averaging probabilities weighs its members by.
/// With fewer than two clips per class there is nothing to fit on: 1, and `calibrated` false.
pub fn fit_temperature(scores: &[f32], labels: &[u32], classes: usize) -> Calibration {
    if labels.len() < 2 * classes {
        return Calibration { temperature: 1.0, val_loss: f64::NAN, val_accuracy: f64::NAN, calibrated: false };
    }
    let at = |t: f32| loss_and_accuracy(&scores.iter().map(|v| v * t).collect::<Vec<_>>(), labels, classes);
    let (temperature, (val_loss, val_accuracy)) = (0..=60)
        .map(|i| 10f32.powf(-1.0 + 3.0 * i as f32 / 60.0))
        .map(|t| (t, at(t)))
        .min_by(|a, b| a.1.0.total_cmp(&b.1.0))
        .expect("61 candidates");
    Calibration { temperature, val_loss, val_accuracy, calibrated: true }
}

/// Mean cross-entropy (unweighted) and accuracy of logits against labels.
pub fn loss_and_accuracy(logits: &[f32], labels: &[u32], classes: usize) -> (f64, f64) {
    let mut loss = 0.0;
    let mut correct = 0;
    for (i, &y) in labels.iter().enumerate() {
        let z = &logits[i * classes..(i + 1) * classes];
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        loss += lse - z[y as usize] as f64;
        let arg = report::argmax(z);
        correct += (arg == y as usize) as usize;
    }
    let n = labels.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}

