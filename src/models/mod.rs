//! Model families: what each fits, how it turns model inputs into class probabilities, and how
//! it is saved and loaded. A family is one module here and one line of [`FAMILIES`]; the kinds
//! a model file may record, the loader for each and the fit for each `--model` come from it.
//!
//! Layers: below `infer` (which loads and predicts through [`Classifier`]) and `experiment`
//! (which splits, fits through [`Family::fit`] and reports); above `nn`, `dataset` and the ops.

pub mod forest;
pub mod kernel_ridge;
pub mod knn;
pub mod naive_bayes;
pub mod network;
pub mod svm;

use crate::dataset::Dataset;
use crate::gpu::Gpu;
use crate::nn::checkpoint::ModelMeta;
use crate::nn::{Architecture, Model};
use crate::store::Loaded;
use anyhow::{Context, Result, bail};

/// A fitted model of any family.
pub trait Classifier: Send + Sync {
    /// The family it belongs to.
    fn family(&self) -> &'static Family;

    /// Class probabilities, one row of `classes` per example of `data`, in order. `meta` is the
    /// model's own metadata (a network's temperatures are there).
    fn probabilities(&self, gpu: &Gpu, meta: &ModelMeta, data: &Dataset) -> Result<Vec<Vec<f32>>>;

    /// The model and `meta` as a file's bytes, in its family's layout (docs/guide/checkpoints.md;
    /// `infer::save` writes them).
    fn to_bytes(&self, gpu: &Gpu, meta: &ModelMeta) -> Result<Vec<u8>>;

    /// The member networks, for a family of layer networks (what calibration afterwards, resume
    /// and inspection need); None for the others.
    fn networks(&self) -> Option<&[Model]> {
        None
    }

    /// The member networks by value (to continue training them), or the model back unchanged.
    fn into_networks(self: Box<Self>) -> Result<Vec<Model>, Box<dyn Classifier>>;
}

/// What a family uses the validation part of the training clips for. Only families that use
/// it are given one: the others fit on every training clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Nothing: fitted on every training clip in one go (knn, svm, forest, naive bayes).
    Unused,
    /// Fitting a probability scale, then fitted again on every training clip (kernel ridge).
    Calibration,
    /// Early stopping, the learning-rate schedule and calibration (networks); `--refit` then
    /// trains again on every training clip with the schedule validation chose.
    EarlyStopping,
}

/// What a family's fit is given: the parts of the training clips, the run's model settings and
/// where to log.
pub struct FitInput<'a> {
    pub gpu: &'a Gpu,
    pub settings: &'a ModelConfig,
    pub seed: u64,
    /// The fitting part: every training clip unless the family uses validation.
    pub train: &'a Dataset,
    /// The validation part (empty when the family does not use one).
    pub val: &'a Dataset,
    /// Every training clip, for a family that refits on them after validation.
    pub full: Option<&'a Dataset>,
    pub classes: usize,
    pub input_shape: (usize, usize),
    /// The run's class weights for a dataset's labels.
    pub class_weights: &'a dyn Fn(&Dataset) -> Vec<f32>,
    pub log: &'a dyn Fn(&str),
}

/// What a fit returns: the classifier, the architecture recorded with it (the input shape only
/// for families without layers) and its part of the training record.
pub type Fitted = (Box<dyn Classifier>, Architecture, serde_json::Value);

/// Reads a model file of one family.
pub type Loader = fn(&Gpu, Loaded) -> Result<(Box<dyn Classifier>, ModelMeta)>;

/// One model family: one line of [`FAMILIES`].
pub struct Family {
    /// The `kind` its model files record (docs/guide/checkpoints.md).
    pub kind: &'static str,
    /// The `ser train --model` names that build it.
    pub models: &'static [ModelKind],
    pub validation: Validation,
    /// Reads a model file of this kind (already checked to be a ser model).
    pub load: Loader,
    /// Fits in one go; None for the networks, which `experiment` trains by gradients (epochs,
    /// ensembles, resume).
    pub fit: Option<fn(&FitInput) -> Result<Fitted>>,
}

/// The [`Classifier`] of a family fitted in one go whose type has inherent `predict_proba(gpu,
/// data)`, `save(meta, path)` and `load(gpu, file)`, and the family's loader `fn load`.
macro_rules! fitted_in_one_go {
    ($model:ty) => {
        impl $crate::models::Classifier for $model {
            fn family(&self) -> &'static $crate::models::Family {
                &FAMILY
            }
            fn probabilities(&self, gpu: &Gpu, _: &ModelMeta, data: &Dataset) -> Result<Vec<Vec<f32>>> {
                self.predict_proba(gpu, data)
            }
            fn to_bytes(&self, _: &Gpu, meta: &ModelMeta) -> Result<Vec<u8>> {
                <$model>::to_bytes(self, meta)
            }
            fn into_networks(self: Box<Self>) -> Result<Vec<crate::nn::Model>, Box<dyn $crate::models::Classifier>> {
                Err(self)
            }
        }

        fn load(gpu: &Gpu, f: Loaded) -> Result<(Box<dyn $crate::models::Classifier>, ModelMeta)> {
            let (model, meta) = <$model>::load(gpu, &f)?;
            Ok((Box::new(model), meta))
        }
    };
}
pub(crate) use fitted_in_one_go;

/// Every family this build has, in the order `ser train --help` lists them.
pub static FAMILIES: [&Family; 6] = [&network::FAMILY, &kernel_ridge::FAMILY, &knn::FAMILY, &svm::FAMILY, &forest::FAMILY, &naive_bayes::FAMILY];

/// The family of a model file's `kind`.
pub fn family(kind: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.kind == kind)
}

/// The family of a model file; a file that is not a ser model, or of a kind this build does not
/// know, is refused.
pub fn family_of_file(f: &Loaded) -> Result<&'static Family> {
    let kind = crate::nn::checkpoint::kind_of(f)?;
    if kind == crate::nn::checkpoint::ENSEMBLE_KIND {
        bail!("{}: an ensemble file (`ser ensemble`), not one model: use its members' own files here", f.path);
    }
    family(&kind).with_context(|| format!("{}: a model of kind {kind:?}, which this ser does not know ({}); a newer ser wrote it?", f.path, kinds().join(", ")))
}

/// Every kind a model file may record.
pub fn kinds() -> Vec<&'static str> {
    FAMILIES.iter().map(|f| f.kind).collect()
}

/// An architecture that records only the input shape (families without layers).
pub fn input_only(input_shape: (usize, usize)) -> Architecture {
    Architecture { input: input_shape, layers: vec![] }
}

pub use config::{ModelConfig, ModelKind};

mod config;
