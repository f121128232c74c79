"""librosa 0.11's pyin (and yin) over every clip of a folder, on N worker processes: the side
of tools/bench/pitch.sh that ser's pitch features are timed against.

    tools/.venv/bin/python tools/bench/librosa_pitch.py --data DIR [--workers 2] [--n-fft 1024] [--hop 256]
"""
import argparse
import glob
import os
import time
from multiprocessing import Pool

import librosa
import soundfile as sf

FMIN, FMAX = librosa.note_to_hz("C2"), librosa.note_to_hz("C7")


def one(job):
    path, n_fft, hop = job
    y, sr = sf.read(path, dtype="float32")
    librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=sr, frame_length=n_fft, hop_length=hop)
    librosa.yin(y, fmin=FMIN, fmax=FMAX, sr=sr, frame_length=n_fft, hop_length=hop)
    return len(y) / sr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--n-fft", type=int, default=1024)
    ap.add_argument("--hop", type=int, default=256)
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.data, "**", "*.flac"), recursive=True) + glob.glob(os.path.join(a.data, "**", "*.wav"), recursive=True))
    start = time.perf_counter()
    with Pool(a.workers) as pool:
        audio = sum(pool.map(one, [(f, a.n_fft, a.hop) for f in files], chunksize=1))
    took = time.perf_counter() - start
    print(f"librosa pyin + yin: {len(files)} clips, {audio:.1f} s of audio in {took:.2f} s on {a.workers} processes: {len(files) / took:.3f} clips/s")


if __name__ == "__main__":
    main()
