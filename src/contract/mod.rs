//! The data contract: what a model needs to read audio the way it was trained, in one typed,
//! versioned record below `nn`, `train` and `infer`: the classes (and the label map that made
//! them), the feature configuration, the input kind, the scaler, the speaker normalisation and
//! the corpora it saw. A checkpoint stores it key by key (docs/guide/checkpoints.md); files written
//! before a key existed load with its default.

pub mod speaker;

use crate::audio::Emotion;
use crate::features::FeatureConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use speaker::{SpeakerGroups, SpeakerNorm};

/// The contract's version: 1 added the label map and the corpora (files without them are 0).
pub const VERSION: u32 = 1;

/// Everything between a labelled clip's audio and the model's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataContract {
    /// 0 for files written before the contract was versioned.
    pub version: u32,
    /// The classes, in output order.
    pub classes: Vec<Emotion>,
    /// The feature extraction a clip must go through.
    pub features: FeatureConfig,
    pub input: Input,
    /// Per-column standardisation, fitted on the training clips.
    pub scaler: Scaler,
    /// Present when the model was trained on speaker-normalised features: predicting then
    /// normalises each speaker's clips the same way.
    pub speaker_norm: Option<SpeakerNorm>,
    /// The label map training applied to raw labels: (raw label, class name or "drop").
    pub label_map: Vec<(String, String)>,
    /// The corpora (layout or manifest names) the training clips came from.
    pub corpora: BTreeMap<String, CorpusSeen>,
}

/// How much of one corpus a model saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusSeen {
    pub clips: usize,
    pub speakers: usize,
}

crate::choices! {
    /// What the model sees of each clip.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Input {
        /// The time-averaged feature vector as a sequence of length D with one channel (the study's
        /// input).
        Vectors = "vectors",
        /// The frame sequence [T_max, D], zero-padded.
        Frames = "frames",
        /// The time means followed by the time standard deviations, a sequence of length 2D with
        /// one channel.
        Stats = "stats",
        /// The time means and standard deviations, then an embedding of how the clip's frames are
        /// distributed (the mean of 1024 random Fourier features of its frames, each column
        /// standardised within the clip): length 2D + 1024, one channel, the two parts weighted
        /// equally.
        Distribution = "distribution",
        /// The distribution input followed by the clip's length in seconds, weighted so that
        /// its deviation is 4 times a statistics column's (with --speaker-norm the length is
        /// measured against the speaker's own clips: their tempo): length 2D + 1024 + 1, one
        /// channel.
        DistributionLength = "distribution-length",
        /// The distribution-length input followed by the first 8 MFCCs' means and standard
        /// deviations over the clip's voiced frames and, apart, over its unvoiced ones (pyin's
        /// `voiced` flag; eGeMAPS takes its spectral measures so), each of those 32 columns
        /// weighted as a statistics column: length 2D + 1024 + 1 + 32, one channel. Reads
        /// features with `mfcc` and `voiced`.
        DistributionVoicing = "distribution-voicing",
    }
}

/// The `distribution` input's embedding: this many random Fourier features...
pub const DISTRIBUTION_WIDTH: usize = 1024;
/// ... of a Gaussian kernel exp(-gamma |a - b|^2) on clip-standardised frames, gamma this over
/// the number of columns ...
pub const DISTRIBUTION_GAMMA: f64 = 1.0;
/// ... with the projection drawn from this seed. All three are fixed by the input's name: a
/// model records "distribution" and the projection is rebuilt from them
/// (`ops::embedding::Projection` draws the same numbers on every platform).
pub const DISTRIBUTION_SEED: u64 = 0x5e4d_0d15;

/// The `distribution-length` input's clip length: its deviation after scaling is this many times
/// a statistics column's (chosen by actor on RAVDESS inside each fold's training actors,
/// docs/RESULTS.md "The distribution input").
pub const CLIP_LENGTH_SCALE: f32 = 4.0;

/// The `distribution-voicing` input's MFCCs: the first this many, ...
pub const VOICED_MFCCS: usize = 8;
/// ... each with its mean and deviation over voiced frames and over unvoiced ones.
pub const VOICING_WIDTH: usize = 4 * VOICED_MFCCS;

/// Why `set` cannot give `input` what it reads (the distribution embedding, the clips' lengths
/// or their voicing moments not computed), if so.
pub fn missing(set: &crate::features::set::FeatureSet, input: Input) -> Option<&'static str> {
    if input.embeds() && !has_embedding(set) {
        return Some("the distribution input's embedding was not computed for these features (dataset::prepare)");
    }
    if input.reads_length() && set.durations.len() != set.clips.len() {
        return Some("the clips' lengths were not computed for these features (dataset::prepare)");
    }
    (input == Input::DistributionVoicing && !has_voicing(set)).then_some("the clips' voicing moments were not computed for these features (dataset::prepare)")
}

/// Whether `set` holds every clip's distribution embedding.
pub fn has_embedding(set: &crate::features::set::FeatureSet) -> bool {
    set.distribution_width == DISTRIBUTION_WIDTH && set.distribution.len() == set.clips.len() * DISTRIBUTION_WIDTH
}

/// Whether `set` holds every clip's voicing moments.
pub fn has_voicing(set: &crate::features::set::FeatureSet) -> bool {
    set.voicing.len() == set.clips.len() * VOICING_WIDTH
}

impl Input {
    /// The model input (length, channels) for features of `dim` columns and `t_max` frames.
    pub fn shape(self, dim: usize, t_max: usize) -> (usize, usize) {
        match self {
            Input::Vectors => (dim, 1),
            Input::Stats => (2 * dim, 1),
            Input::Distribution => (2 * dim + DISTRIBUTION_WIDTH, 1),
            Input::DistributionLength | Input::DistributionVoicing => (self.scaler_width(dim), 1),
            Input::Frames => (t_max, dim),
        }
    }

    /// Whether it reads the distribution embedding (`dataset::prepare` computes it).
    pub fn embeds(self) -> bool {
        matches!(self, Input::Distribution | Input::DistributionLength | Input::DistributionVoicing)
    }

    /// Whether it reads the clips' lengths (`dataset::prepare` computes them).
    pub fn reads_length(self) -> bool {
        matches!(self, Input::DistributionLength | Input::DistributionVoicing)
    }

    /// Columns of the scaler: one per value of a summary vector, one per feature for frames.
    pub fn scaler_width(self, dim: usize) -> usize {
        match self {
            Input::Vectors | Input::Frames => dim,
            Input::Stats => 2 * dim,
            Input::Distribution => 2 * dim + DISTRIBUTION_WIDTH,
            Input::DistributionLength => 2 * dim + DISTRIBUTION_WIDTH + 1,
            Input::DistributionVoicing => 2 * dim + DISTRIBUTION_WIDTH + 1 + VOICING_WIDTH,
        }
    }
}

/// Per-column standardisation fitted on training data: (x - mean) / std.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Scaler {
    /// Fitted on the rows of `x` [n, dim] listed in `rows` (for frames: every real frame).
    pub fn fit(rows: impl Iterator<Item = usize>, x: &[f32], dim: usize) -> Scaler {
        let (mut sum, mut sq, mut n) = (vec![0f64; dim], vec![0f64; dim], 0usize);
        for r in rows {
            for j in 0..dim {
                let v = x[r * dim + j] as f64;
                sum[j] += v;
                sq[j] += v * v;
            }
            n += 1;
        }
        let n = n.max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq.iter().zip(&mean).map(|(q, m)| ((q / n - m * m).max(0.0).sqrt().max(1e-6)) as f32).collect();
        Scaler { mean: mean.into_iter().map(|m| m as f32).collect(), std }
    }

    pub fn apply(&self, v: &mut [f32]) {
        let d = self.mean.len();
        for (i, x) in v.iter_mut().enumerate() {
            *x = (*x - self.mean[i % d]) / self.std[i % d];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_input_has_its_shape_and_scaler_width() {
        assert_eq!(Input::Vectors.shape(59, 400), (59, 1));
        assert_eq!(Input::Stats.shape(59, 400), (118, 1));
        assert_eq!(Input::Frames.shape(59, 400), (400, 59));
        assert_eq!(Input::Distribution.shape(59, 400), (118 + DISTRIBUTION_WIDTH, 1));
        assert_eq!(Input::DistributionLength.shape(59, 400), (119 + DISTRIBUTION_WIDTH, 1));
        assert_eq!(Input::DistributionVoicing.shape(59, 400), (119 + DISTRIBUTION_WIDTH + 32, 1));
        // Files spell every input as the command line does.
        let all = [Input::Vectors, Input::Stats, Input::Frames, Input::Distribution, Input::DistributionLength, Input::DistributionVoicing];
        for input in all {
            assert_eq!(serde_json::to_value(input).unwrap(), serde_json::json!(input.to_string()));
        }
        assert_eq!(all.map(|i| i.scaler_width(59)), [59, 118, 59, 118 + DISTRIBUTION_WIDTH, 119 + DISTRIBUTION_WIDTH, 151 + DISTRIBUTION_WIDTH]);
    }
}
