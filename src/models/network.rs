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
use crate::contract::Input;
use crate::nn::{Architecture, RecurrentHead, TimePooling};
use anyhow::{Result, bail};

/// What the network models are built with (`ser train`'s network flags; the names in a
/// training record). Each model reads its own: rff the Fourier features, mlp the hidden
/// layers, lstm and cnn-lstm the LSTM, the models over frames the pooling.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Random Fourier features of the rff model.
    pub rff_features: usize,
    /// RBF width of the rff model, in units of 1 / input size.
    pub rff_gamma: f32,
    /// Units per direction of the lstm and cnn-lstm models' LSTM.
    pub lstm_units: usize,
    /// Directions of that LSTM: 2 (bidirectional, ser's default) or 1 (forward only).
    pub lstm_directions: usize,
    /// How the models over frames (lstm, cnn-lstm, cnn) reduce their steps: the mean over valid
    /// steps by default (the study's LSTM head); flatten is the study's refined CNN head; last,
    /// the LSTM's last state (Keras's default LSTM), for the recurrent models.
    pub time_pooling: TimePooling,
    /// Hidden layer widths, dropout and batch normalisation of the MLP.
    pub hidden: Vec<usize>,
    pub dropout: f32,
    pub batch_norm: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { rff_features: 4096, rff_gamma: 1.0, lstm_units: 64, lstm_directions: 2, time_pooling: TimePooling::Mean, hidden: vec![512, 256], dropout: 0.4, batch_norm: false }
    }
}

impl Settings {
    /// The network `kind` is for `input` (length, channels) and `classes`.
    pub fn architecture(&self, kind: ModelKind, input: Input, input_shape: (usize, usize), classes: usize) -> Result<Architecture> {
        Ok(match kind {
            // Over time means or statistics the convolutions run along the features: there is
            // no time to pool, only the study's Flatten.
            ModelKind::Cnn if input != Input::Frames => Architecture::refined_cnn(input_shape, classes, TimePooling::Flatten),
            ModelKind::Cnn if self.time_pooling == TimePooling::Last => {
                bail!("--model cnn: --time-pooling last is the LSTM's last state; the refined CNN over frames takes mean, attention or flatten")
            }
            ModelKind::Cnn => Architecture::refined_cnn(input_shape, classes, self.time_pooling),
            ModelKind::Lstm | ModelKind::CnnLstm if self.time_pooling == TimePooling::Flatten => {
                bail!("--model {}: --time-pooling flatten is the refined CNN's; the LSTM's head pools over valid steps (mean or attention) or takes its last state (last)", kind.name())
            }
            ModelKind::Lstm | ModelKind::CnnLstm if !(1..=2).contains(&self.lstm_directions) => {
                bail!("--model {}: --lstm-directions is 1 or 2, not {}", kind.name(), self.lstm_directions)
            }
            ModelKind::Mlp => Architecture::mlp(input_shape, classes, &self.hidden, self.dropout, self.batch_norm),
            ModelKind::Rff => Architecture::fourier(input_shape, classes, self.rff_features, self.rff_gamma),
            ModelKind::Lstm | ModelKind::CnnLstm if input != Input::Frames => {
                bail!("--model {}: recurrent models read frame sequences; add --input frames", kind.name())
            }
            ModelKind::Lstm => Architecture::lstm(input_shape, classes, self.recurrent_head()),
            ModelKind::CnnLstm => Architecture::cnn_lstm(input_shape, classes, self.recurrent_head()),
            k => bail!("--model {}: not a network trained by gradients", k.name()),
        })
    }

    /// The lstm and cnn-lstm models' LSTM and pooling.
    pub fn recurrent_head(&self) -> RecurrentHead {
        RecurrentHead { units: self.lstm_units, bidirectional: self.lstm_directions == 2, pooling: self.time_pooling }
    }
}

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

    fn to_bytes(&self, gpu: &Gpu, meta: &ModelMeta) -> Result<Vec<u8>> {
        checkpoint::to_bytes(gpu, &self.0, meta)
    }

    fn networks(&self) -> Option<&[Model]> {
        Some(&self.0)
    }

    fn into_networks(self: Box<Self>) -> Result<Vec<Model>, Box<dyn Classifier>> {
        Ok(self.0)
    }
}
