"""The Python package as a user meets it, checked against the `ser` command line built from the
same source: the same features, predictions and reports, numpy in and out, errors as
exceptions, a device shared by threads.

    pip install ./python pytest && pytest python/tests   (SER_BIN: the ser binary, default target/release/ser)
"""

import json
import os
import signal
import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

import ser

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "peer"))
from arrays import load_safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLIPS = ROOT / "examples" / "clips"
SER_BIN = os.environ.get("SER_BIN", str(ROOT / "target" / "release" / "ser"))


def setup_module():
    # Untuned kernels, as the CLI runs below (SER_AUTOTUNE=off): the same kernel choices, so the
    # same bits.
    ser.close()
    ser.init(autotune="off")


def cli(*args):
    env = dict(os.environ, SER_AUTOTUNE="off")
    r = subprocess.run([SER_BIN, *map(str, args)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def write_wav(path, samples, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def tone_clip(klass, speaker, take, rate=16000):
    """A learnable synthetic clip: each class its own pitch and brightness."""
    rng = np.random.default_rng(klass * 100 + speaker * 10 + take)
    t = np.arange(int(0.6 * rate)) / rate
    f0 = 110 * (1 + 0.03 * speaker) * [1.0, 1.6, 2.2][klass]
    bright = [0.3, 0.6, 0.9][klass]
    voiced = sum(bright ** (h - 1) * np.sin(2 * np.pi * h * f0 * t) for h in range(1, 10))
    return 0.2 * voiced * np.sin(np.pi * t / 0.6) + 0.01 * rng.standard_normal(t.size)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three classes in class folders, 4 speakers x 4 takes, and the same clips in a manifest
    with speakers."""
    root = tmp_path_factory.mktemp("corpus")
    rows = ["path,label,speaker"]
    for k, label in enumerate(["neutral", "happy", "angry"]):
        for speaker in range(4):
            for take in range(4):
                rel = f"{label}/s{speaker}_t{take}.wav"
                write_wav(root / rel, tone_clip(k, speaker, take))
                rows.append(f"{rel},{label},s{speaker}")
    (root / "clips.csv").write_text("\n".join(rows) + "\n")
    return root


def test_devices_and_selftest_name_the_adapter():
    devices = ser.devices()
    assert devices and all("name" in d and "backend" in d for d in devices)
    checks = ser.selftest(only=["gemm.f32"], seed=7)
    assert checks and all(c["passed"] for c in checks), checks


def test_decode_gives_float32_mono_at_its_rate_or_resampled():
    audio, rate = ser.decode(CLIPS / "03-01-01-01-01-01-01.wav")
    assert (audio.dtype, audio.ndim, rate) == (np.float32, 1, 48000)
    with wave.open(str(CLIPS / "03-01-01-01-01-01-01.wav")) as w:
        assert audio.size == w.getnframes()
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.array_equal(audio, raw / np.float32(32768))
    resampled, rate = ser.decode(CLIPS / "03-01-01-01-01-01-01.wav", sample_rate=16000)
    assert rate == 16000 and resampled.size == -(-audio.size // 3)


def test_features_equal_the_command_lines(tmp_path):
    out = tmp_path / "f.safetensors"
    cli("features", "--no-cache", "--data", CLIPS, "--out", out)
    arrays, meta = load_safetensors(out)
    f = ser.features(data=CLIPS, cache=tmp_path / "cache")
    for key in ["frames", "vectors", "stds", "lengths"]:
        assert np.array_equal(f[key], arrays[key]), key
    assert f["labels"] == [c["emotion"] for c in json.loads(meta["clips"])]
    assert f["speakers"] == ["01", "04", "07", "11"]
    # Files and arrays of the same audio give the same rows.
    files = sorted(str(p) for p in CLIPS.glob("*.wav"))
    by_file = ser.features(files=files)
    assert np.array_equal(by_file["vectors"], f["vectors"])
    decoded = [ser.decode(p) for p in files]
    by_array = ser.features(audio=[a for a, _ in decoded], sample_rate=48000)
    assert np.array_equal(by_array["vectors"], f["vectors"])


def test_a_feature_set_names_its_columns_as_the_command_line_does(tmp_path):
    out = tmp_path / "f.safetensors"
    blocks = "mfcc,rms,f0,voiced_prob,delta_rms"
    cli("features", "--no-cache", "--data", CLIPS, "--set", blocks, "--out", out)
    arrays, meta = load_safetensors(out)
    f = ser.features(data=CLIPS, set=blocks.split(","), cache=tmp_path / "cache")
    assert f["feature_names"] == json.loads(meta["feature_names"])
    assert f["feature_names"][38:] == ["mfcc_38", "mfcc_39", "rms", "f0", "voiced_prob", "delta_rms"]
    assert np.array_equal(f["frames"], arrays["frames"])
    # f0 is 0 exactly where unvoiced, and RAVDESS speech has voiced frames in every clip.
    f0 = f["frames"][..., 41]
    assert all((f0[i, : f["lengths"][i]] > 60).any() for i in range(len(f0)))
    with pytest.raises(ser.InputError, match="pitch"):
        ser.features(data=CLIPS, set="mfcc,f0", n_fft=4096)


def test_the_built_in_model_predicts_as_ser_predict():
    model = ser.Model.load()
    assert model.classes == ["neutral", "calm", "happy", "sad", "angry", "fearful", "surprised"]
    want = [json.loads(line) for line in cli("predict", CLIPS).splitlines()]
    got = model.predict([CLIPS])
    assert got == want
    audio, rate = ser.decode(CLIPS / "03-01-05-02-02-01-07.wav")
    one = model.predict_audio(audio, rate)
    row = next(r for r in want if r["file"].endswith("03-01-05-02-02-01-07.wav"))
    assert one["label"] == row["label"] and one["probabilities"] == pytest.approx(row["probabilities"], abs=0)
    proba = model.predict_proba([audio, audio], rate)
    assert proba.shape == (2, 7) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert proba[0].tolist() == [row["probabilities"][c] for c in model.classes]
    # From features made with the model's configuration: the same rows.
    feats = ser.features(files=[CLIPS / "03-01-05-02-02-01-07.wav"])
    assert model.predict_proba(feats).tolist() == [proba[0].tolist()]


def test_a_speaker_normalised_model_groups_files_as_asked():
    # The bundled clips taken as one speaker, as the CLI test of the shipped file does.
    speaker = ser.Model.load(ROOT / "weights" / "ser-speaker.safetensors")
    want = [json.loads(line) for line in cli("predict", "--model", ROOT / "weights" / "ser-speaker.safetensors", "--speaker-groups", "folder", "--min-speaker-clips", "4", CLIPS).splitlines()]
    assert speaker.predict([CLIPS], speaker_groups="folder", min_speaker_clips=4) == want
    # By default (30 clips a speaker) the four are left out, each with a warning saying why.
    with pytest.warns(UserWarning, match="30"):
        assert speaker.predict([CLIPS], speaker_groups="folder") == []
    with pytest.raises(ser.InputError, match='speaker_groups="table": expected one of'):
        speaker.predict([CLIPS], speaker_groups="table")


def test_info_reads_a_model_file_as_ser_info_does(tmp_path):
    # The built-in model and the shipped speaker ensemble: `ser info --json`'s object.
    assert ser.info() == json.loads(cli("info", "--json"))
    speaker = ROOT / "weights" / "ser-speaker.safetensors"
    got = ser.info(speaker)
    assert got == json.loads(cli("info", speaker, "--json"))
    assert got["kind"] == "ensemble" and [m["kind"] for m in got["members"]] == ["krr", "svm"]
    assert all(m["contract"]["input"] == "distribution-voicing" for m in got["members"])
    assert all(m["contract"]["speaker_norm"]["min_clips"] == 30 for m in got["members"])
    # Not a model: an InputError naming the file.
    bogus = tmp_path / "not-a-model.safetensors"
    bogus.write_bytes(b"RIFF....WAVE")
    with pytest.raises(ser.InputError, match="not-a-model.safetensors"):
        ser.info(bogus)


def test_train_evaluate_save_and_history(corpus, tmp_path):
    seen = []
    m = ser.train(data=corpus, model="mlp", input="stats", hidden=[32], epochs=12, lr=3e-3, seed=1, progress=seen.append)
    assert m.kind == "network" and m.classes == ["neutral", "happy", "angry"]
    assert [r["epoch"] for r in seen] == [r["epoch"] for r in m.history] and len(seen) >= 3
    assert set(seen[0]) >= {"member", "epoch", "loss", "val_loss", "val_accuracy", "lr", "samples_per_s"}
    assert m.report["accuracy"] >= 0.8 and m.confusion.shape == (3, 3)
    # Kernel ridge held out by speaker, from the manifest: the classes are easy for unseen voices.
    krr = ser.train(manifest=corpus / "clips.csv", model="krr", input="stats", split="speakers", test_speakers=["s3"])
    assert krr.report["uar"] >= 0.9 and krr.history == []
    # The same on the distribution input: the embedding is computed on the device for training.
    spread = ser.train(manifest=corpus / "clips.csv", model="krr", input="distribution", split="speakers", test_speakers=["s3"])
    assert spread.report["uar"] >= 0.9 and spread.contract["input"] == "distribution"
    report = krr.evaluate(data=corpus)
    assert report["macro_avg"]["support"] == 48 and isinstance(report["confusion"], np.ndarray)
    saved = tmp_path / "krr.safetensors"
    krr.save(saved)
    cli_report = json.loads(cli("eval", "--no-cache", "--json", "--model", saved, "--data", corpus))
    assert cli_report["accuracy"] == report["accuracy"] and cli_report["uar"] == report["uar"]
    assert ser.Model.load(saved).contract["corpora"] == {"manifest": {"clips": 48, "speakers": 4}}
    # Two models of other inputs joined into one: the mean of their probabilities, saved as the
    # file `ser ensemble` writes and scored by `ser eval` as the two given apart.
    pair = ser.Model.ensemble([krr, spread])
    assert pair.kind == "ensemble" and krr.kind == "krr"
    feats = ser.features(data=corpus)
    assert np.allclose(pair.predict_proba(feats), (krr.predict_proba(feats) + spread.predict_proba(feats)) / 2, atol=1e-6)
    pair.save(tmp_path / "pair.safetensors")
    spread.save(tmp_path / "spread.safetensors")
    joined = json.loads(cli("eval", "--no-cache", "--json", "--model", tmp_path / "pair.safetensors", "--data", corpus))
    apart = json.loads(cli("eval", "--no-cache", "--json", "--model", saved, "--model", tmp_path / "spread.safetensors", "--data", corpus))
    assert joined["confusion"] == apart["confusion"]


def test_errors_are_exceptions_with_the_command_lines_messages(corpus, tmp_path):
    with pytest.raises(ser.InputError, match="cannot read"):
        ser.Model.load(tmp_path / "missing.safetensors")
    with pytest.raises(ser.InputError, match="no such file or folder"):
        ser.features(data=tmp_path / "nowhere")
    with pytest.raises(ser.InputError, match='"hiden" is not a training option'):
        ser.train(data=corpus, hiden=[3])
    with pytest.raises(ser.InputError, match='split="sideways": expected one of'):
        ser.train(data=corpus, split="sideways")
    # An input the features cannot give, refused before they are built.
    with pytest.raises(ser.InputError, match="no `voiced` column"):
        ser.train(data=corpus, model="krr", input="distribution-voicing")
    with pytest.raises(ser.SerError):
        ser.init(autotune="off")  # the device is open: close() first
    assert issubclass(ser.InputError, ser.SerError) and issubclass(ser.GpuError, ser.SerError)


def test_threads_take_turns_on_the_one_device():
    model = ser.Model.load()
    want = model.predict([CLIPS])
    results, errors = [], []

    def work():
        try:
            results.append(model.predict([CLIPS]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [want] * 3
    # Closed, the next call opens a new device.
    ser.close()
    ser.init(autotune="off")
    assert ser.Model.load().predict([CLIPS]) == want


def press_ctrl_c(_report):
    """A progress callback that signals SIGINT, as Ctrl-C does."""
    signal.raise_signal(signal.SIGINT)


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler (KeyboardInterrupt), as an interactive session has it: a
    process started with SIGINT ignored (a background job of a script, nohup) keeps ignoring it,
    and Ctrl-C could not be tested there."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_or_a_raising_callback_stops_training_after_its_epoch(corpus, ctrl_c_raises):
    seen = []

    def stop_at_two(row):
        seen.append(row["epoch"])
        if row["epoch"] == 2:
            raise RuntimeError("enough")

    with pytest.raises(RuntimeError, match="enough"):
        ser.train(data=corpus, model="mlp", input="stats", hidden=[8], epochs=30, patience=30, progress=stop_at_two)
    assert seen == [1, 2]

    with pytest.raises(KeyboardInterrupt):
        ser.train(data=corpus, model="mlp", input="stats", hidden=[8], epochs=30, patience=30, progress=press_ctrl_c)
    # The device is still usable.
    assert ser.Model.load().classes


def test_features_and_predict_report_progress_and_stop_on_ctrl_c_or_a_raising_callback(corpus, tmp_path, capsys, ctrl_c_raises):
    ser.features(files=sorted(CLIPS.glob("*.wav"))[:2], progress=True)
    assert capsys.readouterr().err.splitlines() == ["decode: 1/2", "decode: 2/2", "features: 2/2"]
    steps = []
    got = ser.features(data=corpus, cache=tmp_path / "cache", progress=steps.append)
    assert [s["stage"] for s in steps] == ["read", "decode", "features"], steps
    assert all(s["done"] == s["total"] == 48 for s in steps), steps
    plain = ser.features(data=corpus, cache=tmp_path / "plain")
    np.testing.assert_array_equal(got["frames"], plain["frames"])

    # A callback that raises stops the build at that step, with its own exception, and nothing
    # is cached; Ctrl-C does the same with KeyboardInterrupt.
    def fail_at_decode(step):
        if step["stage"] == "decode":
            raise RuntimeError("stop the build")

    stopped = tmp_path / "stopped"
    with pytest.raises(RuntimeError, match="stop the build"):
        ser.features(data=corpus, cache=stopped, progress=fail_at_decode)
    assert not stopped.exists() or not any(stopped.iterdir())

    with pytest.raises(KeyboardInterrupt):
        ser.features(files=sorted(CLIPS.glob("*.wav")), progress=press_ctrl_c)

    model = ser.Model.load()
    steps = []
    lines = model.predict(CLIPS, chunk=1, progress=steps.append)
    assert [(s["stage"], s["done"]) for s in steps] == [("predict", i + 1) for i in range(len(lines))]
    seen = []

    def fail_at_two(step):
        seen.append(step["done"])
        if step["done"] == 2:
            raise ValueError("two are enough")

    with pytest.raises(ValueError, match="two are enough"):
        model.predict(CLIPS, chunk=1, progress=fail_at_two)
    assert seen == [1, 2]
    with pytest.raises(KeyboardInterrupt):
        model.evaluate(data=corpus, progress=press_ctrl_c)
    # The device is still usable.
    assert model.predict(CLIPS) == lines
