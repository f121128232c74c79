"""ser: speech emotion recognition on any GPU, from Python.

The same library as the `ser` command line (hand-written WGSL kernels run through wgpu on
Vulkan, Metal, DX12 or GL), with numpy arrays in and out:

    import ser
    model = ser.Model.load()                      # the built-in model
    model.predict(["clip.wav"])                   # [{"file": ..., "label": "happy", ...}]
    audio, rate = ser.decode("clip.wav")
    model.predict_audio(audio, rate)
    feats = ser.features(data="RAVDESS")           # {"frames": (N, T, 59), "vectors": ..., ...}
    m = ser.train(data="CREMA-D/AudioWAV", model="krr", input="distribution", split="speakers",
                  test_speakers=["1001", "1002"])
    m.evaluate(data="EmoDB/wav")                  # as `ser eval --json`

One device serves the whole process. It is opened on first use, with the settings of `init()`
if that was called first, and `close()` releases it. Calls from several threads take turns on
it, and the GIL is released while ser decodes audio or waits for the GPU. Errors are raised as
`SerError`: `InputError` for bad input, `GpuError` when no device can be had. Their messages
are the command line's. Nothing here reads environment variables.
"""

from __future__ import annotations

import json
import sys
import warnings
from os import PathLike, fspath
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from . import _ser
from ._ser import GpuError, InputError, SerError, close, init

__all__ = [
    "GpuError",
    "InputError",
    "Model",
    "SerError",
    "close",
    "compare",
    "decode",
    "devices",
    "features",
    "info",
    "init",
    "selftest",
    "train",
]

Paths = Union[str, PathLike, Sequence[Union[str, PathLike]], None]

# Feature options: ser features' flags with underscores; `feature_rate` is --sample-rate (the
# features' rate), since `sample_rate` names the rate of the audio arrays given.
_FEATURE_OPTIONS = {"feature_rate": "sample_rate", "n_fft": "n_fft", "hop": "hop", "n_mels": "n_mels", "n_mfcc": "n_mfcc", "fmin": "fmin", "fmax": "fmax", "tuning": "tuning", "contrast_fmin": "contrast_fmin", "set": "set"}


def _paths(value: Paths) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, PathLike)):
        return [fspath(value)]
    return [fspath(v) for v in value]


def _feature_config(options: dict[str, Any]) -> str:
    config = json.loads(_ser.default_feature_config())
    for key, value in options.items():
        if key not in _FEATURE_OPTIONS:
            raise InputError(f"{key!r} is not a feature option; the options are {', '.join(sorted(_FEATURE_OPTIONS))}")
        if key == "tuning":
            value = "estimate" if value == "estimate" else {"fixed": float(value)}
        if key == "set":
            value = value.split(",") if isinstance(value, str) else list(value)
        config[_FEATURE_OPTIONS[key]] = value
    return json.dumps(config)


def _label_map(label_map: Union[str, PathLike, dict, None]) -> Optional[str]:
    if label_map is None:
        return None
    if isinstance(label_map, dict):
        return ",".join(f"{k}={v}" for k, v in label_map.items())
    return fspath(label_map)


def _drop(drop: Union[str, Iterable[str], None]) -> list[str]:
    if drop is None:
        return []
    return [drop] if isinstance(drop, str) else list(drop)


def devices() -> list[dict]:
    """Every adapter wgpu finds, best first: backend, type, driver, key limits, features."""
    return json.loads(_ser.devices())


def selftest(quick: bool = True, adapter: Optional[str] = None, only: Optional[Sequence[str]] = None, seed: Optional[int] = None) -> list[dict]:
    """Every kernel family checked against its float64 reference on the device, as `ser
    selftest --json` prints them (one dict per check, with `passed`). `adapter` reopens the
    process-wide device on that adapter first."""
    if adapter is not None:
        close()
        init(adapter=adapter)
    return json.loads(_ser.selftest(quick, list(only or []), seed))


def info(path: Union[str, PathLike, None] = None) -> dict:
    """What a model file is, from its metadata alone (no device is opened; `ser info --json`):
    `path`, `kind` ("ensemble" or the model's kind) and `members`, each with its `kind`, data
    `contract`, `training` record and `temperatures`. None: the built-in model."""
    return json.loads(_ser.info(fspath(path) if path is not None else None))


def decode(path: Union[str, PathLike], sample_rate: Optional[int] = None) -> tuple[np.ndarray, int]:
    """A WAV or FLAC file as mono float32 samples and their rate: its own, or `sample_rate`
    after ser's resampler (the one features are made with)."""
    return _ser.decode(fspath(path), sample_rate)


def features(
    data: Paths = None,
    manifest: Paths = None,
    files: Paths = None,
    audio: Union[np.ndarray, Sequence[np.ndarray], None] = None,
    sample_rate: Optional[int] = None,
    label_map: Union[str, PathLike, dict, None] = None,
    drop: Union[str, Iterable[str], None] = None,
    cache: Union[str, PathLike, None] = None,
    progress: Union[bool, Callable[[dict], Any], None] = None,
    **config: Any,
) -> dict[str, Any]:
    """Features of labelled data (`data` folders, `manifest` files: as `ser features`), of
    audio files, or of arrays at `sample_rate`. Returns `frames` [N, T, D] (zero past each
    clip's length), `lengths` [N], `vectors` [N, D] (time means), `stds` [N, D], and the lists
    `feature_names` (every column's name), `files`, `labels`, `speakers` (None where unknown)
    and `skipped` (file, reason). `config` takes the feature options (`n_fft`, `hop`,
    `n_mels`, `n_mfcc`, `fmin`, `fmax`, `tuning`, `contrast_fmin`, `feature_rate`, and `set`:
    the blocks of each frame, as `ser features --set`, e.g. `set=["mfcc", "f0", "voiced_prob"]`).
    `progress` is called as the work goes with a dict `stage` (`read`, `decode`, `features`),
    `done`, `total` (True prints a line for each); an exception it raises, or Ctrl-C, stops
    the call there and is raised as itself."""
    arrays = []
    if audio is not None:
        arrays = [audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio)
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    out = _ser.features(_paths(data), _paths(manifest), _paths(files), arrays, sample_rate, _feature_config(config), _label_map(label_map), _drop(drop), fspath(cache) if cache else None, _steps(progress))
    clips = json.loads(out.pop("clips"))
    out["config"] = json.loads(out["config"])
    out["files"] = [c["path"] for c in clips]
    out["labels"] = [c.get("emotion") for c in clips]
    out["speakers"] = [c.get("speaker") or (f"{c['actor']:02}" if c.get("actor") else None) for c in clips]
    out["clips"] = clips
    return out


def _report(text: Optional[str]) -> Optional[dict]:
    if text is None:
        return None
    report = json.loads(text)
    report["confusion"] = np.asarray(report["confusion"], dtype=np.int64)
    return report


class Model:
    """A trained model: the built-in one, a file, or what `train` returned."""

    def __init__(self, inner: "_ser.Model", report: Optional[dict] = None):
        self._inner = inner
        self.report = report
        """The test report of the run that trained it (None for a loaded model)."""

    @classmethod
    def load(cls, path: Union[str, PathLike, None] = None) -> "Model":
        """Loads a model file written by `ser train` or `save`; None: the built-in model."""
        return cls(_ser.Model.load(fspath(path) if path is not None else None))

    @classmethod
    def ensemble(cls, models: Sequence["Model"]) -> "Model":
        """One model whose class probabilities are the mean of `models`' (as `ser ensemble`):
        any kinds and inputs with the same classes, feature configuration and speaker
        normalisation. `save` writes it as one file for `ser predict --model`."""
        return cls(_ser.Model.ensemble([m._inner for m in models]))

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of `predict_proba`'s columns."""
        return self._inner.classes

    @property
    def kind(self) -> str:
        """The classifier's kind ("krr", "network", "svm", ...), or "ensemble"."""
        return self._inner.kind

    @property
    def training(self) -> dict:
        """How the model was made: its run configuration, data, metrics."""
        return json.loads(self._inner.training)

    @property
    def contract(self) -> dict:
        """The data contract: classes, label map, feature configuration, input, scaler, speaker
        normalisation and the corpora it saw."""
        return json.loads(self._inner.contract)

    @property
    def history(self) -> list[dict]:
        """A network's training, one dict per epoch (and ensemble member): `member`, `epoch`,
        `loss`, `val_loss`, `val_accuracy`, `lr`, `samples_per_s`. Empty for the classical models."""
        members = self.training.get("history") or []
        return [{"member": m, **row} for m, rows in enumerate(members) for row in rows]

    @property
    def confusion(self) -> Optional[np.ndarray]:
        """The test report's confusion matrix [true, predicted], when the run had a test set."""
        report = self.report or self.training.get("test_report")
        return None if report is None else np.asarray(report["confusion"], dtype=np.int64)

    def predict(self, files: Paths, chunk: int = 128, segment: Optional[float] = None, segment_hop: Optional[float] = None, progress: Union[bool, Callable[[dict], Any], None] = None, speaker_groups: str = "auto", min_speaker_clips: Optional[int] = None) -> list[dict]:
        """Predictions of audio files and folders, as `ser predict`'s JSON lines: `file`,
        `label`, `confidence`, `probabilities` by class (and `start`, `end` per segment). Files
        that cannot be used are left out with a warning naming each and why. `progress` hears
        of each chunk of files (as in `features`; stage `predict`, or `features` then `predict`
        for a speaker-normalised model); it or Ctrl-C stops the call. A speaker-normalised model
        groups the files into speakers by `speaker_groups` ("auto", "actor", "folder", "file", as
        `--speaker-groups`) and leaves out speakers with fewer than `min_speaker_clips` clips
        (default: the model's own, 30 for the shipped one)."""
        lines, skipped = self._inner.predict(_paths(files), chunk, segment, segment_hop, _steps(progress), speaker_groups, min_speaker_clips)
        for name, why in skipped:
            warnings.warn(f"{name}: {why}", stacklevel=2)
        return [json.loads(line) for line in lines]

    def predict_proba(self, audio_or_features: Union[np.ndarray, Sequence[np.ndarray], dict], sample_rate: Optional[int] = None) -> np.ndarray:
        """Class probabilities [N, classes], columns in `classes` order: of audio arrays (mono,
        any rate given by `sample_rate`: resampled as files are), or of a `features(...)` dict
        made with the model's configuration (`frames`, `lengths`, `vectors`, `stds`)."""
        if isinstance(audio_or_features, dict):
            f = audio_or_features
            config = f["config"] if isinstance(f["config"], str) else json.dumps(f["config"])
            contiguous = lambda key, dtype: np.ascontiguousarray(f[key], dtype=dtype)  # noqa: E731
            return self._inner.predict_proba_features(config, contiguous("frames", np.float32), contiguous("lengths", np.uint32), contiguous("vectors", np.float32), contiguous("stds", np.float32))
        if sample_rate is None:
            raise InputError("audio arrays need their sample_rate")
        audio = audio_or_features
        arrays = [audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio)
        return self._inner.predict_proba([np.ascontiguousarray(a, dtype=np.float32) for a in arrays], sample_rate)

    def predict_audio(self, audio: np.ndarray, sample_rate: int) -> dict:
        """One array's prediction: `label`, `confidence`, `probabilities` by class."""
        p = self.predict_proba([audio], sample_rate)[0]
        best = int(np.argmax(p))
        return {"label": self.classes[best], "confidence": float(p[best]), "probabilities": {c: float(q) for c, q in zip(self.classes, p)}}

    def evaluate(self, data: Paths = None, manifest: Paths = None, label_map: Union[str, PathLike, dict, None] = None, progress: Union[bool, Callable[[dict], Any], None] = None, speaker_groups: str = "auto", min_speaker_clips: Optional[int] = None) -> dict:
        """Scores the model on labelled data of any corpus, as `ser eval --json`: `accuracy`,
        `uar`, `macro_f1`, per class, `confusion` (a numpy array), `other_classes` (clips of
        classes the model lacks, left out, counted by class) and `skipped`. `progress` hears of
        the features' making as in `features`; it or Ctrl-C stops the call. `speaker_groups` and
        `min_speaker_clips` as in `predict`."""
        return _report(self._inner.evaluate(_paths(data), _paths(manifest), _label_map(label_map), _steps(progress), speaker_groups, min_speaker_clips))

    def save(self, path: Union[str, PathLike]) -> None:
        """Saves the model (atomically), for `ser predict --model` or `Model.load`."""
        self._inner.save(fspath(path))

    def __repr__(self) -> str:
        return f"<ser.Model {self.kind}: {', '.join(self.classes)}>"


def _callback(progress: Union[bool, Callable[[dict], Any], None], line: Callable[[dict], str]) -> Optional[Callable[[dict], Any]]:
    """A `progress` argument as a callable of one dict: None for None or False, a printer of
    `line(dict)` on stderr for True."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return lambda report: print(line(report), file=sys.stderr)
    return progress


def _steps(progress: Union[bool, Callable[[dict], Any], None]) -> Optional[Callable[[str, int, int], None]]:
    """The extension's (stage, done, total) hook for a `progress` argument of features,
    predict and evaluate."""
    callback = _callback(progress, lambda step: f"{step['stage']}: {step['done']}/{step['total']}")
    return None if callback is None else lambda stage, done, total: callback({"stage": stage, "done": done, "total": total})


def _progress(progress: Union[bool, Callable[[dict], Any], None]) -> Optional[Callable[[str], None]]:
    """The extension's per-epoch hook (a JSON row) for `train`'s `progress` argument."""
    callback = _callback(progress, lambda row: f"epoch {row['epoch']:>3}: loss {row['loss']:.4f}  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  lr {row['lr']:.2e}")
    return None if callback is None else lambda row: callback(json.loads(row))


def train(
    data: Paths = None,
    manifest: Paths = None,
    features: Union[str, PathLike, None] = None,
    model: str = "krr",
    progress: Union[bool, Callable[[dict], Any], None] = None,
    label_map: Union[str, PathLike, dict, None] = None,
    drop: Union[str, Iterable[str], None] = None,
    feature_options: Optional[dict] = None,
    **train_options: Any,
) -> Model:
    """Trains a model as `ser train` does, on labelled data (`data`, `manifest`) or a feature
    file (`features`). Every `ser train` option is a keyword with underscores (`input="stats"`,
    `split="speaker-folds"`, `test_speakers=[...]`, `epochs=30`, `speaker_norm=True`, ...).
    `progress` is called with each epoch's dict as it ends (True prints a line per epoch).
    The returned model carries `report` (the test report) and `history`; `save` writes it."""
    options = dict(train_options, model=model)
    inner, report = _ser.train(_paths(data), _paths(manifest), fspath(features) if features else None, json.dumps(options), _feature_config(feature_options or {}), _label_map(label_map), _drop(drop), _progress(progress))
    return Model(inner, _report(report))


def compare(
    data: Paths = None,
    manifest: Paths = None,
    features: Union[str, PathLike, None] = None,
    models: Sequence[str] = ("cnn", "mlp", "krr", "knn", "svm", "rf"),
    by_speaker: bool = True,
    label_map: Union[str, PathLike, dict, None] = None,
    drop: Union[str, Iterable[str], None] = None,
    feature_options: Optional[dict] = None,
    **train_options: Any,
) -> list[dict]:
    """`ser compare`: each model on one random split (and cross-validated by speaker unless
    `by_speaker=False`), one dict per model."""
    return json.loads(_ser.compare(_paths(data), _paths(manifest), fspath(features) if features else None, list(models), json.dumps(train_options), _feature_config(feature_options or {}), not by_speaker, _label_map(label_map), _drop(drop)))
