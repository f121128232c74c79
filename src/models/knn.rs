//! k-nearest-neighbour classification (scikit-learn's KNeighborsClassifier with the brute-force
//! Euclidean search): the training rows are the model; a query's neighbours come from the GPU
//! search (ops::knn), and its class probabilities are their (weighted) votes.

use crate::dataset::Dataset;
use super::{Family, FitInput, Fitted, ModelKind, Validation, input_only};
use crate::gpu::{Gpu, Tensor};
use crate::nn::checkpoint::{self, ModelMeta};
use crate::ops::knn;
use crate::store::{self, Loaded, Stored};
use anyhow::{Context, Result, bail};
use safetensors::Dtype;

crate::choices! {
    /// How neighbours vote, as scikit-learn's `weights`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum KnnWeights {
        /// Each of the k neighbours counts once.
        Uniform = "uniform",
        /// Each counts 1 / distance; when a query coincides with training rows (distance 0), only
        /// those count, equally.
        Distance = "distance",
    }
}

/// What `--model knn` is fitted with (`ser train`'s knn flags; the names in a training record).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Neighbours that vote (at most `ops::knn::MAX_K`).
    #[serde(rename = "knn_k")]
    pub k: usize,
    #[serde(rename = "knn_weights")]
    pub weights: KnnWeights,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { k: 5, weights: KnnWeights::Uniform }
    }
}

/// A fitted classifier: the training rows (on the GPU, and on the host for saving) and their
/// classes.
pub struct Knn {
    train: Tensor,
    rows: Vec<f32>,
    width: usize,
    labels: Vec<u32>,
    classes: usize,
    k: usize,
    weights: KnnWeights,
}

impl Knn {
    pub fn fit(gpu: &Gpu, train: &Dataset, classes: usize, k: usize, weights: KnnWeights) -> Result<Knn> {
        if train.is_empty() {
            bail!("knn: no training examples");
        }
        if k == 0 || k > knn::MAX_K || k > train.len() {
            bail!("knn: k = {k} must be 1 to {} and at most the {} training examples", knn::MAX_K, train.len());
        }
        if let Some(y) = train.y.iter().find(|&&y| y as usize >= classes) {
            bail!("knn: class {y} of {classes}");
        }
        Ok(Knn { train: gpu.upload_f32(&train.x, &[train.len(), train.width])?, rows: train.x.clone(), width: train.width, labels: train.y.clone(), classes, k, weights })
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn weights(&self) -> KnnWeights {
        self.weights
    }

    /// The model file's bytes (kind "knn"): tensors `knn.rows` [n, width] f32 and `knn.labels` [n]
    /// u32, metadata `knn` = {"k", "weights"} beside the common entries.
    pub fn to_bytes(&self, meta: &ModelMeta) -> Result<Vec<u8>> {
        let labels: Vec<u8> = self.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        let stored = [
            Stored { name: "knn.rows", dtype: Dtype::F32, shape: vec![self.labels.len(), self.width], bytes: bytemuck::cast_slice(&self.rows) },
            Stored { name: "knn.labels", dtype: Dtype::U32, shape: vec![self.labels.len()], bytes: &labels },
        ];
        let mut metadata = checkpoint::meta_entries(meta)?;
        metadata.insert(checkpoint::KIND.to_string(), "knn".to_string());
        metadata.insert("knn".to_string(), serde_json::json!({"k": self.k, "weights": self.weights}).to_string());
        store::to_safetensors(&stored, metadata)
    }

    /// Reads a model written by [`Knn::to_bytes`], checking every part against the metadata.
    pub fn load(gpu: &Gpu, f: &Loaded) -> Result<(Knn, ModelMeta)> {
        let meta = checkpoint::parse_meta(f)?;
        let cfg: serde_json::Value = serde_json::from_str(&f.meta("knn")?).with_context(|| format!("{}: bad knn settings", f.path))?;
        let k = cfg["k"].as_u64().with_context(|| format!("{}: knn settings have no k", f.path))? as usize;
        let weights: KnnWeights = serde_json::from_value(cfg["weights"].clone()).with_context(|| format!("{}: bad knn weights", f.path))?;
        let (rows, shape) = f.tensor::<f32>("knn.rows", Dtype::F32)?;
        let (labels, lshape) = f.tensor::<u32>("knn.labels", Dtype::U32)?;
        // The model's input as the dataset lays it out (frames flattened for --input frames).
        let width = meta.architecture.input.0 * meta.architecture.input.1;
        if shape != [labels.len(), width] || lshape != [labels.len()] {
            bail!("{}: knn rows {shape:?} and labels {lshape:?} do not fit {} columns", f.path, width);
        }
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            bail!("{}: knn.rows holds {} at element {i}; the model is damaged", f.path, rows[i]);
        }
        let classes = meta.data.classes.len();
        if k == 0 || k > knn::MAX_K || k > labels.len() || labels.iter().any(|&y| y as usize >= classes) {
            bail!("{}: knn k = {k} with {} rows, or a label past {classes} classes; the model is damaged", f.path, labels.len());
        }
        // The rows as read, kept for saving; one upload.
        let train = gpu.upload_f32(&rows, &[labels.len(), width])?;
        Ok((Knn { train, rows, width, labels, classes, k, weights }, meta))
    }

    /// Class probabilities [len][classes] of every example of `x`.
    pub fn predict_proba(&self, gpu: &Gpu, x: &Dataset) -> Result<Vec<Vec<f32>>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let queries = gpu.upload_f32(&x.x, &[x.len(), x.width])?;
        let (index, dist) = knn::neighbours(gpu, &queries, &self.train, self.k)?;
        Ok(index.chunks(self.k).zip(dist.chunks(self.k)).map(|(idx, d2)| vote(idx, d2, &self.labels, self.classes, self.weights)).collect())
    }
}

/// One query's probabilities from its neighbours (training indices and squared distances).
pub fn vote(index: &[u32], sq_dist: &[f32], labels: &[u32], classes: usize, weights: KnnWeights) -> Vec<f32> {
    let mut p = vec![0f64; classes];
    let exact = sq_dist.contains(&0.0);
    for (&j, &d2) in index.iter().zip(sq_dist) {
        let w = match weights {
            KnnWeights::Uniform => 1.0,
            KnnWeights::Distance if exact => (d2 == 0.0) as u8 as f64,
            KnnWeights::Distance => 1.0 / (d2 as f64).sqrt(),
        };
        p[labels[j as usize] as usize] += w;
    }
    let total: f64 = p.iter().sum();
    p.iter().map(|v| (v / total) as f32).collect()
}

pub static FAMILY: Family = Family { kind: "knn", models: &[ModelKind::Knn], validation: Validation::Unused, load, fit: Some(fit) };

/// Every training clip is the model: nothing to validate.
fn fit(p: &FitInput) -> Result<Fitted> {
    let m = p.settings.knn;
    let started = std::time::Instant::now();
    let model = Knn::fit(p.gpu, p.train, p.classes, m.k, m.weights)?;
    (p.log)(&format!("knn (k {}, {:?} votes) on {} clips", m.k, m.weights, p.train.len()));
    let record = serde_json::json!({"knn": {"k": m.k, "weights": m.weights, "rows": p.train.len()}, "fit_seconds": started.elapsed().as_secs_f64()});
    Ok((Box::new(model), input_only(p.input_shape), record))
}

super::fitted_in_one_go!(Knn);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_follow_scikit_learns_rules() {
        let labels = [0, 1, 1, 2];
        // Uniform: counts over k.
        assert_eq!(vote(&[1, 2, 0], &[1.0, 4.0, 9.0], &labels, 3, KnnWeights::Uniform), vec![1.0 / 3.0, 2.0 / 3.0, 0.0]);
        // Distance: 1/d with d the Euclidean distance (sqrt of the squared one): 1, 1/2, 1/3.
        let p = vote(&[1, 2, 0], &[1.0, 4.0, 9.0], &labels, 3, KnnWeights::Distance);
        let (w0, w1) = (1.0 / 3.0, 1.0 + 0.5);
        assert!((p[0] as f64 - w0 / (w0 + w1)).abs() < 1e-6 && (p[1] as f64 - w1 / (w0 + w1)).abs() < 1e-6 && p[2] == 0.0, "{p:?}");
        // A query on a training row: only the zero-distance neighbours vote.
        assert_eq!(vote(&[3, 0, 1], &[0.0, 0.0, 2.0], &labels, 3, KnnWeights::Distance), vec![0.5, 0.0, 0.5]);
    }
}
