//! The `ser` command line.

mod cli;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ser::audio::{Emotion, Selection, VocalFilter};
use ser::bench::{self, GemmBenchConfig, GemmShape};
use ser::features::corpus::{self, BuildOptions};
use ser::sources::{LabelMap, Source};
use ser::features::{FeatureConfig, Tuning};
use std::path::PathBuf;
use ser::gpu::{self, AdapterSelector, BackendChoice};
use ser::ops::gemm::{GemmKernel, Precision};
use ser::experiment::{self, ClassWeights, Run, RunConfig, Split};
use ser::choice::Choice;
use ser::runtime::Settings;
use ser::models::ModelKind;
use ser::contract::speaker::{self, SpeakerGroups};

#[derive(Parser)]
#[command(name = "ser", version, about = "Speech emotion recognition as a GPU-native compute pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which adapter to run on. Flags win over WGPU_ADAPTER_NAME and WGPU_BACKEND.
#[derive(Args, Clone, Debug)]
struct AdapterArgs {
    /// Case-insensitive substring of the adapter name (see `ser devices`).
    #[arg(long)]
    adapter: Option<String>,
    /// Graphics API to use.
    #[arg(long, value_parser = choice::<BackendChoice>())]
    backend: Option<BackendChoice>,
}

impl AdapterArgs {
    /// The flags, with `WGPU_ADAPTER_NAME` and `WGPU_BACKEND` filling what they leave open.
    fn selector(&self) -> Result<AdapterSelector> {
        AdapterSelector { name: self.adapter.clone(), backend: self.backend }.with_env()
    }

    /// The device the flags and environment pick, with the runtime's settings.
    fn open(&self) -> Result<ser::gpu::Gpu> {
        ser::runtime::open(&self.selector()?, settings())
    }
}

/// The runtime's settings, read from the environment once, when the command starts (the only
/// place `ser` reads them; the library takes them as arguments).
static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

fn settings() -> &'static Settings {
    SETTINGS.get().expect("read when the command starts")
}

/// How clips are grouped into speakers for a speaker-normalised model.
#[derive(Args, Clone, Debug)]
struct SpeakerFlags {
    /// Group clips into speakers by the speaker the data names (`actor`, alias `speaker`:
    /// RAVDESS's actor, another corpus's speaker, a manifest's column), by folder, by file (each
    /// file one speaker: long recordings cut with --segment), or auto (the named speaker when
    /// every clip has one, else folder). Only for models trained with --speaker-norm.
    #[arg(long, value_parser = choice::<SpeakerGroups>())]
    speaker_groups: Option<SpeakerGroups>,
    /// Fewest clips a speaker's statistics may come from (default: the model's; 30 when
    /// training). Speakers with fewer are refused.
    #[arg(long, value_parser = ranged::<usize>(1, 1 << 20))]
    min_speaker_clips: Option<usize>,
}

impl SpeakerFlags {
    fn groups(&self) -> SpeakerGroups {
        self.speaker_groups.unwrap_or(SpeakerGroups::Auto)
    }

    /// Whether any speaker option was given (they mean nothing without speaker normalisation).
    fn given(&self) -> bool {
        self.speaker_groups.is_some() || self.min_speaker_clips.is_some()
    }

    /// Refuses speaker options for a model that does not normalise speakers.
    fn check_model(&self, meta: &ser::nn::checkpoint::ModelMeta) -> Result<()> {
        if meta.data.speaker_norm.is_none() && self.given() {
            anyhow::bail!("--speaker-groups / --min-speaker-clips: the model was trained without --speaker-norm");
        }
        Ok(())
    }
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu finds, best first.
    Devices {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Extract MFCC, chroma and spectral contrast features of labelled clips (any corpus layout or
    /// a manifest: docs/guide/data.md) on the GPU.
    Features(FeaturesArgs),
    /// Train an emotion classifier on the GPU and save it (safetensors).
    Train(TrainArgs),
    /// Train every model ser has on the same data and split, and print the reference study's
    /// table beside ours: accuracy and macro F1 on the random 80/20 split (the study's protocol)
    /// and by speaker (cross-validation over whole speakers); with --test-data, scored on another
    /// corpus too. Takes train's data and model flags.
    Compare(CompareArgs),
    /// Evaluate a saved model on labelled data of any corpus: accuracy, UAR, macro F1, per-class
    /// report and confusion matrix.
    Eval(EvalArgs),
    /// Fit a saved network's temperature on the validation clips its training held out, so that
    /// its probabilities are calibrated when averaged with other models' (`ser train` now does
    /// this itself: for networks saved by an older ser).
    Calibrate(CalibrateArgs),
    /// Join saved models of any kinds and inputs (the same classes, features and speaker
    /// normalisation) into one ensemble file whose class probabilities are the mean of theirs:
    /// for `ser predict`, `ser eval` and Python like any model.
    Ensemble(EnsembleArgs),
    /// Predict the emotion of audio files (any WAV or FLAC, any rate, mono or stereo).
    Predict(PredictArgs),
    /// Say what a model file is and how it was made, from its metadata alone (no GPU): its kind
    /// (an ensemble's members), classes, features, input, speaker normalisation, the corpora it
    /// saw, and each member's training (split, seed, clips, test figures).
    Info(InfoArgs),
    /// Check every kernel family against float64 references and the built-in model on the
    /// bundled clips, on this adapter: run it first on a new GPU. Exit status 1 on any failure.
    Selftest(SelftestArgs),
    /// Measure kernel throughput.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

/// Feature configuration flags (defaults are ser's: 16 kHz, n_fft 1024, hop 256, 64 mels, tuning 0).
#[derive(Args, Clone, Debug)]
struct FeatureFlags {
    /// Rate clips are resampled to before analysis (Hz).
    #[arg(long, default_value_t = 16_000, value_parser = ranged::<u32>(1_000, 384_000))]
    sample_rate: u32,
    /// FFT size (a power of two, 32 to 65536).
    #[arg(long, default_value_t = 1024, value_parser = power_of_two)]
    n_fft: usize,
    /// Hop between frames (samples).
    #[arg(long, default_value_t = 256, value_parser = ranged::<usize>(1, 65_536))]
    hop: usize,
    /// Mel bands before the DCT.
    #[arg(long, default_value_t = 64, value_parser = ranged::<usize>(1, 1024))]
    n_mels: usize,
    /// MFCC coefficients kept (at most --n-mels).
    #[arg(long, default_value_t = 40, value_parser = ranged::<usize>(1, 1024))]
    n_mfcc: usize,
    /// Chroma tuning in fractions of a chroma bin, or "estimate" (librosa's default, per clip).
    #[arg(long, default_value = "0")]
    tuning: String,
    /// Lowest contrast band edge (Hz).
    #[arg(long, default_value_t = 200.0, value_parser = positive_f64)]
    contrast_fmin: f64,
    /// The blocks of each frame's columns, in order: mfcc, chroma, contrast, rms, zcr, centroid,
    /// bandwidth, rolloff, flatness, yin, f0 (pyin's; its clip statistics over voiced frames),
    /// voiced_prob, voiced (pyin's voicing flag), and delta_NAME for the deltas of any of them
    /// (librosa's delta, width 9). Feature files name every column in their metadata
    /// (feature_names); models record the set and compute it when they predict
    /// (docs/guide/features.md).
    #[arg(long, value_delimiter = ',', default_value = "mfcc,chroma,contrast", value_parser = feature_block)]
    set: Vec<ser::features::Block>,
}

fn feature_block(s: &str) -> std::result::Result<ser::features::Block, String> {
    ser::features::Block::parse(s).map_err(|e| e.to_string())
}

impl FeatureFlags {
    fn config(&self) -> Result<FeatureConfig> {
        let tuning = match self.tuning.as_str() {
            "estimate" => Tuning::Estimate,
            v => match v.parse::<f64>() {
                Ok(t) if (-0.5..0.5).contains(&t) => Tuning::Fixed(t),
                _ => anyhow::bail!("--tuning {v:?}: expected a number of chroma bins in [-0.5, 0.5) or \"estimate\""),
            },
        };
        if self.n_mfcc > self.n_mels {
            anyhow::bail!("--n-mfcc {} is more than --n-mels {}: the DCT keeps at most one coefficient per band", self.n_mfcc, self.n_mels);
        }
        let cfg = FeatureConfig {
            sample_rate: self.sample_rate,
            n_fft: self.n_fft,
            hop: self.hop,
            n_mels: self.n_mels,
            n_mfcc: self.n_mfcc,
            tuning,
            contrast_fmin: self.contrast_fmin,
            set: self.set.clone(),
            ..FeatureConfig::default()
        };
        cfg.validate().context("feature flags (--sample-rate, --n-fft, --hop, --n-mels, --n-mfcc, --contrast-fmin, --set)")?;
        Ok(cfg)
    }
}

/// Where labelled clips come from and which of them to use: shared by `features`, `train`,
/// `eval` and `compare` (docs/guide/data.md).
#[derive(Args, Clone, Debug)]
struct DataFlags {
    /// Folder of labelled clips (searched at any depth): RAVDESS, CREMA-D, EmoDB, TESS or SAVEE
    /// names, a Hugging Face audiofolder (metadata.csv / metadata.jsonl) or one folder per class,
    /// recognised without flags. Repeat it (or add --manifest) to use the union.
    #[arg(long, value_name = "DIR")]
    data: Vec<PathBuf>,
    /// A manifest of labelled clips: .csv, .tsv or .jsonl with path,label[,speaker][,start,end]
    /// (EmoBox's JSONL keys wav, emo, speaker are read as they are). Repeatable.
    #[arg(long, value_name = "FILE")]
    manifest: Vec<PathBuf>,
    /// Rename, merge or drop raw labels: a JSON file of {"label": "class"} or a=b,c=d ("drop"
    /// as the class leaves a label out). Labels no corpus table, class name or map knows are refused.
    #[arg(long, value_name = "FILE.json|A=B,...")]
    label_map: Option<String>,
    /// Speech, song or both (RAVDESS names tell them apart; other corpora are speech).
    #[arg(long, value_parser = choice::<VocalFilter>(), default_value_t = VocalFilter::Both)]
    vocal: VocalFilter,
    /// Leave out an emotion (repeatable), e.g. --drop disgust.
    #[arg(long, value_parser = choice::<Emotion>())]
    drop: Vec<Emotion>,
}

impl DataFlags {
    fn selection(&self) -> Selection {
        Selection { vocal: self.vocal, drop: self.drop.clone() }
    }

    fn given(&self) -> bool {
        !self.data.is_empty() || !self.manifest.is_empty()
    }

    /// The sources and the selection, the label map parsed.
    fn data(&self) -> Result<corpus::Data> {
        let sources = self.data.iter().map(|d| Source::Folder(d.clone())).chain(self.manifest.iter().map(|m| Source::Manifest(m.clone()))).collect();
        let label_map = self.label_map.as_deref().map(LabelMap::parse).transpose()?.unwrap_or_default();
        Ok(corpus::Data { sources, selection: self.selection(), label_map })
    }
}

/// How a folder of clips becomes features: shared by `features`, `train --data` and
/// `eval --data`.
#[derive(Args, Clone, Debug)]
struct BuildFlags {
    /// Stop at the first file that cannot be decoded (default: skip it and list it at the end).
    #[arg(long)]
    strict: bool,
    /// Cache folder (default: $SER_CACHE, $XDG_CACHE_HOME/ser/features, ~/.cache/ser/features or %LOCALAPPDATA%\ser\features).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Do not read or write the feature cache.
    #[arg(long)]
    no_cache: bool,
    /// Augmentation: add a copy of every clip played at each of these speeds (comma-separated
    /// factors in [0.5, 2], e.g. 0.9,1.1: tempo and pitch move together, as in Kaldi's speed
    /// perturbation). Copies only ever train: splits are made over the original clips, and a
    /// copy joins the training part beside its source (never validation or test).
    #[arg(long, value_delimiter = ',')]
    speed_copies: Vec<f32>,
}

impl BuildFlags {
    fn options(&self) -> BuildOptions {
        BuildOptions {
            strict: self.strict,
            cache_dir: if self.no_cache { None } else { self.cache.clone().or_else(ser::runtime::feature_cache_from_env) },
            progress: true,
            speed_copies: self.speed_copies.clone(),
            shard: None,
            on_progress: Default::default(),
        }
    }
}

#[derive(Args)]
struct FeaturesArgs {
    #[command(flatten)]
    data: DataFlags,
    /// Feature file to write (safetensors).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    features: FeatureFlags,
    #[command(flatten)]
    build: BuildFlags,
    /// Print per-kernel GPU times.
    #[arg(long)]
    profile: bool,
    /// Build shard I of N (0-based) of the labelled clips: contiguous runs in the sources'
    /// order, joined by --merge into the unsharded file. Without the flag, taken from a Slurm
    /// array job or a Kubernetes Indexed Job, as `ser predict` does.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// The shard count for a Kubernetes Indexed Job (its completions).
    #[arg(long, value_name = "N", value_parser = ranged::<usize>(1, 1 << 20))]
    shard_count: Option<usize>,
    /// Join the parts --shard wrote (in shard order) into --out, byte for byte the unsharded
    /// file; no audio is read.
    #[arg(long, value_name = "PART", num_args = 1..)]
    merge: Vec<PathBuf>,
    #[command(flatten)]
    adapter: AdapterArgs,
}

/// `ser train`'s defaults: the library's, defined once in `RunConfig::default()`.
fn defaults() -> RunConfig {
    RunConfig::default()
}

#[derive(Args, Clone)]
struct TrainArgs {
    /// Labelled clips (features are computed, or taken from the cache): --data, --manifest.
    #[command(flatten)]
    data: DataFlags,
    /// A feature file written by `ser features` (instead of --data / --manifest).
    #[arg(long = "features", value_name = "FILE")]
    features_file: Option<PathBuf>,
    #[command(flatten)]
    features: FeatureFlags,
    #[command(flatten)]
    build: BuildFlags,
    /// Decoupled weight decay (AdamW), per unit of learning rate.
    #[arg(long, default_value_t = defaults().weight_decay, value_parser = non_negative_f32)]
    weight_decay: f32,
    /// Clip each step's gradients by their global norm (all tensors together, Keras's
    /// global_clipnorm) to at most this; 0 (the default) does not clip.
    #[arg(long, default_value_t = defaults().clip_norm, value_parser = non_negative_f32)]
    clip_norm: f32,
    /// Training-time augmentation: Gaussian noise of this standard deviation on the
    /// standardised inputs (each clip's valid frames), drawn on the GPU for every batch.
    #[arg(long, default_value_t = defaults().augment.noise, value_parser = non_negative_f32)]
    augment_noise: f32,
    /// Training-time augmentation: one run of up to this many frames per clip set to the
    /// training mean (SpecAugment's time mask).
    #[arg(long, default_value_t = defaults().augment.time_mask, value_parser = ranged::<u32>(0, 1 << 16))]
    time_mask: u32,
    /// Training-time augmentation: one run of up to this many features per clip set to the
    /// training mean (SpecAugment's feature mask).
    #[arg(long, default_value_t = defaults().augment.feature_mask, value_parser = ranged::<u32>(0, 1 << 16))]
    feature_mask: u32,
    /// What the model reads of each clip: a summary (time means; means and deviations; those and
    /// the distribution embedding) or the frame sequence.
    #[arg(long, value_parser = choice::<ser::dataset::Input>(), default_value_t = defaults().input)]
    input: ser::dataset::Input,
    /// How the loss weighs classes (balanced: rarer classes count more, as in the study).
    #[arg(long, value_parser = choice::<ClassWeights>(), default_value_t = defaults().class_weights)]
    class_weights: ClassWeights,
    /// Standardise each speaker's features with the statistics of that speaker's clips (every
    /// clip of the selected classes, test clips included, without their labels) before the
    /// model's scaler; the model then does the same when predicting, per speaker group
    /// (docs/results/history.md).
    #[arg(long)]
    speaker_norm: bool,
    #[command(flatten)]
    speaker: SpeakerFlags,
    /// How clips are held out for testing (default: random, or given when a manifest's rows
    /// carry a split column).
    #[arg(long, value_parser = choice::<Split>())]
    split: Option<Split>,
    /// Fraction of each class held out for testing (random split).
    #[arg(long, default_value_t = defaults().test_fraction, value_parser = open_fraction)]
    test_fraction: f64,
    /// RAVDESS actors held out for testing (--split speakers), e.g. 21,22.
    #[arg(long, value_delimiter = ',', default_values_t = defaults().test_actors)]
    test_actors: Vec<u8>,
    /// Speakers held out for testing (--split speakers), as the data names them (CREMA-D 1001,
    /// TESS OAF, a manifest's speaker column); instead of --test-actors.
    #[arg(long, value_delimiter = ',')]
    test_speakers: Vec<String>,
    /// Fraction of the training part used for validation (early stopping, LR schedule).
    #[arg(long, default_value_t = defaults().val_fraction, value_parser = open_fraction)]
    val_fraction: f64,
    /// Seed of the split, the initial weights, dropout and batch order (same seed, same numbers).
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Passes over the training clips (at most; early stopping may end sooner).
    #[arg(long, default_value_t = defaults().epochs, value_parser = ranged::<usize>(1, 100_000))]
    epochs: usize,
    /// Clips per gradient step.
    #[arg(long, default_value_t = defaults().batch_size, value_parser = ranged::<usize>(1, 1 << 16))]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = defaults().lr, value_parser = positive_f32)]
    lr: f32,
    /// Epochs without a better validation loss before stopping (best weights are restored).
    #[arg(long, default_value_t = defaults().patience)]
    patience: usize,
    /// Epochs without a better validation loss before the learning rate is halved.
    #[arg(long, default_value_t = defaults().lr_patience)]
    lr_patience: usize,
    /// Operand precision of the network's GEMMs while training: bf16 rounds them to bfloat16
    /// (sums, weights and optimiser state stay f32), about 1.3-1.5x faster GEMMs on lavapipe
    /// (docs/results/history.md); f16 to half precision (the tile kernels, on adapters with
    /// shader-f16). The model is tested and saved in f32 either way.
    #[arg(long, value_parser = choice::<Precision>(), default_value_t = defaults().precision)]
    precision: Precision,
    /// Models trained (same split, different seeds) and saved as one ensemble whose class
    /// probabilities are averaged.
    #[arg(long, default_value_t = defaults().ensemble, value_parser = ranged::<usize>(1, 64))]
    ensemble: usize,
    /// Speaker groups for --split speaker-folds (default EmoBox's rule: one speaker out at a
    /// time for 2-6 speakers, else a quarter of the speakers: 5 for RAVDESS's 22 actors).
    #[arg(long, value_parser = ranged::<usize>(2, 100_000))]
    folds: Option<usize>,
    /// With --split actor-folds: run only this fold (0 to --folds - 1), e.g. one per process.
    #[arg(long, value_name = "K")]
    fold: Option<usize>,
    /// After training with validation, train each model again from scratch on all training
    /// clips (validation included) with the learning-rate schedule validation chose, up to its
    /// best epoch.
    #[arg(long)]
    refit: bool,
    /// Continue training a model saved by `ser train` from its saved epoch (its weights and
    /// Adam's state), with the split, seed, input and options it was trained with, up to
    /// --epochs in total, on the same features. A fold's model (FILE.foldK, saved as
    /// --split actor-folds goes) continues that fold alone, saved again to --out's FILE.foldK.
    #[arg(long, value_name = "MODEL")]
    resume: Option<PathBuf>,
    /// Where to save the model. With --split actor-folds (where it is optional) each fold's
    /// model goes to FILE.foldK, to score alone or in an ensemble with `ser eval --held-out-fold K`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the rows the final fit sees and the test rows, scaled as the model reads them,
    /// to this safetensors file (x_train, y_train, x_test, y_test) for tools/peer/classical.py;
    /// with --split actor-folds, one file per fold (FILE.fold0, FILE.fold1, ...).
    #[arg(long, value_name = "FILE")]
    export_split: Option<PathBuf>,
    /// Print per-kernel GPU times at the end (each dispatch is timed on its own).
    #[arg(long)]
    profile: bool,
    /// Write each epoch of a network's training to this file as it ends, one JSON line each
    /// (member, epoch, loss, val_loss, val_accuracy, lr, samples_per_s), for plotting.
    #[arg(long, value_name = "FILE.jsonl")]
    log: Option<PathBuf>,
    #[command(flatten)]
    adapter: AdapterArgs,
    /// Last: its family groups set help headings for the flags after them.
    #[command(flatten)]
    model: cli::model_flags::ModelFlags,
}

impl TrainArgs {
    /// The run these flags ask for.
    fn config(&self) -> RunConfig {
        RunConfig {
            model: self.model.config(),
            input: self.input,
            class_weights: self.class_weights,
            split: self.split.unwrap_or(defaults().split),
            test_fraction: self.test_fraction,
            test_actors: self.test_actors.clone(),
            test_speakers: self.test_speakers.clone(),
            folds: self.folds.unwrap_or(defaults().folds),
            only_fold: self.fold,
            val_fraction: self.val_fraction,
            seed: self.seed,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            patience: self.patience,
            lr_patience: self.lr_patience,
            precision: self.precision,
            weight_decay: self.weight_decay,
            clip_norm: self.clip_norm,
            augment: ser::ops::dropout::Augment { noise: self.augment_noise, time_mask: self.time_mask, feature_mask: self.feature_mask },
            ensemble: self.ensemble,
            refit: self.refit,
            speaker_norm: self.speaker_norm.then(|| self.speaker.min_speaker_clips.unwrap_or(speaker::DEFAULT_MIN_CLIPS)),
            export_split: self.export_split.clone(),
        }
    }
}

#[derive(Args)]
struct CompareArgs {
    /// The models to train (each with train's flags for it; lstm and cnn-lstm read the frame
    /// sequences whatever --input says, the others --input).
    #[arg(long, value_parser = choice::<ModelKind>(), value_delimiter = ',', default_value = "cnn,mlp,krr,knn,svm,rf")]
    models: Vec<ModelKind>,
    /// Skip the cross-validation by speaker (the random split only).
    #[arg(long, alias = "no-speaker-folds")]
    no_actor_folds: bool,
    /// Another corpus (a folder in any layout) to score each random-split model on: trained on
    /// one corpus, heard on another. Repeatable; classes the models lack are left out.
    #[arg(long, value_name = "DIR")]
    test_data: Vec<PathBuf>,
    /// The same from a manifest (.csv, .tsv, .jsonl). Repeatable.
    #[arg(long, value_name = "FILE")]
    test_manifest: Vec<PathBuf>,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    json: bool,
    /// Last: its model flags set help headings for the flags after them.
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Args)]
struct CalibrateArgs {
    /// The network to calibrate (trained without --refit).
    #[arg(long)]
    model: PathBuf,
    /// The feature file it was trained on.
    #[arg(long)]
    features: PathBuf,
    /// Where to save the calibrated model (the same path as --model replaces it, atomically).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    speaker: SpeakerFlags,
    #[command(flatten)]
    adapter: AdapterArgs,
}

#[derive(Args)]
struct EnsembleArgs {
    /// A member (repeat it, two or more; an ensemble file given here adds its members).
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Where to save the ensemble.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    adapter: AdapterArgs,
}

#[derive(Args)]
struct InfoArgs {
    /// The model (default: the one shipped in weights/, built into the binary).
    model: Option<PathBuf>,
    /// Print one JSON object (each member's kind, data contract, training record and
    /// temperatures) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// The model (default: the one shipped in weights/, built into the binary). Repeat it to
    /// score an ensemble of models of any kinds and inputs (the same classes): their class
    /// probabilities are averaged.
    #[arg(long)]
    model: Vec<PathBuf>,
    /// Score only the clips `ser train --seed N` held out for testing (its stratified random
    /// split, with --test-fraction), e.g. to compare models trained on that split and their
    /// ensemble on the same test clips.
    #[arg(long, value_name = "N")]
    held_out_of_seed: Option<u64>,
    /// The test share of that split.
    #[arg(long, default_value_t = defaults().test_fraction, value_parser = open_fraction, requires = "held_out_of_seed")]
    test_fraction: f64,
    /// Score only the actors fold K of `ser train --split actor-folds` held out (with --folds),
    /// e.g. to compare models saved by that fold (`--out`) and their ensemble on actors none of
    /// them heard. A model saved by another fold is refused.
    #[arg(long, value_name = "K", conflicts_with = "held_out_of_seed")]
    held_out_fold: Option<usize>,
    /// Actor groups of that cross-validation.
    #[arg(long, default_value_t = defaults().folds, value_parser = ranged::<usize>(2, 24), requires = "held_out_fold")]
    folds: usize,
    /// Labelled clips of any corpus (features computed with the model's configuration): --data,
    /// --manifest, --label-map. Clips of classes the model lacks are counted and left out.
    #[command(flatten)]
    data: DataFlags,
    /// A feature file made with the model's feature configuration (instead of --data).
    #[arg(long)]
    features: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    build: BuildFlags,
    #[command(flatten)]
    speaker: SpeakerFlags,
    #[command(flatten)]
    adapter: AdapterArgs,
}


#[derive(Args)]
struct PredictArgs {
    /// Audio files and folders (searched at any depth for .wav and .flac).
    #[arg(required_unless_present = "files_from")]
    inputs: Vec<PathBuf>,
    /// More inputs, one path per line, from a file or `-` (standard input): for archives too
    /// large for a command line.
    #[arg(long, value_name = "LIST")]
    files_from: Option<String>,
    /// Predict shard I of N (0-based) of the sorted input: contiguous runs, so the shards'
    /// outputs concatenated in order are the unsharded output. Without the flag, taken from a
    /// Slurm array job (SLURM_ARRAY_TASK_ID and _COUNT or _MIN/_MAX) or a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX, with --shard-count or SER_SHARD_COUNT).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// The shard count for a Kubernetes Indexed Job (its completions).
    #[arg(long, value_name = "N", value_parser = ranged::<usize>(1, 1 << 20))]
    shard_count: Option<usize>,
    /// Predict on several adapters at once: `all`, or `ser devices` indices or names,
    /// comma-separated. One worker per adapter takes the next chunk of files as it finishes one;
    /// the output stays in input order.
    #[arg(long, value_name = "all|LIST")]
    adapters: Option<String>,
    /// Progress on stderr (files done, files/s, hours of audio per second, time left) even when
    /// stderr is not a terminal (it is shown on a terminal anyway).
    #[arg(long)]
    progress: bool,
    /// Write results to this file as they arrive instead of stdout; a rerun after a kill skips
    /// the files it already holds (and drops a torn last line), ending with the file an
    /// uninterrupted run writes.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The model (default: the one shipped in weights/, built into the binary).
    #[arg(long)]
    model: Option<PathBuf>,
    /// One JSON object per line (probabilities by class name), or CSV with a header row
    /// (probability columns in the JSON keys' order: class names sorted).
    #[arg(long, value_parser = choice::<ser::infer::archive::OutputFormat>(), default_value_t = ser::infer::archive::OutputFormat::Jsonl)]
    format: ser::infer::archive::OutputFormat,
    /// Files decoded and predicted together (a chunk also closes after 2^26 decoded samples,
    /// 70 minutes at 16 kHz). Memory grows with it, not with the number of files (a
    /// speaker-normalised model also keeps every clip's statistics until the end).
    #[arg(long, default_value_t = ser::infer::PredictOptions::default().files_per_chunk, value_parser = ranged::<usize>(1, 1 << 20))]
    chunk: usize,
    /// Cut every file into segments of this many seconds and predict each (a line per segment
    /// with its start and end): for recordings longer than a clip. A last segment shorter than
    /// half of one is left out, unless the file is shorter than one segment.
    #[arg(long, value_name = "SECONDS", value_parser = positive_f64)]
    segment: Option<f64>,
    /// Seconds from one segment's start to the next (default: --segment, no overlap).
    #[arg(long, value_name = "SECONDS", requires = "segment", value_parser = positive_f64)]
    segment_hop: Option<f64>,
    #[command(flatten)]
    speaker: SpeakerFlags,
    #[command(flatten)]
    adapter: AdapterArgs,
}

#[derive(Args)]
struct SelftestArgs {
    #[command(flatten)]
    adapter: AdapterArgs,
    /// Run on every adapter present instead of one.
    #[arg(long)]
    all_adapters: bool,
    /// A few shapes per check instead of all of them.
    #[arg(long)]
    quick: bool,
    /// Only these checks or families (names as in the table), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seed of the random inputs (default: a fresh one, printed, so a failure can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON line per check instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// GEMM GFLOP/s by kernel shape, size and adapter (timestamp queries where available).
    Gemm {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Run on every adapter present instead of one.
        #[arg(long)]
        all_adapters: bool,
        /// Sizes as MxNxK or S (square); default: squares 128-1024 and CNN layer shapes.
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<String>,
        /// Kernel shapes to try (default: all).
        #[arg(long, value_parser = choice::<GemmKernel>(), value_delimiter = ',')]
        kernels: Vec<GemmKernel>,
        /// Operand precisions to try (bf16 runs on the packed kernels, f16 on the tile family where the adapter has shader-f16).
        #[arg(long, value_parser = choice::<Precision>(), value_delimiter = ',', default_value = "f32")]
        precision: Vec<Precision>,
        /// Timed repeats per cell (median reported).
        #[arg(long, default_value_t = 7, value_parser = ranged::<usize>(1, 1000))]
        repeats: usize,
        /// Untimed runs before timing.
        #[arg(long, default_value_t = 2, value_parser = ranged::<usize>(0, 1000))]
        warmup: usize,
        /// Smaller default sizes.
        #[arg(long)]
        quick: bool,
        /// Print JSON lines instead of a markdown table.
        #[arg(long)]
        json: bool,
    },
    /// Feature extraction on synthetic clips: clips/s and every kernel's time, per adapter.
    Features {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Run on every adapter present instead of one.
        #[arg(long)]
        all_adapters: bool,
        #[command(flatten)]
        features: FeatureFlags,
        /// Synthetic clips (tones, a chirp and noise) per run.
        #[arg(long, default_value_t = 256, value_parser = ranged::<usize>(1, 100_000))]
        clips: usize,
        /// Mean clip length in seconds (RAVDESS clips average 4.1 s).
        #[arg(long, default_value_t = 4.0, value_parser = positive_f64)]
        seconds: f64,
        /// Timed runs (median reported) after one untimed run; then one profiled run.
        #[arg(long, default_value_t = 3, value_parser = ranged::<usize>(1, 1000))]
        repeats: usize,
        /// Print one JSON line per adapter instead of a markdown table.
        #[arg(long)]
        json: bool,
    },
    /// Training throughput on synthetic data: samples/s per epoch and every layer's time and
    /// GEMM GFLOP/s, per adapter and precision.
    Train {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Run on every adapter present instead of one.
        #[arg(long)]
        all_adapters: bool,
        #[arg(long, value_parser = choice::<bench::TrainBenchModel>(), default_value_t = bench::TrainBenchModel::Cnn)]
        model: bench::TrainBenchModel,
        /// Examples per epoch (1486: the training part of a RAVDESS random split).
        #[arg(long, default_value_t = 1486, value_parser = ranged::<usize>(1, 1 << 24))]
        samples: usize,
        /// Examples per gradient step.
        #[arg(long, default_value_t = 32, value_parser = ranged::<usize>(1, 1 << 16))]
        batch_size: usize,
        /// GEMM operand precisions to measure.
        #[arg(long, value_parser = choice::<Precision>(), value_delimiter = ',', default_value = "f32,bf16")]
        precision: Vec<Precision>,
        /// Timed epochs (median reported) after one untimed epoch; then one profiled epoch. One
        /// epoch alone is noisy here (bf16 came out slower than f32 once, faster over three).
        #[arg(long, default_value_t = 3, value_parser = ranged::<usize>(1, 1000))]
        epochs: usize,
        /// Print one JSON line per run instead of a markdown table.
        #[arg(long)]
        json: bool,
    },
}

/// What a benchmark prints as each result comes in: a JSON line on stdout with --json, else a
/// progress line on stderr (the table follows on stdout at the end).
fn bench_progress<R: serde::Serialize>(json: bool, line: impl Fn(&R) -> String + Copy) -> impl Fn(&R) + Copy {
    move |r| {
        if json {
            println!("{}", serde_json::to_string(r).expect("benchmark results serialise"));
        } else {
            eprintln!("{}", line(r));
        }
    }
}

/// The adapters a benchmark runs on: the selected one, or every adapter present.
fn bench_adapters(adapter: &AdapterArgs, all_adapters: bool) -> Result<Vec<AdapterSelector>> {
    let selectors: Vec<AdapterSelector> = if all_adapters {
        gpu::list_adapters().into_iter().map(|a| AdapterSelector { name: Some(a.name), backend: BackendChoice::parse(&a.backend) }).collect()
    } else {
        vec![adapter.selector()?]
    };
    if selectors.is_empty() {
        anyhow::bail!("no GPU adapter found. {}", gpu::NO_ADAPTER_HELP);
    }
    Ok(selectors)
}

/// Exit statuses: 0 everything was done; 1 an error, or nothing was done; 2 a usage error (clap);
/// 3 done in part: some inputs were skipped (each listed on stderr with its reason).
const EXIT_PARTIAL: i32 = 3;

/// The run finished, but some inputs were skipped: `main` exits with [`EXIT_PARTIAL`].
#[derive(Debug)]
struct Partial(String);

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Partial {}

fn main() {
    // SAFETY: nothing else runs yet.
    unsafe { gpu::quiet_device_select_layer() };
    // Output piped into `head` or a closed reader ends the process quietly, as with any Unix
    // tool, instead of a panic on the next line printed. SAFETY: restores the default action.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if let Some(p) = e.downcast_ref::<Partial>() {
            eprintln!("{p}");
            std::process::exit(EXIT_PARTIAL);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    SETTINGS.set(Settings::from_env()?).expect("read once");
    match cli.command {
        Command::Devices { json } => devices(json),
        Command::Features(args) => features(args),
        Command::Train(args) => train(args),
        Command::Compare(args) => compare(args),
        Command::Eval(args) => eval(args),
        Command::Calibrate(args) => calibrate(args),
        Command::Ensemble(args) => ensemble(args),
        Command::Predict(args) => predict(args),
        Command::Info(args) => info(args),
        Command::Selftest(args) => selftest(args),
        Command::Bench { what: BenchCommand::Gemm { adapter, all_adapters, sizes, kernels, precision, repeats, warmup, quick, json } } => {
            let shapes = if sizes.is_empty() {
                GemmShape::defaults(quick)
            } else {
                sizes.iter().map(|s| GemmShape::parse(s)).collect::<Result<_>>()?
            };
            let kernels = if kernels.is_empty() { std::iter::once(GemmKernel::Auto).chain(GemmKernel::ALL).collect() } else { kernels };
            let selectors = bench_adapters(&adapter, all_adapters)?;
            let cfg = GemmBenchConfig { shapes, kernels, precisions: precision, warmup, repeats, budget_s: 3.0 };
            let results = bench::gemm_all(
                &selectors,
                settings(),
                &cfg,
                bench_progress(json, |r: &bench::GemmResult| {
                    format!(
                        "{:<28} {:<8} {:>5}x{:<5}x{:<5} {:>9.3} ms {:>8.2} GFLOP/s",
                        r.adapter,
                        format!("{:?}/{:?}", r.kernel, r.precision),
                        r.shape.m,
                        r.shape.n,
                        r.shape.k,
                        r.median_ms,
                        r.gflops
                    )
                }),
            )?;
            if !json {
                println!("{}", bench::gemm_table(&results));
            }
            Ok(())
        }
        Command::Bench { what: BenchCommand::Train { adapter, all_adapters, model, samples, batch_size, precision, epochs, json } } => {
            let cfg = bench::TrainBenchConfig { model, samples, batch_size, precisions: precision, epochs };
            let results = bench::train_all(
                &bench_adapters(&adapter, all_adapters)?,
                settings(),
                &cfg,
                bench_progress(json, |r: &bench::TrainBenchResult| format!("{:<40} {:<4?} {:>8.2} s/epoch {:>8.0} samples/s", r.adapter, r.precision, r.epoch_s, r.samples_per_s)),
            )?;
            if !json {
                println!("{}", bench::train_table(&results));
            }
            Ok(())
        }
        Command::Bench { what: BenchCommand::Features { adapter, all_adapters, features, clips, seconds, repeats, json } } => {
            if clips == 0 || !seconds.is_finite() || seconds <= 0.0 {
                anyhow::bail!("--clips and --seconds must be positive");
            }
            let cfg = bench::FeatureBenchConfig { features: features.config()?, clips, seconds, repeats };
            let results = bench::features_all(
                &bench_adapters(&adapter, all_adapters)?,
                settings(),
                &cfg,
                bench_progress(json, |r: &bench::FeatureBenchResult| format!("{:<40} {:>8.2} s {:>8.1} clips/s {:>6.0}x real time", r.adapter, r.median_s, r.clips_per_s, r.times_real_time)),
            )?;
            if !json {
                println!("{}", bench::features_table(&results));
            }
            Ok(())
        }
    }
}

fn features(args: FeaturesArgs) -> Result<()> {
    let cfg = args.features.config()?;
    ser::store::check_output_path(&args.out, "--out")?;
    if !args.merge.is_empty() {
        if args.data.given() || args.shard.is_some() {
            anyhow::bail!("--merge joins parts already made: give it without --data, --manifest or --shard");
        }
        let set = corpus::merge(&args.merge)?;
        set.write(&args.out)?;
        eprintln!("{}: {} clips from {} parts", args.out.display(), set.clips.len(), args.merge.len());
        return Ok(());
    }
    let shard = match &args.shard {
        Some(text) => Some((ser::shard::Shard::parse(text)?, "--shard".to_string())),
        None => ser::shard::Shard::from_env(args.shard_count, |k| std::env::var(k).ok())?,
    };
    if let Some((s, from)) = &shard {
        eprintln!("shard {}/{} (from {from})", s.index, s.count);
    }
    let gpu = args.adapter.open()?;
    gpu.set_profiling(args.profile);
    let options = BuildOptions { shard: shard.map(|(s, _)| s), ..args.build.options() };
    let (set, report) = corpus::build(&gpu, &args.data.data()?, &cfg, &options)?;
    set.write(&args.out)?;
    let copies = set.speed_copies();
    eprintln!(
        "{}: {} clips{} x {} frames (max) x {} features on {}{}",
        args.out.display(),
        set.clips.len(),
        if copies > 0 { format!(" ({} and {copies} speed copies)", set.clips.len() - copies) } else { String::new() },
        set.t_max,
        set.dim,
        gpu.label(),
        if report.cache_hit { " (from the cache)" } else { "" }
    );
    if !report.cache_hit {
        eprintln!(
            "{:.1} s of audio in {:.2} s: {:.0} clips/s, {:.0}x real time (read {:.2} s, decode {:.2} s, GPU {:.2} s)",
            report.audio_seconds,
            report.total_s,
            report.clips as f64 / report.total_s,
            report.audio_seconds / report.total_s,
            report.read_s,
            report.decode_s,
            report.gpu_s
        );
    }
    report_unused(&report, "by --vocal/--drop");
    if args.profile {
        eprintln!("{}", gpu.profile().table());
    }
    if !report.skipped.is_empty() {
        return Err(Partial(format!("{} clips written, {} files skipped (listed above); exit status {EXIT_PARTIAL}", set.clips.len(), report.skipped.len())).into());
    }
    Ok(())
}

/// Says which layout each source was read as, then lists every file a build did not use, and
/// why: clips of classes left out (`filtered_why` says by what), files the layout's names do not
/// cover, files that could not be used.
fn report_unused(report: &corpus::BuildReport, filtered_why: &str) {
    for line in &report.layouts {
        eprintln!("{line}");
    }
    if report.filtered_out > 0 {
        eprintln!("{} labelled clips left out {filtered_why}", report.filtered_out);
    }
    if !report.unmatched.is_empty() {
        eprintln!("{} audio files that follow none of the layout's names were not used:", report.unmatched.len());
        for (path, why) in &report.unmatched {
            eprintln!("  {path}: {why}");
        }
    }
    if !report.unverified.is_empty() {
        eprintln!("{} FLAC files carry no MD5 signature, so their audio could not be verified (used as decoded):", report.unverified.len());
        for path in &report.unverified {
            eprintln!("  {path}");
        }
    }
    if !report.skipped.is_empty() {
        eprintln!("{} files skipped:", report.skipped.len());
        for (path, why) in &report.skipped {
            eprintln!("  {}", skip_line(path, why));
        }
    }
}

/// "path: reason", the path once (errors about a file usually start with its path already).
fn skip_line(path: &str, why: &str) -> String {
    let why = why.strip_prefix(path).and_then(|w| w.strip_prefix(": ")).unwrap_or(why);
    format!("{path}: {why}")
}

fn train(args: TrainArgs) -> Result<()> {
    let mut cfg = args.config();
    // The output is checked before any work, so that an unwritable path wastes nothing.
    match &args.out {
        Some(out) => ser::store::check_output_path(out, "--out")?,
        None if cfg.split != Split::ActorFolds => anyhow::bail!("give --out FILE for the trained model"),
        None => {}
    }
    let gpu = args.adapter.open()?;
    let resume = match &args.resume {
        Some(path) => {
            // The model's own configuration, continued up to these --epochs.
            let (predictor, was) = experiment::resume(&gpu, path)?;
            eprintln!(
                "resuming {} at epoch {} (learning rate {:.2e})",
                path.display(),
                predictor.meta.training.saved_epoch.unwrap_or(0),
                predictor.classifier.networks().map_or(0.0, |m| m[0].adam.lr)
            );
            cfg = RunConfig { epochs: cfg.epochs, export_split: cfg.export_split.clone(), ..was };
            Some(predictor)
        }
        None => None,
    };
    let (set, l) = training_data(&gpu, &args, &mut cfg)?;
    gpu.set_profiling(args.profile);
    let log = |line: &str| eprintln!("{line}");
    // Each epoch's row is written and flushed as it ends, so a plot can follow a long run.
    let epoch_log = match &args.log {
        Some(path) => Some(std::sync::Mutex::new(std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("--log {}", path.display()))?))),
        None => None,
    };
    let write_epoch = |e: &experiment::EpochEvent| {
        if let Some(file) = &epoch_log {
            use std::io::Write;
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(err) = serde_json::to_string(e).map_err(std::io::Error::other).and_then(|line| writeln!(f, "{line}")).and_then(|()| f.flush()) {
                eprintln!("warning: --log: {err}");
            }
        }
        Ok(())
    };
    let run = Run { gpu: &gpu, cfg: &cfg, set: &set, labelled: &l, log: &log, on_epoch: Some(&write_epoch) };
    match experiment::train_and_save(&run, args.out.as_deref(), resume)? {
        experiment::Trained::Folds(folds) => {
            let experiment::FoldSummary { accuracy: (am, asd), macro_f1: (fm, fsd), uar: (um, usd) } = experiment::FoldScore::summary(&folds);
            match cfg.only_fold {
                Some(k) => println!("{}", folds[0].line(k)),
                None => {
                    for (i, f) in folds.iter().enumerate() {
                        println!("{}", f.line(i));
                    }
                    println!("{}-fold by speaker: accuracy {am:.4} ± {asd:.4}, macro F1 {fm:.4} ± {fsd:.4}, UAR {um:.4} ± {usd:.4}", cfg.folds);
                }
            }
        }
        experiment::Trained::Model { report, saved, .. } => match report {
            Some(r) => {
                println!("{}", r.text());
                eprintln!("saved {} (test accuracy {:.4}, macro F1 {:.4})", saved.display(), r.accuracy, r.macro_avg.f1);
            }
            None => eprintln!("saved {} (no test split)", saved.display()),
        },
    }
    if args.profile {
        let profile = gpu.profile();
        eprintln!("{}\n{}", profile.scope_table(), profile.table());
    }
    Ok(())
}

/// The labelled feature set `train` and `compare` work on: read from --features or built from
/// --data, with the selection the flags ask for and the speaker normalisation the run does.
/// Resolves the number of folds by speaker from the data when --folds was not given.
fn training_data(gpu: &ser::gpu::Gpu, args: &TrainArgs, cfg: &mut RunConfig) -> Result<(ser::features::set::FeatureSet, ser::dataset::Labelled)> {
    let selection = args.data.selection();
    let set = match (&args.features_file, args.data.given()) {
        (Some(_), true) => anyhow::bail!("give --features FILE or --data/--manifest, not both"),
        (Some(f), false) => {
            let set = ser::features::set::FeatureSet::read(f)?;
            ser::dataset::check_features_for(cfg.input, &set.config).with_context(|| format!("--features {}", f.display()))?;
            set
        }
        (None, true) => {
            let config = args.features.config()?;
            ser::dataset::check_features_for(cfg.input, &config)?;
            let (set, report) = corpus::build(gpu, &args.data.data()?, &config, &args.build.options())?;
            report_unused(&report, "by --vocal/--drop or the label map");
            set
        }
        (None, false) => anyhow::bail!("give --data DIR, --manifest FILE or --features FILE"),
    };
    if cfg.speaker_norm.is_none() && args.speaker.given() {
        anyhow::bail!("--speaker-groups / --min-speaker-clips need --speaker-norm");
    }
    let (set, l) = experiment::labelled_for_run(gpu, set, &selection, cfg, args.speaker.groups())?;
    if args.split.is_none() && args.resume.is_none() && l.given.iter().any(Option::is_some) {
        cfg.split = Split::Given;
    }
    if args.folds.is_none() && args.resume.is_none() {
        let speakers = l.speakers.iter().flatten().collect::<std::collections::BTreeSet<_>>().len();
        cfg.folds = ser::dataset::default_folds(speakers).unwrap_or(cfg.folds);
    }
    Ok((set, l))
}

fn info(args: InfoArgs) -> Result<()> {
    let info = ser::infer::describe(args.model.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        print!("{}", info_text(&info));
    }
    Ok(())
}

/// `ser info`'s text: what the members share first, then each member's training.
fn info_text(info: &ser::infer::ModelInfo) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let kinds: Vec<&str> = info.members.iter().map(|m| m.kind.as_str()).collect();
    match kinds.as_slice() {
        [one] => writeln!(out, "{}: a {one} model", info.path),
        many => writeln!(out, "{}: an ensemble of {} models ({}), their probabilities averaged", info.path, many.len(), many.join(", ")),
    }
    .unwrap();
    let c = &info.members[0].contract;
    let classes: Vec<String> = c.classes.iter().map(|e| e.to_string()).collect();
    writeln!(out, "classes: {} ({})", classes.join(", "), classes.len()).unwrap();
    let f = &c.features;
    let blocks: Vec<String> = f.set.iter().map(|b| b.name()).collect();
    writeln!(out, "features: {} ({} columns) at {} Hz, n_fft {}, hop {}", blocks.join(", "), f.dim(), f.sample_rate, f.n_fft, f.hop).unwrap();
    let inputs: Vec<&str> = info.members.iter().map(|m| m.contract.input.name()).collect();
    writeln!(out, "input: {}", inputs.join(", ")).unwrap();
    match &c.speaker_norm {
        Some(sn) => writeln!(out, "speaker normalisation: each speaker's clips standardised by their own statistics (at least {} clips a speaker)", sn.min_clips),
        None => writeln!(out, "speaker normalisation: none (each clip alone)"),
    }
    .unwrap();
    let corpora: Vec<String> = c.corpora.iter().map(|(name, seen)| format!("{name} ({} clips, {} speakers)", seen.clips, seen.speakers)).collect();
    writeln!(out, "corpora: {}", if corpora.is_empty() { "not recorded".to_string() } else { corpora.join(", ") }).unwrap();
    for (k, m) in info.members.iter().enumerate() {
        let t = &m.training;
        let mut line = format!("member {} ({}):", k + 1, m.kind);
        if let Some(model) = &t.model {
            write!(line, " --model {model}").unwrap();
        }
        // The split as `--split` spells it (from the run's configuration; older records: as stored).
        let run: Option<RunConfig> = t.run.clone().and_then(|r| serde_json::from_value(r).ok());
        if let Some(split) = run.map(|r| r.split.name().to_string()).or_else(|| t.split.clone()) {
            write!(line, ", --split {split}").unwrap();
        }
        if let Some(origin) = t.actor_fold() {
            write!(line, " (fold {} of {})", origin.fold.map_or("all".into(), |f| f.to_string()), origin.folds.map_or("?".into(), |f| f.to_string())).unwrap();
        }
        if let Some(seed) = t.seed {
            write!(line, ", --seed {seed}").unwrap();
        }
        if let (Some(tr), Some(val), Some(te)) = (t.train_clips, t.validation_clips, t.test_clips) {
            write!(line, "; clips: {tr} training, {val} validation, {te} test").unwrap();
        }
        if let Some(epoch) = t.saved_epoch {
            write!(line, "; weights of epoch {epoch}{}", if t.partial == Some(true) { " (training still running)" } else { "" }).unwrap();
        }
        writeln!(out, "{line}").unwrap();
        if let (Some(acc), Some(f1)) = (t.test_accuracy, t.test_macro_f1) {
            writeln!(out, "  test accuracy {acc:.4}, macro F1 {f1:.4}").unwrap();
        }
        if let Some(adapter) = &t.adapter {
            writeln!(out, "  trained on {adapter}").unwrap();
        }
    }
    out
}

fn calibrate(args: CalibrateArgs) -> Result<()> {
    ser::store::check_output_path(&args.out, "--out")?;
    let gpu = args.adapter.open()?;
    let mut model = ser::infer::load_model(&gpu, Some(&args.model))?;
    args.speaker.check_model(&model.meta)?;
    let set = ser::features::set::FeatureSet::read(&args.features)?;
    let fits = experiment::calibrate_saved(&gpu, &mut model, &set, args.speaker.groups(), args.speaker.min_speaker_clips).with_context(|| format!("--model {}", args.model.display()))?;
    let clips = model.meta.training.validation_clips.unwrap_or(0);
    eprintln!("{}", experiment::calibration_line(&fits, clips));
    model.meta.training.calibration = Some(fits);
    ser::infer::save(&gpu, &model, &args.out)?;
    eprintln!("saved {}", args.out.display());
    Ok(())
}

fn ensemble(args: EnsembleArgs) -> Result<()> {
    ser::store::check_output_path(&args.out, "--out")?;
    let gpu = args.adapter.open()?;
    let models = args.model.iter().map(|m| ser::infer::load_model(&gpu, Some(m))).collect::<Result<Vec<_>>>()?;
    let p = ser::infer::ensemble::join(models).context("--model")?;
    ser::infer::save(&gpu, &p, &args.out)?;
    let kinds: Vec<String> = p.members().map(|m| format!("{} ({})", m.classifier.family().kind, m.meta.data.input.name())).collect();
    eprintln!("saved {}: an ensemble of {}", args.out.display(), kinds.join(", "));
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    // Refused before any device or model is opened.
    if !args.build.speed_copies.is_empty() {
        anyhow::bail!("--speed-copies: augmented copies only ever train; ser eval scores the original clips (leave the flag out)");
    }
    let gpu = args.adapter.open()?;
    let models: Vec<ser::infer::Predictor> = match args.model.as_slice() {
        [] => vec![ser::infer::load_model(&gpu, None)?],
        paths => paths.iter().map(|m| ser::infer::load_model(&gpu, Some(m))).collect::<Result<_>>()?,
    };
    let p = &models[0];
    // Before any features are computed, naming the file.
    if let Some(i) = ser::infer::ensemble_mismatch(&models) {
        anyhow::bail!("--model {}: its classes or feature configuration differ from the first model's; an ensemble needs the same", args.model[i].display());
    }
    for m in &models {
        args.speaker.check_model(&m.meta)?;
    }
    let mut skipped = 0;
    let set = match (&args.features, args.data.given()) {
        (Some(_), true) => anyhow::bail!("give --features FILE or --data/--manifest, not both"),
        (Some(f), false) => ser::features::set::FeatureSet::read(f)?,
        (None, true) => {
            let (set, report) = corpus::build(&gpu, &args.data.data()?, &p.meta.data.features, &args.build.options())?;
            report_unused(&report, "by --vocal/--drop or the label map");
            skipped = report.skipped.len();
            set
        }
        (None, false) => anyhow::bail!("give --data DIR, --manifest FILE or --features FILE"),
    };
    let options = ser::infer::EvalOptions {
        held_out_of_seed: args.held_out_of_seed.map(|seed| (seed, args.test_fraction)),
        held_out_fold: args.held_out_fold.map(|fold| (fold, args.folds)),
        groups: args.speaker.groups(),
        min_clips: args.speaker.min_speaker_clips,
    };
    let ev = ser::infer::evaluate(&gpu, &models, &set, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ev.report)?);
    } else {
        println!("{}", ev.report.text());
    }
    if ev.other_classes > 0 {
        let listed: Vec<String> = ev.other_by_class.iter().map(|(class, n)| format!("{class} {n}")).collect();
        eprintln!("{} clips with emotions the model does not know were left out ({})", ev.other_classes, listed.join(", "));
    }
    if ev.speed_copies > 0 {
        eprintln!("{} augmented copies (--speed-copies) were left out: they only train", ev.speed_copies);
    }
    let members: usize = models.iter().map(|m| m.members().count()).sum();
    eprintln!("scored {} clips{}", ev.clips.len(), if members > 1 { format!(" with {members} models' averaged probabilities") } else { String::new() });
    if skipped > 0 {
        return Err(Partial(format!("{skipped} files could not be used (listed above); exit status {EXIT_PARTIAL}")).into());
    }
    Ok(())
}

fn predict(args: PredictArgs) -> Result<()> {
    use ser::infer::archive::{self, ArchiveRun, Shard, Workers};
    // The input: files and folders on the command line, then a list (one path per line).
    let mut files = if args.inputs.is_empty() { Vec::new() } else { ser::infer::collect_files(&args.inputs)? };
    if let Some(list) = &args.files_from {
        files.extend(archive::read_file_list(list)?);
    }
    if files.is_empty() {
        anyhow::bail!("no audio files to predict (give files, folders or --files-from LIST)");
    }
    let shard = match &args.shard {
        Some(text) => Some((Shard::parse(text)?, "--shard".to_string())),
        None => Shard::from_env(args.shard_count, |k| std::env::var(k).ok())?,
    };
    let selectors = args.adapters.as_deref().map(archive::adapters_named).transpose()?;
    // Several adapters: each worker opens its own device and model; here only the metadata.
    let local = match &selectors {
        Some(_) => None,
        None => {
            let gpu = args.adapter.open()?;
            let p = ser::infer::load_model(&gpu, args.model.as_deref())?;
            Some((gpu, p))
        }
    };
    let meta = match &local {
        Some((_, p)) => p.meta.clone(),
        None => ser::infer::load_meta(args.model.as_deref())?,
    };
    args.speaker.check_model(&meta)?;
    let workers = match (&selectors, &local) {
        (Some(w), _) => {
            eprintln!("predicting on {} adapters: {}", w.len(), w.iter().map(|s| format!("{} ({:?})", s.name.as_deref().unwrap_or("?"), s.backend)).collect::<Vec<_>>().join(", "));
            Workers::Adapters(w, settings(), args.model.as_deref())
        }
        (None, Some((gpu, p))) => Workers::Local(gpu, p),
        (None, None) => unreachable!("a local model without --adapters"),
    };
    let segments = args.segment.map(|length| ser::infer::Segments { length, hop: args.segment_hop.unwrap_or(length) });
    let options = ser::infer::PredictOptions { groups: args.speaker.groups(), min_clips: args.speaker.min_speaker_clips, files_per_chunk: args.chunk, segments, ..Default::default() };
    let run = ArchiveRun { files, shard, format: args.format, out: args.out.as_deref(), options: &options };
    let mut progress = Progress::new(args.progress || std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let report = archive::predict_archive(workers, &meta, run, &mut |line| println!("{line}"), &mut progress, &|m| eprintln!("{m}"))?;
    progress.finish();
    for (adapter, blocks) in &report.workers {
        eprintln!("{adapter}: {blocks} blocks of up to {} files", options.files_per_chunk);
    }
    for (f, why) in &report.failed {
        eprintln!("skipped {}", skip_line(f, why));
    }
    if report.files == 0 {
        return Ok(());
    }
    if report.predicted == 0 {
        anyhow::bail!("no file was predicted: all {} were refused (listed above)", report.failed.len());
    }
    if !report.failed.is_empty() {
        return Err(Partial(format!("{} of {} files predicted, {} skipped (listed above); exit status {EXIT_PARTIAL}", report.files - report.failed.len(), report.files, report.failed.len())).into());
    }
    Ok(())
}

/// Progress of a long prediction run on stderr, at most every two seconds.
struct Progress {
    total: usize,
    files: usize,
    last_file: String,
    audio_s: f64,
    start: std::time::Instant,
    shown: std::time::Instant,
    on: bool,
}

impl Progress {
    fn new(on: bool) -> Progress {
        let now = std::time::Instant::now();
        Progress { total: 0, files: 0, last_file: String::new(), audio_s: 0.0, start: now, shown: now, on }
    }

    fn print(&self) {
        let t = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.files as f64 / t;
        let left = self.total.saturating_sub(self.files) as f64 / rate.max(1e-9);
        eprintln!(
            "progress: {}/{} files, {rate:.1} files/s, {:.2} h of audio per second, about {:.0} s left",
            self.files,
            self.total,
            self.audio_s / 3600.0 / t,
            left
        );
    }

    fn finish(&self) {
        if self.on && self.files > 0 {
            self.print();
        }
    }
}

impl ser::infer::archive::Progress for Progress {
    fn planned(&mut self, files: usize) {
        self.total = files;
    }

    /// A prediction (segments of one file count once) covering its seconds of audio.
    fn saw(&mut self, pr: &ser::infer::Prediction) {
        if pr.file != self.last_file {
            self.files += 1;
            self.last_file = pr.file.clone();
        }
        self.audio_s += pr.seconds;
        if self.on && self.shown.elapsed().as_secs_f64() >= 2.0 {
            self.shown = std::time::Instant::now();
            self.print();
        }
    }
}

/// Runs the checks on each selected adapter; fails (exit 1) when any check failed anywhere.
fn selftest(args: SelftestArgs) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    let checks = ser::selftest::checks();
    let known: Vec<&str> = checks.iter().flat_map(|c| [c.name, c.family]).collect();
    if let Some(bad) = args.only.iter().find(|o| !known.contains(&o.as_str())) {
        let mut families: Vec<&str> = Vec::new();
        for c in &checks {
            if !families.contains(&c.family) {
                families.push(c.family);
            }
        }
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        anyhow::bail!("--only {bad:?}: no such check or family (checks: {}; families: {})", names.join(", "), families.join(", "));
    }
    let size = if args.quick { ser::selftest::Size::Quick } else { ser::selftest::Size::Full };
    let mut failed = 0;
    for selector in bench_adapters(&args.adapter, args.all_adapters)? {
        let gpu = ser::runtime::open(&selector, settings())?;
        if !args.json {
            eprintln!("selftest on {} (seed {seed})", gpu.label());
        }
        let adapter = gpu.label();
        let results = ser::selftest::run(&gpu, &args.only, seed, size, |r| {
            if args.json {
                let mut v = serde_json::to_value(r).expect("check results serialise");
                v["adapter"] = adapter.clone().into();
                println!("{v}");
            } else {
                eprintln!("  {:<24} {} ({:.2} s)", r.name, if r.passed { "pass" } else { "FAIL" }, r.seconds);
            }
        });
        failed += results.iter().filter(|r| !r.passed).count();
        if !args.json {
            println!("{}", ser::selftest::table(&adapter, &results));
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}

fn devices(json: bool) -> Result<()> {
    let adapters = gpu::list_adapters();
    if adapters.is_empty() {
        anyhow::bail!("no GPU adapter found. {}", gpu::NO_ADAPTER_HELP);
    }
    let file = settings().tuning.file.clone();
    let tuned = |a: &gpu::AdapterReport| file.as_ref().map(|f| ser::ops::autotune::stored_choices_in(f, &ser::ops::autotune::key_of(a))).unwrap_or_default();
    if json {
        let mut list = Vec::new();
        for a in &adapters {
            let mut v = serde_json::to_value(a)?;
            let choices: std::collections::BTreeMap<String, String> = tuned(a).into_iter().map(|(b, c)| (b, c.kernel)).collect();
            v["gemm_tuned"] = serde_json::to_value(choices)?;
            list.push(v);
        }
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for a in &adapters {
        println!("[{}] {} ({}, {})", a.index, a.name, a.backend, a.device_type);
        println!("    driver:      {} {}", a.driver, a.driver_info);
        println!("    subgroup:    {}..{}", a.subgroup_size.0, a.subgroup_size.1);
        println!("    features:    {}", if a.features.is_empty() { "none of timestamp-query, shader-f16, subgroup".into() } else { a.features.join(", ") });
        if !a.cooperative_matrix.is_empty() {
            println!("    coop matrix: {}", a.cooperative_matrix.join(", "));
        }
        let l = &a.limits;
        println!(
            "    limits:      buffer {} MiB, storage binding {} MiB, {} storage buffers/stage, {} workgroups/dim, {} invocations/workgroup, {} B workgroup memory",
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size
        );
        let choices = tuned(a);
        if choices.is_empty() {
            println!("    gemm tuned:  nothing yet (the first multiplies on this adapter are timed; SER_AUTOTUNE=off skips)");
        } else {
            println!("    gemm tuned:  {} shape buckets in {}", choices.len(), file.as_ref().map_or("-".into(), |f| f.display().to_string()));
            for (bucket, c) in choices {
                println!("      {bucket:<40} {}", c.kernel);
            }
        }
    }
    Ok(())
}

// ---- value parsers: a bad flag is refused by clap, which names it, with the accepted range ----

/// A value of one of the library's named choices: its names listed with their help, aliases
/// accepted.
fn choice<T: Choice + Clone + Send + Sync>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let values = T::all().iter().map(|n| {
        let help = ser::choice::help(n.docs);
        let value = PossibleValue::new(n.name).aliases(n.aliases.iter().copied());
        if help.is_empty() { value } else { value.help(help) }
    });
    PossibleValuesParser::new(values).map(|name| T::from_name(&name).expect("clap accepts only the listed names"))
}

/// An integer in `lo..=hi`.
fn ranged<T>(lo: T, hi: T) -> impl Fn(&str) -> std::result::Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s.trim().parse().map_err(|_| format!("expected a whole number from {lo} to {hi}"))?;
        if v < lo || v > hi {
            return Err(format!("{v} is out of range: expected {lo} to {hi}"));
        }
        Ok(v)
    }
}

fn power_of_two(s: &str) -> std::result::Result<usize, String> {
    let v = ranged::<usize>(32, 65_536)(s)?;
    if !v.is_power_of_two() {
        return Err(format!("{v} is not a power of two (32, 64, ..., 65536)"));
    }
    Ok(v)
}

fn finite_f64(s: &str) -> std::result::Result<f64, String> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("{s:?} is not a finite number"))
}

fn positive_f64(s: &str) -> std::result::Result<f64, String> {
    finite_f64(s).and_then(|v| if v > 0.0 { Ok(v) } else { Err(format!("{v} must be positive (greater than 0)")) })
}

fn positive_f32(s: &str) -> std::result::Result<f32, String> {
    positive_f64(s).map(|v| v as f32)
}

fn non_negative_f32(s: &str) -> std::result::Result<f32, String> {
    finite_f64(s).and_then(|v| if v >= 0.0 { Ok(v as f32) } else { Err(format!("{v} must not be negative")) })
}

/// A share strictly between 0 and 1 (a split that leaves a part empty is refused).
fn open_fraction(s: &str) -> std::result::Result<f64, String> {
    finite_f64(s).and_then(|v| if v > 0.0 && v < 1.0 { Ok(v) } else { Err(format!("{v} must lie strictly between 0 and 1")) })
}

fn probability_below_one(s: &str) -> std::result::Result<f32, String> {
    finite_f64(s).and_then(|v| if (0.0..1.0).contains(&v) { Ok(v as f32) } else { Err(format!("{v} must be in [0, 1)")) })
}

fn compare(args: CompareArgs) -> Result<()> {
    let gpu = args.train.adapter.open()?;
    let mut base = args.train.config();
    let (set, l) = training_data(&gpu, &args.train, &mut base)?;
    let log = |line: &str| eprintln!("{line}");
    let run = Run { gpu: &gpu, cfg: &base, set: &set, labelled: &l, log: &log, on_epoch: None };
    let other = if args.test_data.is_empty() && args.test_manifest.is_empty() {
        None
    } else {
        let sources = args.test_data.iter().map(|d| Source::Folder(d.clone())).chain(args.test_manifest.iter().map(|m| Source::Manifest(m.clone()))).collect();
        let data = corpus::Data { sources, ..args.train.data.data()? };
        let (other, report) = corpus::build(&gpu, &data, &set.config, &args.train.build.options())?;
        report_unused(&report, "by --vocal/--drop or the label map");
        Some(other)
    };
    let rows = experiment::compare(&run, &args.models, !args.no_actor_folds, other.as_ref())?;
    let (study, classes) = (experiment::STUDY, l.classes.len());
    if args.json {
        let study: Vec<_> = study.iter().map(|(n, k, a)| serde_json::json!({"model": n, "kind": k, "accuracy": a})).collect();
        println!("{}", serde_json::json!({"classes": classes, "clips": l.clips.len(), "seed": args.train.seed, "input": format!("{:?}", args.train.input), "study": study, "ser": rows}));
        return Ok(());
    }
    println!("{} clips, {classes} classes, random 80/20 split seed {}, input {:?}\n", l.clips.len(), args.train.seed, args.train.input);
    println!("| model | study (random split) | ser: random split accuracy | UAR | macro F1 | ser: by actor accuracy | UAR | macro F1 |\n|---|---:|---:|---:|---:|---:|---:|---:|");
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    let by_actor = |r: &experiment::Comparison| format!("{}{}", f(r.by_actor_accuracy), r.by_actor_accuracy_sd.map_or(String::new(), |s| format!(" ± {s:.3}")));
    for (study_name, kind, acc) in study {
        match rows.iter().find(|r| r.model == kind) {
            Some(r) => println!("| {study_name} | {acc:.2} | {:.3} | {:.3} | {:.3} | {} | {} | {} |", r.random_accuracy, r.random_uar, r.random_macro_f1, by_actor(r), f(r.by_actor_uar), f(r.by_actor_macro_f1)),
            None if ModelKind::from_name(kind).is_some() => println!("| {study_name} | {acc:.2} | not run (add {kind} to --models) | | | | | |"),
            None => println!("| {study_name} | {acc:.2} | not in ser yet | | | | | |"),
        }
    }
    for r in rows.iter().filter(|r| !study.iter().any(|(_, k, _)| r.model == *k)) {
        println!("| ser {} (not in the study) | - | {:.3} | {:.3} | {:.3} | {} | {} | {} |", r.model, r.random_accuracy, r.random_uar, r.random_macro_f1, by_actor(r), f(r.by_actor_uar), f(r.by_actor_macro_f1));
    }
    if other.is_some() {
        println!("\nTrained on the random split's training part, scored on its test clips and on the other corpus:\n");
        println!("| model | in corpus accuracy | UAR | other corpus accuracy | UAR | macro F1 | clips |\n|---|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            println!("| {} | {:.3} | {:.3} | {} | {} | {} | {} |", r.model, r.random_accuracy, r.random_uar, f(r.other_accuracy), f(r.other_uar), f(r.other_macro_f1), r.other_clips.unwrap_or(0));
        }
    }
    Ok(())
}
