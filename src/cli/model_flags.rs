//! `ser train`'s model flags: `--model`, then one group per family, each under its own heading
//! in `--help` and turned into that family's settings type (`ser::models::<family>::Settings`),
//! whose `Default` gives the flags their defaults. A family with settings adds its group here.

use crate::{choice, positive_f32, positive_f64, probability_below_one, ranged};
use clap::Args;
use ser::models::knn::KnnWeights;
use ser::models::{ModelConfig, ModelKind, forest, kernel_ridge, knn, network, svm};
use ser::nn::TimePooling;

fn net() -> network::Settings {
    network::Settings::default()
}

/// The model and every family's settings. Flattened last into a command: each group sets the
/// help heading of the flags that follow it.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Model")]
pub struct ModelFlags {
    /// Model architecture.
    #[arg(long, value_parser = choice::<ModelKind>(), default_value_t = ModelConfig::default().kind)]
    pub model: ModelKind,
    #[command(flatten)]
    network: NetworkFlags,
    #[command(flatten)]
    krr: KernelRidgeFlags,
    #[command(flatten)]
    knn: KnnFlags,
    #[command(flatten)]
    svm: SvmFlags,
    #[command(flatten)]
    forest: ForestFlags,
}

impl ModelFlags {
    pub fn config(&self) -> ModelConfig {
        ModelConfig { kind: self.model, network: self.network.settings(), krr: self.krr.settings(), knn: self.knn.settings(), svm: self.svm.settings(), forest: self.forest.settings() }
    }
}

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Networks (--model cnn, mlp, rff, lstm, cnn-lstm)")]
struct NetworkFlags {
    /// Random Fourier features of the rff model.
    #[arg(long, default_value_t = net().rff_features, value_parser = ranged::<usize>(1, 1 << 20))]
    rff_features: usize,
    /// RBF kernel width of the rff model, in units of 1 / input size (1 is scikit-learn's
    /// gamma="scale" on standardised input).
    #[arg(long, default_value_t = net().rff_gamma, value_parser = positive_f32)]
    rff_gamma: f32,
    /// Units per direction of the lstm and cnn-lstm models' LSTM.
    #[arg(long, default_value_t = net().lstm_units, value_parser = ranged::<usize>(1, ser::ops::lstm::MAX_UNITS))]
    lstm_units: usize,
    /// Directions of that LSTM: 2 (bidirectional, the second walking each clip backwards) or 1
    /// (forward only, as Keras's plain LSTM).
    #[arg(long, default_value_t = net().lstm_directions, value_parser = ranged::<usize>(1, 2))]
    lstm_directions: usize,
    /// How the models over frames reduce their steps before the dense layers: the mean over
    /// valid steps (the study's LSTM head), attention (a learned softmax weighting of them),
    /// for cnn only flatten (the study's refined CNN head, every step kept; it does not train
    /// on RAVDESS's frames at the study's learning rate, docs/results/history.md), for lstm and
    /// cnn-lstm only last (the LSTM's state after each clip's last frame, Keras's default).
    /// cnn over vectors or stats always flattens.
    #[arg(long, value_parser = choice::<TimePooling>(), default_value_t = net().time_pooling)]
    time_pooling: TimePooling,
    /// Hidden layer widths of the MLP.
    #[arg(long, value_delimiter = ',', default_values_t = net().hidden, value_parser = ranged::<usize>(1, 1 << 16))]
    hidden: Vec<usize>,
    /// Dropout rate after each hidden layer of the MLP.
    #[arg(long, default_value_t = net().dropout, value_parser = probability_below_one)]
    dropout: f32,
    /// Batch normalisation after each hidden layer of the MLP.
    #[arg(long)]
    batch_norm: bool,
}

impl NetworkFlags {
    fn settings(&self) -> network::Settings {
        network::Settings {
            rff_features: self.rff_features,
            rff_gamma: self.rff_gamma,
            lstm_units: self.lstm_units,
            lstm_directions: self.lstm_directions,
            time_pooling: self.time_pooling,
            hidden: self.hidden.clone(),
            dropout: self.dropout,
            batch_norm: self.batch_norm,
        }
    }
}

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Kernel ridge (--model krr)")]
struct KernelRidgeFlags {
    /// RBF kernel width of the krr model, in units of 1 / input size.
    #[arg(long, default_value_t = kernel_ridge::Settings::default().gamma, value_parser = positive_f32)]
    krr_gamma: f32,
    /// Ridge penalty of the krr model (scaled per example by 1 / its class weight). 0.1 rather
    /// than 0.01: better on speakers not in training (5-fold by actor 0.656 against 0.626, every
    /// fold better) for 0.9 points less on a random split (docs/results/history.md).
    #[arg(long, default_value_t = kernel_ridge::Settings::default().lambda, value_parser = positive_f32)]
    krr_lambda: f32,
}

impl KernelRidgeFlags {
    fn settings(&self) -> kernel_ridge::Settings {
        kernel_ridge::Settings { gamma: self.krr_gamma, lambda: self.krr_lambda }
    }
}

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "k nearest neighbours (--model knn)")]
struct KnnFlags {
    /// Neighbours that vote (knn; at most 16).
    #[arg(long, default_value_t = knn::Settings::default().k, value_parser = ranged::<usize>(1, ser::ops::knn::MAX_K))]
    knn_k: usize,
    /// How they vote (knn): uniform, or distance (1 / distance; coinciding rows outvote all).
    #[arg(long, value_parser = choice::<KnnWeights>(), default_value_t = knn::Settings::default().weights)]
    knn_weights: KnnWeights,
}

impl KnnFlags {
    fn settings(&self) -> knn::Settings {
        knn::Settings { k: self.knn_k, weights: self.knn_weights }
    }
}

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Support vector machine (--model svm)")]
struct SvmFlags {
    /// Penalty C of the svm (each class's bound is C times its class weight). 10 rather than
    /// scikit-learn's 1: validation accuracy 0.82 against 0.79 on RAVDESS (docs/results/history.md).
    #[arg(long, default_value_t = svm::Settings::default().c, value_parser = positive_f64)]
    svm_c: f64,
    /// RBF width of the svm: "scale" (scikit-learn's default, 1 / (input size * variance of
    /// the inputs)) or a positive number.
    #[arg(long, default_value = "scale", value_parser = svm_gamma)]
    svm_gamma: SvmGamma,
}

/// The svm's RBF width: scikit-learn's "scale" or a value.
#[derive(Clone, Copy, Debug)]
enum SvmGamma {
    Scale,
    Value(f64),
}

fn svm_gamma(s: &str) -> Result<SvmGamma, String> {
    if s == "scale" { Ok(SvmGamma::Scale) } else { positive_f64(s).map(SvmGamma::Value).map_err(|e| format!("{e}, or \"scale\"")) }
}

impl SvmFlags {
    fn settings(&self) -> svm::Settings {
        let gamma = match self.svm_gamma {
            SvmGamma::Scale => None,
            SvmGamma::Value(g) => Some(g),
        };
        svm::Settings { c: self.svm_c, gamma }
    }
}

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Random forest (--model rf)")]
struct ForestFlags {
    /// Trees of the rf model. 500 rather than scikit-learn's 100: validation accuracy 0.70
    /// against 0.67 on RAVDESS (docs/results/history.md).
    #[arg(long, default_value_t = forest::Settings::default().trees, value_parser = ranged::<usize>(1, 50_000))]
    trees: usize,
    /// Deepest level of the rf model's trees (root 0); without it they grow until pure.
    #[arg(long, value_parser = ranged::<usize>(1, 1_000))]
    max_depth: Option<usize>,
    /// Fewest training rows in a leaf of the rf model.
    #[arg(long, default_value_t = forest::Settings::default().min_samples_leaf, value_parser = ranged::<usize>(1, 1 << 20))]
    min_samples_leaf: usize,
    /// Quantile bins per feature the rf model splits between.
    #[arg(long, default_value_t = forest::Settings::default().bins, value_parser = ranged::<usize>(2, ser::ops::forest::MAX_BINS))]
    rf_bins: usize,
}

impl ForestFlags {
    fn settings(&self) -> forest::Settings {
        forest::Settings { trees: self.trees, max_depth: self.max_depth, min_samples_leaf: self.min_samples_leaf, bins: self.rf_bins }
    }
}
