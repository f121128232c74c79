#!/usr/bin/env python3
"""Checks tools/checkpoint/predict.py against the binary: the same probabilities as
`ser predict` on the bundled clips, from `ser features` output and the shipped checkpoint (kernel
ridge on the distribution input); the same model rewritten in the layer-network layout older
files have (docs/guide/checkpoints.md) gives the same predictions in both; and that network
layout with a temperature (`ser calibrate`'s) gives the same softened probabilities in both;
and kernel ridge models on the distribution-length and distribution-voicing inputs give the same in both.

    python3 tools/checkpoint/test_predict.py ./target/release/ser
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from predict import read_safetensors  # noqa: E402


def read_raw(src):
    """(header without its metadata, metadata, tensor bytes) of a safetensors file."""
    with open(src, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return header, header.pop("__metadata__"), raw[8 + n :]


def write_raw(dst, header, meta, data):
    text = json.dumps(dict(header, __metadata__=meta)).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def with_temperature(src, dst, t):
    """The network file `src` with a fitted temperature `t` (what `ser calibrate` adds)."""
    header, meta, data = read_raw(src)
    meta["temperatures"] = json.dumps([t])
    write_raw(dst, header, meta, data)


def as_network(src, dst):
    """The `krr` file `src` in the layer-network layout (flatten, rbf_kernel, dense) that kernel
    ridge files had before it was a kind of its own."""
    header, meta, data = read_raw(src)
    arch = json.loads(meta["architecture"])
    gamma = json.loads(meta.pop("krr"))["gamma"]
    del meta["kind"]
    n, classes = header["krr.coef"]["shape"]
    rename = {"krr.centres": "1.rbf.centres", "krr.coef": "2.dense.weight", "krr.bias": "2.dense.bias"}
    out_header, blobs, offset = {}, [], 0
    for old, new in rename.items():
        t = header[old]
        a, b = t["data_offsets"]
        blobs.append(data[a:b])
        out_header[new] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [offset, offset + b - a]}
        offset += b - a
    layers = [{"type": "flatten"}, {"type": "rbf_kernel", "centres": n, "gamma": gamma}, {"type": "dense", "units": classes, "relu": False}]
    meta["architecture"] = json.dumps({"input": arch["input"], "layers": layers})
    meta["members"] = "1"
    write_raw(dst, out_header, meta, b"".join(blobs))


here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
ser = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target/release/ser"))
env = dict(os.environ, SER_AUTOTUNE="off")

with tempfile.TemporaryDirectory() as tmp:
    feats = os.path.join(tmp, "clips.safetensors")
    subprocess.run([ser, "features", "--no-cache", "--data", "examples/clips", "--out", feats], cwd=root, env=env, check=True, stderr=subprocess.DEVNULL)
    ours = subprocess.run([sys.executable, os.path.join(here, "predict.py"), "weights/ser.safetensors", feats], cwd=root, check=True, capture_output=True, text=True).stdout
    theirs = subprocess.run([ser, "predict", "examples/clips"], cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    network = os.path.join(tmp, "network.safetensors")
    as_network(os.path.join(root, "weights/ser.safetensors"), network)
    assert "kind" not in read_safetensors(network)[1]
    net_py = subprocess.run([sys.executable, os.path.join(here, "predict.py"), network, feats], cwd=root, check=True, capture_output=True, text=True).stdout
    net_ser = subprocess.run([ser, "predict", "--model", network, "examples/clips"], cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    # A calibrated network: both apply its temperature to the logits.
    calibrated = os.path.join(tmp, "calibrated.safetensors")
    with_temperature(network, calibrated, 0.5)
    warm_py = subprocess.run([sys.executable, os.path.join(here, "predict.py"), calibrated, feats], cwd=root, check=True, capture_output=True, text=True).stdout
    warm_ser = subprocess.run([ser, "predict", "--model", calibrated, "examples/clips"], cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    # Kernel ridge on the distribution-length input (trained here on the eight test clips): the
    # example appends each clip's length as ser does.
    lengths = os.path.join(tmp, "lengths.safetensors")
    train_feats = os.path.join(tmp, "train.safetensors")
    subprocess.run([ser, "features", "--no-cache", "--data", "tests/clips/16k", "--out", train_feats], cwd=root, env=env, check=True, stderr=subprocess.DEVNULL)
    subprocess.run([ser, "train", "--features", train_feats, "--model", "krr", "--input", "distribution-length", "--split", "none", "--out", lengths], cwd=root, env=env, check=True, stderr=subprocess.DEVNULL)
    len_py = subprocess.run([sys.executable, os.path.join(here, "predict.py"), lengths, feats], cwd=root, check=True, capture_output=True, text=True).stdout
    len_ser = subprocess.run([ser, "predict", "--model", lengths, "examples/clips"], cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    # Kernel ridge on the distribution-voicing input: features with pyin's voicing flag.
    voicing, voiced_train, voiced_feats = (os.path.join(tmp, f) for f in ("voicing.safetensors", "voiced-train.safetensors", "voiced.safetensors"))
    voiced_set = ["--set", "mfcc,chroma,contrast,voiced"]
    subprocess.run([ser, "features", "--no-cache", "--data", "tests/clips/16k", *voiced_set, "--out", voiced_train], cwd=root, env=env, check=True, stderr=subprocess.DEVNULL)
    subprocess.run([ser, "features", "--no-cache", "--data", "examples/clips", *voiced_set, "--out", voiced_feats], cwd=root, env=env, check=True, stderr=subprocess.DEVNULL)
    subprocess.run([ser, "train", "--features", voiced_train, "--model", "krr", "--input", "distribution-voicing", "--split", "none", "--out", voicing], cwd=root, env=env, check=True, stderr=subprocess.DEVNULL)
    voi_py = subprocess.run([sys.executable, os.path.join(here, "predict.py"), voicing, voiced_feats], cwd=root, check=True, capture_output=True, text=True).stdout
    voi_ser = subprocess.run([ser, "predict", "--model", voicing, "examples/clips"], cwd=root, env=env, check=True, capture_output=True, text=True).stdout
py = {os.path.basename(r["file"]): r for r in map(json.loads, ours.splitlines())}
rs = {os.path.basename(r["file"]): r for r in map(json.loads, theirs.splitlines())}
assert py.keys() == rs.keys() and len(py) == 4, (py.keys(), rs.keys())
worst = 0.0
for name, r in rs.items():
    assert py[name]["label"] == r["label"], (name, py[name]["label"], r["label"])
    for cls, p in r["probabilities"].items():
        worst = max(worst, abs(py[name]["probabilities"][cls] - p))
assert worst < 1e-5, worst
# The network layout: ser and the example agree, and both give what the krr layout gave.
for out in (net_py, net_ser):
    for r in map(json.loads, out.splitlines()):
        want = rs[os.path.basename(r["file"])]
        assert r["label"] == want["label"], (r["file"], r["label"], want["label"])
        for cls, p in want["probabilities"].items():
            worst = max(worst, abs(r["probabilities"][cls] - p))
assert worst < 1e-5, worst
# The calibrated network: the same labels, softer probabilities, and ser and the example agree.
warm_by_clip = [{os.path.basename(r["file"]): r for r in map(json.loads, out.splitlines())} for out in (warm_py, warm_ser)]
for name, r in warm_by_clip[1].items():
    assert r["label"] == rs[name]["label"] and r["confidence"] < rs[name]["confidence"], (name, r, rs[name])
    for cls, p in r["probabilities"].items():
        worst = max(worst, abs(warm_by_clip[0][name]["probabilities"][cls] - p))
assert worst < 1e-5, worst
# The distribution-length and distribution-voicing inputs: ser and the example agree.
for py_out, ser_out in ((len_py, len_ser), (voi_py, voi_ser)):
    by_clip = [{os.path.basename(r["file"]): r for r in map(json.loads, out.splitlines())} for out in (py_out, ser_out)]
    assert by_clip[0].keys() == by_clip[1].keys() and len(by_clip[1]) == 4
    for name, r in by_clip[1].items():
        assert by_clip[0][name]["label"] == r["label"], (name, by_clip[0][name]["label"], r["label"])
        for cls, p in r["probabilities"].items():
            worst = max(worst, abs(by_clip[0][name]["probabilities"][cls] - p))
assert worst < 1e-5, worst
print(f"tools/checkpoint/predict.py matches ser predict on {len(rs)} clips, krr and network (raw and calibrated) layouts and the distribution-length and distribution-voicing inputs (largest difference {worst:.1e})")
