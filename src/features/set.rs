//! A feature file: frame-level features, their lengths and time averages for every clip, with
//! the clips' labels and the feature configuration in the metadata.
//!
//! Tensors: `frames` f32 [N, T_max, D] (zero past each clip's length), `lengths` u32 [N],
//! `vectors` f32 [N, D] (time means), `stds` f32 [N, D] (time standard deviations). Columns: MFCC, chroma, contrast. Metadata (JSON strings): `clips`
//! (path relative to the data folder, emotion, actor, vocal channel, ...), `config`, `columns`.

use super::FeatureConfig;
use crate::audio::{Emotion, VocalChannel};
use crate::store::{self, Loaded, Stored};
use anyhow::{Context, Result, bail};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// What a feature file records about one clip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipInfo {
    pub path: String,
    pub emotion: Option<Emotion>,
    pub actor: Option<u8>,
    pub vocal: Option<VocalChannel>,
    pub intensity: Option<u8>,
    pub statement: Option<u8>,
    pub repetition: Option<u8>,
    /// An augmented copy: the clip at `path` played this much faster (`ser features
    /// --speed-copies`; tempo and pitch both move, as in Kaldi's speed perturbation). Copies
    /// only ever join the training part of a split, beside their source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f32>,
    /// The speaker, for corpora other than RAVDESS (whose speaker is `actor`): CREMA-D's "1001",
    /// EmoDB's "03", TESS's "OAF", a manifest's `speaker` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    /// The layout or manifest the clip's label came from ("ravdess", "crema-d", "manifest", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<String>,
    /// A segment of the file at `path`: [start, end) in seconds (a manifest's `start`/`end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<[f64; 2]>,
    /// The part of a split a manifest's `split` column puts the clip in (`--split given`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<RowSplit>,
}

/// A manifest row's own split: train, valid (validation, dev) or test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowSplit {
    Train,
    Valid,
    Test,
}

impl RowSplit {
    /// The spellings a `split` column may use, any case.
    pub fn parse(text: &str) -> Option<RowSplit> {
        match text.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(RowSplit::Train),
            "valid" | "validation" | "val" | "dev" => Some(RowSplit::Valid),
            "test" | "testing" => Some(RowSplit::Test),
            _ => None,
        }
    }
}

impl ClipInfo {
    /// A clip known only by its path (predicting arbitrary audio, synthetic benchmark clips).
    pub fn unlabelled(path: impl Into<String>) -> ClipInfo {
        ClipInfo { path: path.into(), emotion: None, actor: None, vocal: None, intensity: None, statement: None, repetition: None, speed: None, speaker: None, corpus: None, segment: None, split: None }
    }

    /// The clip's speaker: its `speaker`, else its RAVDESS actor as two digits ("07").
    pub fn speaker_id(&self) -> Option<String> {
        self.speaker.clone().or_else(|| self.actor.map(|a| format!("{a:02}")))
    }

    /// Whether `--vocal` keeps the clip. Only RAVDESS names tell speech from song; clips of
    /// every other corpus are speech.
    pub fn vocal_matches(&self, filter: crate::audio::VocalFilter) -> bool {
        use crate::audio::VocalFilter;
        match filter {
            VocalFilter::Both => true,
            VocalFilter::Speech => self.vocal.unwrap_or(VocalChannel::Speech) == VocalChannel::Speech,
            VocalFilter::Song => self.vocal == Some(VocalChannel::Song),
        }
    }

    /// What tells one clip of a set from another: the path, and the segment of it when cut.
    pub fn key(&self) -> String {
        match self.segment {
            Some([start, end]) => format!("{}@{start}-{end}", self.path),
            None => self.path.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FeatureSet {
    pub config: FeatureConfig,
    pub clips: Vec<ClipInfo>,
    pub frames: Vec<f32>,
    pub lengths: Vec<u32>,
    pub t_max: usize,
    pub vectors: Vec<f32>,
    /// [N, D]: the standard deviation over each clip's own frames.
    pub stds: Vec<f32>,
    pub dim: usize,
    /// The label map the clips' labels went through (`--label-map`): (raw label, class or
    /// "drop"); empty when none. Models trained on the file record it.
    pub label_map: Vec<(String, String)>,
    /// [N, `distribution_width`]: each clip's frame-distribution embedding, computed from its
    /// frames for the `distribution` input (`dataset::prepare`); empty until then. Never
    /// written to a feature file.
    pub distribution: Vec<f32>,
    pub distribution_width: usize,
    /// [N]: each clip's length in seconds, for the `distribution-length` input
    /// (`dataset::prepare`, from `lengths`); empty until then, and standardised per speaker
    /// with the statistics under speaker normalisation. Never written to a feature file.
    pub durations: Vec<f32>,
    /// [N, `contract::VOICING_WIDTH`]: each clip's voicing moments for the
    /// `distribution-voicing` input (`dataset::prepare`, from the frames); empty until then,
    /// and standardised per speaker under speaker normalisation. Never written to a feature file.
    pub voicing: Vec<f32>,
}

/// The values a clip of a per-clip table (`table` [clips, width]), when it holds whole rows for
/// its `clips` clips; None when it is empty or ragged.
fn row_width(table: &[f32], clips: usize) -> Option<usize> {
    (clips > 0 && !table.is_empty() && table.len().is_multiple_of(clips)).then(|| table.len() / clips)
}

/// v2 added `stds`; v1 files are refused with a request to re-extract.
pub const FORMAT: &str = "ser.features.v2";

/// Which computation made the numbers: part of the feature cache's key, so a change to the
/// kernels that moves any value (even by float rounding) is never served from an older cache.
/// Bump it with every such change. "texture-stft-1": session 3's texture FFT and filterbanks
/// (MFCC within 2.8e-4 of the previous kernels).
pub const COMPUTATION: &str = "texture-stft-1";

impl FeatureSet {
    /// Column names in order: mfcc_0.., chroma_0.., contrast_0.., then the set's others.
    pub fn columns(config: &FeatureConfig) -> Vec<String> {
        config.feature_names()
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.clips.len();
        if self.frames.len() != n * self.t_max * self.dim || self.vectors.len() != n * self.dim || self.stds.len() != n * self.dim || self.lengths.len() != n {
            bail!("feature set sizes are inconsistent");
        }
        let mut meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("clips".to_string(), serde_json::to_string(&self.clips)?),
            ("config".to_string(), serde_json::to_string(&self.config)?),
            ("columns".to_string(), serde_json::to_string(&Self::columns(&self.config))?),
            ("feature_names".to_string(), serde_json::to_string(&Self::columns(&self.config))?),
        ]);
        if !self.label_map.is_empty() {
            meta.insert("label_map".to_string(), serde_json::to_string(&self.label_map)?);
        }
        store::to_safetensors(
            &[
                Stored { name: "frames", dtype: Dtype::F32, shape: vec![n, self.t_max, self.dim], bytes: bytemuck::cast_slice(&self.frames) },
                Stored { name: "lengths", dtype: Dtype::U32, shape: vec![n], bytes: bytemuck::cast_slice(&self.lengths) },
                Stored { name: "vectors", dtype: Dtype::F32, shape: vec![n, self.dim], bytes: bytemuck::cast_slice(&self.vectors) },
                Stored { name: "stds", dtype: Dtype::F32, shape: vec![n, self.dim], bytes: bytemuck::cast_slice(&self.stds) },
            ],
            meta,
        )
    }

    /// Frees the frames of a set only its per-clip statistics (`vectors`, `stds`) are needed
    /// from: `t_max` becomes 0; `lengths` still count each clip's frames.
    pub fn drop_frames(&mut self) {
        self.frames = Vec::new();
        self.t_max = 0;
    }

    /// False after `drop_frames`.
    /// How many of the clips are augmented copies (`ClipInfo::speed`).
    pub fn speed_copies(&self) -> usize {
        self.clips.iter().filter(|c| c.speed.is_some()).count()
    }

    pub fn has_frames(&self) -> bool {
        self.t_max >= self.lengths.iter().copied().max().unwrap_or(0) as usize
    }

    /// The clips of sets of one configuration, in order; frames padded to the longest clip
    /// (sets whose frames were dropped give a set without frames).
    pub fn concat(sets: Vec<FeatureSet>) -> Result<FeatureSet> {
        let Some(first) = sets.first() else { bail!("no feature sets to join") };
        let (config, dim, with_frames) = (first.config.clone(), first.dim, first.has_frames());
        if sets.iter().any(|s| s.config != config || s.has_frames() != with_frames || s.label_map != first.label_map) {
            bail!("feature sets of different configurations or label maps, or with and without frames, cannot be joined");
        }
        let label_map = first.label_map.clone();
        let t_max = if with_frames { sets.iter().map(|s| s.t_max).max().unwrap_or(0) } else { 0 };
        let n: usize = sets.iter().map(|s| s.clips.len()).sum();
        let width = first.distribution_width;
        if sets.iter().any(|s| s.distribution_width != width || s.distribution.len() != s.clips.len() * width) {
            bail!("feature sets with and without the distribution embedding cannot be joined");
        }
        // The clips' lengths in seconds when every set has them (else `dataset::prepare` derives
        // them again from `lengths`).
        let durations = sets.iter().all(|s| s.durations.len() == s.clips.len());
        // Likewise the voicing moments, when every set has them, as many a clip.
        let voicing_width = sets.iter().find(|s| !s.clips.is_empty()).and_then(|s| row_width(&s.voicing, s.clips.len()));
        let voicing = voicing_width.is_some() && sets.iter().all(|s| s.clips.is_empty() || row_width(&s.voicing, s.clips.len()) == voicing_width);
        let mut out = FeatureSet { config, clips: vec![], frames: vec![], lengths: vec![], t_max, vectors: vec![], stds: vec![], dim, label_map, distribution: vec![], distribution_width: width, durations: vec![], voicing: vec![] };
        // Sized once, and each set dropped once copied: the peak is the result plus one set.
        out.frames.reserve_exact(n * t_max * dim);
        out.vectors.reserve_exact(n * dim);
        out.stds.reserve_exact(n * dim);
        for s in sets {
            if with_frames {
                for c in 0..s.clips.len() {
                    out.frames.extend_from_slice(&s.frames[c * s.t_max * dim..][..s.t_max * dim]);
                    out.frames.resize(out.frames.len() + (t_max - s.t_max) * dim, 0.0);
                }
            }
            out.clips.extend(s.clips);
            out.lengths.extend(s.lengths);
            out.vectors.extend(s.vectors);
            out.stds.extend(s.stds);
            out.distribution.extend(s.distribution);
            if durations {
                out.durations.extend(s.durations);
            }
            if voicing {
                out.voicing.extend(s.voicing);
            }
        }
        Ok(out)
    }

    /// The clips at `order` (indices into this set), in that order.
    pub fn select(&self, order: &[usize]) -> FeatureSet {
        let d = self.dim;
        let t = if self.has_frames() { self.t_max } else { 0 };
        FeatureSet {
            config: self.config.clone(),
            clips: order.iter().map(|&i| self.clips[i].clone()).collect(),
            frames: order.iter().flat_map(|&i| self.frames[i * t * d..][..t * d].iter().copied()).collect(),
            lengths: order.iter().map(|&i| self.lengths[i]).collect(),
            t_max: self.t_max,
            vectors: order.iter().flat_map(|&i| self.vectors[i * d..][..d].iter().copied()).collect(),
            stds: order.iter().flat_map(|&i| self.stds[i * d..][..d].iter().copied()).collect(),
            dim: d,
            label_map: self.label_map.clone(),
            distribution: order.iter().flat_map(|&i| self.distribution[i * self.distribution_width..][..self.distribution_width].iter().copied()).collect(),
            distribution_width: self.distribution_width,
            durations: if self.durations.is_empty() { Vec::new() } else { order.iter().map(|&i| self.durations[i]).collect() },
            voicing: match row_width(&self.voicing, self.clips.len()) {
                Some(w) => order.iter().flat_map(|&i| self.voicing[i * w..][..w].iter().copied()).collect(),
                None => Vec::new(),
            },
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        store::write_atomic(path, &self.to_bytes()?)
    }

    pub fn read(path: &Path) -> Result<FeatureSet> {
        let f = Loaded::read(path)?;
        let format = f.meta("format")?;
        if format != FORMAT {
            bail!("{}: format {format:?} is not {FORMAT:?}; re-create it with `ser features`", f.path);
        }
        let clips: Vec<ClipInfo> = serde_json::from_str(&f.meta("clips")?).with_context(|| format!("{}: bad clip list", f.path))?;
        let config: FeatureConfig = serde_json::from_str(&f.meta("config")?).with_context(|| format!("{}: bad config", f.path))?;
        config.validate().with_context(|| format!("{}: feature configuration", f.path))?;
        let (frames, fshape) = f.tensor::<f32>("frames", Dtype::F32)?;
        let (lengths, _) = f.tensor::<u32>("lengths", Dtype::U32)?;
        let (vectors, vshape) = f.tensor::<f32>("vectors", Dtype::F32)?;
        let (stds, sshape) = f.tensor::<f32>("stds", Dtype::F32)?;
        let [n, t_max, dim] = fshape[..] else { bail!("{}: frames has shape {fshape:?}", f.path) };
        if n != clips.len() || lengths.len() != n || vshape != [n, dim] || sshape != [n, dim] || dim != config.dim() {
            bail!("{}: tensor shapes disagree with {} clips of {} features", f.path, clips.len(), config.dim());
        }
        // A set without frames (t_max 0) still counts each clip's frames in `lengths`.
        if let Some(c) = (t_max > 0).then(|| lengths.iter().position(|&l| l as usize > t_max)).flatten() {
            bail!("{}: clip {c} ({}) claims {} frames, past the file's {t_max}", f.path, clips[c].path, lengths[c]);
        }
        // Non-finite features would reach a model as NaN probabilities; name the first clip.
        let bad = |xs: &[f32], per_clip: usize| xs.iter().position(|v| !v.is_finite()).map(|i| i / per_clip.max(1));
        if let Some(c) = bad(&vectors, dim).or_else(|| bad(&stds, dim)).or_else(|| bad(&frames, t_max * dim)) {
            bail!("{}: clip {c} ({}) has non-finite features; re-create the file with `ser features`", f.path, clips[c].path);
        }
        let label_map = match f.metadata().get("label_map") {
            Some(text) => serde_json::from_str(text).with_context(|| format!("{}: bad label map", f.path))?,
            None => Vec::new(),
        };
        Ok(FeatureSet { config, clips, frames, lengths, t_max, vectors, stds, dim, label_map, distribution: vec![], distribution_width: 0, durations: vec![], voicing: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` clips of lengths 1..=n, frame values naming (set, clip, frame, column).
    fn set(tag: f32, n: usize) -> FeatureSet {
        let config = FeatureConfig::default();
        let dim = config.dim();
        let mut s = FeatureSet { config, clips: vec![], frames: vec![], lengths: vec![], t_max: n, vectors: vec![], stds: vec![], dim, label_map: vec![], distribution: vec![], distribution_width: 0, durations: vec![], voicing: vec![] };
        for c in 0..n {
            s.clips.push(ClipInfo::unlabelled(format!("{tag}/{c}")));
            s.lengths.push(c as u32 + 1);
            for t in 0..n {
                s.frames.extend((0..dim).map(|j| if t <= c { tag * 1000.0 + (c * 100 + t * 10 + j) as f32 } else { 0.0 }));
            }
            s.vectors.extend((0..dim).map(|j| tag + j as f32));
            s.stds.extend((0..dim).map(|j| -tag - j as f32));
        }
        s
    }

    #[test]
    fn concat_pads_frames_to_the_longest_clip_and_keeps_the_order() {
        let (a, b) = (set(1.0, 2), set(2.0, 3));
        let joined = FeatureSet::concat(vec![a.clone(), b.clone()]).unwrap();
        let d = a.dim;
        assert_eq!((joined.t_max, joined.clips.len(), joined.lengths.clone()), (3, 5, vec![1, 2, 1, 2, 3]));
        assert_eq!(joined.frames.len(), 5 * 3 * d);
        for c in 0..2 {
            assert_eq!(joined.frames[c * 3 * d..][..2 * d], a.frames[c * 2 * d..][..2 * d]);
            assert!(joined.frames[(c * 3 + 2) * d..][..d].iter().all(|&x| x == 0.0));
        }
        assert_eq!(joined.frames[6 * d..], b.frames[..]);
        assert_eq!(joined.vectors, [a.vectors.clone(), b.vectors.clone()].concat());
        assert_eq!(joined.stds, [a.stds.clone(), b.stds.clone()].concat());
        let file = std::env::temp_dir().join(format!("ser-concat-{}.safetensors", std::process::id()));
        joined.write(&file).unwrap();
        assert_eq!(FeatureSet::read(&file).unwrap(), joined);
        std::fs::remove_file(&file).unwrap();

        // Without frames: statistics only; mixing the two kinds is refused.
        let (mut a2, mut b2) = (a.clone(), b.clone());
        a2.drop_frames();
        b2.drop_frames();
        assert!(!a2.has_frames() && a.has_frames());
        let summary = FeatureSet::concat(vec![a2.clone(), b2]).unwrap();
        assert!(!summary.has_frames() && summary.frames.is_empty());
        assert_eq!(summary.vectors, joined.vectors);
        assert!(FeatureSet::concat(vec![a2, b]).is_err());
    }
}
