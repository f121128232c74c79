//! Inference with a saved model: features of any audio at the model's own configuration, the
//! model's scaler, class probabilities; and evaluation on labelled data.

use crate::audio;
use crate::features::corpus;
use crate::features::set::{ClipInfo, FeatureSet};
use crate::gpu::Gpu;
use crate::nn::Model;
use crate::nn::checkpoint::{self, ModelMeta};
use crate::train::data;
use crate::train::speaker::{self, SpeakerGroups};
use crate::train::{self, Dataset};
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A saved model (or ensemble, whose members' probabilities are averaged) and its metadata.
pub struct Predictor {
    pub models: Vec<Model>,
    pub meta: ModelMeta,
}

/// One file's prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub file: String,
    pub label: String,
    pub confidence: f32,
    /// Probability of every class, in the model's class order.
    pub probabilities: Vec<(String, f32)>,
}

impl Predictor {
    pub fn class_names(&self) -> Vec<String> {
        self.meta.classes.iter().map(|c| c.to_string()).collect()
    }

    /// Model inputs for the clips of a feature set (which must use the model's configuration).
    pub fn dataset(&self, set: &FeatureSet, clips: &[usize], labels: Vec<u32>) -> Result<Dataset> {
        if set.config != self.meta.features {
            bail!(
                "the features were computed with a different configuration than the model was trained on:\n  data:  {}\n  model: {}",
                serde_json::to_string(&set.config)?,
                serde_json::to_string(&self.meta.features)?
            );
        }
        let (length, channels) = self.meta.architecture.input;
        let x = clips.iter().flat_map(|&c| data::example(set, c, self.meta.input, length, &self.meta.scaler)).collect();
        Ok(Dataset { x, y: labels, width: length * channels })
    }

    /// The fewest clips per speaker: `min_clips` when given, else the model's own.
    fn min_speaker_clips(&self, min_clips: Option<usize>) -> usize {
        min_clips.or(self.meta.speaker_norm.as_ref().map(|s| s.min_clips)).unwrap_or(speaker::DEFAULT_MIN_CLIPS)
    }

    /// Normalises the speakers of `clips` (indices into `set`), each with the statistics of its
    /// clips among them, as the model was trained; nothing when it was trained without.
    pub fn normalise_speakers(&self, set: &mut FeatureSet, clips: &[usize], groups: SpeakerGroups, min_clips: Option<usize>) -> Result<()> {
        if self.meta.speaker_norm.is_some() {
            speaker::normalise_clips(set, clips, self.meta.input, groups, self.min_speaker_clips(min_clips))?;
        }
        Ok(())
    }

    /// Class probabilities for a dataset, rows in order.
    pub fn probabilities(&self, gpu: &Gpu, data: &Dataset) -> Result<Vec<Vec<f32>>> {
        let k = self.meta.classes.len();
        let mut mean = vec![vec![0f32; k]; data.len()];
        for model in &self.models {
            let logits = train::predict(gpu, model, data, 256)?;
            for (row, p) in mean.iter_mut().zip(train::softmax_rows(&logits, k)) {
                for (m, v) in row.iter_mut().zip(p) {
                    *m += v / self.models.len() as f32;
                }
            }
        }
        Ok(mean)
    }

    /// Predictions for audio files (any name, rate, channel count). Files that cannot be read
    /// are returned as errors beside the predictions, in input order. A speaker-normalised
    /// model groups the files into speakers by `groups`; files of speakers with too few clips
    /// are returned as errors too.
    pub fn predict_files(&self, gpu: &Gpu, files: &[PathBuf], groups: SpeakerGroups, min_clips: Option<usize>) -> Result<(Vec<Prediction>, Vec<(String, String)>)> {
        let rate = self.meta.features.sample_rate;
        let decoded: Vec<Result<Vec<f32>>> = files
            .par_iter()
            .map(|f| {
                let s = audio::load(f, rate)?;
                corpus::check_length(gpu, &self.meta.features, s.len())?;
                Ok(s)
            })
            .collect();
        let mut read: Vec<(ClipInfo, Vec<f32>)> = Vec::new();
        let mut failed = Vec::new();
        for (f, r) in files.iter().zip(decoded) {
            let path = f.display().to_string();
            match r {
                Ok(s) => read.push((ClipInfo { path, emotion: None, actor: None, vocal: None, intensity: None, statement: None, repetition: None }, s)),
                Err(e) => failed.push((path, format!("{e:#}"))),
            }
        }
        if self.meta.speaker_norm.is_some() {
            // Files of speakers too small to normalise are reported, not predicted.
            let clips: Vec<ClipInfo> = read.iter().map(|(c, _)| c.clone()).collect();
            let keys = speaker::speaker_keys(&clips, groups)?;
            let sizes: HashMap<&str, usize> = speaker::groups(keys.iter().map(String::as_str).enumerate()).into_iter().map(|(k, v)| (k, v.len())).collect();
            let min = self.min_speaker_clips(min_clips);
            let mut key = keys.iter();
            read.retain(|(c, _)| {
                let k = key.next().expect("one key per clip");
                let n = sizes[k.as_str()];
                if n < min {
                    failed.push((c.path.clone(), speaker::too_few(k, n, min)));
                }
                n >= min
            });
        }
        if read.is_empty() {
            return Ok((vec![], failed));
        }
        let (clips, signals): (Vec<ClipInfo>, Vec<Vec<f32>>) = read.into_iter().unzip();
        let ok_files: Vec<String> = clips.iter().map(|c| c.path.clone()).collect();
        let mut set = corpus::extract_all(gpu, &self.meta.features, clips, &signals, false)?;
        let all: Vec<usize> = (0..signals.len()).collect();
        self.normalise_speakers(&mut set, &all, groups, min_clips)?;
        let data = self.dataset(&set, &all, vec![0; signals.len()])?;
        let names = self.class_names();
        let probs = self.probabilities(gpu, &data)?;
        let predictions = ok_files
            .into_iter()
            .zip(probs)
            .map(|(file, p)| {
                let best = train::report::argmax(&p);
                Prediction { file, label: names[best].clone(), confidence: p[best], probabilities: names.iter().cloned().zip(p).collect() }
            })
            .collect();
        Ok((predictions, failed))
    }
}

/// Files to predict: every argument that is a file, and every .wav/.flac below each folder.
pub fn collect_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            out.extend(audio::find_audio_files(a)?);
        } else if a.exists() {
            out.push(a.clone());
        } else {
            bail!("{}: no such file or folder", a.display());
        }
    }
    if out.is_empty() {
        bail!("no audio files (.wav, .flac) found in {}", args.iter().map(|a| a.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    Ok(out)
}

/// The model shipped in weights/ (see weights/MODEL_CARD.md), compiled into the binary so that
/// an installed `ser` predicts without any file beside it.
pub const SHIPPED_MODEL: &[u8] = include_bytes!("../../weights/ser.safetensors");
pub const SHIPPED_MODEL_NAME: &str = "weights/ser.safetensors (built in)";

/// Loads `path`, or the shipped model when no path is given.
pub fn load_model(gpu: &Gpu, path: Option<&Path>) -> Result<Predictor> {
    let (models, meta) = match path {
        Some(p) => checkpoint::load(gpu, p).with_context(|| format!("loading model {}", p.display()))?,
        None => checkpoint::load_bytes(gpu, SHIPPED_MODEL_NAME, SHIPPED_MODEL)?,
    };
    Ok(Predictor { models, meta })
}
