"""Writes the librosa golden files that tests/features.rs compares ser's GPU features against.

Run from the repository root after tools/golden/setup.sh:
    tools/.venv/bin/python tools/golden/make_golden.py

One safetensors file per signal in tests/golden/, holding float32 tensors named
"<setting>.<feature>" (mel_db, mfcc, chroma, contrast, and the frame descriptors rms, zcr,
centroid, bandwidth, rolloff, flatness, yin (C2-C7), pyin's f0 (0 where unvoiced) and voiced_prob, delta_mfcc,
delta_rms: [rows, frames]; tuning: [1]) and, for the
synthetic signals, "signal" (the exact float32 input). Settings:
  librosa: librosa's defaults (n_fft 2048, hop 512, 128 mels, tuning estimated, contrast fmin 200)
  ser:     ser's defaults (n_fft 1024, hop 256, 64 mels, tuning 0, contrast fmin 200)
The 48 kHz RAVDESS originals are decoded by soundfile (as librosa.load does) at their own rate,
so ser decodes the same file and both sides start from identical samples. resample.safetensors
holds soxr's high-quality 48 -> 16 kHz conversion of one original, as librosa.load(sr=16000) does.
"""
import json
import os
import sys

import librosa
import numpy as np
import soundfile as sf
import soxr
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden")
SAMPLE_48K = os.path.join(ROOT, "..", "shared", "data", "ravdess-48k-sample")

SETTINGS = {
    "librosa": dict(n_fft=2048, hop=512, n_mels=128, n_mfcc=40, tuning=None, contrast_fmin=200.0),
    "ser": dict(n_fft=1024, hop=256, n_mels=64, n_mfcc=40, tuning=0.0, contrast_fmin=200.0),
}


def features(y, sr, s):
    n_fft, hop = s["n_fft"], s["hop"]
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=s["n_mels"])
    mel_db = librosa.power_to_db(mel)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=s["n_mfcc"], n_fft=n_fft, hop_length=hop, n_mels=s["n_mels"])
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
    tuning = s["tuning"]
    if tuning is None:
        tuning = librosa.estimate_tuning(S=power, sr=sr, n_fft=n_fft, bins_per_octave=12)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=n_fft, hop_length=hop, tuning=s["tuning"])
    contrast = librosa.feature.spectral_contrast(y=y, sr=sr, n_fft=n_fft, hop_length=hop, fmin=s["contrast_fmin"])
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    descriptors = {
        "rms": librosa.feature.rms(S=S, frame_length=n_fft),
        "zcr": librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
        "centroid": librosa.feature.spectral_centroid(S=S, sr=sr, n_fft=n_fft),
        "bandwidth": librosa.feature.spectral_bandwidth(S=S, sr=sr, n_fft=n_fft),
        "rolloff": librosa.feature.spectral_rolloff(S=S, sr=sr, n_fft=n_fft, roll_percent=0.85),
        "flatness": librosa.feature.spectral_flatness(S=S),
        "yin": librosa.yin(y, fmin=librosa.note_to_hz("C2"), fmax=librosa.note_to_hz("C7"), sr=sr, frame_length=n_fft, hop_length=hop)[np.newaxis],
    }
    f0, voiced_flag, voiced_prob = librosa.pyin(y, fmin=librosa.note_to_hz("C2"), fmax=librosa.note_to_hz("C7"), sr=sr, frame_length=n_fft, hop_length=hop)
    descriptors["f0"] = np.nan_to_num(f0, nan=0.0)[np.newaxis]  # 0 where unvoiced, as ser writes it
    descriptors["voiced_prob"] = voiced_prob[np.newaxis]
    # librosa.feature.delta (width 9, mode "interp") refuses sequences shorter than its window.
    if mfcc.shape[-1] >= 9:
        descriptors["delta_mfcc"] = librosa.feature.delta(mfcc)
        descriptors["delta_rms"] = librosa.feature.delta(descriptors["rms"])
    return {
        **descriptors,
        "contrast_valley_rel_db": contrast_valley_rel_db(y, sr, n_fft, hop, s["contrast_fmin"]),
        "mel_db": mel_db,
        "mfcc": mfcc,
        "chroma": chroma,
        "contrast": contrast,
        "tuning": np.array([tuning]),
    }


def contrast_valley_rel_db(y, sr, n_fft, hop, fmin, n_bands=6, quantile=0.02):
    """Each contrast valley relative to its frame's largest magnitude, in dB (20 log10), with
    librosa's band logic. Valleys far below the frame maximum sit under float32's FFT noise floor,
    where no float32 implementation can reproduce librosa's float64 FFT; the test uses this to
    tell resolvable valleys from numerical noise."""
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)).astype(np.float64)
    freq = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    valley = np.zeros((n_bands + 1, S.shape[-1]))
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        band = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == n_bands:
            band[idx[-1] + 1 :] = True
        sub = S[band, :]
        if k < n_bands:
            sub = sub[:-1, :]
        q = int(np.maximum(np.rint(quantile * np.sum(band)), 1))
        valley[k] = np.mean(np.sort(sub, axis=0)[:q, :], axis=0)
    frame_max = np.maximum(S.max(axis=0), 1e-30)
    return 20.0 * np.log10(np.maximum(valley, 1e-30) / frame_max)


def write(name, y, sr, store_signal, source):
    tensors = {}
    for setting, s in SETTINGS.items():
        for feat, value in features(y, sr, s).items():
            tensors[f"{setting}.{feat}"] = np.ascontiguousarray(value, dtype=np.float32)
    if store_signal:
        tensors["signal"] = np.ascontiguousarray(y, dtype=np.float32)
    meta = {
        "source": source,
        "sample_rate": str(sr),
        "settings": json.dumps(SETTINGS),
        "versions": json.dumps({"librosa": librosa.__version__, "numpy": np.__version__, "soxr": soxr.__version__}),
    }
    save_file(tensors, os.path.join(OUT, f"{name}.safetensors"), metadata=meta)
    print(f"{name}: {len(y)} samples at {sr} Hz, tuning {tensors['librosa.tuning'][0]:+.2f}")


def main():
    os.makedirs(OUT, exist_ok=True)
    sr = 16000
    t = np.arange(sr, dtype=np.float64) / sr
    rng = np.random.default_rng(20261124)
    synthetic = {
        "silence": np.zeros(sr),
        "tone440": 0.5 * np.sin(2 * np.pi * 440.0 * t),
        "chirp": 0.5 * librosa.chirp(fmin=100.0, fmax=7000.0, sr=sr, duration=1.0),
        "noise": 0.3 * rng.standard_normal(sr),
        "short": 0.5 * np.sin(2 * np.pi * 300.0 * t[:700]),
    }
    for name, y in synthetic.items():
        write(name, y.astype(np.float32), sr, True, f"synthetic {name}, 16 kHz")
    for wav in ["03-01-08-01-02-02-01.wav", "03-01-05-02-02-01-07.wav"]:
        path = os.path.join(SAMPLE_48K, wav)
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
        y = data.mean(axis=1).astype(np.float32)  # librosa.to_mono
        write("ravdess48k_" + wav[:-4], y, file_sr, False, f"ravdess-48k-sample/{wav}, decoded by soundfile")
    path = os.path.join(SAMPLE_48K, "03-01-01-01-01-01-01.wav")
    y48, _ = librosa.load(path, sr=None, mono=True)
    y16 = librosa.resample(y48, orig_sr=48000, target_sr=16000, res_type="soxr_hq")
    # Other rate pairs, on a 60-7000 Hz chirp plus a tone: alignment errors depend on the ratio.
    extra = {}
    for rate in (44100, 22050, 8000):
        t = np.arange(int(1.5 * rate)) / rate
        x = 0.4 * librosa.chirp(fmin=60.0, fmax=min(7000.0, 0.45 * rate), sr=rate, duration=1.5) + 0.2 * np.sin(2 * np.pi * 310.0 * t)
        x = x.astype(np.float32)
        extra[f"input_{rate}"] = x
        extra[f"soxr_hq_{rate}"] = np.ascontiguousarray(
            librosa.resample(x, orig_sr=rate, target_sr=16000, res_type="soxr_hq"), dtype=np.float32
        )
    save_file(
        {"soxr_hq": np.ascontiguousarray(y16, dtype=np.float32), **extra},
        os.path.join(OUT, "resample.safetensors"),
        metadata={"source": "ravdess-48k-sample/03-01-01-01-01-01-01.wav", "from": "48000", "to": "16000"},
    )
    print(f"resample: {len(y48)} -> {len(y16)} samples")


if __name__ == "__main__":
    sys.exit(main())
