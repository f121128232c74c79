//! `ser._ser`: the Python extension, a thin layer over the library the CLI calls. It owns one
//! device per process, created on first use (or by `init`) and closed by `close`. Calls from
//! several threads take turns on it. The GIL is released around every decode and every GPU
//! wait. Errors arrive as `SerError`: `InputError` for bad input, `GpuError` when no device can
//! be had. Structured results cross as JSON text; python/ser/__init__.py turns that into dicts.
//! Arrays cross as numpy arrays.

use anyhow::Context;
use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ser::experiment::{self, Run, RunConfig};
use ser::features::corpus::{self, BuildOptions, Data};
use ser::features::set::{ClipInfo, FeatureSet};
use ser::gpu::{AdapterSelector, BackendChoice, Gpu};
use ser::infer::Predictor;
use ser::ops::autotune::AutotuneMode;
use ser::progress::Progress;
use ser::sources::{LabelMap, Source};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

create_exception!(_ser, SerError, PyException, "An error from ser, with the command line's message.");
create_exception!(_ser, InputError, SerError, "Bad input: a file, manifest, model or option ser cannot use.");
create_exception!(_ser, GpuError, SerError, "No GPU device could be had, or the device failed.");

/// How the process-wide device is made: set by `init`, used on first use.
#[derive(Clone, Default)]
struct Settings {
    selector: AdapterSelector,
    autotune: Option<AutotuneMode>,
    pin: Option<ser::ops::gemm::GemmKernel>,
    autotune_file: Option<PathBuf>,
}

struct Device {
    gpu: Option<Arc<Gpu>>,
    settings: Settings,
}

/// The device and its settings. Held for a whole call: calls from several threads take turns.
static DEVICE: Mutex<Device> = Mutex::new(Device { gpu: None, settings: Settings { selector: AdapterSelector { name: None, backend: None }, autotune: None, pin: None, autotune_file: None } });

/// What went wrong, and so which Python exception says it.
enum Failure {
    Input(anyhow::Error),
    Gpu(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f {
            Failure::Input(e) => InputError::new_err(format!("{e:#}")),
            Failure::Gpu(e) => GpuError::new_err(format!("{e:#}")),
            Failure::Other(e) => SerError::new_err(format!("{e:#}")),
        }
    }
}

/// Marks an error as bad input.
fn input<T>(r: anyhow::Result<T>) -> Result<T, Failure> {
    r.map_err(Failure::Input)
}

/// Runs `f` on the process-wide device, the GIL released, creating the device first if needed.
fn on_device<T: Send>(py: Python<'_>, f: impl FnOnce(&Gpu) -> Result<T, Failure> + Send) -> PyResult<T> {
    py.detach(|| {
        let mut device = DEVICE.lock().unwrap_or_else(|p| p.into_inner());
        if device.gpu.is_none() {
            let s = device.settings.clone();
            let file = s.autotune_file.clone().or_else(ser::runtime::tuning_file_from_env);
            let runtime = ser::runtime::Settings { gpu: Default::default(), tuning: ser::runtime::Tuning { mode: s.autotune.unwrap_or(AutotuneMode::Fast), pin: s.pin, file } };
            let gpu = ser::runtime::open(&s.selector, &runtime).map_err(Failure::Gpu)?;
            device.gpu = Some(Arc::new(gpu));
        }
        let gpu = device.gpu.clone().expect("made above");
        f(&gpu)
    })
    .map_err(PyErr::from)
}

/// How a call stops early: on Ctrl-C, checked at every progress report, or on an exception its
/// progress callback raised. The Python exception waits here while the call holds the device,
/// and is raised as itself once the call has let go of it (`raise_or`). Reports come on the
/// calling thread, the only one where Python sees signals.
#[derive(Clone, Default)]
struct Stop(Arc<Mutex<Option<PyErr>>>);

impl Stop {
    /// Runs `call` with Python attached, then checks for signals; an exception from either is
    /// kept and becomes the error that stops the run.
    fn check(&self, call: impl FnOnce(Python<'_>) -> PyResult<()>) -> anyhow::Result<()> {
        Python::attach(|py| call(py).and_then(|()| py.check_signals())).map_err(|err| {
            let message = err.to_string();
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
            anyhow::anyhow!("stopped: {message}")
        })
    }

    /// A progress hook: `callback(stage, done, total)` when given, then the check for signals.
    fn progress(&self, callback: Option<Py<PyAny>>) -> Progress {
        let stop = self.clone();
        Progress::new(move |step| {
            stop.check(|py| match &callback {
                Some(callback) => callback.call1(py, (step.stage, step.done, step.total)).map(|_| ()),
                None => Ok(()),
            })
        })
    }

    /// The kept exception when the call stopped on one, else the call's own result.
    fn raise_or<T>(&self, result: PyResult<T>) -> PyResult<T> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(err) => Err(err),
            None => result,
        }
    }
}

/// Chooses the device and how it tunes its kernels, before first use (or after `close`).
#[pyfunction]
#[pyo3(signature = (adapter=None, backend=None, autotune="fast", gemm_kernel=None, autotune_file=None))]
fn init(py: Python<'_>, adapter: Option<String>, backend: Option<String>, autotune: &str, gemm_kernel: Option<String>, autotune_file: Option<PathBuf>) -> PyResult<()> {
    let backend = backend.map(|b| BackendChoice::parse(&b).ok_or_else(|| InputError::new_err(format!("backend={b:?}: expected vulkan, gl, metal or dx12")))).transpose()?;
    let mode = <AutotuneMode as ser::choice::Choice>::from_name(autotune).ok_or_else(|| InputError::new_err(format!("autotune={autotune:?}: expected off, fast or full")))?;
    let pin = match gemm_kernel.as_deref() {
        None | Some("auto") => None,
        Some(name) => Some(ser::ops::gemm::GemmKernel::from_name(name).ok_or_else(|| InputError::new_err(format!("gemm_kernel={name:?}: not a kernel")))?),
    };
    py.detach(|| {
        let mut device = DEVICE.lock().unwrap_or_else(|p| p.into_inner());
        if device.gpu.is_some() {
            return Err(SerError::new_err("the device is already open: call ser.close() first"));
        }
        device.settings = Settings { selector: AdapterSelector { name: adapter, backend }, autotune: Some(mode), pin, autotune_file };
        Ok(())
    })
}

/// Releases the device (the next call opens a new one).
#[pyfunction]
fn close(py: Python<'_>) {
    py.detach(|| DEVICE.lock().unwrap_or_else(|p| p.into_inner()).gpu = None);
}

/// Every adapter wgpu finds, best first, as JSON.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<String> {
    let list = py.detach(ser::gpu::list_adapters);
    serde_json::to_string(&list).map_err(|e| SerError::new_err(e.to_string()))
}

/// The selftest's checks on the device, as JSON lines' objects in a list.
#[pyfunction]
#[pyo3(signature = (quick=true, only=Vec::new(), seed=None))]
fn selftest(py: Python<'_>, quick: bool, only: Vec<String>, seed: Option<u64>) -> PyResult<String> {
    let seed = seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    let size = if quick { ser::selftest::Size::Quick } else { ser::selftest::Size::Full };
    on_device(py, |gpu| {
        let results = ser::selftest::run(gpu, &only, seed, size, |_| {});
        Ok(serde_json::to_string(&results).context("selftest results")?)
    })
}

/// What a model file is (`ser info --json`), from its metadata alone: no device is opened.
#[pyfunction]
#[pyo3(signature = (path=None))]
fn info(py: Python<'_>, path: Option<PathBuf>) -> PyResult<String> {
    let described = py.detach(|| ser::infer::describe(path.as_deref()));
    let described = described.map_err(|e| InputError::new_err(format!("{e:#}")))?;
    serde_json::to_string(&described).map_err(|e| SerError::new_err(e.to_string()))
}

/// A file decoded and mixed to mono, at its own rate or resampled to `sample_rate`.
#[pyfunction]
#[pyo3(signature = (path, sample_rate=None))]
fn decode<'py>(py: Python<'py>, path: PathBuf, sample_rate: Option<u32>) -> PyResult<(Bound<'py, PyArray1<f32>>, u32)> {
    let (samples, rate) = py
        .detach(|| -> anyhow::Result<(Vec<f32>, u32)> {
            let audio = ser::audio::decode_file(&path)?;
            match sample_rate {
                Some(rate) => Ok((ser::audio::to_rate(&audio, rate).with_context(|| path.display().to_string())?, rate)),
                None => Ok((audio.samples, audio.sample_rate)),
            }
        })
        .map_err(|e| InputError::new_err(format!("{e:#}")))?;
    Ok((samples.into_pyarray(py), rate))
}

/// The labelled data a call reads: folders and manifests, a label map, a selection.
fn data_of(data: Vec<PathBuf>, manifest: Vec<PathBuf>, label_map: Option<String>, drop: Vec<String>) -> Result<Data, Failure> {
    let sources = data.into_iter().map(Source::Folder).chain(manifest.into_iter().map(Source::Manifest)).collect();
    let label_map = input(label_map.as_deref().map(LabelMap::parse).transpose())?.unwrap_or_default();
    let drop = drop
        .iter()
        .map(|d| ser::audio::Emotion::from_label(d).ok_or_else(|| Failure::Input(anyhow::anyhow!("drop={d:?}: not a class"))))
        .collect::<Result<_, _>>()?;
    Ok(Data { sources, selection: ser::audio::Selection { vocal: ser::audio::VocalFilter::Both, drop }, label_map })
}

/// Features of labelled data: its folders and manifests read first, so that a bad one is an
/// input error, then built.
fn build_data(gpu: &Gpu, data: &Data, cfg: &ser::features::FeatureConfig, cache: Option<PathBuf>, on_progress: Progress) -> Result<(FeatureSet, corpus::BuildReport), Failure> {
    let found = input(ser::sources::load(&data.sources, &data.selection, &data.label_map))?;
    Ok(corpus::build_from(gpu, data, found, cfg, &options(cache, on_progress))?)
}

/// Arrays at `rate` brought to `target`, each refused (as bad input) without usable signal.
fn signals_at(arrays: Vec<Vec<f32>>, rate: u32, target: u32) -> Result<Vec<Vec<f32>>, Failure> {
    arrays
        .into_iter()
        .map(|a| {
            let s = input(ser::audio::to_rate(&ser::audio::Audio::new(a, rate), target))?;
            input(ser::audio::check_signal(&s, target))?;
            Ok(s)
        })
        .collect()
}

fn options(cache: Option<PathBuf>, on_progress: Progress) -> BuildOptions {
    BuildOptions { strict: false, cache_dir: cache.or_else(ser::runtime::feature_cache_from_env), progress: false, speed_copies: Vec::new(), shard: None, on_progress }
}

/// A feature set as numpy arrays and JSON clip records.
fn set_to_py<'py>(py: Python<'py>, set: FeatureSet, skipped: Vec<(String, String)>) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let (n, t, d) = (set.clips.len(), set.t_max, set.dim);
    out.set_item("frames", set.frames.into_pyarray(py).reshape([n, t, d])?)?;
    out.set_item("lengths", set.lengths.into_pyarray(py))?;
    out.set_item("vectors", set.vectors.into_pyarray(py).reshape([n, d])?)?;
    out.set_item("stds", set.stds.into_pyarray(py).reshape([n, d])?)?;
    out.set_item("clips", serde_json::to_string(&set.clips).map_err(|e| SerError::new_err(e.to_string()))?)?;
    out.set_item("config", serde_json::to_string(&set.config).map_err(|e| SerError::new_err(e.to_string()))?)?;
    out.set_item("feature_names", set.config.feature_names())?;
    out.set_item("skipped", skipped)?;
    Ok(out)
}

/// Files that could not be used: (name, reason).
type Skipped = Vec<(String, String)>;

/// Decoded files: each one's record and samples, and the files that could not be used.
type Decoded = (Vec<ClipInfo>, Vec<Vec<f32>>, Skipped);

/// Decodes `files` (each resampled to the configuration's rate), failures listed by name.
fn decode_files(files: &[PathBuf], rate: u32, on_progress: &Progress) -> Result<Decoded, Failure> {
    let (mut clips, mut signals, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (i, f) in files.iter().enumerate() {
        let name = ser::infer::path_text(f);
        match ser::audio::load(f, rate).and_then(|s| ser::audio::check_signal(&s, rate).map(|()| s).with_context(|| name.clone())) {
            Ok(s) => {
                clips.push(ClipInfo::unlabelled(name));
                signals.push(s);
            }
            Err(e) => skipped.push((name, format!("{e:#}"))),
        }
        on_progress.report("decode", i + 1, files.len())?;
    }
    Ok((clips, signals, skipped))
}

/// Features of labelled data (`data`, `manifest`), of files, or of arrays at `sample_rate`.
#[pyfunction]
#[pyo3(signature = (data, manifest, files, audio, sample_rate, config, label_map=None, drop=Vec::new(), cache=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn features<'py>(
    py: Python<'py>,
    data: Vec<PathBuf>,
    manifest: Vec<PathBuf>,
    files: Vec<PathBuf>,
    audio: Vec<PyReadonlyArray1<'py, f32>>,
    sample_rate: Option<u32>,
    config: &str,
    label_map: Option<String>,
    drop: Vec<String>,
    cache: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg: ser::features::FeatureConfig = serde_json::from_str(config).map_err(|e| InputError::new_err(format!("feature configuration: {e}")))?;
    cfg.validate().map_err(|e| InputError::new_err(format!("feature configuration: {e:#}")))?;
    let arrays: Vec<Vec<f32>> = audio.iter().map(|a| a.as_slice().map(<[f32]>::to_vec)).collect::<Result<_, _>>()?;
    let given = [!data.is_empty() || !manifest.is_empty(), !files.is_empty(), !arrays.is_empty()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(InputError::new_err("give one of data/manifest, files or audio"));
    }
    if !arrays.is_empty() && sample_rate.is_none() {
        return Err(InputError::new_err("audio arrays need their sample_rate"));
    }
    let stop = Stop::default();
    let on_progress = stop.progress(progress);
    let result = on_device(py, move |gpu| {
        if given[0] {
            let (set, report) = build_data(gpu, &data_of(data, manifest, label_map, drop)?, &cfg, cache, on_progress)?;
            return Ok((set, report.skipped));
        }
        let (clips, signals, skipped) = if given[1] {
            decode_files(&files, cfg.sample_rate, &on_progress)?
        } else {
            let signals = signals_at(arrays, sample_rate.expect("checked above"), cfg.sample_rate)?;
            ((0..signals.len()).map(|i| ClipInfo::unlabelled(format!("array {i}"))).collect(), signals, Vec::new())
        };
        if signals.is_empty() {
            return Err(Failure::Input(anyhow::anyhow!("none of the files could be used: {skipped:?}")));
        }
        let slices: Vec<&[f32]> = signals.iter().map(Vec::as_slice).collect();
        Ok((corpus::extract_all(gpu, &cfg, clips, &slices, false, &on_progress)?, skipped))
    });
    let (set, skipped) = stop.raise_or(result)?;
    set_to_py(py, set, skipped)
}

/// A trained or loaded model.
#[pyclass(module = "ser._ser", frozen)]
struct Model {
    predictor: Arc<Predictor>,
}

#[pymethods]
impl Model {
    /// Loads a model file; None: the built-in model.
    #[staticmethod]
    #[pyo3(signature = (path=None))]
    fn load(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Model> {
        let predictor = on_device(py, |gpu| input(ser::infer::load_model(gpu, path.as_deref())))?;
        Ok(Model { predictor: Arc::new(predictor) })
    }

    /// One model whose class probabilities are the mean of `models`' (as `ser ensemble`): any
    /// kinds and inputs sharing classes, feature configuration and speaker normalisation.
    #[staticmethod]
    fn ensemble(py: Python<'_>, models: Vec<PyRef<'_, Model>>) -> PyResult<Model> {
        let members: Vec<Arc<Predictor>> = models.iter().map(|m| m.predictor.clone()).collect();
        let joined = on_device(py, move |gpu| {
            // Each member copied through its file's bytes: the given models stay usable.
            let copies = members.iter().map(|p| ser::infer::to_bytes(gpu, p).and_then(|b| ser::infer::load_model_bytes(gpu, "a member", b))).collect::<anyhow::Result<Vec<_>>>();
            input(copies.and_then(ser::infer::ensemble::join))
        })?;
        Ok(Model { predictor: Arc::new(joined) })
    }

    /// The class names, in output order.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.predictor.class_names()
    }

    /// The kind of classifier ("network", "krr", "knn", "svm", "forest", "gnb"), or "ensemble" for
    /// an ensemble file.
    #[getter]
    fn kind(&self) -> &'static str {
        self.predictor.kind()
    }

    /// The training record (JSON).
    #[getter]
    fn training(&self) -> String {
        self.predictor.meta.training.to_json()
    }

    /// The data contract (JSON): classes, label map, features, input, scaler, corpora.
    #[getter]
    fn contract(&self) -> PyResult<String> {
        serde_json::to_string(&self.predictor.meta.data).map_err(|e| SerError::new_err(e.to_string()))
    }

    /// Predictions of files, as `ser predict`'s JSON lines; and the files skipped, with reasons.
    #[pyo3(signature = (files, chunk=128, segment=None, segment_hop=None, progress=None, speaker_groups="auto", min_speaker_clips=None))]
    #[allow(clippy::too_many_arguments)]
    fn predict(
        &self,
        py: Python<'_>,
        files: Vec<PathBuf>,
        chunk: usize,
        segment: Option<f64>,
        segment_hop: Option<f64>,
        progress: Option<Py<PyAny>>,
        speaker_groups: &str,
        min_speaker_clips: Option<usize>,
    ) -> PyResult<(Vec<String>, Skipped)> {
        let groups = speaker_grouping(speaker_groups, min_speaker_clips)?;
        let predictor = self.predictor.clone();
        let stop = Stop::default();
        let on_progress = stop.progress(progress);
        let result = on_device(py, move |gpu| {
            let files = input(ser::infer::collect_files(&files))?;
            let segments = segment.map(|length| ser::infer::Segments { length, hop: segment_hop.unwrap_or(length) });
            let o = ser::infer::PredictOptions { files_per_chunk: chunk.max(1), segments, on_progress, groups, min_clips: min_speaker_clips, ..Default::default() };
            let mut lines = Vec::new();
            let skipped = predictor.predict_files(gpu, &files, &o, |p| lines.push(p.json().to_string()))?;
            Ok((lines, skipped))
        });
        stop.raise_or(result)
    }

    /// Class probabilities [N, classes] of audio arrays at `sample_rate`.
    fn predict_proba<'py>(&self, py: Python<'py>, audio: Vec<PyReadonlyArray1<'py, f32>>, sample_rate: u32) -> PyResult<Bound<'py, numpy::PyArray2<f32>>> {
        let arrays: Vec<Vec<f32>> = audio.iter().map(|a| a.as_slice().map(<[f32]>::to_vec)).collect::<Result<_, _>>()?;
        let predictor = self.predictor.clone();
        let k = predictor.class_names().len();
        let rows = on_device(py, move |gpu| {
            let signals = signals_at(arrays, sample_rate, predictor.meta.data.features.sample_rate)?;
            let names: Vec<String> = (0..signals.len()).map(|i| format!("array {i}")).collect();
            let slices: Vec<&[f32]> = signals.iter().map(Vec::as_slice).collect();
            let predictions = predictor.predict_signals(gpu, &names, &slices)?;
            Ok(predictions.iter().flat_map(|p| p.probabilities.iter().map(|(_, q)| *q)).collect::<Vec<f32>>())
        })?;
        let n = rows.len() / k.max(1);
        rows.into_pyarray(py).reshape([n, k])
    }

    /// Class probabilities [N, classes] of features made by `features` with the model's
    /// configuration: `frames` [N, T, D], `lengths` [N], `vectors` and `stds` [N, D].
    #[allow(clippy::too_many_arguments)]
    fn predict_proba_features<'py>(
        &self,
        py: Python<'py>,
        config: &str,
        frames: numpy::PyReadonlyArray3<'py, f32>,
        lengths: PyReadonlyArray1<'py, u32>,
        vectors: numpy::PyReadonlyArray2<'py, f32>,
        stds: numpy::PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, numpy::PyArray2<f32>>> {
        let cfg: ser::features::FeatureConfig = serde_json::from_str(config).map_err(|e| InputError::new_err(format!("features' configuration: {e}")))?;
        let predictor = self.predictor.clone();
        if cfg != predictor.meta.data.features {
            return Err(InputError::new_err("these features were made with another configuration than the model's: make them with the model's (Model.contract['features'])"));
        }
        if predictor.meta.data.speaker_norm.is_some() {
            return Err(InputError::new_err("this model normalises speakers; predict files with Model.predict instead"));
        }
        let [n, t_max, dim] = frames.shape() else { return Err(InputError::new_err("frames must be [N, T, D]")) };
        let (n, t_max, dim) = (*n, *t_max, *dim);
        if dim != cfg.dim() || lengths.len() != n || vectors.shape() != [n, dim] || stds.shape() != [n, dim] {
            return Err(InputError::new_err(format!("arrays of {n} clips and {dim} columns disagree with each other or with the configuration's {} columns", cfg.dim())));
        }
        let mut set = FeatureSet {
            config: cfg,
            clips: (0..n).map(|i| ClipInfo::unlabelled(format!("row {i}"))).collect(),
            frames: frames.as_slice()?.to_vec(),
            lengths: lengths.as_slice()?.to_vec(),
            t_max,
            vectors: vectors.as_slice()?.to_vec(),
            stds: stds.as_slice()?.to_vec(),
            dim,
            label_map: Vec::new(),
            distribution: Vec::new(),
            distribution_width: 0,
            durations: Vec::new(),
            voicing: Vec::new(),
        };
        if let Some(i) = set.lengths.iter().position(|&l| l as usize > t_max) {
            return Err(InputError::new_err(format!("clip {i} claims {} frames of {t_max}", set.lengths[i])));
        }
        let k = predictor.class_names().len();
        let rows = on_device(py, move |gpu| {
            let all: Vec<usize> = (0..n).collect();
            predictor.prepare(gpu, &mut set)?;
            let probs = predictor.clip_probabilities(gpu, &set, &all)?;
            Ok(probs.into_iter().flatten().collect::<Vec<f32>>())
        })?;
        rows.into_pyarray(py).reshape([n, k])
    }

    /// Scores the model on labelled data (as `ser eval --json`).
    #[pyo3(signature = (data, manifest, label_map=None, progress=None, speaker_groups="auto", min_speaker_clips=None))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        py: Python<'_>,
        data: Vec<PathBuf>,
        manifest: Vec<PathBuf>,
        label_map: Option<String>,
        progress: Option<Py<PyAny>>,
        speaker_groups: &str,
        min_speaker_clips: Option<usize>,
    ) -> PyResult<String> {
        let groups = speaker_grouping(speaker_groups, min_speaker_clips)?;
        let predictor = self.predictor.clone();
        let stop = Stop::default();
        let on_progress = stop.progress(progress);
        let result = on_device(py, move |gpu| {
            let (set, report) = build_data(gpu, &data_of(data, manifest, label_map, Vec::new())?, &predictor.meta.data.features, None, on_progress)?;
            let o = ser::infer::EvalOptions { held_out_of_seed: None, held_out_fold: None, groups, min_clips: min_speaker_clips };
            let ev = ser::infer::evaluate(gpu, std::slice::from_ref(&*predictor), &set, &o)?;
            let mut json = serde_json::to_value(&ev.report).context("report")?;
            json["other_classes"] = serde_json::to_value(&ev.other_by_class).context("classes left out")?;
            json["skipped"] = serde_json::to_value(&report.skipped).context("skipped")?;
            Ok(json.to_string())
        });
        stop.raise_or(result)
    }

    /// Saves the model (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let predictor = self.predictor.clone();
        on_device(py, move |gpu| {
            input(ser::store::check_output_path(&path, "path"))?;
            Ok(ser::infer::save(gpu, &predictor, &path)?)
        })
    }
}

/// A speaker-normalised model's grouping of files into speakers (`speaker_groups` as
/// `--speaker-groups` spells it) and its fewest clips a speaker, as InputErrors when wrong.
fn speaker_grouping(speaker_groups: &str, min_speaker_clips: Option<usize>) -> PyResult<ser::contract::SpeakerGroups> {
    use ser::choice::Choice;
    if min_speaker_clips == Some(0) {
        return Err(InputError::new_err("min_speaker_clips=0: a speaker's statistics need at least 1 clip"));
    }
    ser::contract::SpeakerGroups::parse_named("speaker_groups", speaker_groups).map_err(|e| InputError::new_err(e.to_string()))
}

/// The labelled features a training call reads: a feature file, or data built with `config`
/// (refused first when they would lack what the run's input `reads`).
fn training_set(gpu: &Gpu, data: Data, features: Option<PathBuf>, config: &str, reads: ser::dataset::Input, on_progress: Progress) -> Result<(FeatureSet, Data), Failure> {
    let set = match (features, data.sources.is_empty()) {
        (Some(f), true) => input(FeatureSet::read(&f))?,
        (None, false) => {
            let cfg: ser::features::FeatureConfig = input(serde_json::from_str(config).context("feature configuration"))?;
            input(ser::dataset::check_features_for(reads, &cfg))?;
            build_data(gpu, &data, &cfg, None, on_progress)?.0
        }
        _ => return Err(Failure::Input(anyhow::anyhow!("give features=FILE or data/manifest, one of them"))),
    };
    Ok((set, data))
}

/// Trains a model (`ser train` without --out): the model and its test report (JSON or None).
/// `progress` is called with each epoch's row (JSON) as it ends.
#[pyfunction]
#[pyo3(signature = (data, manifest, features, options, config, label_map=None, drop=Vec::new(), progress=None))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    data: Vec<PathBuf>,
    manifest: Vec<PathBuf>,
    features: Option<PathBuf>,
    options: &str,
    config: &str,
    label_map: Option<String>,
    drop: Vec<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(Model, Option<String>)> {
    let options: serde_json::Map<String, serde_json::Value> = serde_json::from_str(options).map_err(|e| InputError::new_err(e.to_string()))?;
    let mut cfg = RunConfig::from_options(&options).map_err(|e| InputError::new_err(format!("{e:#}")))?;
    let config = config.to_string();
    // Ctrl-C, or an exception in the progress callback, stops training after the epoch it came
    // in (Ctrl-C also while the features are built), and is raised as itself.
    let stop = Stop::default();
    let result = on_device(py, |gpu| {
        let (set, data) = training_set(gpu, data_of(data, manifest, label_map, drop)?, features, &config, cfg.input, stop.progress(None))?;
        let (set, l) = input(experiment::labelled_for_run(gpu, set, &data.selection, &cfg, ser::contract::SpeakerGroups::Auto))?;
        if !options.contains_key("split") && l.given.iter().any(Option::is_some) {
            cfg.split = experiment::Split::Given;
        }
        let on_epoch = |e: &experiment::EpochEvent| -> anyhow::Result<()> {
            let row = serde_json::to_string(e).unwrap_or_default();
            stop.check(|py| match &progress {
                Some(callback) => callback.call1(py, (row,)).map(|_| ()),
                None => Ok(()),
            })
            .with_context(|| format!("training stopped after epoch {}", e.epoch.epoch))
        };
        let run = Run { gpu, cfg: &cfg, set: &set, labelled: &l, log: &|_| {}, on_epoch: Some(&on_epoch) };
        let (predictor, report) = experiment::train_model(&run)?;
        Ok((predictor, report.map(|r| serde_json::to_string(&r).unwrap_or_default())))
    });
    let (predictor, report) = stop.raise_or(result)?;
    Ok((Model { predictor: Arc::new(predictor) }, report))
}

/// `ser compare`: every model on one random split (and by speaker unless `no_speaker_folds`),
/// as JSON rows.
#[pyfunction]
#[pyo3(signature = (data, manifest, features, models, options, config, no_speaker_folds=false, label_map=None, drop=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn compare(
    py: Python<'_>,
    data: Vec<PathBuf>,
    manifest: Vec<PathBuf>,
    features: Option<PathBuf>,
    models: Vec<String>,
    options: &str,
    config: &str,
    no_speaker_folds: bool,
    label_map: Option<String>,
    drop: Vec<String>,
) -> PyResult<String> {
    let options: serde_json::Map<String, serde_json::Value> = serde_json::from_str(options).map_err(|e| InputError::new_err(e.to_string()))?;
    let cfg = RunConfig::from_options(&options).map_err(|e| InputError::new_err(format!("{e:#}")))?;
    let kinds = models
        .iter()
        .map(|m| ser::models::ModelKind::from_name(m).ok_or_else(|| InputError::new_err(format!("models: {m:?} is not a model"))))
        .collect::<PyResult<Vec<_>>>()?;
    let config = config.to_string();
    let stop = Stop::default();
    let on_progress = stop.progress(None);
    let result = on_device(py, move |gpu| {
        let (set, data) = training_set(gpu, data_of(data, manifest, label_map, drop)?, features, &config, cfg.input, on_progress)?;
        let (set, l) = input(experiment::labelled_for_run(gpu, set, &data.selection, &cfg, ser::contract::SpeakerGroups::Auto))?;
        let run = Run::quiet(gpu, &cfg, &set, &l);
        let rows = experiment::compare(&run, &kinds, !no_speaker_folds, None)?;
        Ok(serde_json::to_string(&rows).context("rows")?)
    });
    stop.raise_or(result)
}

/// The default feature configuration (JSON), for `features(**config)` to start from.
#[pyfunction]
fn default_feature_config() -> PyResult<String> {
    serde_json::to_string(&ser::features::FeatureConfig::default()).map_err(|e| SerError::new_err(e.to_string()))
}

#[pymodule]
fn _ser(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SerError", py.get_type::<SerError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("GpuError", py.get_type::<GpuError>())?;
    m.add_class::<Model>()?;
    for f in [
        wrap_pyfunction!(init, m)?,
        wrap_pyfunction!(close, m)?,
        wrap_pyfunction!(devices, m)?,
        wrap_pyfunction!(selftest, m)?,
        wrap_pyfunction!(info, m)?,
        wrap_pyfunction!(decode, m)?,
        wrap_pyfunction!(features, m)?,
        wrap_pyfunction!(train, m)?,
        wrap_pyfunction!(compare, m)?,
        wrap_pyfunction!(default_feature_config, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}
