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
}

/// v2 added `stds`; v1 files are refused with a request to re-extract.
pub const FORMAT: &str = "ser.features.v2";

/// Which computation made the numbers: part of the feature cache's key, so a change to the
/// kernels that moves any value (even by float rounding) is never served from an older cache.
/// Bump it with every such change. "texture-stft-1": session 3's texture FFT and filterbanks
/// (MFCC within 2.8e-4 of the previous kernels).
pub const COMPUTATION: &str = "texture-stft-1";

impl FeatureSet {
    /// Column names in order: mfcc_0.., chroma_0.., contrast_0..
    pub fn columns(config: &FeatureConfig) -> Vec<String> {
        let mut c: Vec<String> = (0..config.n_mfcc).map(|i| format!("mfcc_{i}")).collect();
        c.extend((0..config.n_chroma).map(|i| format!("chroma_{i}")));
        c.extend((0..=config.contrast_bands).map(|i| format!("contrast_{i}")));
        c
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.clips.len();
        if self.frames.len() != n * self.t_max * self.dim || self.vectors.len() != n * self.dim || self.stds.len() != n * self.dim || self.lengths.len() != n {
            bail!("feature set sizes are inconsistent");
        }
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("clips".to_string(), serde_json::to_string(&self.clips)?),
            ("config".to_string(), serde_json::to_string(&self.config)?),
            ("columns".to_string(), serde_json::to_string(&Self::columns(&self.config))?),
        ]);
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
        let (frames, fshape) = f.tensor::<f32>("frames", Dtype::F32)?;
        let (lengths, _) = f.tensor::<u32>("lengths", Dtype::U32)?;
        let (vectors, vshape) = f.tensor::<f32>("vectors", Dtype::F32)?;
        let (stds, sshape) = f.tensor::<f32>("stds", Dtype::F32)?;
        let [n, t_max, dim] = fshape[..] else { bail!("{}: frames has shape {fshape:?}", f.path) };
        if n != clips.len() || lengths.len() != n || vshape != [n, dim] || sshape != [n, dim] || dim != config.dim() {
            bail!("{}: tensor shapes disagree with {} clips of {} features", f.path, clips.len(), config.dim());
        }
        Ok(FeatureSet { config, clips, frames, lengths, t_max, vectors, stds, dim })
    }
}
