#!/usr/bin/env python3
"""Checks tools/checkpoint/predict.py against the binary: the same probabilities as
`ser predict` on the bundled clips, from `ser features` output and the shipped checkpoint.

    python3 tools/checkpoint/test_predict.py ./target/release/ser
"""
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
ser = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target/release/ser"))
env = dict(os.environ, SER_AUTOTUNE="off")

with tempfile.TemporaryDirectory() as tmp:
    feats = os.path.join(tmp, "clips.safetensors")
    subprocess.run([ser, "features", "--no-cache", "--data", "examples/clips", "--out", feats], cwd=root, env=env, check=True, stderr=subprocess.DEVNULL)
    ours = subprocess.run([sys.executable, os.path.join(here, "predict.py"), "weights/ser.safetensors", feats], cwd=root, check=True, capture_output=True, text=True).stdout
    theirs = subprocess.run([ser, "predict", "examples/clips"], cwd=root, env=env, check=True, capture_output=True, text=True).stdout
py = {os.path.basename(r["file"]): r for r in map(json.loads, ours.splitlines())}
rs = {os.path.basename(r["file"]): r for r in map(json.loads, theirs.splitlines())}
assert py.keys() == rs.keys() and len(py) == 4, (py.keys(), rs.keys())
worst = 0.0
for name, r in rs.items():
    assert py[name]["label"] == r["label"], (name, py[name]["label"], r["label"])
    for cls, p in r["probabilities"].items():
        worst = max(worst, abs(py[name]["probabilities"][cls] - p))
assert worst < 1e-5, worst
print(f"tools/checkpoint/predict.py matches ser predict on {len(rs)} clips (largest difference {worst:.1e})")
