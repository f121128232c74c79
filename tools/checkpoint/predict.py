#!/usr/bin/env python3
"""Reproduces `ser predict` from `ser features` output with Python's standard library only.

    ser features --data CLIPS --out features.safetensors
    python3 tools/checkpoint/predict.py weights/ser.safetensors features.safetensors

prints one JSON line per clip, as `ser predict` does. It documents the checkpoint format by
using it (docs/guide/checkpoints.md describes every field):

- A checkpoint is a safetensors file. Its metadata values are JSON text (except `format`, a
  bare string "ser.model.v1"-style tag): `architecture` (input shape and layers), `classes`
  (class names in output order), `features` (the extraction configuration a feature file must
  match), `input` ("vectors", "stats", "distribution", "distribution-length",
  "distribution-voicing" or "frames"), `scaler` ({"mean": [...],
  "std": [...]}, applied as (x - mean) / std), optional `speaker_norm`, `training` (how it was made), and
  `members` for ensembles (tensors then carry a `memberK.` prefix; probabilities average).
- Tensors are named `<layer index>.<kind>.<name>`, f32, row-major: dense `weight` [in, out] and
  `bias` [out]; rbf `centres` [n, in] and `centre_sq_norms` [n]; gradient-trained models also
  carry Adam's moments (`*.adam_m`, `*.adam_v`), which prediction ignores.
- Kernel ridge's softmax temperature is already folded into its last layer's weights: the
  logits are the model's scores as stored. A network's is not: optional `temperatures` (one
  per member, fitted on validation clips) multiplies its logits before the softmax.

- The `distribution` input is the stats followed by the clip's frame-distribution embedding:
  each column of the clip's frames standardised by the clip's own mean and deviation, every
  frame mapped through cos(z W + b), averaged over the frames. W [columns, 1024] and b [1024]
  are not stored: they are drawn from a fixed seed by SplitMix64 (`projection` below, the same
  numbers as src/ops/embedding.rs). `distribution-length` appends the clip's length in seconds;
  `distribution-voicing` then appends the first 8 MFCCs' means and deviations over the clip's
  voiced frames (pyin's `voiced` column above one half), then over its other frames.

Layers covered here: flatten, dense (optional ReLU), rbf_kernel (exp(-gamma |x - c|^2)); that is
kernel ridge (the shipped models) and MLPs. Convolutional models need a convolution loop, which
this example leaves out.
"""
import json
import math
import operator
import struct
import sys


def read_safetensors(path):
    """(tensors: name -> (shape, flat list of numbers), metadata: dict of str); F32 and U32."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, t in header.items():
        code = {"F32": "f", "U32": "I"}.get(t["dtype"])
        if code is None:
            continue
        start, end = t["data_offsets"]
        count = (end - start) // 4
        tensors[name] = (t["shape"], list(struct.unpack(f"<{count}{code}", body[start:end])))
    return tensors, meta


def rows(shape_values):
    shape, values = shape_values
    width = shape[-1] if len(shape) > 1 else 1
    return [values[i:i + width] for i in range(0, len(values), width)]


def layer_tensor(tensors, index, suffix):
    for name, t in tensors.items():
        if name.startswith(f"{index}.") and name.endswith(suffix) and "adam" not in name:
            return t
    raise KeyError(f"no tensor {index}.*{suffix}")


def forward(arch, tensors, x):
    for i, layer in enumerate(arch["layers"]):
        kind = layer["type"]
        if kind == "flatten":
            continue
        if kind == "rbf_kernel":
            gamma = layer["gamma"]
            x = [math.exp(-gamma * sum((a - b) ** 2 for a, b in zip(x, c))) for c in rows(layer_tensor(tensors, i, ".centres"))]
        elif kind == "dense":
            w = rows(layer_tensor(tensors, i, ".weight"))
            b = layer_tensor(tensors, i, ".bias")[1]
            x = [sum(x[k] * w[k][j] for k in range(len(x))) + b[j] for j in range(len(b))]
            if layer.get("relu"):
                x = [max(v, 0.0) for v in x]
        else:
            raise NotImplementedError(f"layer {kind!r} is not covered by this example")
    return x


def kernel_ridge(meta, tensors, x):
    """Scores of a `krr` model: exp(-gamma |x - c|^2) against every centre, times the coefficients."""
    gamma = json.loads(meta["krr"])["gamma"]
    k = [math.exp(-gamma * sum((a - b) ** 2 for a, b in zip(x, c))) for c in rows(tensors["krr.centres"])]
    coef, bias = rows(tensors["krr.coef"]), tensors["krr.bias"][1]
    return [sum(k[i] * coef[i][j] for i in range(len(k))) + bias[j] for j in range(len(bias))]


# The distribution input's embedding: width, kernel width (over the columns) and seed, fixed by
# the input's name (src/contract/mod.rs).
DISTRIBUTION_WIDTH, DISTRIBUTION_GAMMA, DISTRIBUTION_SEED = 1024, 1.0, 0x5E4D0D15
GOLDEN, MASK = 0x9E3779B97F4A7C15, (1 << 64) - 1


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def splitmix64(state):
    """(output, next state) of SplitMix64 (src/rng.rs)."""
    z = (state + GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31), (state + GOLDEN) & MASK


def projection(columns, width, gamma_scale, seed):
    """W [columns][width] (Irwin-Hall sums of twelve 24-bit uniforms, variance 2 gamma) and b
    [width] (uniform in [0, 2 pi)), rounded to f32 as ser draws them."""
    state = seed

    def draw24():
        nonlocal state
        out, state = splitmix64(state)
        return out >> 40

    sd = math.sqrt(2.0 * gamma_scale / columns)
    flat = [f32((sum(draw24() for _ in range(12)) / float(1 << 24) - 6.0) * sd) for _ in range(columns * width)]
    phase = [f32(draw24() / float(1 << 24) * math.tau) for _ in range(width)]
    return [flat[j * width:(j + 1) * width] for j in range(columns)], phase


def standardised(frames):
    """Each column of a clip's frames by the clip's mean and deviation; a constant column is 0."""
    n, columns = len(frames), len(frames[0]) if frames else 0
    out = [[0.0] * columns for _ in range(n)]
    for j in range(columns):
        col = [f[j] for f in frames]
        mean = sum(col) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in col) / n)
        if sd > 1e-5 * (1.0 + abs(mean)):
            for t, v in enumerate(col):
                out[t][j] = f32((v - mean) / sd)
    return out


def embedding(frames, weight, phase):
    """The mean over the clip's frames of cos(z W + b)."""
    z = standardised(frames)
    by_feature = list(zip(*weight))
    return [sum(math.cos(sum(map(operator.mul, zt, wk)) + b) for zt in z) / max(len(z), 1) for wk, b in zip(by_feature, phase)]


def voicing_moments(clip_frames, flag, take):
    """The `take` columns' (the first 8 MFCCs') means and deviations (ddof 0) over the frames
    whose `flag` column (`voiced`) is above one half, then over the others; zeros for a side
    without frames."""
    out = []
    for side in (True, False):
        rows = [f for f in clip_frames if (f[flag] > 0.5) == side]
        means = [sum(r[j] for r in rows) / max(len(rows), 1) for j in take]
        out += means + [math.sqrt(sum((r[j] - m) ** 2 for r in rows) / max(len(rows), 1)) for j, m in zip(take, means)]
    return out


def softmax(z):
    top = max(z)
    e = [math.exp(v - top) for v in z]
    s = sum(e)
    return [v / s for v in e]


def main(model_path, features_path):
    tensors, meta = read_safetensors(model_path)
    kind = meta.get("kind", "network")
    if kind not in ("network", "krr"):
        raise NotImplementedError(f"{kind} models are not covered by this example (network and krr are)")
    arch = json.loads(meta["architecture"])
    classes = json.loads(meta["classes"])
    scaler = json.loads(meta["scaler"])
    input_kind = json.loads(meta["input"])
    if "speaker_norm" in meta or meta.get("members", "1") != "1":
        raise NotImplementedError("speaker-normalised models and ensembles are not covered by this example")
    (temperature,) = json.loads(meta.get("temperatures", "[1.0]"))
    feats, fmeta = read_safetensors(features_path)
    config = json.loads(fmeta["config"])
    if config != json.loads(meta["features"]):
        sys.exit("the feature file was made with another configuration than the model's")
    clips = json.loads(fmeta["clips"])
    vectors, stds = rows(feats["vectors"]), rows(feats["stds"])
    distributions = ("distribution", "distribution-length", "distribution-voicing")
    if input_kind in distributions:
        (n, t_max, dim), frames = feats["frames"]
        lengths = feats["lengths"][1]
        weight, phase = projection(dim, DISTRIBUTION_WIDTH, DISTRIBUTION_GAMMA, DISTRIBUTION_SEED)
    if input_kind == "distribution-voicing":
        names = json.loads(fmeta["feature_names"])
        flag, take = names.index("voiced"), [names.index(f"mfcc_{i}") for i in range(8)]
    for c, clip in enumerate(clips):
        if input_kind == "stats":
            x = vectors[c] + stds[c]
        elif input_kind in distributions:
            clip_frames = [frames[(c * t_max + t) * dim:(c * t_max + t + 1) * dim] for t in range(lengths[c])]
            x = vectors[c] + stds[c] + embedding(clip_frames, weight, phase)
            if input_kind != "distribution":
                # The clip's length in seconds: n centred frames last n - 1 hops.
                x.append((lengths[c] - 1) * config["hop"] / config["sample_rate"])
            if input_kind == "distribution-voicing":
                x += voicing_moments(clip_frames, flag, take)
        elif input_kind == "vectors":
            x = vectors[c]
        else:
            raise NotImplementedError("frame-input models are not covered by this example")
        x = [(v - m) / s for v, m, s in zip(x, scaler["mean"], scaler["std"])]
        if kind == "krr":
            z = kernel_ridge(meta, tensors, x)
        else:
            z = [v * temperature for v in forward(arch, tensors, x)]
        p = softmax(z)
        best = max(range(len(p)), key=lambda k: p[k])
        probs = {name: p[k] for k, name in enumerate(classes)}
        print(json.dumps({"file": clip["path"], "label": classes[best], "confidence": p[best], "probabilities": probs}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
