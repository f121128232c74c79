//! What `--model` names, and the run's model settings: each family's own, side by side.

use super::{Family, forest, kernel_ridge, knn, network, svm};
use crate::contract::Input;
use crate::nn::Architecture;
use anyhow::Result;
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

/// What model is built, and the settings of each family (each model reads its own family's).
/// Every family's settings are its own type, with its defaults, in its module; a training
/// record keeps them as one flat object of the names `ser train`'s flags have (`knn_k`,
/// `svm_c`, `hidden`), as records always have.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    pub kind: ModelKind,
    #[serde(flatten)]
    pub network: network::Settings,
    #[serde(flatten)]
    pub krr: kernel_ridge::Settings,
    #[serde(flatten)]
    pub knn: knn::Settings,
    #[serde(flatten)]
    pub svm: svm::Settings,
    #[serde(flatten)]
    pub forest: forest::Settings,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { kind: ModelKind::Cnn, network: Default::default(), krr: Default::default(), knn: Default::default(), svm: Default::default(), forest: Default::default() }
    }
}

impl ModelConfig {
    /// The network this configuration builds for `input` (length, channels) and `classes`.
    pub fn architecture(&self, input: Input, input_shape: (usize, usize), classes: usize) -> Result<Architecture> {
        self.network.architecture(self.kind, input, input_shape, classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each family's settings are their own type, but a training record keeps them as the one
    /// flat object records have always held, under the flags' names: a record written before
    /// the split reads back to the same settings and writes back to the same JSON.
    #[test]
    fn a_record_keeps_one_flat_object_under_the_flags_names() {
        let record = serde_json::json!({
            "kind": "cnn-lstm", "rff_features": 10, "rff_gamma": 2.0, "krr_gamma": 3.0, "krr_lambda": 0.5,
            "knn_k": 3, "knn_weights": "distance", "svm_c": 2.0, "svm_gamma": 0.25, "trees": 7, "max_depth": 4,
            "min_samples_leaf": 2, "rf_bins": 16, "lstm_units": 8, "lstm_directions": 1, "time_pooling": "attention",
            "hidden": [3, 2], "dropout": 0.125, "batch_norm": true
        });
        let read: ModelConfig = serde_json::from_value(record.clone()).unwrap();
        assert_eq!(read.kind, ModelKind::CnnLstm);
        assert_eq!((read.knn.k, read.knn.weights), (3, knn::KnnWeights::Distance));
        assert_eq!((read.svm.c, read.svm.gamma), (2.0, Some(0.25)));
        assert_eq!((read.krr.gamma, read.krr.lambda), (3.0, 0.5));
        assert_eq!((read.forest.trees, read.forest.max_depth, read.forest.min_samples_leaf, read.forest.bins), (7, Some(4), 2, 16));
        assert_eq!((read.network.lstm_units, read.network.lstm_directions, read.network.hidden.clone()), (8, 1, vec![3, 2]));
        assert_eq!(serde_json::to_value(&read).unwrap(), record);
        // Keys a record lacks take the family's defaults.
        let sparse: ModelConfig = serde_json::from_value(serde_json::json!({"kind": "knn", "knn_k": 9})).unwrap();
        assert_eq!(sparse, ModelConfig { kind: ModelKind::Knn, knn: knn::Settings { k: 9, ..Default::default() }, ..Default::default() });
    }
}
