//! Model files: every model tensor in safetensors, with what predicting needs in the metadata
//! (architecture, class names, feature configuration, input kind, scaler, speaker normalisation)
//! and how the model was made (training configuration, metrics). Written atomically; loading
//! checks every name and shape and says what is wrong.

use super::record::TrainingRecord;
use super::{Architecture, Model};
use crate::gpu::Gpu;
use crate::store::{self, Loaded, Stored};
use crate::contract::DataContract;
use anyhow::{Context, Result, bail};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const FORMAT: &str = "ser.model.v1";

/// Metadata key naming what kind of classifier a model file holds: absent (every file before
/// session 7) or "network" for the layer models here; the other kinds are the model families'
/// (crate::models::FAMILIES), which refuse a kind they do not know, by name.
pub const KIND: &str = "kind";

/// The kind of an ensemble file (`infer::ensemble`): models of any kinds saved whole inside it.
pub const ENSEMBLE_KIND: &str = "ensemble";

/// Everything besides the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub architecture: Architecture,
    /// What the model needs to read audio as it was trained.
    pub data: DataContract,
    /// How it was made: the run's configuration, the clips, the metrics.
    pub training: TrainingRecord,
    /// A network's temperature per member: the factor on its logits before the softmax, fitted
    /// on validation clips (`nn::predict::fit_temperature`) so that its probabilities mean what they
    /// say when averaged with other models'. Empty: 1 (models saved before calibration).
    #[serde(default)]
    pub temperatures: Vec<f32>,
}

/// Tensor names of member `k` of an ensemble of `members`: a single model keeps plain names.
fn member_name(name: &str, k: usize, members: usize) -> String {
    if members == 1 { name.to_string() } else { format!("member{k}.{name}") }
}

/// Saves one model, or an ensemble of models of the same architecture whose class
/// probabilities are averaged when predicting.
pub fn save(gpu: &Gpu, models: &[Model], meta: &ModelMeta, path: &Path) -> Result<()> {
    let bytes = to_bytes(gpu, models, meta).with_context(|| format!("not saving {}", path.display()))?;
    store::write_atomic(path, &bytes)
}

/// The file [`save`] writes, as bytes.
pub fn to_bytes(gpu: &Gpu, models: &[Model], meta: &ModelMeta) -> Result<Vec<u8>> {
    if models.is_empty() {
        bail!("no model");
    }
    let mut data: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (k, model) in models.iter().enumerate() {
        for (n, t) in model.tensors() {
            data.push((member_name(&n, k, models.len()), t.shape().to_vec(), gpu.read_f32(t)?));
        }
    }
    // A single gradient-trained model also keeps Adam's state, so `ser train --resume` continues
    // exactly where this checkpoint's weights were taken.
    let optimizer = match models {
        [m] if m.step > 0 => {
            for (n, t) in m.optimizer_tensors() {
                data.push((n, t.shape().to_vec(), gpu.read_f32(t)?));
            }
            Some(serde_json::json!({"step": m.step, "lr": m.adam.lr}))
        }
        _ => None,
    };
    if let Some((name, _, _)) = data.iter().find(|(_, _, v)| v.iter().any(|x| !x.is_finite())) {
        bail!("tensor {name} holds NaN or infinity");
    }
    let stored: Vec<Stored> = data.iter().map(|(n, s, v)| Stored { name: n, dtype: Dtype::F32, shape: s.clone(), bytes: bytemuck::cast_slice(v) }).collect();
    let mut metadata = meta_entries(meta)?;
    metadata.insert("members".to_string(), models.len().to_string());
    if let Some(o) = optimizer {
        metadata.insert("optimizer".to_string(), o.to_string());
    }
    store::to_safetensors(&stored, metadata)
}

/// The model (or every member of an ensemble) and its metadata.
pub fn load(gpu: &Gpu, path: &Path) -> Result<(Vec<Model>, ModelMeta)> {
    from_loaded(gpu, Loaded::read(path)?)
}

/// A model file already in memory; `name` stands for it in errors.
pub fn load_bytes(gpu: &Gpu, name: &str, bytes: &[u8]) -> Result<(Vec<Model>, ModelMeta)> {
    from_loaded(gpu, Loaded::from_bytes(name, bytes.to_vec())?)
}

/// The kind of classifier a model file holds ("network" when the file predates the key); a
/// file that is not a ser model is refused.
pub fn kind_of(f: &Loaded) -> Result<String> {
    let format = f.meta("format")?;
    if format != FORMAT {
        bail!("{}: format {format:?} is not a ser model ({FORMAT})", f.path);
    }
    Ok(f.metadata().remove(KIND).unwrap_or_else(|| "network".to_string()))
}

/// The metadata every model file carries, checked (feature configuration, scaler).
pub fn parse_meta(f: &Loaded) -> Result<ModelMeta> {
    let parse = |key: &str| -> Result<serde_json::Value> { serde_json::from_str(&f.meta(key)?).with_context(|| format!("{}: metadata {key:?} is not valid JSON", f.path)) };
    // A key a file written before it existed does not have: its default.
    let optional = |key: &str| -> Result<Option<serde_json::Value>> { f.metadata().get(key).map(|_| parse(key)).transpose() };
    fn typed_in<T: serde::de::DeserializeOwned>(file: &str, key: &str, what: &str, v: serde_json::Value) -> Result<T> {
        serde_json::from_value(v).with_context(|| format!("{file}: bad {what} (metadata {key:?})"))
    }
    let data = DataContract {
        version: optional("data_contract")?.map(|v| typed_in(&f.path, "data_contract", "contract version", v)).transpose()?.unwrap_or(0),
        classes: typed_in(&f.path, "classes", "classes", parse("classes")?)?,
        features: typed_in(&f.path, "features", "feature configuration", parse("features")?)?,
        input: typed_in(&f.path, "input", "input kind", parse("input")?)?,
        scaler: typed_in(&f.path, "scaler", "scaler", parse("scaler")?)?,
        speaker_norm: optional("speaker_norm")?.map(|v| typed_in(&f.path, "speaker_norm", "speaker normalisation", v)).transpose()?,
        label_map: optional("label_map")?.map(|v| typed_in(&f.path, "label_map", "label map", v)).transpose()?.unwrap_or_default(),
        corpora: optional("corpora")?.map(|v| typed_in(&f.path, "corpora", "corpora", v)).transpose()?.unwrap_or_default(),
    };
    if data.version > crate::contract::VERSION {
        bail!("{}: data contract version {} is newer than this ser reads ({}); a newer ser wrote it", f.path, data.version, crate::contract::VERSION);
    }
    let meta = ModelMeta {
        architecture: serde_json::from_value(parse("architecture")?).with_context(|| format!("{}: bad architecture", f.path))?,
        data,
        training: TrainingRecord::from_json(&f.meta("training")?).with_context(|| format!("{}: bad training record (metadata \"training\")", f.path))?,
        temperatures: match f.metadata().get("temperatures") {
            None => Vec::new(),
            Some(_) => serde_json::from_value(parse("temperatures")?).with_context(|| format!("{}: bad temperatures", f.path))?,
        },
    };
    if let Some(t) = meta.temperatures.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        bail!("{}: temperature {t} is not a positive number", f.path);
    }
    meta.data.features.validate().with_context(|| format!("{}: feature configuration", f.path))?;
    let columns = meta.data.input.scaler_width(meta.data.features.dim());
    if meta.data.scaler.mean.len() != columns || meta.data.scaler.std.len() != columns {
        bail!(
            "{}: the scaler has {} means and {} deviations, but {:?} input of these features has {columns} columns",
            f.path,
            meta.data.scaler.mean.len(),
            meta.data.scaler.std.len(),
            meta.data.input
        );
    }
    // A zero or non-finite deviation divides features into infinities: certain, wrong answers.
    if let Some(j) = meta.data.scaler.mean.iter().zip(&meta.data.scaler.std).position(|(m, s)| !m.is_finite() || !s.is_finite() || *s <= 0.0) {
        bail!("{}: scaler column {j} has mean {} and deviation {} (a deviation must be positive and finite)", f.path, meta.data.scaler.mean[j], meta.data.scaler.std[j]);
    }
    Ok(meta)
}

/// The metadata entries every model file carries (not `members`, which is the network's).
pub fn meta_entries(meta: &ModelMeta) -> Result<HashMap<String, String>> {
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("architecture".to_string(), serde_json::to_string(&meta.architecture)?),
        ("data_contract".to_string(), meta.data.version.to_string()),
        ("classes".to_string(), serde_json::to_string(&meta.data.classes)?),
        ("features".to_string(), serde_json::to_string(&meta.data.features)?),
        ("input".to_string(), serde_json::to_string(&meta.data.input)?),
        ("scaler".to_string(), serde_json::to_string(&meta.data.scaler)?),
        ("training".to_string(), serde_json::to_string(&meta.training)?),
    ]);
    if !meta.data.label_map.is_empty() {
        metadata.insert("label_map".to_string(), serde_json::to_string(&meta.data.label_map)?);
    }
    if !meta.data.corpora.is_empty() {
        metadata.insert("corpora".to_string(), serde_json::to_string(&meta.data.corpora)?);
    }
    if let Some(sn) = &meta.data.speaker_norm {
        metadata.insert("speaker_norm".to_string(), serde_json::to_string(sn)?);
    }
    if !meta.temperatures.is_empty() {
        metadata.insert("temperatures".to_string(), serde_json::to_string(&meta.temperatures)?);
    }
    Ok(metadata)
}

/// A network model file already read (its kind checked again here).
pub fn from_loaded(gpu: &Gpu, f: Loaded) -> Result<(Vec<Model>, ModelMeta)> {
    let kind = kind_of(&f)?;
    if kind != "network" {
        bail!("{}: a {kind} model, not a layer network (load it with infer::load_model)", f.path);
    }
    let meta = parse_meta(&f)?;
    if meta.architecture.classes()? != meta.data.classes.len() {
        bail!("{}: {} classes named but the model has {} outputs", f.path, meta.data.classes.len(), meta.architecture.classes()?);
    }
    // The weights come from the file: an architecture larger than its data is refused before
    // the device is asked for it (a damaged header could otherwise claim gigabytes).
    let needed = meta.architecture.weight_values().with_context(|| format!("{}: architecture", f.path))?;
    if needed.saturating_mul(4) > f.byte_len() {
        bail!("{}: the architecture needs {needed} weight values, more than the {}-byte file can hold", f.path, f.byte_len());
    }
    let members = match f.metadata().get("members") {
        None => 1,
        Some(m) => m.parse::<usize>().ok().filter(|&m| m > 0 && m <= 64).with_context(|| format!("{}: bad member count {m:?} (1 to 64)", f.path))?,
    };
    if !meta.temperatures.is_empty() && meta.temperatures.len() != members {
        bail!("{}: {} temperatures for {members} members", f.path, meta.temperatures.len());
    }
    // Fills `t` from the file's tensor `name`, which must have its shape.
    let fill = |name: &str, t: &crate::gpu::Tensor| -> Result<()> {
        let (data, shape) = f.tensor::<f32>(name, Dtype::F32)?;
        if shape != t.shape() {
            bail!("{}: tensor {name} has shape {shape:?}, the architecture needs {:?}", f.path, t.shape());
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            bail!("{}: tensor {name} holds {} at element {i}; the model is damaged (weights must be finite)", f.path, data[i]);
        }
        gpu.write(t, &data)
    };
    let mut models = Vec::with_capacity(members);
    for k in 0..members {
        let model = Model::new(gpu, &meta.architecture, 0).with_context(|| format!("{}: architecture", f.path))?;
        for (name, t) in model.tensors() {
            fill(&member_name(&name, k, members), t)?;
        }
        models.push(model);
    }
    if let (Some(o), [model]) = (f.metadata().get("optimizer"), models.as_mut_slice()) {
        let o: serde_json::Value = serde_json::from_str(o).with_context(|| format!("{}: bad optimizer state", f.path))?;
        model.step = o["step"].as_u64().with_context(|| format!("{}: optimizer state has no step", f.path))? as u32;
        model.adam.lr = o["lr"].as_f64().with_context(|| format!("{}: optimizer state has no lr", f.path))? as f32;
        for (name, t) in model.optimizer_tensors() {
            fill(&name, t)?;
        }
    }
    Ok((models, meta))
}
