"""ser's frame descriptors against librosa 0.11 on real recordings, clip by clip and frame by
frame (the issue's parity evidence on the shared RAVDESS actors; the golden files cover
synthetic signals and two originals):

    ser features --data DIR --set rms,zcr,centroid,bandwidth,rolloff,flatness,yin,f0,voiced_prob \
        --no-cache --out F.safetensors
    tools/.venv/bin/python tools/bench/descriptor_parity.py F.safetensors DIR [--workers N]

DIR holds the clips (any layout ser reads; paths in F are relative to it). librosa reads each
clip with soundfile, as ser decodes it, and computes each descriptor with the golden files' own
function (tools/golden/make_golden.py), at ser's default settings (n_fft 1024, hop 256, centred;
pitch C2-C7). Printed per descriptor: the worst absolute error over all frames, the worst relative error over frames
whose value is at least 1e-3 of the clip's largest, and for f0 the frames where both agree on
voicing and, of the frames both call voiced, the share within 1 cent (yin: of frames whose rms
is within 80 dB of the clip's loudest). `--detail` lists the frames where the voicing or the
voiced probability differs (ser / librosa, and the frame's level below the clip's loudest).
Needs tools/golden/setup.sh's venv.
"""
import argparse, json, os, sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "peer"), os.path.join(HERE, "..", "golden")]
import make_golden  # noqa: E402
from arrays import load_safetensors  # noqa: E402

SCALAR = ["rms", "zcr", "centroid", "bandwidth", "rolloff", "flatness", "voiced_prob"]


def librosa_descriptors(args):
    """librosa's descriptors of one clip at ser's settings, as the golden files compute them."""
    path, sr = args
    y, rate = sf.read(path, dtype="float32")
    if y.ndim > 1:
        y = y.mean(axis=1)
    assert rate == sr, f"{path}: {rate} Hz, the features were made at {sr}"
    got = make_golden.features(y.astype(np.float64), sr, make_golden.SETTINGS["ser"])
    return {d: got[d][0] for d in SCALAR + ["yin", "f0"]}


def cents(a, b):
    return 1200 * np.abs(np.log2(a / b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("data")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--detail", action="store_true", help="list every frame where voicing differs or voiced_prob differs by more than 1e-3")
    a = ap.parse_args()
    tensors, meta = load_safetensors(a.features)
    config, clips = json.loads(meta["config"]), json.loads(meta["clips"])
    names = json.loads(meta["feature_names"])
    ser_settings = make_golden.SETTINGS["ser"]
    assert (config["n_fft"], config["hop"]) == (ser_settings["n_fft"], ser_settings["hop"]), "features made at other settings than ser's defaults"
    jobs = [(os.path.join(a.data, c["path"]), config["sample_rate"]) for c in clips]
    # (A worker that dies makes this raise, where multiprocessing.Pool would wait for ever.)
    with ProcessPoolExecutor(a.workers) as pool:
        theirs = list(pool.map(librosa_descriptors, jobs, chunksize=4))
    worst_abs = {d: 0.0 for d in SCALAR}
    worst_rel = {d: 0.0 for d in SCALAR}
    voicing = [0, 0]  # frames agreeing, frames
    f0_cents = []
    yin_cents, yin_loud = [], 0
    for i, (c, lib) in enumerate(zip(clips, theirs)):
        n = int(tensors["lengths"][i])
        ours = {d: tensors["frames"][i, :n, names.index(d)].astype(np.float64) for d in names}
        assert len(lib["rms"]) == n, f"{c['path']}: {n} frames, librosa {len(lib['rms'])}"
        for d in SCALAR:
            diff = np.abs(ours[d] - lib[d])
            worst_abs[d] = max(worst_abs[d], float(diff.max()))
            big = np.abs(lib[d]) >= 1e-3 * np.abs(lib[d]).max()
            worst_rel[d] = max(worst_rel[d], float((diff[big] / np.abs(lib[d][big])).max()))
        v_ours, v_lib = ours["f0"] > 0, lib["f0"] > 0
        if a.detail:
            db = 20 * np.log10(np.maximum(lib["rms"], 1e-12) / lib["rms"].max())
            for t in np.flatnonzero((v_ours != v_lib) | (np.abs(ours["voiced_prob"] - lib["voiced_prob"]) > 1e-3)):
                print(f"{c['path']} frame {t}: f0 {ours['f0'][t]:.2f} / {lib['f0'][t]:.2f}, voiced_prob {ours['voiced_prob'][t]:.6f} / {lib['voiced_prob'][t]:.6f}, {db[t]:.1f} dB")
        voicing[0] += int((v_ours == v_lib).sum())
        voicing[1] += n
        both = v_ours & v_lib
        f0_cents.extend(cents(ours["f0"][both], lib["f0"][both]))
        loud = lib["rms"] >= lib["rms"].max() * 1e-4
        yin_loud += int(loud.sum())
        yin_cents.extend(cents(ours["yin"][loud], lib["yin"][loud]))
    f0_cents, yin_cents = np.array(f0_cents), np.array(yin_cents)
    actors = sorted({c.get("actor") for c in clips})
    print(f"{len(clips)} clips, {voicing[1]} frames, actors {actors[0]:02}-{actors[-1]:02} ({len(actors)})")
    print("| descriptor | worst absolute | worst relative (frames >= 1e-3 of the clip's largest) |")
    print("|---|---:|---:|")
    for d in SCALAR:
        print(f"| {d} | {worst_abs[d]:.2e} | {worst_rel[d]:.2e} |")
    print(f"f0: the same voicing on {voicing[0]} of {voicing[1]} frames ({voicing[0] / voicing[1]:.4%}); "
          f"of {len(f0_cents)} frames voiced in both, {np.mean(f0_cents <= 1):.4%} within 1 cent (worst {f0_cents.max():.3g} cents)")
    print(f"yin: of {yin_loud} frames within 80 dB of their clip's loudest, {np.mean(yin_cents <= 1):.4%} within 1 cent (worst {yin_cents.max():.3g} cents)")


if __name__ == "__main__":
    main()
