//! Feature extraction on the GPU: MFCC, chroma, spectral contrast and frame descriptors (rms,
//! zero-crossing rate, spectral centroid, bandwidth, rolloff, flatness, and deltas of any of
//! them) exactly as librosa defines them, for many clips per submission. Owns the feature configuration, the batch layout
//! (concatenated clips, a clip table, the clip of every frame) and the order of kernels; the
//! kernels themselves live in `ops`.

pub mod corpus;
pub mod filters;
pub mod set;

use crate::gpu::{DType, Gpu, Tensor, Texture};
use crate::ops::contrast::{self, Band};
use crate::ops::descriptors::{self, SpectralShape};
use crate::ops::elementwise::{self, BinaryOp, UnaryOp};
use crate::ops::filterbank::{self, Filterbank};
use crate::ops::gemm::{self, GemmOptions};
use crate::ops::segment::{self, DbOptions};
use crate::ops::stft::{self, SpectrumLayout};
use crate::ops::{pitch, tuning};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// How chroma finds its tuning (deviation from A440 in fractions of a chroma bin).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tuning {
    /// A fixed deviation; 0 is A440.
    Fixed(f64),
    /// Estimated per clip as librosa.estimate_tuning does (piptrack).
    Estimate,
}

crate::choices! {
    /// A block of a frame's columns that `ser features --set` names.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Descriptor {
        /// MFCCs (n_mfcc columns, mfcc_0..).
        Mfcc = "mfcc",
        /// Chroma (n_chroma columns).
        Chroma = "chroma",
        /// Spectral contrast (bands + 1 columns).
        Contrast = "contrast",
        /// Root-mean-square energy of the windowed frame (librosa.feature.rms of the STFT).
        Rms = "rms",
        /// Zero-crossing rate of the frame's samples (frame length n_fft).
        Zcr = "zcr",
        /// Spectral centroid (Hz).
        Centroid = "centroid",
        /// Spectral bandwidth about the centroid (Hz, p = 2).
        Bandwidth = "bandwidth",
        /// Frequency below which 85% of the frame's magnitude lies (Hz).
        Rolloff = "rolloff",
        /// Spectral flatness: geometric over arithmetic mean of the power spectrum.
        Flatness = "flatness",
        /// F0 (Hz) as librosa.yin estimates it (fmin C2, fmax C7, frame length n_fft, trough
        /// threshold 0.1): every frame gets one, voiced or not.
        Yin = "yin",
        /// F0 (Hz) as librosa.pyin decodes it (fmin C2, fmax C7, frame length n_fft, every other
        /// parameter at librosa's default, Viterbi decoding on the GPU); 0 where unvoiced.
        F0 = "f0",
        /// The probability that the frame is voiced, as librosa.pyin gives it.
        VoicedProb = "voiced_prob",
        /// 1 where pyin's decoding calls the frame voiced (f0 above 0), else 0: its clip mean
        /// is the voicing rate.
        Voiced = "voiced",
    }
}

impl Descriptor {
    /// The descriptors read from the spectral shape kernel and the zero-crossing kernel.
    const SPECTRAL: [Descriptor; 6] = [Descriptor::Rms, Descriptor::Zcr, Descriptor::Centroid, Descriptor::Bandwidth, Descriptor::Rolloff, Descriptor::Flatness];
    /// The descriptors that need the difference function of pitch frames.
    const PITCH: [Descriptor; 4] = [Descriptor::Yin, Descriptor::F0, Descriptor::VoicedProb, Descriptor::Voiced];
}

/// One block of a frame's columns: a descriptor's rows, or their deltas (`delta_` before its
/// name: librosa.feature.delta, width 9, within each clip).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    pub descriptor: Descriptor,
    pub delta: bool,
}

impl Block {
    pub const fn of(descriptor: Descriptor) -> Block {
        Block { descriptor, delta: false }
    }

    /// The frames its clip statistics (mean, standard deviation) take: f0's voiced frames
    /// alone, since its zeros say "unvoiced", not a pitch; every frame for the others (f0's
    /// deltas included).
    pub fn moment_frames(&self) -> segment::Frames {
        if *self == Block::of(Descriptor::F0) { segment::Frames::Nonzero } else { segment::Frames::All }
    }

    /// Its name in `--set` and in feature files: `rms`, `delta_mfcc`.
    pub fn name(&self) -> String {
        let base = crate::choice::Choice::name(self.descriptor);
        if self.delta { format!("delta_{base}") } else { base.to_string() }
    }

    pub fn parse(text: &str) -> Result<Block> {
        let (delta, base) = match text.trim().strip_prefix("delta_") {
            Some(base) => (true, base),
            None => (false, text.trim()),
        };
        let descriptor = base.parse::<Descriptor>().map_err(|_| {
            let names = <Descriptor as crate::choice::Choice>::names();
            anyhow::anyhow!("{text:?} is not a feature: expected one of {}, each also as delta_NAME", names.join(", "))
        })?;
        Ok(Block { descriptor, delta })
    }
}

impl Serialize for Block {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Block, D::Error> {
        Block::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The blocks every feature file and model had before `--set`: MFCC, chroma, contrast.
pub const DEFAULT_SET: [Block; 3] = [Block::of(Descriptor::Mfcc), Block::of(Descriptor::Chroma), Block::of(Descriptor::Contrast)];

fn default_set() -> Vec<Block> {
    DEFAULT_SET.to_vec()
}

/// The default set is not written, so that every feature file, cache key and model from before
/// `--set` stays byte for byte what it was.
fn is_default_set(set: &[Block]) -> bool {
    set == DEFAULT_SET
}

/// Everything that determines the features. Stored with every feature file and checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop: usize,
    pub n_mels: usize,
    pub n_mfcc: usize,
    pub fmin: f64,
    /// None is Nyquist.
    pub fmax: Option<f64>,
    pub htk: bool,
    pub db: DbOptions,
    pub n_chroma: usize,
    pub tuning: Tuning,
    pub contrast_fmin: f64,
    pub contrast_bands: usize,
    pub contrast_quantile: f64,
    /// The blocks of a frame's columns, in order (`--set`; default mfcc, chroma, contrast).
    #[serde(default = "default_set", skip_serializing_if = "is_default_set")]
    pub set: Vec<Block>,
}

impl Default for FeatureConfig {
    /// `ser`'s defaults: 16 kHz, 64 ms windows every 16 ms, 64 mel bands, tuning fixed at A440.
    fn default() -> Self {
        FeatureConfig { n_fft: 1024, hop: 256, n_mels: 64, tuning: Tuning::Fixed(0.0), ..FeatureConfig::librosa(16_000) }
    }
}

impl FeatureConfig {
    /// librosa's defaults at a given rate (n_fft 2048, hop 512, 128 mels, estimated tuning).
    pub fn librosa(sample_rate: u32) -> Self {
        FeatureConfig {
            sample_rate,
            n_fft: 2048,
            hop: 512,
            n_mels: 128,
            n_mfcc: 40,
            fmin: 0.0,
            fmax: None,
            htk: false,
            db: DbOptions::default(),
            n_chroma: 12,
            tuning: Tuning::Estimate,
            contrast_fmin: 200.0,
            contrast_bands: 6,
            contrast_quantile: 0.02,
            set: default_set(),
        }
    }

    /// Columns per frame: each block's in order (59 with the defaults: MFCC, chroma, contrast).
    pub fn dim(&self) -> usize {
        self.set.iter().map(|b| self.width(b.descriptor)).sum()
    }

    /// Whether the set names any of `descriptors` (itself or its deltas).
    fn names_any(&self, descriptors: &[Descriptor]) -> bool {
        self.set.iter().any(|b| descriptors.contains(&b.descriptor))
    }

    /// Whether the set names a pitch block (yin, f0, voiced_prob, voiced).
    pub fn has_pitch(&self) -> bool {
        self.names_any(&Descriptor::PITCH)
    }

    /// The periods pitch searches at this rate and frame length.
    fn pitch_periods(&self) -> Result<pitch::Periods> {
        pitch::Periods::new(self.sample_rate as f64, self.n_fft, pitch::FMIN, pitch::FMAX)
    }

    /// Columns of one descriptor.
    pub fn width(&self, d: Descriptor) -> usize {
        match d {
            Descriptor::Mfcc => self.n_mfcc,
            Descriptor::Chroma => self.n_chroma,
            Descriptor::Contrast => self.contrast_bands + 1,
            _ => 1,
        }
    }

    /// Every column's name, in order: `mfcc_0`.., `chroma_0`.., `contrast_0`.., `rms`,
    /// `delta_mfcc_0`...
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.dim());
        for b in &self.set {
            let width = self.width(b.descriptor);
            if matches!(b.descriptor, Descriptor::Mfcc | Descriptor::Chroma | Descriptor::Contrast) {
                names.extend((0..width).map(|i| format!("{}_{i}", b.name())));
            } else {
                names.push(b.name());
            }
        }
        names
    }

    pub fn layout(&self) -> Result<SpectrumLayout> {
        SpectrumLayout::new(self.n_fft, self.hop)
    }

    /// Refuses configurations no extraction can run, naming the field (a model or feature file
    /// is data: a damaged one must not reach the GPU with hop 0 or a 1000-point FFT).
    pub fn validate(&self) -> Result<()> {
        if !(1_000..=384_000).contains(&self.sample_rate) {
            bail!("sample rate {} Hz is outside 1000-384000 Hz", self.sample_rate);
        }
        if !self.n_fft.is_power_of_two() || !(32..=65_536).contains(&self.n_fft) {
            bail!("n_fft {} is not a power of two from 32 to 65536", self.n_fft);
        }
        if self.hop == 0 || self.hop > self.n_fft {
            bail!("hop {} must be between 1 and n_fft ({})", self.hop, self.n_fft);
        }
        if !(1..=1024).contains(&self.n_mels) || self.n_mfcc == 0 || !(1..=96).contains(&self.n_chroma) || !(1..=16).contains(&self.contrast_bands) {
            bail!("band counts out of range: {} mels, {} MFCCs, {} chroma, {} contrast bands", self.n_mels, self.n_mfcc, self.n_chroma, self.contrast_bands);
        }
        if let Tuning::Fixed(t) = self.tuning {
            if !(-0.5..0.5).contains(&t) {
                bail!("chroma tuning {t} is outside [-0.5, 0.5) bins");
            }
        }
        if !(self.contrast_fmin > 0.0 && self.contrast_fmin.is_finite() && self.contrast_quantile > 0.0 && self.contrast_quantile < 1.0 && self.fmin.is_finite()) {
            bail!("contrast fmin {} Hz, quantile {} or mel fmin {} out of range", self.contrast_fmin, self.contrast_quantile, self.fmin);
        }
        if self.n_mfcc > self.n_mels {
            bail!("n_mfcc ({}) cannot exceed n_mels ({})", self.n_mfcc, self.n_mels);
        }
        if self.set.is_empty() {
            bail!("the feature set is empty: name at least one of {}", <Descriptor as crate::choice::Choice>::names().join(", "));
        }
        if let Some(b) = self.set.iter().enumerate().find_map(|(i, b)| self.set[..i].contains(b).then_some(b)) {
            bail!("the feature set names {} twice", b.name());
        }
        if self.names_any(&Descriptor::PITCH) {
            self.pitch_periods()?;
        }
        let nyquist = self.sample_rate as f64 / 2.0;
        if self.fmax.is_some_and(|f| f > nyquist) || self.fmin >= self.fmax.unwrap_or(nyquist) {
            bail!("mel range {}..{:?} Hz does not fit 0..{nyquist} Hz", self.fmin, self.fmax);
        }
        Ok(())
    }
}

/// Features of a batch of clips, frame by frame and per clip.
pub struct Features {
    /// [clips, t_max, dim], zero past each clip's length.
    pub frames: Vec<f32>,
    pub lengths: Vec<u32>,
    pub t_max: usize,
    /// [clips, dim]: the mean over each clip's own frames.
    pub vectors: Vec<f32>,
    /// [clips, dim]: the standard deviation over each clip's own frames.
    pub stds: Vec<f32>,
    pub dim: usize,
    /// The chroma tuning of each clip (fixed, or estimated).
    pub tunings: Vec<f64>,
}

/// Each feature before assembly, frame-major ([total frames, rows]); for parity tests.
pub struct FeatureParts {
    pub mel_db: Vec<f32>,
    pub mfcc: Vec<f32>,
    pub chroma: Vec<f32>,
    pub contrast: Vec<f32>,
    /// [total frames] each.
    pub rms: Vec<f32>,
    pub zcr: Vec<f32>,
    pub centroid: Vec<f32>,
    pub bandwidth: Vec<f32>,
    pub rolloff: Vec<f32>,
    pub flatness: Vec<f32>,
    /// Empty where the configuration cannot hold a pitch frame (n_fft past `pitch::MAX_FRAME`).
    pub yin: Vec<f32>,
    pub voiced_prob: Vec<f32>,
    pub f0: Vec<f32>,
    /// First frame and frame count of each clip.
    pub clip_frames: Vec<(usize, usize)>,
    pub tunings: Vec<f64>,
}

/// The constant GPU inputs of one configuration: window, filterbanks, DCT, contrast bands.
pub struct Extractor {
    cfg: FeatureConfig,
    layout: SpectrumLayout,
    window: Texture,
    mel: Filterbank,
    /// [n_chroma, stride] for a fixed tuning, applied as a GEMM (every weight is nonzero); with
    /// estimated tuning the weights are built per clip once the tunings are known.
    chroma: Option<Tensor>,
    dct: Tensor,
    bands: Vec<Band>,
    band_table: Tensor,
    /// What pitch reads besides the signal; None where the configuration cannot hold a pitch
    /// frame (which `validate` refuses when the set names a pitch block).
    pitch: Option<PitchTables>,
}

/// The constant inputs of the pitch kernels for one configuration.
struct PitchTables {
    periods: pitch::Periods,
    /// pyin's priors (`pitch::observation_priors`).
    priors: Tensor,
    /// pyin's transition band (`pitch::transition_band`) and its width.
    band: Tensor,
    width: usize,
}

impl PitchTables {
    fn new(gpu: &Gpu, cfg: &FeatureConfig) -> Result<Option<PitchTables>> {
        let Ok(periods) = cfg.pitch_periods() else { return Ok(None) };
        let width = pitch::transition_width(cfg.sample_rate as f64, cfg.hop);
        let priors = pitch::observation_priors();
        let band = pitch::transition_band(pitch::pitch_bins(pitch::FMIN, pitch::FMAX), width);
        Ok(Some(PitchTables { periods, priors: gpu.upload_f32(&priors, &[priors.len()])?, band: gpu.upload_f32(&band, &[band.len()])?, width }))
    }
}

/// Uploads a [rows][bins] matrix as [rows, stride] float32, zero past `bins`.
fn upload_rows(gpu: &Gpu, rows: &[Vec<f64>], stride: usize) -> Result<Tensor> {
    let mut flat = vec![0f32; rows.len() * stride];
    for (r, row) in rows.iter().enumerate() {
        for (b, w) in row.iter().enumerate() {
            flat[r * stride + b] = *w as f32;
        }
    }
    gpu.upload_f32(&flat, &[rows.len(), stride])
}

/// A batch's features before assembly, frame-major.
struct Computed {
    mel_db: Tensor,
    mfcc: Tensor,
    chroma: Tensor,
    contrast: Tensor,
    /// The frame descriptors, when asked for.
    shape: Option<SpectralShape>,
    zcr: Option<Tensor>,
    yin: Option<Tensor>,
    voiced_prob: Option<Tensor>,
    f0: Option<Tensor>,
    /// 1 where f0 is voiced, else 0 (with f0).
    voiced: Option<Tensor>,
    tunings: Vec<f64>,
}

impl Computed {
    /// A descriptor's rows, [frames, width].
    fn rows(&self, d: Descriptor) -> Tensor {
        let single = |t: &Tensor| t.reshape(&[t.len(), 1]);
        let shape = || self.shape.as_ref().expect("descriptors computed when the set names them");
        match d {
            Descriptor::Mfcc => self.mfcc.clone(),
            Descriptor::Chroma => self.chroma.clone(),
            Descriptor::Contrast => self.contrast.clone(),
            Descriptor::Rms => single(&shape().rms),
            Descriptor::Centroid => single(&shape().centroid),
            Descriptor::Bandwidth => single(&shape().bandwidth),
            Descriptor::Rolloff => single(&shape().rolloff),
            Descriptor::Flatness => single(&shape().flatness),
            Descriptor::Zcr => single(self.zcr.as_ref().expect("zcr computed when the set names it")),
            Descriptor::Yin => single(self.yin.as_ref().expect("yin computed when the set names it")),
            Descriptor::VoicedProb => single(self.voiced_prob.as_ref().expect("voiced_prob computed when the set names it")),
            Descriptor::F0 => single(self.f0.as_ref().expect("f0 computed when the set names it")),
            Descriptor::Voiced => single(self.voiced.as_ref().expect("voicing computed when the set names it")),
        }
    }
}

/// Which pitch outputs a batch computes.
#[derive(Clone, Copy)]
struct PitchOutputs {
    yin: bool,
    /// pyin's observations (voiced probability) ...
    pyin: bool,
    /// ... and its decoding (f0) ...
    decode: bool,
    /// ... and the voicing flag from it.
    voicing: bool,
}

/// Host-side layout of one batch.
struct Batch {
    signal: Texture,
    clips: Tensor,
    frame_clip: Tensor,
    clip_frames: Vec<(usize, usize)>,
    frames: usize,
}

impl Extractor {
    pub fn new(gpu: &Gpu, cfg: &FeatureConfig) -> Result<Extractor> {
        cfg.validate()?;
        let layout = cfg.layout()?;
        let sr = cfg.sample_rate as f64;
        let window: Vec<f32> = stft::hann(cfg.n_fft).iter().map(|&w| w as f32).collect();
        let mel = filters::mel(sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax.unwrap_or(sr / 2.0), cfg.htk);
        let chroma = match cfg.tuning {
            Tuning::Fixed(t) => Some(upload_rows(gpu, &filters::chroma(sr, cfg.n_fft, cfg.n_chroma, t), layout.stride)?),
            Tuning::Estimate => None,
        };
        let dct: Vec<f32> = filters::dct_ortho(cfg.n_mfcc, cfg.n_mels).into_iter().flatten().map(|v| v as f32).collect();
        let bands = contrast::bands(sr, cfg.n_fft, cfg.contrast_fmin, cfg.contrast_bands, cfg.contrast_quantile)?;
        Ok(Extractor {
            window: stft::upload_window(gpu, &window)?,
            mel: Filterbank::upload(gpu, &mel, layout.stride)?,
            chroma,
            dct: gpu.upload_f32(&dct, &[cfg.n_mfcc, cfg.n_mels])?,
            band_table: contrast::upload_bands(gpu, &bands)?,
            pitch: PitchTables::new(gpu, cfg)?,
            bands,
            layout,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    pub fn contrast_bands(&self) -> &[Band] {
        &self.bands
    }

    fn upload_batch(&self, gpu: &Gpu, clips: &[&[f32]]) -> Result<Batch> {
        let mut signal = Vec::with_capacity(clips.iter().map(|c| c.len()).sum::<usize>().max(1));
        let mut table = Vec::with_capacity(clips.len() * 4);
        let mut frame_clip = Vec::new();
        let mut clip_frames = Vec::with_capacity(clips.len());
        for (i, c) in clips.iter().enumerate() {
            if c.is_empty() {
                bail!("clip {i} has no samples");
            }
            let frames = self.layout.frames(c.len());
            table.extend_from_slice(&[signal.len() as u32, c.len() as u32, frame_clip.len() as u32, frames as u32]);
            clip_frames.push((frame_clip.len(), frames));
            frame_clip.extend(std::iter::repeat_n(i as u32, frames));
            signal.extend_from_slice(c);
            // Clips start at multiples of 4 samples so that frames read whole texels.
            signal.resize(signal.len().next_multiple_of(4), 0.0);
        }
        let frames = frame_clip.len();
        Ok(Batch {
            signal: stft::upload_signal(gpu, &signal)?,
            clips: gpu.upload(&table, &[clips.len(), 4], DType::U32)?,
            frame_clip: gpu.upload(&frame_clip, &[frames], DType::U32)?,
            clip_frames,
            frames,
        })
    }

    /// Computes every feature of a batch in one submission (two when tuning is estimated: the
    /// host reads back one number per clip to build its chroma filters): the frame-major
    /// tensors (mel_db [F, n_mels], mfcc [F, n_mfcc], chroma [F, n_chroma], contrast
    /// [F, bands + 1], and with `descriptors` the frame descriptors [F] each) and each clip's
    /// tuning.
    fn run(&self, gpu: &Gpu, b: &Batch, descriptors: bool, pitch: PitchOutputs) -> Result<Computed> {
        let cfg = &self.cfg;
        let f = b.frames;
        let n_bands = self.bands.len();
        let spectra = stft::spectrum_texture(gpu, &self.layout, f)?;
        let mel_db = gpu.empty(&[f, cfg.n_mels], DType::F32)?;
        let mfcc = gpu.empty(&[f, cfg.n_mfcc], DType::F32)?;
        let chroma = gpu.empty(&[f, cfg.n_chroma], DType::F32)?;
        let peak = gpu.empty(&[f, n_bands], DType::F32)?;
        let valley = gpu.empty(&[f, n_bands], DType::F32)?;
        let contrast_db = gpu.empty(&[f, n_bands], DType::F32)?;
        let clip_max = gpu.empty(&[b.clip_frames.len()], DType::F32)?;

        let mut step = gpu.step("features");
        stft::power(&mut step, &self.layout, &b.signal, &b.clips, true, &b.frame_clip, &self.window, &spectra)?;
        let (shape, zcr) = if descriptors {
            let one = || gpu.empty(&[f], DType::F32);
            let shape = SpectralShape { rms: one()?, centroid: one()?, bandwidth: one()?, rolloff: one()?, flatness: one()? };
            descriptors::spectral_shape(&mut step, &spectra, f, cfg.n_fft, cfg.sample_rate as f64, &shape)?;
            let zcr = one()?;
            descriptors::zero_crossing_rate(&mut step, &b.signal, &b.clips, &b.frame_clip, cfg.n_fft, cfg.hop, &zcr)?;
            (Some(shape), Some(zcr))
        } else {
            (None, None)
        };
        let (mut yin, mut voiced_prob, mut f0_out, mut voicing) = (None, None, None, None);
        if pitch.yin || pitch.pyin {
            let sr = cfg.sample_rate as f64;
            // `validate` refuses pitch blocks where the tables could not be built.
            let tables = self.pitch.as_ref().context("pitch blocks on a configuration that cannot hold a pitch frame")?;
            let periods = tables.periods;
            let cmndf = gpu.empty(&[f, periods.len()], DType::F32)?;
            let framing = pitch::Framing { length: cfg.n_fft, hop: cfg.hop, periods };
            pitch::cmndf(&mut step, &b.signal, &b.clips, &b.frame_clip, framing, &cmndf)?;
            if pitch.yin {
                let f0 = gpu.empty(&[f], DType::F32)?;
                pitch::yin(&mut step, &cmndf, periods, sr, &f0)?;
                yin = Some(f0);
            }
            if pitch.pyin {
                let bins = pitch::pitch_bins(pitch::FMIN, pitch::FMAX);
                let observed = gpu.empty(&[f, bins], DType::F32)?;
                let voiced = gpu.empty(&[f], DType::F32)?;
                pitch::pyin_observe(&mut step, &cmndf, periods, sr, &tables.priors, &observed, &voiced)?;
                if pitch.decode {
                    let f0 = gpu.empty(&[f], DType::F32)?;
                    let longest = b.clip_frames.iter().map(|c| c.1).max().unwrap_or(0);
                    pitch::pyin_decode(&mut step, &observed, &voiced, &b.clips, longest, &tables.band, tables.width, &f0)?;
                    if pitch.voicing {
                        let decided = gpu.empty(&[f], DType::F32)?;
                        elementwise::unary(&mut step, UnaryOp::Positive, &f0, &decided)?;
                        voicing = Some(decided);
                    }
                    f0_out = Some(f0);
                }
                voiced_prob = Some(voiced);
            }
        }
        let sr = cfg.sample_rate as f64;
        let (tunings, per_clip_chroma) = match cfg.tuning {
            Tuning::Fixed(t) => (vec![t; b.clip_frames.len()], None),
            Tuning::Estimate => {
                let est = tuning::record(&mut step, &spectra, self.layout.n_bins, &b.frame_clip, &b.clip_frames, sr, cfg.n_fft)?;
                step.submit()?;
                est.check_complete(gpu, &|c| format!("clip {c} of the batch ({} frames)", b.clip_frames[c].1))?;
                let tunings: Vec<f64> = gpu.read_f32(&est.out)?.into_iter().map(tuning::tuning_of).collect();
                // At most 101 distinct tunings: build each filterbank once; clips share them.
                let mut distinct: Vec<f64> = Vec::new();
                let mut set_of_clip = Vec::with_capacity(tunings.len());
                for &t in &tunings {
                    let i = distinct.iter().position(|u| *u == t).unwrap_or_else(|| {
                        distinct.push(t);
                        distinct.len() - 1
                    });
                    set_of_clip.push(i);
                }
                let rows: Vec<Vec<f64>> = distinct.iter().flat_map(|&t| filters::chroma(sr, cfg.n_fft, cfg.n_chroma, t)).collect();
                let weights = upload_rows(gpu, &rows, self.layout.stride)?;
                step = gpu.step("features");
                (tunings, Some((weights, set_of_clip)))
            }
        };
        // MFCC: mel power -> dB against each clip's maximum -> orthonormal DCT-II.
        filterbank::apply(&mut step, &self.mel, &spectra, f, &mel_db, "filterbank.mel")?;
        segment::power_to_db(&mut step, &b.clips, &mel_db, &clip_max, &cfg.db)?;
        // Both filterbank GEMMs multiply by a stored [rows, cols] matrix transposed.
        let by_rows = GemmOptions { trans_b: true, ..Default::default() };
        gemm::gemm(&mut step, &mel_db, &self.dct, None, &mfcc, &by_rows)?;
        // Chroma: the (dense) chroma filterbank on the power spectrum as a GEMM, each frame then
        // scaled to a maximum of 1.
        match (&self.chroma, &per_clip_chroma) {
            (Some(weights), _) => {
                let spectra = gemm::FixedA::from_texture(&mut step, &spectra, f, self.layout.stride, cfg.n_chroma, &by_rows)?;
                gemm::gemm_fixed_a(&mut step, &spectra, weights, None, &chroma, &by_rows)?;
            }
            (None, Some((weights, set_of_clip))) => {
                // One GEMM per clip, on its own rows of the spectra, with its tuning's weights.
                let rows = cfg.n_chroma * self.layout.stride;
                let spectra = gemm::FixedA::from_texture(&mut step, &spectra, f, self.layout.stride, cfg.n_chroma, &by_rows)?;
                for (&(first, n), &set) in b.clip_frames.iter().zip(set_of_clip) {
                    let a = spectra.rows_view(first, n)?;
                    let c = (&chroma, first * cfg.n_chroma);
                    gemm::gemm_fixed_a_at(&mut step, &a, (weights, set * rows), None, c, cfg.n_chroma, &by_rows)?;
                }
            }
            (None, None) => unreachable!("chroma weights come from the tuning"),
        }
        segment::normalize_rows(&mut step, &chroma)?;
        // Contrast: dB of band peaks minus dB of band valleys (librosa's default power_to_db).
        contrast::peaks_and_valleys(&mut step, &spectra, f, &self.band_table, &peak, &valley)?;
        segment::power_to_db(&mut step, &b.clips, &peak, &clip_max, &DbOptions::default())?;
        segment::power_to_db(&mut step, &b.clips, &valley, &clip_max, &DbOptions::default())?;
        elementwise::binary(&mut step, BinaryOp::Sub, &peak, &valley, &contrast_db)?;
        step.submit()?;
        Ok(Computed { mel_db, mfcc, chroma, contrast: contrast_db, shape, zcr, yin, voiced_prob, f0: f0_out, voiced: voicing, tunings })
    }

    /// Features of clips already at the configured rate.
    pub fn extract(&self, gpu: &Gpu, clips: &[&[f32]]) -> Result<Features> {
        let dim = self.cfg.dim();
        let b = self.upload_batch(gpu, clips)?;
        let (cfg, set) = (&self.cfg, &self.cfg.set);
        let decode = cfg.names_any(&[Descriptor::F0, Descriptor::Voiced]);
        let voicing = cfg.names_any(&[Descriptor::Voiced]);
        let pitch = PitchOutputs { yin: cfg.names_any(&[Descriptor::Yin]), pyin: decode || cfg.names_any(&[Descriptor::VoicedProb]), decode, voicing };
        let computed = self.run(gpu, &b, cfg.names_any(&Descriptor::SPECTRAL), pitch)?;
        let t_max = b.clip_frames.iter().map(|c| c.1).max().unwrap_or(0);
        let n = clips.len();
        let frames = gpu.empty(&[n, t_max, dim], DType::F32)?;
        let vectors = gpu.empty(&[n, dim], DType::F32)?;
        let stds = gpu.empty(&[n, dim], DType::F32)?;
        let mut step = gpu.step("features.assemble");
        let mut offset = 0;
        for block in set {
            let rows = computed.rows(block.descriptor);
            let part = if block.delta {
                let d = gpu.empty(rows.shape(), DType::F32)?;
                descriptors::delta(&mut step, &b.clips, &b.frame_clip, &rows, &d)?;
                d
            } else {
                rows
            };
            segment::assemble(&mut step, &b.clips, &part, &frames, offset)?;
            let taken = block.moment_frames();
            segment::mean(&mut step, &b.clips, &part, &vectors, offset, taken)?;
            segment::std(&mut step, &b.clips, &part, &stds, offset, taken)?;
            offset += part.shape()[1];
        }
        step.submit()?;
        Ok(Features {
            frames: gpu.read_f32(&frames)?,
            vectors: gpu.read_f32(&vectors)?,
            stds: gpu.read_f32(&stds)?,
            lengths: b.clip_frames.iter().map(|c| c.1 as u32).collect(),
            t_max,
            dim,
            tunings: computed.tunings,
        })
    }

    /// Every feature before assembly, for parity tests against librosa.
    pub fn extract_parts(&self, gpu: &Gpu, clips: &[&[f32]]) -> Result<FeatureParts> {
        let b = self.upload_batch(gpu, clips)?;
        let pitch = self.pitch.is_some();
        let c = self.run(gpu, &b, true, PitchOutputs { yin: pitch, pyin: pitch, decode: pitch, voicing: false })?;
        let shape = c.shape.as_ref().expect("asked for");
        Ok(FeatureParts {
            mel_db: gpu.read_f32(&c.mel_db)?,
            mfcc: gpu.read_f32(&c.mfcc)?,
            chroma: gpu.read_f32(&c.chroma)?,
            contrast: gpu.read_f32(&c.contrast)?,
            rms: gpu.read_f32(&shape.rms)?,
            zcr: gpu.read_f32(c.zcr.as_ref().expect("asked for"))?,
            centroid: gpu.read_f32(&shape.centroid)?,
            bandwidth: gpu.read_f32(&shape.bandwidth)?,
            rolloff: gpu.read_f32(&shape.rolloff)?,
            flatness: gpu.read_f32(&shape.flatness)?,
            yin: c.yin.as_ref().map(|t| gpu.read_f32(t)).transpose()?.unwrap_or_default(),
            voiced_prob: c.voiced_prob.as_ref().map(|t| gpu.read_f32(t)).transpose()?.unwrap_or_default(),
            f0: c.f0.as_ref().map(|t| gpu.read_f32(t)).transpose()?.unwrap_or_default(),
            tunings: c.tunings,
            clip_frames: b.clip_frames,
        })
    }
}
