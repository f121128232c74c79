//! Inference with a saved model: features of any audio at the model's own configuration, the
//! model's scaler (and speaker normalisation), class probabilities; batch prediction streamed in
//! chunks of files, optionally cut into segments; and evaluation on labelled data.

pub mod archive;
pub mod ensemble;
mod evaluation;

pub use evaluation::{EvalOptions, Evaluation, ensemble_mismatch, evaluate};

use crate::audio;
use crate::features::corpus;
use crate::features::set::{ClipInfo, FeatureSet};
use crate::gpu::Gpu;
use crate::nn::Model;
use crate::nn::checkpoint::{self, ModelMeta};
use crate::dataset;
use crate::contract::speaker::{self, SpeakerGroups};
use crate::dataset::Dataset;
use crate::models::{self, Classifier};
use crate::nn::predict::{self, Calibration, fit_temperature};
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

/// A saved model and its metadata; for an ensemble file (`ser ensemble`), its first member, with
/// the others beside it: their class probabilities are averaged.
pub struct Predictor {
    pub classifier: Box<dyn Classifier>,
    pub meta: ModelMeta,
    /// The other members of an ensemble file (same classes, features and speaker
    /// normalisation; any kind and input), none of them an ensemble; empty for one model.
    pub others: Vec<Predictor>,
}

/// One file's prediction (or one segment's, when predicting by segments).
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// The file's path as text (lossy where the name is not UTF-8: see `file_hex`).
    pub file: String,
    /// The path's raw bytes in hex, only when the name is not valid UTF-8, so that such a file
    /// can still be found again from the output.
    pub file_hex: Option<String>,
    /// The segment's start and end in seconds, when the file was cut into segments.
    pub span: Option<(f64, f64)>,
    pub label: String,
    pub confidence: f32,
    /// Probability of every class, in the model's class order.
    pub probabilities: Vec<(String, f32)>,
    /// Seconds of audio the prediction covers (frames times hop), for progress reports.
    #[serde(skip)]
    pub seconds: f64,
}

impl Prediction {
    /// `ser predict`'s JSON line: file, label, confidence, probabilities by class name, and
    /// `file_hex`, `start`, `end` when they apply. The Python bindings return the same.
    pub fn json(&self) -> serde_json::Value {
        let probs: serde_json::Map<String, serde_json::Value> = self.probabilities.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        let mut line = serde_json::json!({"file": self.file, "label": self.label, "confidence": self.confidence, "probabilities": probs});
        if let Some(hex) = &self.file_hex {
            line["file_hex"] = serde_json::json!(hex);
        }
        if let Some((start, end)) = self.span {
            line["start"] = serde_json::json!(start);
            line["end"] = serde_json::json!(end);
        }
        line
    }
}

impl Predictor {
    /// One model.
    pub fn new(classifier: Box<dyn Classifier>, meta: ModelMeta) -> Predictor {
        Predictor { classifier, meta, others: Vec::new() }
    }

    /// The models whose probabilities are averaged: this one, then an ensemble's others.
    pub fn members(&self) -> impl Iterator<Item = &Predictor> {
        std::iter::once(self).chain(&self.others)
    }

    /// "ensemble" for an ensemble file, else the model's kind.
    pub fn kind(&self) -> &'static str {
        if self.others.is_empty() { self.classifier.family().kind } else { ensemble::ENSEMBLE_KIND }
    }

    /// The inputs the members read, each once.
    pub fn inputs(&self) -> Vec<dataset::Input> {
        let mut inputs: Vec<dataset::Input> = Vec::new();
        for m in self.members() {
            if !inputs.contains(&m.meta.data.input) {
                inputs.push(m.meta.data.input);
            }
        }
        inputs
    }

    /// Computes what the members read beyond a feature file (the distribution embedding).
    pub fn prepare(&self, gpu: &Gpu, set: &mut FeatureSet) -> Result<()> {
        self.inputs().into_iter().try_for_each(|input| dataset::prepare(gpu, set, input))
    }

    pub fn class_names(&self) -> Vec<String> {
        self.meta.data.classes.iter().map(|c| c.to_string()).collect()
    }

    /// Model inputs for the clips of a feature set (which must use the model's configuration).
    pub fn dataset(&self, set: &FeatureSet, clips: &[usize], labels: Vec<u32>) -> Result<Dataset> {
        if set.config != self.meta.data.features {
            bail!(
                "the features were computed with a different configuration than the model was trained on:\n  data:  {}\n  model: {}",
                serde_json::to_string(&set.config)?,
                serde_json::to_string(&self.meta.data.features)?
            );
        }
        if let Some(why) = dataset::missing(set, self.meta.data.input) {
            bail!("{why}");
        }
        let (length, channels) = self.meta.architecture.input;
        let x = clips.iter().flat_map(|&c| dataset::example(set, c, self.meta.data.input, length, &self.meta.data.scaler)).collect();
        let lengths = dataset::frame_lengths(set, clips.iter().copied(), self.meta.data.input, length);
        Ok(Dataset { x, y: labels, width: length * channels, lengths })
    }

    /// The fewest clips per speaker: `min_clips` when given, else the model's own.
    fn min_speaker_clips(&self, min_clips: Option<usize>) -> usize {
        min_clips.or(self.meta.data.speaker_norm.as_ref().map(|s| s.min_clips)).unwrap_or(speaker::DEFAULT_MIN_CLIPS)
    }

    /// Normalises the speakers of `clips` (indices into `set`), each with the statistics of its
    /// clips among them, as the model was trained; nothing when it was trained without.
    pub fn normalise_speakers(&self, set: &mut FeatureSet, clips: &[usize], groups: SpeakerGroups, min_clips: Option<usize>) -> Result<()> {
        if self.meta.data.speaker_norm.is_some() {
            speaker::normalise_clips(set, clips, &self.inputs(), groups, self.min_speaker_clips(min_clips))?;
        }
        Ok(())
    }

    /// The network members a temperature can be fitted for, or why there are none.
    pub fn calibratable(&self) -> Result<&[Model]> {
        if !self.others.is_empty() {
            bail!("an ensemble file is not calibrated as a whole: calibrate each network before `ser ensemble` joins them");
        }
        match self.classifier.networks() {
            Some(models) => Ok(models),
            None => bail!("only networks are calibrated afterwards (kernel ridge calibrates itself while training; knn, svm and rf have no scores to scale)"),
        }
    }

    /// Fits each network member's temperature on labelled held-out clips and keeps it (the
    /// factor on its logits: `fit_temperature`); predictions stay as they were, the
    /// probabilities become calibrated. Kernel ridge calibrates itself while training; the
    /// other classical models have no scores to scale.
    pub fn calibrate(&mut self, gpu: &Gpu, val: &Dataset) -> Result<Vec<Calibration>> {
        let models = self.calibratable()?;
        let k = self.meta.data.classes.len();
        let fits = models.iter().map(|m| Ok(fit_temperature(&predict::predict(gpu, m, val, 256)?, &val.y, k))).collect::<Result<Vec<_>>>()?;
        self.meta.temperatures = fits.iter().map(|c| c.temperature).collect();
        Ok(fits)
    }

    /// Class probabilities for a dataset of this model's input, rows in order (one model: an
    /// ensemble's members read other inputs, see [`Predictor::clip_probabilities`]).
    pub fn probabilities(&self, gpu: &Gpu, data: &Dataset) -> Result<Vec<Vec<f32>>> {
        if !self.others.is_empty() {
            bail!("an ensemble's members read their own inputs: predict clips of a feature set (clip_probabilities)");
        }
        self.own_probabilities(gpu, data)
    }

    /// This model's class probabilities alone (an ensemble's first member without the others).
    pub(crate) fn own_probabilities(&self, gpu: &Gpu, data: &Dataset) -> Result<Vec<Vec<f32>>> {
        let probs = self.classifier.probabilities(gpu, &self.meta, data)?;
        // A NaN would otherwise become class 0 at the argmax: a label nothing supports.
        if let Some((i, row)) = probs.iter().enumerate().find(|(_, row)| row.iter().any(|v| !v.is_finite())) {
            bail!("the {} model's probabilities for clip {i} are {row:?}: not numbers (is the model file damaged?)", self.classifier.family().kind);
        }
        Ok(probs)
    }

    /// Class probabilities for clips `rows` of a feature set (prepared, and normalised if the
    /// model wants it), rows in order: the mean of the members' probabilities.
    pub fn clip_probabilities(&self, gpu: &Gpu, set: &FeatureSet, rows: &[usize]) -> Result<Vec<Vec<f32>>> {
        let mut mean: Vec<Vec<f32>> = Vec::new();
        let n = 1 + self.others.len();
        for m in self.members() {
            let probs = m.own_probabilities(gpu, &m.dataset(set, rows, vec![0; rows.len()])?)?;
            if mean.is_empty() {
                mean = vec![vec![0.0; probs.first().map_or(0, Vec::len)]; probs.len()];
            }
            mean.iter_mut().zip(&probs).for_each(|(s, q)| s.iter_mut().zip(q).for_each(|(a, b)| *a += b / n as f32));
        }
        Ok(mean)
    }

    /// Predicts audio files (any name, rate, channel count) a chunk at a time, handing each
    /// prediction to `emit` in input order as soon as its chunk is done, and returns the files
    /// that could not be predicted with the reason. Memory stays bounded by a chunk's audio
    /// however many files are given, and the next chunk decodes on the CPU while the GPU works.
    /// A speaker-normalised model needs every clip of a speaker first: it keeps each chunk's
    /// features (only the per-clip statistics unless it reads frames) and predicts at the end;
    /// files of speakers with too few clips are returned as failures.
    pub fn predict_files(&self, gpu: &Gpu, files: &[PathBuf], o: &PredictOptions, mut emit: impl FnMut(Prediction)) -> Result<Vec<(String, String)>> {
        let rate = self.meta.data.features.sample_rate;
        let windows = match o.segments {
            Some(seg) => Some(seg.in_samples(rate).and_then(|w| {
                corpus::check_length(gpu, &self.meta.data.features, w.0).map(|_| w).context("--segment")
            })?),
            None => None,
        };
        let mut failed = Vec::new();
        let mut held: Vec<FeatureSet> = Vec::new();
        // Each held row's segment, beside `held`.
        let mut held_spans: Vec<Option<(f64, f64)>> = Vec::new();
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || self.decode_in_chunks(gpu, files, o, windows, tx));
            // A speaker-normalised model predicts once every file has its features.
            let stage = if self.meta.data.speaker_norm.is_none() { "predict" } else { "features" };
            let mut files_seen = 0;
            for chunk in rx {
                files_seen += chunk.len();
                let (clips, signals, spans) = clips_of_chunk(&chunk, windows, rate, &mut failed);
                if signals.is_empty() {
                    o.on_progress.report(stage, files_seen, files.len())?;
                    continue;
                }
                let mut set = corpus::extract_all(gpu, &self.meta.data.features, clips, &signals, false, &Default::default())?;
                self.prepare(gpu, &mut set)?;
                if self.meta.data.speaker_norm.is_none() {
                    let all = finite_rows(&set, &mut failed);
                    self.predict_clips(gpu, &set, &spans, &all, &mut emit)?;
                } else {
                    if !self.inputs().contains(&dataset::Input::Frames) {
                        set.drop_frames();
                    }
                    held.push(set);
                    held_spans.extend(spans);
                }
                o.on_progress.report(stage, files_seen, files.len())?;
            }
            Ok(())
        })?;
        if held.is_empty() {
            return Ok(failed);
        }
        // Speaker normalisation: every clip is in; speakers with too few clips are refused.
        let mut set = FeatureSet::concat(held)?;
        let keys = speaker::speaker_keys(&set.clips, o.groups)?;
        let min = self.min_speaker_clips(o.min_clips);
        let (speakers, refused): (BTreeMap<&str, Vec<usize>>, _) =
            speaker::groups(keys.iter().map(String::as_str).enumerate()).into_iter().partition(|(_, clips)| clips.len() >= min);
        for (key, clips) in refused {
            // One line per file, however many segments it was cut into.
            let mut paths: Vec<&str> = clips.iter().map(|&c| set.clips[c].path.as_str()).collect();
            paths.dedup();
            failed.extend(paths.into_iter().map(|f| (f.to_string(), speaker::too_few(key, clips.len(), min))));
        }
        speaker::normalise(&mut set, &self.inputs(), &speakers, min)?;
        let finite: std::collections::HashSet<usize> = finite_rows(&set, &mut failed).into_iter().collect();
        let mut kept: Vec<usize> = speakers.into_values().flatten().filter(|c| finite.contains(c)).collect();
        kept.sort_unstable();
        let mut done = 0;
        for rows in kept.chunks(o.files_per_chunk.max(1)) {
            self.predict_clips(gpu, &set, &held_spans, rows, &mut emit)?;
            done += rows.len();
            o.on_progress.report("predict", done, kept.len())?;
        }
        Ok(failed)
    }

    /// Predicts clips already decoded at the model's rate, one per signal, named `names` (no
    /// speaker normalisation: it needs a speaker's other clips).
    pub fn predict_signals(&self, gpu: &Gpu, names: &[String], signals: &[&[f32]]) -> Result<Vec<Prediction>> {
        if self.meta.data.speaker_norm.is_some() {
            bail!("this model normalises speakers; predict files with `ser predict` instead");
        }
        let clips = names.iter().map(ClipInfo::unlabelled).collect();
        let mut set = corpus::extract_all(gpu, &self.meta.data.features, clips, signals, false, &Default::default())?;
        self.prepare(gpu, &mut set)?;
        let mut out = Vec::new();
        self.predict_clips(gpu, &set, &vec![None; signals.len()], &(0..signals.len()).collect::<Vec<_>>(), &mut |p| out.push(p))?;
        Ok(out)
    }

    /// Decodes `files` at the model's rate a few at a time in parallel and sends them in chunks
    /// that close at `files_per_chunk` files or `samples_per_chunk` decoded samples, whichever
    /// comes first (so long recordings do not pile up). Stops when the receiver is gone.
    fn decode_in_chunks<'f>(&self, gpu: &Gpu, files: &'f [PathBuf], o: &PredictOptions, windows: Option<(usize, usize)>, tx: SyncSender<DecodedChunk<'f>>) {
        let rate = self.meta.data.features.sample_rate;
        let mut chunk = Vec::new();
        let mut samples = 0;
        for group in files.chunks(2 * rayon::current_num_threads().max(1)) {
            let decoded: Vec<Result<Vec<f32>>> = group
                .par_iter()
                .map(|f| {
                    let s = audio::load(f, rate)?;
                    audio::check_signal(&s, rate).with_context(|| f.display().to_string())?;
                    // Cut into segments, a file may be as long as it likes.
                    if windows.is_none() {
                        corpus::check_length(gpu, &self.meta.data.features, s.len()).map_err(|e| anyhow::anyhow!("{e:#} (predict it in segments: --segment SECONDS)"))?;
                    }
                    Ok(s)
                })
                .collect();
            for (f, r) in group.iter().zip(decoded) {
                samples += r.as_ref().map_or(0, Vec::len);
                chunk.push((f, r));
                if chunk.len() >= o.files_per_chunk.max(1) || samples >= o.samples_per_chunk {
                    if tx.send(std::mem::take(&mut chunk)).is_err() {
                        return;
                    }
                    samples = 0;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(chunk);
        }
    }

    /// Predicts clips `rows` of a feature set (normalised already if the model wants it);
    /// `spans` holds each row's segment.
    fn predict_clips(&self, gpu: &Gpu, set: &FeatureSet, spans: &[Option<(f64, f64)>], rows: &[usize], emit: &mut impl FnMut(Prediction)) -> Result<()> {
        let names = self.class_names();
        for (&c, p) in rows.iter().zip(self.clip_probabilities(gpu, set, rows)?) {
            let best = crate::report::argmax(&p);
            emit(Prediction {
                file: set.clips[c].path.clone(),
                file_hex: raw_hex(&set.clips[c].path),
                span: spans[c],
                label: names[best].clone(),
                confidence: p[best],
                probabilities: names.iter().cloned().zip(p).collect(),
                seconds: set.lengths[c] as f64 * self.meta.data.features.hop as f64 / self.meta.data.features.sample_rate as f64,
            });
        }
        Ok(())
    }
}

/// Files of one chunk with their decoded audio, or why they could not be decoded.
type DecodedChunk<'f> = Vec<(&'f PathBuf, Result<Vec<f32>>)>;

/// The clips of a decoded chunk: one per file, or one per segment with `windows` (length, hop
/// in samples), as (clip infos, audio slices, segment spans in seconds). Files that failed to
/// decode go to `failed`.
#[allow(clippy::type_complexity)]
fn clips_of_chunk<'c>(chunk: &'c DecodedChunk, windows: Option<(usize, usize)>, rate: u32, failed: &mut Vec<(String, String)>) -> (Vec<ClipInfo>, Vec<&'c [f32]>, Vec<Option<(f64, f64)>>) {
    let (mut clips, mut signals, mut spans) = (Vec::new(), Vec::new(), Vec::new());
    for (f, r) in chunk {
        let path = path_text(f);
        let clip = || ClipInfo::unlabelled(path.clone());
        match (r, windows) {
            (Ok(s), None) => {
                clips.push(clip());
                signals.push(s.as_slice());
                spans.push(None);
            }
            (Ok(s), Some((length, hop))) => {
                for (a, b) in segment_windows(s.len(), length, hop) {
                    clips.push(clip());
                    signals.push(&s[a..b]);
                    spans.push(Some((a as f64 / rate as f64, b as f64 / rate as f64)));
                }
            }
            (Err(e), _) => failed.push((path, format!("{e:#}"))),
        }
    }
    (clips, signals, spans)
}

/// How `Predictor::predict_files` works through its files.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// How a speaker-normalised model groups files into speakers.
    pub groups: SpeakerGroups,
    /// Fewest clips per speaker for a speaker-normalised model (None: the model's own).
    pub min_clips: Option<usize>,
    /// Files decoded and extracted together: bounds memory (a chunk's audio and frames).
    pub files_per_chunk: usize,
    /// Decoded samples after which a chunk closes early (long recordings).
    pub samples_per_chunk: usize,
    /// Cut every file into segments and predict each, instead of one prediction per file.
    pub segments: Option<Segments>,
    /// Told after each chunk of files is predicted (or, for a speaker-normalised model, has its
    /// features); its error stops the run there.
    pub on_progress: crate::progress::Progress,
}

/// Fixed-length segments of a file, in seconds: a window of `length` every `hop`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segments {
    pub length: f64,
    pub hop: f64,
}

impl Segments {
    /// (length, hop) in samples at `rate`.
    fn in_samples(self, rate: u32) -> Result<(usize, usize)> {
        let samples = |s: f64| (s * rate as f64).round();
        let (length, hop) = (samples(self.length), samples(self.hop));
        if !(length >= 1.0 && hop >= 1.0 && length.is_finite() && hop.is_finite()) {
            bail!("segments of {} s every {} s: both must be positive (at least one sample)", self.length, self.hop);
        }
        Ok((length as usize, hop as usize))
    }
}

/// Windows (start, end) of `length` samples every `hop` over `total` samples. The last one may be
/// shorter; a tail shorter than half a window is left out unless it is the only window (a
/// file shorter than one window is one segment).
pub fn segment_windows(total: usize, length: usize, hop: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + length).min(total);
        if out.is_empty() || 2 * (end - start) >= length {
            out.push((start, end));
        }
        if start + length >= total {
            return out;
        }
        start += hop;
    }
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions { groups: SpeakerGroups::Auto, min_clips: None, files_per_chunk: 128, samples_per_chunk: 1 << 26, segments: None, on_progress: Default::default() }
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

/// The model file at `path`, or the shipped model's bytes when no path is given, read.
fn read_model_file(path: Option<&Path>) -> Result<crate::store::Loaded> {
    match path {
        Some(p) => crate::store::Loaded::read(p).with_context(|| format!("loading model {}", p.display())),
        None => crate::store::Loaded::from_bytes(SHIPPED_MODEL_NAME, SHIPPED_MODEL.to_vec()),
    }
}

/// Loads `path`, or the shipped model when no path is given.
pub fn load_model(gpu: &Gpu, path: Option<&Path>) -> Result<Predictor> {
    load_file(gpu, read_model_file(path)?)
}

/// The metadata of `path` (or of the shipped model), checked, without building the model on a
/// device: for callers that only need its classes or options.
pub fn load_meta(path: Option<&Path>) -> Result<ModelMeta> {
    // An ensemble's members share what callers of this read: classes, features, speaker
    // normalisation.
    let first = model_files(read_model_file(path)?)?.swap_remove(0);
    models::family_of_file(&first)?;
    checkpoint::parse_meta(&first)
}

/// The single models a model file holds: an ensemble's members, else the file itself.
fn model_files(f: crate::store::Loaded) -> Result<Vec<crate::store::Loaded>> {
    if checkpoint::kind_of(&f)? == ensemble::ENSEMBLE_KIND { ensemble::member_files(&f) } else { Ok(vec![f]) }
}

/// What a model file is and how it was made, read from its metadata alone (no device): `ser
/// info` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// The file, or the built-in model's name.
    pub path: String,
    /// "ensemble", or the single model's kind (`krr`, `network`, ...).
    pub kind: String,
    /// The models whose probabilities it averages (one for a single model).
    pub members: Vec<MemberInfo>,
}

/// One model of a file: its kind, what it reads (the data contract) and its training record.
#[derive(Clone, Debug, Serialize)]
pub struct MemberInfo {
    pub kind: String,
    pub contract: crate::contract::DataContract,
    pub training: crate::nn::record::TrainingRecord,
    /// A network's calibrated temperatures (empty: 1).
    pub temperatures: Vec<f32>,
}

/// The [`ModelInfo`] of `path` (or of the shipped model), each member checked as loading checks
/// its metadata.
pub fn describe(path: Option<&Path>) -> Result<ModelInfo> {
    let f = read_model_file(path)?;
    let (kind, path) = (checkpoint::kind_of(&f)?, f.path.clone());
    let members = model_files(f)?
        .iter()
        .map(|m| {
            let family = models::family_of_file(m)?;
            let meta = checkpoint::parse_meta(m)?;
            Ok(MemberInfo { kind: family.kind.to_string(), contract: meta.data, training: meta.training, temperatures: meta.temperatures })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ModelInfo { path, kind, members })
}

/// Loads a model file's bytes (named `name` in errors), whatever its kind.
pub fn load_model_bytes(gpu: &Gpu, name: &str, bytes: Vec<u8>) -> Result<Predictor> {
    load_file(gpu, crate::store::Loaded::from_bytes(name, bytes)?)
}

/// The classifier of a model file already read, by its kind.
fn load_file(gpu: &Gpu, f: crate::store::Loaded) -> Result<Predictor> {
    let name = f.path.clone();
    let context = || format!("loading model {name}");
    if checkpoint::kind_of(&f).with_context(context)? == ensemble::ENSEMBLE_KIND {
        return ensemble::load(gpu, &f).with_context(context);
    }
    let family = models::family_of_file(&f).with_context(context)?;
    let (classifier, meta) = (family.load)(gpu, f).with_context(context)?;
    Ok(Predictor::new(classifier, meta))
}

/// Writes a predictor to `path` (atomically), in its kind's file layout (docs/guide/checkpoints.md).
pub fn save(gpu: &Gpu, p: &Predictor, path: &Path) -> Result<()> {
    let bytes = to_bytes(gpu, p).with_context(|| format!("not saving {}", path.display()))?;
    crate::store::write_atomic(path, &bytes)
}

/// The file [`save`] writes, as bytes ([`load_model_bytes`] reads them back).
pub fn to_bytes(gpu: &Gpu, p: &Predictor) -> Result<Vec<u8>> {
    if p.others.is_empty() { p.classifier.to_bytes(gpu, &p.meta) } else { ensemble::to_bytes(gpu, p) }
}

/// A path as text for output: itself when it is UTF-8; otherwise its UTF-8 parts with every
/// other byte written as U+FFFD followed by the byte in hex in braces (`caf<U+FFFD>{e9}.wav`),
/// which [`raw_hex`] recognises.
pub fn path_text(path: &std::path::Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        if std::str::from_utf8(bytes).is_err() {
            let mut out = String::new();
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                for b in chunk.invalid() {
                    out.push_str(&format!("\u{FFFD}{{{b:02x}}}"));
                }
            }
            return out;
        }
    }
    path.display().to_string()
}

/// The raw bytes of a path made by [`path_text`] from a non-UTF-8 name, in hex; None for
/// names that were UTF-8.
pub fn raw_hex(text: &str) -> Option<String> {
    if !text.contains('\u{FFFD}') {
        return None;
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('\u{FFFD}') {
        out.extend(rest[..i].bytes().map(|b| format!("{b:02x}")));
        let after = &rest[i + '\u{FFFD}'.len_utf8()..];
        match after.strip_prefix('{').and_then(|a| a.get(..3)).filter(|h| h.ends_with('}')) {
            Some(h) => {
                out.push_str(&h[..2]);
                rest = &after[4..];
            }
            None => {
                out.extend('\u{FFFD}'.to_string().bytes().map(|b| format!("{b:02x}")));
                rest = after;
            }
        }
    }
    out.extend(rest.bytes().map(|b| format!("{b:02x}")));
    Some(out)
}

/// The rows of a feature set whose features are all finite; the others go to `failed` with the
/// reason, so that a non-finite value never reaches a model (it would come out as a label).
fn finite_rows(set: &FeatureSet, failed: &mut Vec<(String, String)>) -> Vec<usize> {
    let d = set.dim;
    let ok = |c: usize| set.vectors[c * d..(c + 1) * d].iter().chain(&set.stds[c * d..(c + 1) * d]).all(|v| v.is_finite());
    let mut rows = Vec::new();
    for c in 0..set.clips.len() {
        if ok(c) {
            rows.push(c);
        } else if failed.last().is_none_or(|(f, _)| *f != set.clips[c].path) {
            failed.push((set.clips[c].path.clone(), "its features are not finite numbers (the audio is not usable)".into()));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_file_and_drop_only_short_tails() {
        assert_eq!(segment_windows(10, 4, 4), [(0, 4), (4, 8), (8, 10)]);
        assert_eq!(segment_windows(9, 4, 4), [(0, 4), (4, 8)]);
        assert_eq!(segment_windows(10, 4, 2), [(0, 4), (2, 6), (4, 8), (6, 10)]);
        assert_eq!(segment_windows(3, 4, 4), [(0, 3)]);
        assert_eq!(segment_windows(8, 4, 4), [(0, 4), (4, 8)]);
        assert!(Segments { length: 0.0, hop: 1.0 }.in_samples(16000).is_err());
        assert!(Segments { length: 1.0, hop: f64::NAN }.in_samples(16000).is_err());
        assert_eq!(Segments { length: 2.5, hop: 1.0 }.in_samples(16000).unwrap(), (40000, 16000));
    }
}
