"""librosa's side of the feature-extraction benchmark (tools/bench/features.sh runs both sides).

Loads every .wav/.flac under --data with librosa.load (soundfile + soxr_hq to --sr), computes
40 MFCC, chroma_stft and spectral_contrast at the given settings, averages each over time, and
prints one JSON line: clips, audio seconds, wall seconds, clips/s, using --jobs processes.
"""
import argparse
import glob
import json
import os
import time
from multiprocessing import Pool

import librosa
import numpy as np

ARGS = None


def one(path):
    a = ARGS
    y, sr = librosa.load(path, sr=a.sr)
    tuning = None if a.tuning == "estimate" else float(a.tuning)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40, n_fft=a.n_fft, hop_length=a.hop, n_mels=a.n_mels)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, n_fft=a.n_fft, hop_length=a.hop, tuning=tuning)
    contrast = librosa.feature.spectral_contrast(y=y, sr=sr, n_fft=a.n_fft, hop_length=a.hop)
    v = np.concatenate([mfcc.mean(axis=1), chroma.mean(axis=1), contrast.mean(axis=1)])
    return len(y) / sr, v


def init(args):
    global ARGS
    ARGS = args


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--sr", type=int, default=16000)
    p.add_argument("--n-fft", type=int, default=2048)
    p.add_argument("--hop", type=int, default=512)
    p.add_argument("--n-mels", type=int, default=128)
    p.add_argument("--tuning", default="estimate")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p.add_argument("--limit", type=int, default=0)
    args = p.parse_args()
    files = sorted(glob.glob(os.path.join(args.data, "**", "*.wav"), recursive=True) + glob.glob(os.path.join(args.data, "**", "*.flac"), recursive=True))
    if args.limit:
        files = files[: args.limit]
    start = time.perf_counter()
    with Pool(args.jobs, initializer=init, initargs=(args,)) as pool:
        results = pool.map(one, files, chunksize=8)
    wall = time.perf_counter() - start
    audio = sum(r[0] for r in results)
    print(json.dumps({"peer": "librosa " + librosa.__version__, "clips": len(files), "audio_s": round(audio, 1), "wall_s": round(wall, 2), "clips_per_s": round(len(files) / wall, 1), "jobs": args.jobs, "n_fft": args.n_fft, "hop": args.hop, "n_mels": args.n_mels, "tuning": args.tuning}))


if __name__ == "__main__":
    main()
