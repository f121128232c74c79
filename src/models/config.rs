//! What `--model` names and the settings each family reads.

use super::Family;
use super::knn::KnnWeights;
use crate::contract::Input;
use crate::nn::{Architecture, RecurrentHead, TimePooling};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

crate::choices! {
    /// The models `ser train --model` fits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ModelKind {
        /// The reference study's refined CNN: three Conv1D(k5)-BatchNorm-MaxPool(2)-Dropout(0.3) blocks (128, 256, 512 filters), Flatten, Dense(256)-Dropout(0.4)-Dense(128)-Dropout(0.4)-Dense. With --input vectors or stats it convolves along a clip's values (the study's); with --input frames along time, each batch norm over valid frames only, and --time-pooling replaces Flatten (default: the mean over each clip's valid frames; flatten, the study's, does not train there)
        Cnn = "cnn",
        /// Multilayer perceptron (--hidden, --dropout, --batch-norm).
        Mlp = "mlp",
        /// RBF kernel machine by random Fourier features (--rff-features, --rff-gamma).
        Rff = "rff",
        /// Kernel ridge classification with an RBF kernel, solved on the GPU (--krr-gamma,
        /// --krr-lambda); fitted on all training clips, validation sets the probability scale.
        Krr = "krr",
        /// k nearest neighbours (scikit-learn's KNeighborsClassifier, brute-force Euclidean search
        /// on the GPU; --knn-k, --knn-weights); the training clips are the model.
        Knn = "knn",
        /// RBF support vector classifier (scikit-learn's SVC: one-vs-one, SMO over a Gram matrix
        /// computed on the GPU, Platt probabilities; --svm-c, --svm-gamma).
        Svm = "svm",
        /// Random forest (scikit-learn's RandomForestClassifier grown on the GPU: quantile bins,
        /// bootstrap, sqrt(features) per node, Gini; --trees, --max-depth, --min-samples-leaf).
        Rf = "rf",
        /// Gaussian naive Bayes (scikit-learn's GaussianNB: per-class means and variances,
        /// var_smoothing 1e-9, class shares as priors; the log-likelihoods as one GEMM on the GPU).
        Gnb = "gnb",
        /// Bidirectional LSTM over the frames (--input frames): LSTM(--lstm-units per direction,
        /// whole sequence) -> mean over each clip's valid frames (or attention, or the LSTM's last
        /// state: --time-pooling; one direction: --lstm-directions 1) -> Dropout(0.3) -> Dense.
        Lstm = "lstm",
        /// Two Conv1D(k5)-BatchNorm-MaxPool(2) blocks (64, 128 filters) over the frames, then the
        /// lstm model's head (--input frames). Each batch norm counts only each clip's valid frames
        /// and zeroes the rest: padding changes no output, loss or gradient.
        CnnLstm = "cnn-lstm",
    }
}

impl ModelKind {
    /// The flag's value (`cnn-lstm`), as training records name the model.
    pub fn name(self) -> String {
        crate::choice::Choice::name(self).to_string()
    }

    /// From a flag value or a record; records written before session 8 named the Rust variant
    /// (`CnnLstm`), which parses too.
    pub fn from_name(s: &str) -> Option<ModelKind> {
        <ModelKind as crate::choice::Choice>::all().iter().map(|n| n.value).find(|k| k.name() == s || format!("{k:?}").eq_ignore_ascii_case(s))
    }

    /// The family that builds it.
    pub fn family(self) -> &'static Family {
        super::FAMILIES.iter().copied().find(|f| f.models.contains(&self)).expect("every model kind has a family")
    }
}

/// What model is built and its own options (each kind reads its own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    pub kind: ModelKind,
    /// Random Fourier features of the rff model.
    pub rff_features: usize,
    /// RBF width of the rff model, in units of 1 / input size.
    pub rff_gamma: f32,
    /// RBF width of the krr model, in units of 1 / input size (1 is scikit-learn's
    /// gamma="scale" on standardised input).
    pub krr_gamma: f32,
    /// Ridge penalty of the krr model (scaled per example by 1 / its class weight). 0.1 rather
    /// than 0.01: better on speakers not in training (5-fold by actor 0.656 against 0.626, every
    /// fold better) for 0.9 points less on a random split (docs/results/history.md).
    pub krr_lambda: f32,
    pub knn_k: usize,
    pub knn_weights: KnnWeights,
    /// Penalty C of the svm. 10 rather than scikit-learn's 1: validation accuracy 0.82 against
    /// 0.79 on RAVDESS (docs/results/history.md).
    pub svm_c: f64,
    /// RBF width of the svm; None: scikit-learn's "scale".
    pub svm_gamma: Option<f64>,
    /// Trees of the rf model. 500 rather than scikit-learn's 100: validation accuracy 0.70
    /// against 0.67 on RAVDESS (docs/results/history.md).
    pub trees: usize,
    pub max_depth: Option<usize>,
    pub min_samples_leaf: usize,
    pub rf_bins: usize,
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

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: ModelKind::Cnn,
            rff_features: 4096,
            rff_gamma: 1.0,
            krr_gamma: 1.0,
            krr_lambda: 0.1,
            knn_k: 5,
            knn_weights: KnnWeights::Uniform,
            svm_c: 10.0,
            svm_gamma: None,
            trees: 500,
            max_depth: None,
            min_samples_leaf: 1,
            rf_bins: 64,
            lstm_units: 64,
            lstm_directions: 2,
            time_pooling: TimePooling::Mean,
            hidden: vec![512, 256],
            dropout: 0.4,
            batch_norm: false,
        }
    }
}

impl ModelConfig {
    /// The network this configuration builds for `input` (length, channels) and `classes`.
    pub fn architecture(&self, input: Input, input_shape: (usize, usize), classes: usize) -> Result<Architecture> {
        Ok(match self.kind {
            // Over time means or statistics the convolutions run along the features: there is
            // no time to pool, only the study's Flatten.
            ModelKind::Cnn if input != Input::Frames => Architecture::refined_cnn(input_shape, classes, TimePooling::Flatten),
            ModelKind::Cnn if self.time_pooling == TimePooling::Last => {
                bail!("--model cnn: --time-pooling last is the LSTM's last state; the refined CNN over frames takes mean, attention or flatten")
            }
            ModelKind::Cnn => Architecture::refined_cnn(input_shape, classes, self.time_pooling),
            ModelKind::Lstm | ModelKind::CnnLstm if self.time_pooling == TimePooling::Flatten => {
                bail!("--model {}: --time-pooling flatten is the refined CNN's; the LSTM's head pools over valid steps (mean or attention) or takes its last state (last)", self.kind.name())
            }
            ModelKind::Lstm | ModelKind::CnnLstm if !(1..=2).contains(&self.lstm_directions) => {
                bail!("--model {}: --lstm-directions is 1 or 2, not {}", self.kind.name(), self.lstm_directions)
            }
            ModelKind::Mlp => Architecture::mlp(input_shape, classes, &self.hidden, self.dropout, self.batch_norm),
            ModelKind::Rff => Architecture::fourier(input_shape, classes, self.rff_features, self.rff_gamma),
            ModelKind::Lstm | ModelKind::CnnLstm if input != Input::Frames => {
                bail!("--model {}: recurrent models read frame sequences; add --input frames", self.kind.name())
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

