//! The layer networks (mlp, rff, cnn, lstm, cnn-lstm) as a family. They are trained by
//! gradients (crate::train, driven by crate::experiment: epochs, ensembles, refit, resume); an
//! ensemble's probabilities are the mean of its members', each member's logits scaled by its
//! temperature first.

use super::kernel_ridge::KernelRidge;
use super::{Classifier, Family, ModelKind, Validation};
use crate::dataset::Dataset;
use crate::gpu::Gpu;
use crate::nn::checkpoint::{self, ModelMeta};
use crate::nn::predict::{predict, softmax_rows};
use crate::nn::Model;
use crate::store::Loaded;
use anyhow::{Result, bail};
use std::path::Path;

pub static FAMILY: Family = Family {
    kind: "network",
    models: &[ModelKind::Cnn, ModelKind::Mlp, ModelKind::Rff, ModelKind::Lstm, ModelKind::CnnLstm],
    validation: Validation::EarlyStopping,
    load,
    fit: None,
};

/// A network, or an ensemble of them whose probabilities are averaged.
pub struct Networks(pub Vec<Model>);

/// A network file. Kernel ridge files from before it had its own kind are networks in shape
/// (Flatten -> RbfKernel -> Dense): they load as kernel ridge.
fn load(gpu: &Gpu, f: Loaded) -> Result<(Box<dyn Classifier>, ModelMeta)> {
    let mut meta = checkpoint::parse_meta(&f)?;
    if let Some(mut krr) = KernelRidge::from_network(gpu, &f, &meta)? {
        // A temperature on such a file (the network layout allows one) is folded into its
        // scores, as kernel ridge keeps its own, so that it is applied exactly once.
        if let Some(&t) = meta.temperatures.first() {
            krr.scale_scores(gpu, t)?;
            meta.temperatures.clear();
        }
        return Ok((Box::new(krr), meta));
    }
    let (models, meta) = checkpoint::from_loaded(gpu, f)?;
    Ok((Box::new(Networks(models)), meta))
}

impl Classifier for Networks {
    fn family(&self) -> &'static Family {
        &FAMILY
    }

    fn probabilities(&self, gpu: &Gpu, meta: &ModelMeta, data: &Dataset) -> Result<Vec<Vec<f32>>> {
        let k = meta.data.classes.len();
        let mut mean = vec![vec![0f32; k]; data.len()];
        for (member, model) in self.0.iter().enumerate() {
            let mut logits = predict(gpu, model, data, 256)?;
            if let Some(&t) = meta.temperatures.get(member) {
                logits.iter_mut().for_each(|v| *v *= t);
            }
            // Finite weights can still overflow (a damaged file with a weight of 1e38): an
            // infinite logit would come out as a NaN probability, or a label, silently.
            if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
                bail!("the model's output for clip {} is {}: its weights overflow on this input (is the model file damaged?)", i / k.max(1), logits[i]);
            }
            for (row, p) in mean.iter_mut().zip(softmax_rows(&logits, k)) {
                for (m, v) in row.iter_mut().zip(p) {
                    *m += v / self.0.len() as f32;
                }
            }
        }
        Ok(mean)
    }

    fn save(&self, gpu: &Gpu, meta: &ModelMeta, path: &Path) -> Result<()> {
        checkpoint::save(gpu, &self.0, meta, path)
    }

    fn networks(&self) -> Option<&[Model]> {
        Some(&self.0)
    }

    fn into_networks(self: Box<Self>) -> Result<Vec<Model>, Box<dyn Classifier>> {
        Ok(self.0)
    }
}
