//! A training run as a library call: what `ser train` and `ser compare` run, and what a test can
//! call. A typed configuration ([`RunConfig`], its defaults defined here once; the CLI's flags
//! take theirs from it), the test split and the validation carve-out, the scaler, the fit of
//! each model kind (networks by gradients with ensembles, refit and resume; kernel ridge, knn,
//! svm and the forest in one go), the training record saved with the model (the configuration
//! itself, which `--resume` reads back), and cross-validation by actor. It sits above
//! [`crate::train`] and [`crate::infer`] and uses both.

use crate::audio::{Emotion, Selection, VocalFilter};
use crate::contract::{CorpusSeen, DataContract};
use crate::features::set::{FeatureSet, RowSplit};
use crate::gpu::Gpu;
use crate::infer::Predictor;
use crate::models::network::Networks;
use crate::models::{self, Classifier, FitInput, ModelConfig, ModelKind, Validation};
use crate::nn::checkpoint::{self, ModelMeta};
use crate::nn::{Architecture, Layer, Model};
use crate::ops::gemm::Precision;
use crate::dataset::{self, Input, Labelled};
use crate::models::knn::KnnWeights;
use crate::report::{self, Report};
use crate::contract::speaker::{SpeakerGroups, SpeakerNorm};
use crate::dataset::Dataset;
use crate::nn::predict::Calibration;
use crate::nn::record::TrainingRecord;
use crate::train::{self, TrainConfig};
use crate::choice::Choice;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

crate::choices! {
    /// How the loss (and the classical models' fits) weigh classes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ClassWeights {
        /// n / (classes * count) per class, from the training split.
        Balanced = "balanced",
        None = "none",
    }
}

crate::choices! {
    /// Which clips are held out for testing.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Split {
        /// Stratified random split (the reference study's protocol).
        Random = "random",
        /// Hold out whole speakers (--test-speakers, or RAVDESS's --test-actors): speaker-independent.
        Actors = "actors" | "speakers",
        /// No test set: train on every clip, for a model to ship (a validation part only for the families that use one).
        None = "none",
        /// Cross-validation by speaker (--folds groups, each the test set once); with --out, each
        /// fold's model is saved as FILE.foldK (for `ser eval --held-out-fold K`).
        ActorFolds = "actor-folds" | "speaker-folds",
        /// The manifest's own `split` column: train, valid (validation in place of a carved-out
        /// part) and test rows. Chosen without --split when the rows carry one.
        Given = "given" | "manifest",
    }
}

/// One training run's whole configuration. `Default` holds every default `ser train` has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub input: Input,
    pub class_weights: ClassWeights,
    pub split: Split,
    /// Share of each class held out for testing (random split).
    pub test_fraction: f64,
    /// RAVDESS actors held out for testing (speaker split), when `test_speakers` is empty.
    pub test_actors: Vec<u8>,
    /// Speakers held out for testing (speaker split), as `ClipInfo::speaker_id` names them.
    pub test_speakers: Vec<String>,
    /// Actor groups of the actor-fold cross-validation.
    pub folds: usize,
    /// Run only this fold of the cross-validation (0-based; the others are skipped), so that a
    /// long cross-validation can go one fold per process and resume between them.
    pub only_fold: Option<usize>,
    /// Share of the training part carved out for validation (early stopping, the learning-rate
    /// schedule, calibration).
    pub val_fraction: f64,
    /// Seed of the split, the initial weights, dropout and batch order.
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    /// Epochs without a better validation loss before stopping / before halving the rate.
    pub patience: usize,
    pub lr_patience: usize,
    /// Operand precision of the network's GEMMs while training.
    pub precision: Precision,
    /// Decoupled weight decay (AdamW), per unit of learning rate.
    pub weight_decay: f32,
    /// Clipping of each step's gradients by their global norm; 0: none.
    pub clip_norm: f32,
    /// Input augmentation while training networks (time and feature masks, noise).
    pub augment: crate::ops::dropout::Augment,
    /// Networks trained on the same split with different seeds, saved as one ensemble.
    pub ensemble: usize,
    /// Train each network again on every training clip with the schedule validation chose.
    pub refit: bool,
    /// Per-speaker standardisation, with at least this many clips per speaker; None: off.
    pub speaker_norm: Option<usize>,
    /// Also write the rows the final fit sees and the test rows here (per fold: `.foldN`).
    #[serde(skip)]
    pub export_split: Option<PathBuf>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: ModelConfig::default(),
            input: Input::Vectors,
            class_weights: ClassWeights::Balanced,
            split: Split::Random,
            test_fraction: 0.2,
            test_actors: vec![21, 22],
            test_speakers: Vec::new(),
            folds: 5,
            only_fold: None,
            val_fraction: 0.1,
            seed: 0,
            epochs: 30,
            batch_size: 32,
            lr: 1e-3,
            patience: 10,
            lr_patience: 4,
            precision: Precision::F32,
            weight_decay: 0.0,
            clip_norm: 0.0,
            augment: Default::default(),
            ensemble: 1,
            refit: false,
            speaker_norm: None,
            export_split: None,
        }
    }
}

/// `ser train`'s options that belong to the model, under the names `RunConfig.model` gives them.
const MODEL_OPTIONS: [&str; 17] = [
    "rff_features", "rff_gamma", "krr_gamma", "krr_lambda", "knn_k", "svm_c", "trees", "max_depth", "min_samples_leaf", "rf_bins", "lstm_units", "lstm_directions",
    "hidden", "dropout", "batch_norm", "knn_weights", "time_pooling",
];

/// `ser train`'s options that do not go by their `RunConfig` field's name, each set by its own
/// arm of `RunConfig::from_options`.
const RENAMED_OPTIONS: [&str; 14] =
    ["model", "knn_weights", "time_pooling", "svm_gamma", "input", "class_weights", "split", "precision", "augment_noise", "time_mask", "feature_mask", "fold", "speaker_norm", "min_speaker_clips"];

/// `RunConfig` fields no option sets by their own name: the renamed options above fill them.
const NOT_OPTIONS: [&str; 4] = ["model", "augment", "only_fold", "speaker_norm"];

/// An option naming one of an enum's values as `ser train` spells it (`speaker-folds`, `bf16`).
fn option_enum<E: Choice + Serialize>(key: &str, value: &serde_json::Value) -> Result<serde_json::Value> {
    let text = value.as_str().with_context(|| format!("{key}: expected one of {}, got {value}", E::names().join(", ")))?;
    let parsed = E::from_name(text).or_else(|| E::from_name(&text.to_lowercase()));
    Ok(serde_json::to_value(parsed.ok_or_else(|| anyhow::anyhow!("{key}={text:?}: expected one of {}", E::names().join(", ")))?)?)
}

impl RunConfig {
    /// A run from `ser train`'s options by their flag names with underscores (`krr_gamma`,
    /// `speaker_norm`, `min_speaker_clips`, `fold`, ...): what the Python bindings take as keyword
    /// arguments. Options left out keep `ser train`'s defaults; an unknown option is refused with
    /// the list of them.
    pub fn from_options(options: &serde_json::Map<String, serde_json::Value>) -> Result<RunConfig> {
        let mut run = serde_json::to_value(RunConfig::default())?;
        let mut speaker_norm = false;
        let mut min_clips: Option<usize> = None;
        for (key, value) in options {
            match key.as_str() {
                "model" => {
                    let name = value.as_str().unwrap_or_default();
                    let kind = ModelKind::from_name(name).with_context(|| format!("model={value}: not a model ({})", ModelKind::names().join(", ")))?;
                    run["model"]["kind"] = serde_json::to_value(kind)?;
                }
                "knn_weights" => run["model"]["knn_weights"] = option_enum::<KnnWeights>(key, value)?,
                "time_pooling" => run["model"]["time_pooling"] = option_enum::<crate::nn::TimePooling>(key, value)?,
                "svm_gamma" => run["model"]["svm_gamma"] = if value.as_str() == Some("scale") { serde_json::Value::Null } else { value.clone() },
                k if MODEL_OPTIONS.contains(&k) => run["model"][k] = value.clone(),
                "input" => run["input"] = option_enum::<Input>(key, value)?,
                "class_weights" => run["class_weights"] = option_enum::<ClassWeights>(key, value)?,
                "split" => run["split"] = option_enum::<Split>(key, value)?,
                "precision" => run["precision"] = option_enum::<Precision>(key, value)?,
                "augment_noise" => run["augment"]["noise"] = value.clone(),
                "time_mask" | "feature_mask" => run["augment"][key] = value.clone(),
                "fold" => run["only_fold"] = value.clone(),
                "speaker_norm" => speaker_norm = value.as_bool().with_context(|| format!("speaker_norm={value}: expected True or False"))?,
                "min_speaker_clips" => min_clips = Some(serde_json::from_value(value.clone()).with_context(|| format!("min_speaker_clips={value}: expected a count"))?),
                k if !NOT_OPTIONS.contains(&k) && run.get(k).is_some() => run[k] = value.clone(),
                other => {
                    // The fields set by their own name (the arm above), then the others.
                    let fields = run.as_object().map(|o| o.keys().map(String::as_str).filter(|k| !NOT_OPTIONS.contains(k)).collect::<Vec<_>>()).unwrap_or_default();
                    let mut known: Vec<&str> = fields.into_iter().chain(MODEL_OPTIONS).chain(RENAMED_OPTIONS).collect();
                    known.sort();
                    known.dedup();
                    bail!("{other:?} is not a training option; the options are ser train's flags with underscores: {}", known.join(", "));
                }
            }
        }
        if min_clips.is_some() && !speaker_norm {
            bail!("min_speaker_clips needs speaker_norm=True");
        }
        run["speaker_norm"] = serde_json::to_value(speaker_norm.then(|| min_clips.unwrap_or(crate::contract::speaker::DEFAULT_MIN_CLIPS)))?;
        serde_json::from_value(run).context("training options")
    }

    /// The speakers the speaker split holds out: `test_speakers`, else the `test_actors`.
    pub fn held_out_speakers(&self) -> Vec<String> {
        if self.test_speakers.is_empty() { self.test_actors.iter().map(|a| format!("{a:02}")).collect() } else { self.test_speakers.clone() }
    }

    /// The flag and value a speaker split's errors name.
    fn held_out_flag(&self) -> String {
        if self.test_speakers.is_empty() { format!("--test-actors {:?}", self.test_actors) } else { format!("--test-speakers {}", self.test_speakers.join(",")) }
    }

    /// The loss's class weights for a dataset of `classes`.
    pub fn class_weights_for(&self, d: &Dataset, classes: usize) -> Vec<f32> {
        match self.class_weights {
            ClassWeights::Balanced => dataset::balanced_weights(d.y.iter().copied(), classes),
            ClassWeights::None => vec![1.0; classes],
        }
    }
}

/// What a run reads: the device, its configuration, the labelled features, where its progress
/// lines go (stderr for the CLI, nowhere for a test) and who hears of each epoch as it ends
/// (`ser train --log`, a Python progress callback).
pub struct Run<'a> {
    pub gpu: &'a Gpu,
    pub cfg: &'a RunConfig,
    pub set: &'a FeatureSet,
    pub labelled: &'a Labelled,
    pub log: &'a dyn Fn(&str),
    /// Hears of each epoch as it ends; an error it returns stops the run (an interrupt).
    pub on_epoch: Option<&'a OnEpoch<'a>>,
}

impl<'a> Run<'a> {
    /// A run that logs nowhere and reports no epochs.
    pub fn quiet(gpu: &'a Gpu, cfg: &'a RunConfig, set: &'a FeatureSet, labelled: &'a Labelled) -> Run<'a> {
        Run { gpu, cfg, set, labelled, log: &|_| {}, on_epoch: None }
    }
}

/// Who hears of each epoch as it ends; an error it returns stops the run.
pub type OnEpoch<'a> = dyn Fn(&EpochEvent) -> Result<()> + 'a;

/// One epoch of a network's training as it ends: which member of an ensemble (0 alone), and
/// its figures. Serialised as one row of `ser train --log FILE.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct EpochEvent {
    pub member: usize,
    #[serde(flatten)]
    pub epoch: train::Epoch,
}

/// Trains one model on the run's split (`--split none`: every clip) without saving it: the
/// model and its test report (none when the split holds nothing out). Cross-validation by
/// speaker is `actor_folds`.
pub fn train_model(run: &Run) -> Result<(Predictor, Option<Report>)> {
    if run.cfg.split == Split::ActorFolds {
        bail!("a cross-validation trains one model per fold: run it with actor_folds");
    }
    let (train_all, test) = test_split(run)?;
    fit_and_test(run, &train_all, &test, None, None)
}

/// The training part and the test clips of `cfg.split` (positions into `labelled`), with an
/// error naming the flag when either would be empty.
pub fn test_split(run: &Run) -> Result<(Vec<usize>, Vec<usize>)> {
    let (cfg, l) = (run.cfg, run.labelled);
    if let Some(k) = cfg.only_fold {
        bail!("--fold {k} picks a fold of --split actor-folds, not of --split {}", cfg.split);
    }
    let all: Vec<usize> = (0..l.clips.len()).collect();
    let (train_all, test) = match cfg.split {
        Split::Random => dataset::stratified(&l.labels, &all, cfg.test_fraction, cfg.seed),
        Split::Actors => {
            let (held, speakers) = (cfg.held_out_speakers(), l.known_speakers(run.set, "--split speakers")?);
            all.iter().partition(|&&p| !held.contains(&speakers[p]))
        }
        Split::None | Split::ActorFolds => (all.clone(), Vec::new()),
        Split::Given => {
            if l.given.iter().all(Option::is_none) {
                bail!("--split given: no clip carries a split (a manifest's split column: train, valid, test)");
            }
            if let Some(p) = l.given.iter().position(Option::is_none) {
                bail!("--split given: clip {} carries no split while others do; give every row of the manifest one", run.set.clips[l.clips[p]].key());
            }
            all.iter().partition(|&&p| l.given[p] != Some(RowSplit::Test))
        }
    };
    if train_all.is_empty() {
        bail!("{} hold out every speaker in the data: nothing is left to train on", cfg.held_out_flag());
    }
    if test.is_empty() && cfg.split == Split::Actors {
        let mut a: Vec<String> = l.speakers.iter().flatten().cloned().collect();
        a.sort();
        a.dedup();
        bail!("{}: none of them is in the data (its speakers: {})", cfg.held_out_flag(), a.join(", "));
    }
    if test.is_empty() && cfg.split == Split::Given {
        bail!("--split given: no row's split is test");
    }
    if test.is_empty() && cfg.split == Split::Random {
        bail!("--test-fraction {} leaves no clip of any class for testing ({} clips)", cfg.test_fraction, all.len());
    }
    Ok((train_all, test))
}

/// Per corpus (the layout or manifest its labels came from; "ravdess" for files made before
/// corpora were recorded), how many labelled clips and speakers a run read.
pub fn corpora_seen(set: &FeatureSet, l: &Labelled) -> std::collections::BTreeMap<String, CorpusSeen> {
    let mut seen: std::collections::BTreeMap<String, (usize, std::collections::BTreeSet<&str>)> = Default::default();
    for (p, &c) in l.clips.iter().enumerate() {
        let clip = &set.clips[c];
        let name = clip.corpus.clone().unwrap_or_else(|| if clip.actor.is_some() { "ravdess".into() } else { "unknown".into() });
        let entry = seen.entry(name).or_default();
        entry.0 += 1;
        if let Some(speaker) = &l.speakers[p] {
            entry.1.insert(speaker.as_str());
        }
    }
    seen.into_iter().map(|(k, (clips, speakers))| (k, CorpusSeen { clips, speakers: speakers.len() })).collect()
}

/// The label map the feature file's labels went through (recorded by `ser features`).
fn label_map_seen(set: &FeatureSet) -> Vec<(String, String)> {
    set.label_map.clone()
}

/// A short fingerprint of the labelled clips (paths and classes): what `--resume` checks it
/// continues on.
pub fn data_fingerprint(set: &FeatureSet, l: &Labelled) -> String {
    let mut h = blake3::Hasher::new();
    for (&c, &y) in l.clips.iter().zip(&l.labels) {
        h.update(set.clips[c].path.as_bytes());
        h.update(&[0, y as u8, 0]);
    }
    // Copies change what trains (and hash nothing where there are none: older records match).
    for &c in l.copies.iter().flatten() {
        h.update(format!("{}@{:?}", set.clips[c].path, set.clips[c].speed).as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// A model to continue, and the configuration it was trained with (split, seed, input, model,
/// batch and schedule), so that the same data make the same split. The caller keeps its own
/// epochs (and export path) and checks the data with [`check_resume`].
pub fn resume(gpu: &Gpu, path: &Path) -> Result<(Predictor, RunConfig)> {
    let family = models::family_of_file(&crate::store::Loaded::read(path)?)?;
    if family.fit.is_some() {
        bail!("{}: a {} model is fitted in one go and has nothing to resume", path.display(), family.kind);
    }
    let (models, meta) = checkpoint::load(gpu, path)?;
    let t = &meta.training;
    if models.len() != 1 || models[0].step == 0 || t.refit.unwrap_or(false) {
        bail!("{}: nothing to resume (kernel ridge, ensembles and refitted models keep no optimizer state)", path.display());
    }
    let cfg = match &t.run {
        Some(run) => serde_json::from_value(run.clone()).with_context(|| format!("{}: its training record's run configuration", path.display()))?,
        None => legacy_config(path, &serde_json::to_value(t)?)?,
    };
    let mut cfg = RunConfig { input: meta.data.input, speaker_norm: meta.data.speaker_norm.as_ref().map(|s| s.min_clips), ensemble: 1, refit: false, ..cfg };
    adopt_saved_head(&mut cfg.model, cfg.input, &meta.architecture);
    Ok((Predictor::new(Box::new(Networks(models)), meta), cfg))
}

/// Sets the time pooling and LSTM directions to those the saved model has, whatever its record
/// says: a refined CNN over frames saved before it pooled its steps by default flattens them
/// while its record says the default, and records from before --lstm-directions say nothing of
/// directions.
fn adopt_saved_head(model: &mut ModelConfig, input: Input, architecture: &Architecture) {
    if input == Input::Frames
        && matches!(model.kind, ModelKind::Cnn | ModelKind::Lstm | ModelKind::CnnLstm)
        && let Some(pooling) = architecture.time_pooling()
    {
        model.network.time_pooling = pooling;
    }
    if let Some(Layer::Lstm { bidirectional, .. }) = architecture.layers.iter().find(|l| matches!(l, Layer::Lstm { .. })) {
        model.network.lstm_directions = 1 + *bidirectional as usize;
    }
}

/// The configuration of a record written before records kept it whole (session 9).
fn legacy_config(path: &Path, t: &serde_json::Value) -> Result<RunConfig> {
    let missing = |key: &str| anyhow::anyhow!("{}: its training record has no {key:?}", path.display());
    let text = |key: &str| t[key].as_str().map(str::to_string).ok_or_else(|| missing(key));
    let cfg = &t["config"][0];
    let count = |key: &str| cfg[key].as_u64().map(|v| v as usize).ok_or_else(|| missing("config"));
    let d = RunConfig::default();
    Ok(RunConfig {
        model: ModelConfig { kind: ModelKind::from_name(&text("model")?).ok_or_else(|| missing("model"))?, ..d.model.clone() },
        seed: t["seed"].as_u64().ok_or_else(|| missing("seed"))?,
        split: Split::from_name(&text("split")?.to_lowercase()).ok_or_else(|| missing("split"))?,
        test_fraction: t["test_fraction"].as_f64().ok_or_else(|| missing("test_fraction"))?,
        val_fraction: t["val_fraction"].as_f64().ok_or_else(|| missing("val_fraction"))?,
        test_actors: serde_json::from_value(t["test_actors"].clone()).map_err(|_| missing("test_actors"))?,
        weight_decay: t["weight_decay"].as_f64().unwrap_or(0.0) as f32,
        clip_norm: t["clip_norm"].as_f64().unwrap_or(0.0) as f32,
        batch_size: count("batch_size")?,
        patience: count("patience")?,
        lr_patience: count("lr_patience")?,
        // Older checkpoints have no precision: they trained in f32.
        precision: serde_json::from_value(cfg["precision"].clone()).unwrap_or_default(),
        lr: t["lr"].as_f64().map_or(d.lr, |v| v as f32),
        ..d
    })
}

/// Refuses to continue a model on other features, classes or clips than it was trained on.
pub fn check_resume(run: &Run, r: &Predictor) -> Result<()> {
    check_same_data(run, r, "--resume")
}

/// Refuses features, classes or clips other than the model was trained on, naming `flag`.
fn check_same_data(run: &Run, r: &Predictor, flag: &str) -> Result<()> {
    if r.meta.data.features != run.set.config {
        bail!("{flag}: the model was trained on other features than these (its features {}, these {})", serde_json::to_string(&r.meta.data.features)?, serde_json::to_string(&run.set.config)?);
    }
    if r.meta.data.classes != run.labelled.classes {
        // The selection (--vocal, --drop) is the run's, not the model's: name what to give.
        let names = |c: &[Emotion]| c.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
        bail!(
            "{flag}: the model was trained on the classes {}, and these clips have {}; select the same (--drop, --vocal)",
            names(&r.meta.data.classes),
            names(&run.labelled.classes)
        );
    }
    // Same configuration, other clips: continuing would mix two datasets in one model.
    if let Some(was) = r.meta.training.data.as_deref() {
        let now = data_fingerprint(run.set, run.labelled);
        if was != now {
            bail!("{flag}: the model was trained on other clips (data {was}, these are {now}); give the feature file or folder it was trained on");
        }
    }
    Ok(())
}

/// Calibrates a network saved before training calibrated its probabilities: the validation
/// clips its run carved out are found again from its record (split, fold, seed, fractions) on
/// the same labelled clips of `set`, speaker-normalised as it trained, and each member's
/// temperature is fitted on them (`Predictor::calibrate`).
pub fn calibrate_saved(gpu: &Gpu, predictor: &mut Predictor, set: &FeatureSet, groups: SpeakerGroups, min_clips: Option<usize>) -> Result<Vec<Calibration>> {
    predictor.calibratable()?;
    let run = predictor.meta.training.run.clone().context("the model's training record has no run configuration (a model saved by an older ser)")?;
    let cfg: RunConfig = serde_json::from_value(run).context("the model's training record: its run configuration")?;
    if cfg.refit {
        bail!("a refitted model has trained on its validation clips: nothing is left to calibrate it on");
    }
    let l = dataset::labelled_as(set, VocalFilter::Both, predictor.meta.data.classes.clone())?;
    let mut own = set.clone();
    dataset::prepare(gpu, &mut own, predictor.meta.data.input)?;
    predictor.normalise_speakers(&mut own, &l.all_clips(), groups, min_clips)?;
    let run = Run::quiet(gpu, &cfg, &own, &l);
    check_same_data(&run, predictor, "--features")?;
    let train_all = match (cfg.split, cfg.only_fold) {
        (Split::ActorFolds, Some(fold)) => fold_parts(&l, cfg.folds, fold).1,
        (Split::ActorFolds, None) => bail!("the model's record names no fold of its actor cross-validation"),
        _ => test_split(&run)?.0,
    };
    let (_, va) = validation_part(&cfg, &l, &train_all);
    predictor.calibrate(gpu, &dataset::dataset(&own, &l, &va, cfg.input, &predictor.meta.data.scaler))
}

/// One fold of the cross-validation by speaker.
#[derive(Clone, Debug, Serialize)]
pub struct FoldScore {
    /// The speakers the fold held out (`ClipInfo::speaker_id`).
    pub held_out: Vec<String>,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Unweighted average recall (the mean of the per-class recalls).
    pub uar: f64,
    pub test_clips: usize,
}

/// Mean and population standard deviation over the folds of each score.
pub struct FoldSummary {
    pub accuracy: (f64, f64),
    pub macro_f1: (f64, f64),
    pub uar: (f64, f64),
}

/// Where fold `fold`'s file of a per-run path goes (`--out`, `--export-split`): `FILE.foldK`.
pub fn fold_path(path: &Path, fold: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".fold{fold}"));
    PathBuf::from(p)
}

/// What one training run ends with.
pub enum Trained {
    /// The cross-validation by actor's scores: every fold, or the one `only_fold` names.
    Folds(Vec<FoldScore>),
    /// One model fitted on the run's split and saved, with its test report (none when the
    /// split holds nothing out).
    Model { predictor: Box<Predictor>, report: Option<Report>, saved: PathBuf },
}

/// One training run as `ser train` makes it: the cross-validation by actor (each fold's model
/// saved as `out.foldK` when `out` is given), or one model on the run's split, saved at `out`.
/// `resume` (read by [`resume`], whose configuration the run carries) continues a model, or
/// one fold of a cross-validation, from its saved epoch, on the data it was trained on.
pub fn train_and_save(run: &Run, out: Option<&Path>, resume: Option<Predictor>) -> Result<Trained> {
    if let Some(r) = &resume {
        check_resume(run, r)?;
    }
    if run.cfg.split == Split::ActorFolds {
        if resume.is_some() && out.is_none() {
            // The resumed fold would be trained and lost.
            bail!("--resume with a fold's model: give --out FILE (the fold's model goes to FILE.fold{})", run.cfg.only_fold.unwrap_or(0));
        }
        return Ok(Trained::Folds(actor_folds(run, out, resume)?));
    }
    let Some(out) = out else { bail!("give --out FILE for the trained model") };
    let (train_all, test) = test_split(run)?;
    let (predictor, report) = fit_and_test(run, &train_all, &test, resume, Some(out))?;
    crate::infer::save(run.gpu, &predictor, out)?;
    Ok(Trained::Model { predictor: Box::new(predictor), report, saved: out.to_path_buf() })
}

/// The clips of `selection` in `set`, labelled, with what the run's input reads beyond the
/// feature file computed (`dataset::prepare`) and `set`'s features standardised per speaker
/// (speakers grouped `by`) when the run normalises speakers: the data every fit of the run
/// reads, and what its saved model then does to the clips it predicts.
pub fn labelled_for_run(gpu: &Gpu, mut set: FeatureSet, selection: &Selection, cfg: &RunConfig, by: SpeakerGroups) -> Result<(FeatureSet, Labelled)> {
    let l = dataset::labelled(&set, selection)?;
    dataset::prepare(gpu, &mut set, cfg.input)?;
    if let Some(min_clips) = cfg.speaker_norm {
        crate::contract::speaker::normalise_clips(&mut set, &l.all_clips(), &[cfg.input], by, min_clips)?;
    }
    Ok((set, l))
}

/// The reference study's systems on RAVDESS (random split): its name for each, the `--model`
/// that is ser's counterpart, and its accuracy.
pub const STUDY: [(&str, &str, f64); 7] = [
    ("Random Forest", "rf", 0.71),
    ("KNN", "knn", 0.56),
    ("SVM", "svm", 0.30),
    ("CNN", "cnn", 0.76),
    ("LSTM", "lstm", 0.62),
    ("CNN+LSTM", "cnn-lstm", 0.72),
    ("refined CNN (disgust dropped, class weights)", "cnn", 0.83),
];

/// One model's figures in [`compare`].
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Its `--model` name.
    pub model: String,
    pub random_accuracy: f64,
    pub random_macro_f1: f64,
    /// Mean and population sd over the folds by actor (none when they were not run).
    pub by_actor_accuracy: Option<f64>,
    pub by_actor_accuracy_sd: Option<f64>,
    pub by_actor_macro_f1: Option<f64>,
    /// Unweighted average recall, the mean over the folds by actor.
    pub by_actor_uar: Option<f64>,
    /// Unweighted average recall on the random split's test clips.
    pub random_uar: f64,
    /// The random split's model scored on another corpus (`--test-data`): accuracy, UAR,
    /// macro F1 over its clips of the model's classes, and how many there were.
    pub other_accuracy: Option<f64>,
    pub other_uar: Option<f64>,
    pub other_macro_f1: Option<f64>,
    pub other_clips: Option<usize>,
    pub fit_seconds: Option<f64>,
    pub test_predict_seconds: Option<f64>,
}

/// `ser compare`: each model of `models` with the run's configuration on one stratified random
/// split (the run's seed and test fraction, the same split for every model), and, with
/// `by_actor`, its cross-validation by actor. The recurrent models read frames whatever the
/// run's input, since they have nothing to recur over in a clip's summary. With `other` (the
/// features of another corpus, in the run's configuration), each random-split model is also
/// scored there: trained on one corpus, heard on another.
pub fn compare(run: &Run, models: &[ModelKind], by_actor: bool, other: Option<&FeatureSet>) -> Result<Vec<Comparison>> {
    let (base, l) = (run.cfg, run.labelled);
    let all: Vec<usize> = (0..l.clips.len()).collect();
    let (train_all, test) = dataset::stratified(&l.labels, &all, base.test_fraction, base.seed);
    let mut rows = Vec::new();
    for &kind in models {
        let name = kind.name();
        let input = if matches!(kind, ModelKind::Lstm | ModelKind::CnnLstm) { Input::Frames } else { base.input };
        let cfg = RunConfig { model: ModelConfig { kind, ..base.model.clone() }, input, split: Split::Random, ..base.clone() };
        let run = Run { cfg: &cfg, ..*run };
        (run.log)(&format!("compare: {name}, random split"));
        let (predictor, rep) = fit_and_test(&run, &train_all, &test, None, None)?;
        let rep = rep.context("the random split left no test clips")?;
        let folds = if by_actor {
            (run.log)(&format!("compare: {name}, {} folds by actor", cfg.folds));
            Some(FoldScore::summary(&actor_folds(&Run { cfg: &RunConfig { split: Split::ActorFolds, ..cfg.clone() }, ..run }, None, None)?))
        } else {
            None
        };
        let elsewhere = match other {
            Some(set) => {
                (run.log)(&format!("compare: {name}, scored on the other corpus"));
                let options = crate::infer::EvalOptions { held_out_of_seed: None, held_out_fold: None, groups: SpeakerGroups::Auto, min_clips: None };
                let ev = crate::infer::evaluate(run.gpu, std::slice::from_ref(&predictor), set, &options).context("--test-data")?;
                Some((ev.report.accuracy, ev.report.uar, ev.report.macro_f1, ev.clips.len()))
            }
            None => None,
        };
        let t = &predictor.meta.training;
        rows.push(Comparison {
            model: name,
            random_accuracy: rep.accuracy,
            random_macro_f1: rep.macro_avg.f1,
            random_uar: rep.uar,
            other_accuracy: elsewhere.map(|e| e.0),
            other_uar: elsewhere.map(|e| e.1),
            other_macro_f1: elsewhere.map(|e| e.2),
            other_clips: elsewhere.map(|e| e.3),
            by_actor_accuracy: folds.as_ref().map(|f| f.accuracy.0),
            by_actor_accuracy_sd: folds.as_ref().map(|f| f.accuracy.1),
            by_actor_macro_f1: folds.as_ref().map(|f| f.macro_f1.0),
            by_actor_uar: folds.as_ref().map(|f| f.uar.0),
            fit_seconds: t.fit_seconds,
            test_predict_seconds: t.test_predict_seconds,
        });
    }
    Ok(rows)
}

/// Fold `fold` of the cross-validation by speaker: the speakers it holds out, the training part and
/// the test clips (positions into `l`).
fn fold_parts(l: &Labelled, folds: usize, fold: usize) -> (Vec<String>, Vec<usize>, Vec<usize>) {
    let speakers: Vec<String> = l.speakers.iter().map(|s| s.clone().unwrap_or_default()).collect();
    let held = dataset::fold_speakers(&speakers, folds, fold);
    let (train_all, test) = (0..l.clips.len()).partition(|&p| !held.contains(&speakers[p]));
    (held, train_all, test)
}

/// Speaker-independent cross-validation: actors dealt round-robin into `cfg.folds` groups
/// (`dataset::fold_actors`), each group the test set once. With `out`, each fold's model is saved
/// as `out.foldK` (`fold_path`), its record naming the fold, so that `ser eval --held-out-fold K`
/// can score it, alone or in an ensemble, on exactly the actors it never heard. `resume` (a
/// fold's model saved part-way, read by [`resume`] with the run's configuration) continues
/// that one fold from its saved epoch.
pub fn actor_folds(run: &Run, out: Option<&Path>, mut resume: Option<Predictor>) -> Result<Vec<FoldScore>> {
    let l = run.labelled;
    let speakers = l.known_speakers(run.set, "--split speaker-folds")?.into_iter().collect::<std::collections::BTreeSet<_>>().len();
    if run.cfg.folds < 2 || run.cfg.folds > speakers {
        bail!("--folds {} must be between 2 and the {speakers} speakers in the data", run.cfg.folds);
    }
    if let Some(k) = run.cfg.only_fold.filter(|&k| k >= run.cfg.folds) {
        bail!("--fold {k}: the folds are 0 to {}", run.cfg.folds - 1);
    }
    if resume.is_some() && run.cfg.only_fold.is_none() {
        bail!("--resume: a fold's model continues its own fold only, and the run names no fold (--fold)");
    }
    let mut scores = Vec::new();
    for fold in (0..run.cfg.folds).filter(|f| run.cfg.only_fold.is_none_or(|k| k == *f)) {
        let (held, train_all, test) = fold_parts(l, run.cfg.folds, fold);
        // Each fold's record names its fold (what `ser eval --held-out-fold` checks).
        let mut cfg = RunConfig { only_fold: Some(fold), ..run.cfg.clone() };
        if let Some(p) = &mut cfg.export_split {
            *p = fold_path(p, fold);
        }
        let model_path = out.map(|p| fold_path(p, fold));
        let (predictor, rep) = fit_and_test(&Run { cfg: &cfg, ..*run }, &train_all, &test, resume.take(), model_path.as_deref())?;
        if let Some(path) = &model_path {
            crate::infer::save(run.gpu, &predictor, path)?;
        }
        let rep = rep.expect("every fold has a test set");
        let score = FoldScore { held_out: held, accuracy: rep.accuracy, macro_f1: rep.macro_avg.f1, uar: rep.uar, test_clips: test.len() };
        (run.log)(&score.line(fold));
        scores.push(score);
    }
    Ok(scores)
}

impl FoldScore {
    pub fn summary(folds: &[FoldScore]) -> FoldSummary {
        let over = |score: fn(&FoldScore) -> f64| mean_sd(&folds.iter().map(score).collect::<Vec<f64>>());
        FoldSummary { accuracy: over(|f| f.accuracy), macro_f1: over(|f| f.macro_f1), uar: over(|f| f.uar) }
    }

    pub fn line(&self, fold: usize) -> String {
        format!("fold {fold}: speakers {}: accuracy {:.4}, macro F1 {:.4}, UAR {:.4} ({} clips)", self.held_out.join(", "), self.accuracy, self.macro_f1, self.uar, self.test_clips)
    }
}

/// Mean and (population) standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt())
}

/// The data one fit works on.
struct Parts<'a> {
    train: &'a Dataset,
    val: &'a Dataset,
    /// Training and validation clips together, for final models that see both.
    full: Option<&'a Dataset>,
    classes: usize,
    input_shape: (usize, usize),
}

/// The training part's fitting and validation clips: the rows a manifest marks valid under
/// `--split given` (when it marks any), otherwise a stratified `val_fraction` of each class
/// (seeded by the run).
pub fn validation_part(cfg: &RunConfig, l: &Labelled, train_all: &[usize]) -> (Vec<usize>, Vec<usize>) {
    if cfg.split == Split::Given && train_all.iter().any(|&p| l.given[p] == Some(RowSplit::Valid)) {
        return train_all.iter().partition(|&&p| l.given[p] != Some(RowSplit::Valid));
    }
    dataset::stratified(&l.labels, train_all, cfg.val_fraction, cfg.seed.wrapping_add(1))
}

/// Trains the model (or ensemble) on `train_all` and reports on `test` when it is not empty.
/// A validation part is carved out of `train_all` only for a family that uses one
/// ([`models::Validation`]); the others fit on every training clip. With `out`, a single
/// gradient-trained model is also saved there every time validation improves (resumable if the
/// run is killed).
pub fn fit_and_test(run: &Run, train_all: &[usize], test: &[usize], resume: Option<Predictor>, out: Option<&Path>) -> Result<(Predictor, Option<Report>)> {
    let (gpu, cfg, set, l) = (run.gpu, run.cfg, run.set, run.labelled);
    let family = cfg.model.kind.family();
    let (tr, va) = match family.validation {
        Validation::Unused => (train_all.to_vec(), Vec::new()),
        Validation::Calibration | Validation::EarlyStopping => validation_part(cfg, l, train_all),
    };
    // A resumed model keeps the scaler its weights were trained with.
    let scaler = match &resume {
        Some(r) => r.meta.data.scaler.clone(),
        None => dataset::fit_scaler(set, l, &tr, cfg.input),
    };
    // Augmented copies train beside their sources; validation and test see originals only.
    let (train_set, val_set) = (dataset::training_dataset(set, l, &tr, cfg.input, &scaler), dataset::dataset(set, l, &va, cfg.input, &scaler));
    // --refit models get the scaler of the whole training part they are refitted on. Kernel
    // ridge always ends with a fit on every training clip but keeps the training part's scaler
    // (the recipe the recorded results and the shipped model were made with).
    let final_scaler = if cfg.refit { dataset::fit_scaler(set, l, train_all, cfg.input) } else { scaler };
    let test_set = dataset::dataset(set, l, test, cfg.input, &final_scaler);
    // Every training clip again, for a family that refits on them after validation: kernel
    // ridge always, networks with --refit.
    let refits = match family.validation {
        Validation::Unused => false,
        Validation::Calibration => true,
        Validation::EarlyStopping => cfg.refit,
    };
    let full_set = refits.then(|| dataset::training_dataset(set, l, train_all, cfg.input, &final_scaler));
    let k = l.classes.len();
    let input_shape = cfg.input.shape(set.dim, set.t_max);
    let copies = l.copies_of(&tr);
    (run.log)(&format!(
        "{} classes, train {}{} / validation {} / test {} clips, input {:?} {:?}, on {}",
        k,
        train_set.len(),
        if copies > 0 { format!(" ({} originals and {copies} speed copies)", tr.len()) } else { String::new() },
        val_set.len(),
        test_set.len(),
        cfg.input,
        input_shape,
        gpu.label()
    ));
    let parts = Parts { train: &train_set, val: &val_set, full: full_set.as_ref(), classes: k, input_shape };
    if let Some(path) = &cfg.export_split {
        let fitted = full_set.as_ref().unwrap_or(&train_set);
        let names: Vec<String> = l.classes.iter().map(|c| c.to_string()).collect();
        dataset::export_split(path, fitted, &test_set, &names, &cfg.class_weights_for(fitted, k)).with_context(|| format!("--export-split {}", path.display()))?;
    }
    let data = data_fingerprint(set, l);
    let record_base = || -> Result<TrainingRecord> {
        Ok(TrainingRecord {
            // The whole configuration, which --resume reads back.
            run: Some(serde_json::to_value(cfg)?),
            // The same facts under the keys records had before `run` (read by older tools).
            model: Some(cfg.model.kind.name().to_string()),
            refit: Some(cfg.refit),
            split: Some(format!("{:?}", cfg.split)),
            seed: Some(cfg.seed),
            test_fraction: Some(cfg.test_fraction),
            test_actors: Some(cfg.test_actors.clone()),
            val_fraction: Some(cfg.val_fraction),
            class_weights: Some(cfg.class_weights_for(&train_set, k)),
            train_clips: Some(train_set.len()),
            validation_clips: Some(val_set.len()),
            test_clips: Some(test_set.len()),
            adapter: Some(gpu.label()),
            gemm_kernels: Some(serde_json::to_value(crate::ops::autotune::used(gpu))?),
            data: Some(data.clone()),
            ..TrainingRecord::default()
        })
    };
    let meta_with = |architecture: Architecture, training: TrainingRecord| ModelMeta {
        architecture,
        data: DataContract {
            version: crate::contract::VERSION,
            classes: l.classes.clone(),
            features: set.config.clone(),
            input: cfg.input,
            scaler: final_scaler.clone(),
            speaker_norm: cfg.speaker_norm.map(|min_clips| SpeakerNorm { min_clips }),
            label_map: label_map_seen(set),
            corpora: corpora_seen(set, l),
        },
        training,
        temperatures: Vec::new(),
    };
    // A single model trained by gradients is saved (atomically) every time validation improves,
    // so a killed run loses at most the epochs since: `--resume FILE` continues from there and
    // replays the uninterrupted run. The final save replaces it with the full record.
    let save_best = |model: &Model, arch: &Architecture, tc: &TrainConfig, epoch: usize| -> Result<()> {
        let Some(out) = out else { return Ok(()) };
        let mut training = record_base()?;
        training.merge(serde_json::json!({"config": [tc], "lr": cfg.lr, "weight_decay": cfg.weight_decay, "clip_norm": cfg.clip_norm}))?;
        training.saved_epoch = Some(epoch);
        training.partial = Some(true);
        checkpoint::save(gpu, std::slice::from_ref(model), &meta_with(arch.clone(), training), out)
    };
    let resumable = cfg.ensemble == 1 && !cfg.refit;
    let (classifier, architecture, record) = match family.fit {
        Some(fit) => {
            let class_weights = |d: &Dataset| cfg.class_weights_for(d, k);
            let input = FitInput {
                gpu,
                settings: &cfg.model,
                seed: cfg.seed,
                train: &train_set,
                val: &val_set,
                full: full_set.as_ref(),
                classes: k,
                input_shape,
                class_weights: &class_weights,
                log: run.log,
            };
            fit(&input)?
        }
        None => {
            let (models, arch, record) = fit_by_gradients(run, &parts, resume, resumable.then_some(&save_best as SaveBest))?;
            (Box::new(Networks(models)) as Box<dyn Classifier>, arch, record)
        }
    };
    let names: Vec<String> = l.classes.iter().map(|c| c.to_string()).collect();
    let mut training = record_base()?;
    training.merge(record)?;
    let meta = meta_with(architecture, training);
    let mut predictor = Predictor::new(classifier, meta);
    // A network's probabilities are calibrated on the validation clips (a refitted one has
    // trained on them, so it keeps its raw scores).
    if predictor.classifier.networks().is_some() && !cfg.refit && !val_set.is_empty() {
        let fits = predictor.calibrate(gpu, &val_set)?;
        (run.log)(&calibration_line(&fits, val_set.len()));
        predictor.meta.training.calibration = Some(fits);
    }
    if test_set.is_empty() {
        return Ok((predictor, None));
    }
    let started = std::time::Instant::now();
    let probs = predictor.probabilities(gpu, &test_set)?;
    predictor.meta.training.test_predict_seconds = Some(started.elapsed().as_secs_f64());
    let predicted: Vec<u32> = probs.iter().map(|p| report::argmax(p) as u32).collect();
    let rep = Report::new(&names, &test_set.y, &predicted);
    let t = &mut predictor.meta.training;
    t.test_accuracy = Some(rep.accuracy);
    t.test_macro_f1 = Some(rep.macro_avg.f1);
    t.test_report = Some(serde_json::to_value(&rep)?);
    Ok((predictor, Some(rep)))
}

/// What calibration found, for the log.
pub fn calibration_line(fits: &[Calibration], clips: usize) -> String {
    let each: Vec<String> = fits.iter().map(|c| if c.calibrated { format!("{:.2} (loss {:.4})", c.temperature, c.val_loss) } else { "1 (too few clips)".into() }).collect();
    format!("calibration on {clips} validation clips: temperature {}", each.join(", "))
}

/// Saves a resumable checkpoint of the model at the end of an epoch (given the config it trains
/// with and the epoch number).
type SaveBest<'a> = &'a dyn Fn(&Model, &Architecture, &TrainConfig, usize) -> Result<()>;

/// The run's optimiser and augmentation settings on a network, fresh or resumed (a resumed one
/// keeps its learning rate, which the schedule may have lowered).
fn apply_settings(m: &mut Model, cfg: &RunConfig) {
    m.adam.weight_decay = cfg.weight_decay;
    m.adam.clip_norm = cfg.clip_norm;
    m.augment = cfg.augment;
}

/// A fresh network with the run's learning rate and settings.
fn new_model(gpu: &Gpu, arch: &Architecture, cfg: &RunConfig, seed: u64) -> Result<Model> {
    let mut m = Model::new(gpu, arch, seed)?;
    m.adam.lr = cfg.lr;
    apply_settings(&mut m, cfg);
    Ok(m)
}

/// Gradient-trained models (ensemble members that differ in initialisation, shuffles and
/// dropout masks and share the split), each optionally refitted on all training clips.
fn fit_by_gradients(run: &Run, p: &Parts, resume: Option<Predictor>, save_best: Option<SaveBest>) -> Result<(Vec<Model>, Architecture, serde_json::Value)> {
    let (gpu, cfg, k) = (run.gpu, run.cfg, p.classes);
    let mut resumed = resume.map(|r| {
        let done = r.meta.training.saved_epoch.unwrap_or(0);
        (r, done)
    });
    let arch = match &resumed {
        Some((r, _)) => r.meta.architecture.clone(),
        None => cfg.model.architecture(cfg.input, p.input_shape, k)?,
    };
    let weights = cfg.class_weights_for(p.train, k);
    let (mut models, mut logs, mut kept, mut configs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for member in 0..cfg.ensemble {
        let seed = cfg.seed.wrapping_add(1_000 * member as u64);
        let (mut model, first_epoch) = match resumed.take() {
            Some((r, done)) => match r.classifier.into_networks() {
                Ok(models) => {
                    let mut m = models.into_iter().next().expect("one model");
                    apply_settings(&mut m, cfg);
                    (m, done + 1)
                }
                Err(other) => bail!("--resume: a {} model is fitted in one go and has nothing to resume", other.family().kind),
            },
            None => (new_model(gpu, &arch, cfg, seed)?, 1),
        };
        if first_epoch > cfg.epochs {
            bail!("--resume: the model is at epoch {}; give --epochs above it", first_epoch - 1);
        }
        let tc = TrainConfig {
            first_epoch,
            epochs: cfg.epochs,
            batch_size: cfg.batch_size,
            seed,
            patience: cfg.patience,
            lr_patience: cfg.lr_patience,
            precision: cfg.precision,
            ..Default::default()
        };
        let who = if cfg.ensemble > 1 { format!("member {member} ") } else { String::new() };
        let fitted = train::fit_saving(
            gpu,
            &mut model,
            p.train,
            p.val,
            &weights,
            &tc,
            |e| {
                if let Some(on_epoch) = run.on_epoch {
                    on_epoch(&EpochEvent { member, epoch: e.clone() })?;
                }
                // The first epoch compiles the kernels (and may tune them): its rate is not the steady one.
                let warm = if e.epoch == first_epoch { " (includes kernel compilation)" } else { "" };
                (run.log)(&format!(
                    "{who}epoch {:>3}: loss {:.4}  val_loss {:.4}  val_acc {:.4}  lr {:.2e}  {:.0} samples/s{warm}",
                    e.epoch, e.loss, e.val_loss, e.val_accuracy, e.lr, e.samples_per_s
                ));
                Ok(())
            },
            |model, e| save_best.map_or(Ok(()), |save| save(model, &arch, &tc, e.epoch)),
        )?;
        if let Some(full) = p.full {
            // Replay the schedule validation chose, up to its best epoch, on all training clips.
            let lrs: Vec<f32> = fitted.log.iter().take_while(|e| e.epoch <= fitted.kept_epoch).map(|e| e.lr).collect();
            model = new_model(gpu, &arch, cfg, seed)?;
            train::fit_schedule(gpu, &mut model, full, &cfg.class_weights_for(full, k), &tc, &lrs, |epoch, loss, lr| {
                (run.log)(&format!("{who}refit epoch {epoch:>3}/{}: loss {loss:.4}  lr {lr:.2e}", lrs.len()));
            })?;
        }
        models.push(model);
        kept.push(fitted.kept_epoch);
        logs.push(fitted.log);
        configs.push(tc);
    }
    // The epoch whose weights are kept (the best by validation loss), where --resume continues.
    let saved_epoch = kept[0];
    let record = serde_json::json!({
        "saved_epoch": saved_epoch,
        "config": configs,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "clip_norm": cfg.clip_norm,
        "epochs_run": logs.iter().map(|l| l.len()).collect::<Vec<_>>(),
        "history": logs,
    });
    Ok((models, arch, record))
}
