//! Training: mini-batches with a seeded shuffle, per-epoch validation, early stopping with best
//! weights restored, learning-rate reduction on plateau. The model and its optimiser state stay
//! on the GPU; the host reads back only per-sample losses and validation logits.

use crate::gpu::{DType, Gpu, Tensor};
use crate::dataset::Dataset;
use crate::nn::Model;
use crate::nn::predict::{gather, loss_and_accuracy, predict};
use crate::ops::gemm::Precision;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The last epoch's number (epochs run: epochs - first_epoch + 1).
    pub epochs: usize,
    /// The first epoch's number: 1, or where a resumed run continues.
    #[serde(default = "one")]
    pub first_epoch: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Epochs without a better validation loss before stopping (Keras EarlyStopping).
    pub patience: usize,
    /// Epochs without improvement before the learning rate is multiplied by `lr_factor`.
    pub lr_patience: usize,
    pub lr_factor: f32,
    pub min_lr: f32,
    /// Operand precision of the model's GEMMs while training (validation included); the model
    /// is back at f32 when `fit` returns, which is how it is tested and saved.
    #[serde(default)]
    pub precision: Precision,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// Refuses settings no training run can use (a library caller bypasses the CLI's checks).
    pub fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("batch size must be at least 1");
        }
        if self.first_epoch == 0 || self.epochs < self.first_epoch {
            bail!("epochs {}..={} is empty (the first epoch is 1, or where a resumed run continues)", self.first_epoch, self.epochs);
        }
        if !(self.lr_factor > 0.0 && self.lr_factor <= 1.0 && self.min_lr >= 0.0) {
            bail!("learning-rate schedule: factor {} must be in (0, 1], minimum {} non-negative", self.lr_factor, self.min_lr);
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            first_epoch: 1,
            batch_size: 32,
            seed: 0,
            patience: 10,
            lr_patience: 4,
            lr_factor: 0.5,
            min_lr: 1e-5,
            precision: Precision::F32,
        }
    }
}

/// One line of the training log.
#[derive(Clone, Debug, Serialize)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub lr: f32,
    pub samples_per_s: f64,
}

/// The state of training at one epoch: a copy of every model tensor and of Adam's moments,
/// with the step count and learning rate, so that restoring it also lets training continue
/// from there exactly (`ser train --resume`).
struct Snapshot {
    copies: Vec<Tensor>,
    step: u32,
    lr: f32,
}

fn all_tensors(model: &Model) -> Vec<&Tensor> {
    model.tensors().into_iter().chain(model.optimizer_tensors()).map(|(_, t)| t).collect()
}

fn snapshot(gpu: &Gpu, model: &Model) -> Result<Snapshot> {
    let mut step = gpu.step("snapshot");
    let mut copies = Vec::new();
    for t in all_tensors(model) {
        let c = gpu.empty(t.shape(), DType::F32)?;
        step.copy(t, &c)?;
        copies.push(c);
    }
    step.submit()?;
    Ok(Snapshot { copies, step: model.step, lr: model.adam.lr })
}

fn restore(gpu: &Gpu, model: &mut Model, s: &Snapshot) -> Result<()> {
    let mut step = gpu.step("restore");
    for (t, c) in all_tensors(model).into_iter().zip(&s.copies) {
        step.copy(c, t)?;
    }
    step.submit()?;
    model.step = s.step;
    model.adam.lr = s.lr;
    Ok(())
}

/// Clips per validation batch.
const VALIDATION_BATCH: usize = 256;

/// The batch sizes an epoch over `examples` in batches of `batch` runs: the full batch and the
/// remainder (weight-gradient multiplies read the row count's vector alignment).
fn batch_sizes(examples: usize, batch: usize) -> Vec<usize> {
    let mut sizes = vec![batch.min(examples)];
    if examples > batch && !examples.is_multiple_of(batch) {
        sizes.push(examples % batch);
    }
    sizes
}

/// One pass over `train` in the seeded order of this epoch; returns the mean training loss.
fn run_epoch(gpu: &Gpu, model: &mut Model, train: &Dataset, weights: &Tensor, cfg: &TrainConfig, epoch: usize) -> Result<f64> {
    // Each epoch's order depends on the seed and the epoch number alone, so that a resumed run
    // sees the batches an uninterrupted one would.
    let mut order: Vec<usize> = (0..train.len()).collect();
    crate::rng::shuffle(&mut order, cfg.seed ^ (epoch as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut losses = Vec::new();
    for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
        let (x, y, lengths) = gather(train, chunk, model);
        let tx = gpu.upload_f32(&x, &[chunk.len(), x.len() / chunk.len()])?;
        let ty = gpu.upload(&y, &[chunk.len()], DType::U32)?;
        let mut step = gpu.step("train");
        let seed = cfg.seed.wrapping_mul(1_000_003) ^ ((epoch as u64) << 32) ^ b as u64;
        losses.push(model.train_step(&mut step, &tx, lengths.as_deref(), &ty, weights, seed, cfg.precision)?);
        step.submit()?;
    }
    let mut sum = 0.0;
    for l in &losses {
        sum += gpu.read_f32(l)?.iter().map(|&v| v as f64).sum::<f64>();
    }
    let loss = sum / train.len() as f64;
    if !loss.is_finite() {
        bail!("the training loss became {loss} at epoch {epoch}; stopping (lower the learning rate?)");
    }
    Ok(loss)
}

/// Trains `model` on `train` for one epoch per entry of `lrs`, at that learning rate, without
/// validation: the refit of a run whose schedule validation already chose.
pub fn fit_schedule(gpu: &Gpu, model: &mut Model, train: &Dataset, class_weight: &[f32], cfg: &TrainConfig, lrs: &[f32], mut on_epoch: impl FnMut(usize, f64, f32)) -> Result<()> {
    if train.is_empty() {
        bail!("training needs examples");
    }
    if cfg.batch_size == 0 {
        bail!("batch size must be at least 1");
    }
    let weights = gpu.upload_f32(class_weight, &[class_weight.len()])?;
    model.prepare_kernels(gpu, &batch_sizes(train.len(), cfg.batch_size), &[], cfg.precision)?;
    for (e, &lr) in lrs.iter().enumerate() {
        model.adam.lr = lr;
        let loss = run_epoch(gpu, model, train, &weights, cfg, e + 1)?;
        on_epoch(e + 1, loss, lr);
    }
    Ok(())
}

/// Trains `model` on `train`, validating on `val` after every epoch. Returns the epoch log; the
/// model ends with the weights of the epoch with the lowest validation loss.
pub fn fit(gpu: &Gpu, model: &mut Model, train: &Dataset, val: &Dataset, class_weight: &[f32], cfg: &TrainConfig, mut on_epoch: impl FnMut(&Epoch)) -> Result<Vec<Epoch>> {
    let each = |e: &Epoch| {
        on_epoch(e);
        Ok(())
    };
    Ok(fit_saving(gpu, model, train, val, class_weight, cfg, each, |_, _| Ok(()))?.log)
}

/// What [`fit_saving`] did: the log of the epochs it ran, and the epoch whose weights the model
/// ends with (the lowest validation loss; for a resumed run, possibly the epoch it resumed at).
#[derive(Clone, Debug)]
pub struct Fitted {
    pub log: Vec<Epoch>,
    pub kept_epoch: usize,
}

/// [`fit`], calling `on_best` with the model each time validation loss improves (the state a
/// resumed run continues from: the weights, Adam's moments and step, and the learning rate at
/// the end of that epoch, when the early-stopping and plateau counters are zero). A run
/// resumed from it with the same seed replays the uninterrupted run exactly, because each
/// epoch's batch order depends only on the seed and the epoch number, and because the resumed
/// model's validation loss is the one its epochs must beat (`cfg.first_epoch` past 1 says the
/// model is such a state, saved at the end of epoch `first_epoch - 1`).
#[allow(clippy::too_many_arguments)]
pub fn fit_saving(
    gpu: &Gpu,
    model: &mut Model,
    train: &Dataset,
    val: &Dataset,
    class_weight: &[f32],
    cfg: &TrainConfig,
    mut on_epoch: impl FnMut(&Epoch) -> Result<()>,
    mut on_best: impl FnMut(&Model, &Epoch) -> Result<()>,
) -> Result<Fitted> {
    cfg.check()?;
    let classes = model.arch.classes()?;
    if train.is_empty() || val.is_empty() {
        bail!("training needs examples in both the training ({}) and validation ({}) sets", train.len(), val.len());
    }
    if class_weight.len() != classes {
        bail!("{} class weights for {classes} classes", class_weight.len());
    }
    let weights = gpu.upload_f32(class_weight, &[classes])?;
    fit_epochs(gpu, model, train, val, &weights, classes, cfg, &mut on_epoch, &mut on_best)
}

#[allow(clippy::too_many_arguments)]
fn fit_epochs(
    gpu: &Gpu,
    model: &mut Model,
    train: &Dataset,
    val: &Dataset,
    weights: &Tensor,
    classes: usize,
    cfg: &TrainConfig,
    on_epoch: &mut impl FnMut(&Epoch) -> Result<()>,
    on_best: &mut impl FnMut(&Model, &Epoch) -> Result<()>,
) -> Result<Fitted> {
    let mut log = Vec::new();
    // Validation loss and accuracy of the model as it stands.
    let validate = |model: &Model| -> Result<(f64, f64)> {
        Ok(loss_and_accuracy(&predict(gpu, model, val, VALIDATION_BATCH)?, &val.y, classes))
    };
    // The lowest validation loss so far, its epoch and the state then. A resumed model is the
    // uninterrupted run's best so far: its first epoch must beat it to count as an improvement
    // (counting it as one would reset the patience counters and overwrite the saved model with
    // a worse one), and it is what the run keeps if no later epoch does.
    let mut best: Option<(f64, usize, Snapshot)> = None;
    if cfg.first_epoch > 1 {
        let (val_loss, _) = validate(model)?;
        best = Some((val_loss, cfg.first_epoch - 1, snapshot(gpu, model)?));
    }
    model.prepare_kernels(gpu, &batch_sizes(train.len(), cfg.batch_size), &batch_sizes(val.len(), VALIDATION_BATCH), cfg.precision)?;
    let (mut since_best, mut since_lr) = (0, 0);
    for epoch in cfg.first_epoch..=cfg.epochs {
        let start = Instant::now();
        let loss = run_epoch(gpu, model, train, weights, cfg, epoch)?;
        let train_s = start.elapsed().as_secs_f64();
        let (val_loss, val_accuracy) = validate(model)?;
        let e = Epoch { epoch, loss, val_loss, val_accuracy, lr: model.adam.lr, samples_per_s: train.len() as f64 / train_s };
        on_epoch(&e)?;
        if best.as_ref().is_none_or(|(b, _, _)| val_loss < *b) {
            best = Some((val_loss, epoch, snapshot(gpu, model)?));
            (since_best, since_lr) = (0, 0);
            on_best(model, &e)?;
            log.push(e);
        } else {
            log.push(e);
            since_best += 1;
            since_lr += 1;
            if since_lr >= cfg.lr_patience && model.adam.lr > cfg.min_lr {
                model.adam.lr = (model.adam.lr * cfg.lr_factor).max(cfg.min_lr);
                since_lr = 0;
            }
            if since_best >= cfg.patience {
                break;
            }
        }
    }
    let mut kept_epoch = 0;
    if let Some((_, epoch, snap)) = best {
        restore(gpu, model, &snap)?;
        kept_epoch = epoch;
    }
    Ok(Fitted { log, kept_epoch })
}
