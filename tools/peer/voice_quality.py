"""Praat's voice-quality measures (jitter, shimmer, harmonics-to-noise ratio) screened beside
ser's clip statistics by actor, before deciding whether ser should compute them on the GPU
(docs/RESULTS.md, "The distribution input"):

    python tools/peer/voice_quality.py FEATURES.safetensors DATA_DIR

FEATURES is a `ser features` file of the RAVDESS clips under DATA_DIR. For every clip Praat
(parselmouth) gives jitter local / rap / ppq5, shimmer local / local dB / apq3 / apq5 (pitch
C2-C7, cross-correlation) and the HNR's mean, deviation and 90th percentile. Kernel ridge in
scikit-learn with ser's recipe (each actor's statistics standardised by its own, RBF of gamma
1 / width, lambda 0.1, balanced weights: krr_variants.fit; 7 classes; 5 folds by actor, actor %
5) is scored on the statistics alone and with each group of measures added. Needs numpy, scikit-learn,
praat-parselmouth, soundfile.
"""
import json, sys
from multiprocessing import Pool

import numpy as np
import parselmouth
import soundfile
from parselmouth.praat import call
from sklearn.metrics.pairwise import rbf_kernel

from arrays import load_safetensors
from krr_variants import fit

NAMES = ["jitter_local", "jitter_rap", "jitter_ppq5", "shimmer_local", "shimmer_db", "shimmer_apq3", "shimmer_apq5", "hnr_mean", "hnr_sd", "hnr_p90"]


def measures(path):
    x, rate = soundfile.read(path, dtype="float64")
    sound = parselmouth.Sound(x, rate)
    pitch = call(sound, "To Pitch (cc)", 0, 65.4, 15, "no", 0.03, 0.45, 0.01, 0.35, 0.14, 2093)
    pulses = call([sound, pitch], "To PointProcess (cc)")
    out = [call(pulses, f"Get jitter ({q})", 0, 0, 0.0001, 0.02, 1.3) for q in ("local", "rap", "ppq5")]
    out += [call([sound, pulses], f"Get shimmer ({q})", 0, 0, 0.0001, 0.02, 1.3, 1.6) for q in ("local", "local_dB", "apq3", "apq5")]
    hnr = call(sound, "To Harmonicity (cc)", 0.01, 75, 0.1, 1.0).values[0]
    hnr = hnr[hnr > -200]
    out += [hnr.mean(), hnr.std(), np.percentile(hnr, 90)] if len(hnr) else [0.0] * 3
    return [float(v) if v is not None and np.isfinite(v) else 0.0 for v in out]


def by_actor(x, emotion, actor):
    x = x.copy()
    for a in np.unique(actor):
        m = actor == a
        sd = x[m].std(0)
        x[m] = (x[m] - x[m].mean(0)) / np.where(sd < 1e-8, 1.0, sd)
    keep = emotion != "disgust"
    classes, y = np.unique(emotion[keep], return_inverse=True)
    x, actor = x[keep], actor[keep]
    accs = []
    for k in range(5):
        test = (actor - 1) % 5 == k
        mean, sd = x[~test].mean(0), x[~test].std(0)
        z = (x - mean) / np.where(sd < 1e-8, 1.0, sd)
        counts = np.bincount(y[~test], minlength=len(classes))
        kernel = lambda a, b: rbf_kernel(a, b, gamma=1.0 / z.shape[1])  # noqa: E731
        model = fit(kernel, z[~test], y[~test], len(y[~test]) / (len(classes) * counts))
        accs.append((model.predict(kernel(z[test], z[~test])).argmax(1) == y[test]).mean())
    return f"{np.mean(accs):.4f} ({' / '.join(f'{a:.3f}' for a in accs)})"


def main():
    features, data = sys.argv[1], sys.argv[2].rstrip("/")
    tensors, meta = load_safetensors(features)
    clips = json.loads(meta["clips"])
    with Pool() as pool:
        vq = np.array(pool.map(measures, [f"{data}/{c['path']}" for c in clips], chunksize=16))
    stats = np.hstack([tensors["vectors"], tensors["stds"]]).astype(np.float64)
    emotion = np.array([c["emotion"] for c in clips])
    actor = np.array([c["actor"] for c in clips])
    print("statistics alone:", by_actor(stats, emotion, actor))
    for name, cols in [("+ every measure", slice(0, 10)), ("+ jitter and shimmer", slice(0, 7)), ("+ HNR", slice(7, 10))]:
        print(f"{name} ({', '.join(NAMES[cols])}):", by_actor(np.hstack([stats, vq[:, cols]]), emotion, actor))


if __name__ == "__main__":
    main()
