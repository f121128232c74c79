"""Tests tools/gpu/check.sh's parts without a GPU or PyTorch: real `ser` JSON from tiny benchmark
runs on whatever adapter is here, a PyTorch peer file in torch_peer.py's format, and the
summary's ratios and failure reporting. Runs in CI (`python3 tools/gpu/test_check.py SER`).
When PyTorch is importable it also runs the peer itself at --tiny on the CPU."""
import json, os, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import summarise  # noqa: E402

ser = sys.argv[1] if len(sys.argv) > 1 else "target/release/ser"


def run(out, name, *args):
    with open(os.path.join(out, name), "w") as f:
        subprocess.run([ser, *args], stdout=f, check=True)


with tempfile.TemporaryDirectory() as out:
    run(out, "devices.json", "devices", "--json")
    run(out, "selftest.jsonl", "selftest", "--json", "--quick", "--only", "elementwise,filterbank")
    run(out, "gemm.jsonl", "bench", "gemm", "--json", "--sizes", "64,32x48x40", "--kernels", "auto,tex8,tile32", "--repeats", "1", "--warmup", "0")
    run(out, "features.jsonl", "bench", "features", "--json", "--clips", "2", "--seconds", "0.5", "--repeats", "1")
    run(out, "train.jsonl", "bench", "train", "--json", "--samples", "64", "--epochs", "1", "--precision", "f32")
    peer = [
        {"what": "features", "clips": 2, "audio_seconds": 1.0, "median_s": 0.01, "clips_per_s": 200.0, "peer": "torch"},
        {"what": "train", "model": "cnn", "precision": "f32", "samples": 64, "epoch_s": 0.1, "samples_per_s": 640.0, "peer": "torch"},
        {"what": "gemm", "m": 64, "n": 64, "k": 64, "median_ms": 0.01, "gflops": 50.0, "peer": "torch"},
    ]
    with open(os.path.join(out, "torch.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in peer)
    with open(os.path.join(out, "steps.tsv"), "w") as f:
        f.write("devices\t0\t0\ngemm\t124\t90\ntorch\t1\t3\n")
    s = summarise.summarise(out)
    assert s["notes"] == ["gemm: stopped at its time limit after 90 s (rows partial)", "torch: exit status 1 after 3 s"], s["notes"]
    assert s["adapters"], s
    assert s["selftest"]["checks"] == 2 and not s["selftest"]["failed"], s["selftest"]
    square = [r for r in s["gemm"] if (r["m"], r["n"], r["k"]) == (64, 64, 64)]
    assert square and abs(square[0]["torch_over_ser_time"] - square[0]["ser_gflops"] / 50.0) < 1e-12, square
    # The tuner's row names the kernel it ran, one of those the benchmark knows.
    assert square[0]["tuned_kernel"] in ("tex8", "tex8-shared", "vec4x8", "tile32", "tile64", "tile64-r8", "tile128"), square
    assert square[0]["ser_kernel"] in ("tex8", "tile32"), square
    odd = [r for r in s["gemm"] if (r["m"], r["n"], r["k"]) == (32, 48, 40)]
    assert odd and odd[0]["torch_gflops"] is None, odd  # no peer row: no ratio, not a made-up one
    assert s["features"] and abs(s["features"][0]["torch_over_ser_time"] - s["features"][0]["ser_clips_per_s"] / 200.0) < 1e-12
    assert s["train"] and abs(s["train"][0]["torch_over_ser_time"] - s["train"][0]["ser_samples_per_s"] / 640.0) < 1e-12
    md = summarise.markdown(s)
    assert "all passed" in md and "| 64x64x64 |" in md, md
    # A failed check and a missing file are reported, not hidden.
    with open(os.path.join(out, "selftest.jsonl"), "a") as f:
        f.write(json.dumps({"name": "gemm.f32", "adapter": "X", "passed": False}) + "\n")
    os.remove(os.path.join(out, "train.jsonl"))
    s = summarise.summarise(out)
    assert s["selftest"]["failed"] == ["X: gemm.f32"], s["selftest"]
    assert any("train.jsonl: missing" in n for n in s["notes"]) and not s["train"], s["notes"]
    assert "FAILED: X: gemm.f32" in summarise.markdown(s)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch_peer.py not run: PyTorch is not installed here")
    else:
        peer_out = os.path.join(out, "peer.jsonl")
        subprocess.run([sys.executable, os.path.join(here, "torch_peer.py"), "--device", "cpu", "--tiny", "--out", peer_out], check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(l) for l in open(peer_out)]
        assert {r["what"] for r in rows} == {"features", "train", "gemm"}, rows
        assert all(v > 0 for r in rows for k, v in r.items() if k.endswith("_per_s") or k == "gflops"), rows
        print("torch_peer.py --tiny ran on the CPU:", [r["what"] for r in rows])
print("tools/gpu: ok")
