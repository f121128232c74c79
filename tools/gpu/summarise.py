"""Side-by-side table of a GPU check: ser's JSON lines (selftest, bench gemm/features/train) and
the PyTorch peer's, as summary.json and summary.md in the output folder.

    python3 tools/gpu/summarise.py OUT_DIR

Reads OUT_DIR/{devices.json, selftest.jsonl, gemm.jsonl, features.jsonl, train.jsonl,
torch.jsonl} and check.sh's steps.tsv (step, exit status, seconds); a missing file, and a step
that failed or ran out of time (its rows partial), is named in the summary.
Ratios are PyTorch time / ser time (above 1: ser faster), on the same GPU.
"""
import json, os, sys


def read_jsonl(path, notes):
    rows = []
    if not os.path.exists(path):
        notes.append(f"{os.path.basename(path)}: missing")
        return rows
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                notes.append(f"{os.path.basename(path)} line {i}: not JSON ({e})")
    return rows


def shape_key(r):
    s = r.get("shape", r)
    return (s["m"], s["n"], s["k"])


def summarise(out):
    notes = []
    steps = os.path.join(out, "steps.tsv")
    if os.path.exists(steps):
        with open(steps) as f:
            for line in f:
                name, rc, secs = (line.rstrip("\n").split("\t") + ["", "", ""])[:3]
                if rc == "124":
                    notes.append(f"{name}: stopped at its time limit after {secs} s (rows partial)")
                elif rc not in ("0", ""):
                    notes.append(f"{name}: exit status {rc} after {secs} s")
    selftest = read_jsonl(os.path.join(out, "selftest.jsonl"), notes)
    gemm = read_jsonl(os.path.join(out, "gemm.jsonl"), notes)
    feats = read_jsonl(os.path.join(out, "features.jsonl"), notes)
    train = read_jsonl(os.path.join(out, "train.jsonl"), notes)
    torch_rows = read_jsonl(os.path.join(out, "torch.jsonl"), notes)
    devices = []
    if os.path.exists(os.path.join(out, "devices.json")):
        with open(os.path.join(out, "devices.json")) as f:
            devices = json.load(f)
    peer = {r["what"]: r for r in torch_rows if r.get("what") in ("features", "train")}
    peer_gemm = {shape_key(r): r for r in torch_rows if r.get("what") == "gemm"}
    summary = {"adapters": [f'{d["name"]} ({d["backend"]}, driver {d.get("driver", "")} {d.get("driver_info", "")})' for d in devices],
               "selftest": {"checks": len(selftest), "failed": [f'{r.get("adapter")}: {r["name"]}' for r in selftest if not r.get("passed")]},
               "gemm": [], "features": [], "train": [], "notes": notes}
    best, tuned = {}, {}
    for r in gemm:
        key = (r["adapter"], r["precision"], shape_key(r))
        if r["kernel"] == "auto":
            tuned[key] = r
        elif key not in best or r["gflops"] > best[key]["gflops"]:
            best[key] = r
    for (adapter, precision, shape), r in sorted(best.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        p = peer_gemm.get(shape) if precision == "f32" else None
        t = tuned.get((adapter, precision, shape))
        summary["gemm"].append({"adapter": adapter, "precision": precision, "m": shape[0], "n": shape[1], "k": shape[2],
                                "ser_kernel": r.get("ran", r["kernel"]), "ser_gflops": r["gflops"],
                                "tuned_kernel": t and t.get("ran"), "tuned_gflops": t and t["gflops"],
                                "torch_gflops": p and p["gflops"], "torch_over_ser_time": p and r["gflops"] / p["gflops"]})
    for r in feats:
        p = peer.get("features")
        summary["features"].append({"adapter": r["adapter"], "clips": r["clips"], "ser_clips_per_s": r["clips_per_s"],
                                    "torch_clips_per_s": p and p["clips_per_s"], "torch_over_ser_time": p and r["clips_per_s"] / p["clips_per_s"]})
    for r in train:
        p = peer.get("train") if r["precision"] == "f32" and r["model"] == "cnn" else None
        summary["train"].append({"adapter": r["adapter"], "model": r["model"], "precision": r["precision"], "ser_samples_per_s": r["samples_per_s"],
                                 "torch_samples_per_s": p and p["samples_per_s"], "torch_over_ser_time": p and r["samples_per_s"] / p["samples_per_s"]})
    return summary


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown(s):
    md = ["# GPU check", "", "Adapters: " + ("; ".join(s["adapters"]) or "none listed"), "",
          f'selftest: {s["selftest"]["checks"]} checks, ' + (f'FAILED: {", ".join(s["selftest"]["failed"])}' if s["selftest"]["failed"] else "all passed"), "",
          "| GEMM | adapter | precision | fastest ser kernel | ser GFLOP/s | tuner's kernel | its GFLOP/s | PyTorch GFLOP/s | ser speed / PyTorch |", "|---|---|---|---|---:|---|---:|---:|---:|"]
    for r in s["gemm"]:
        md.append(f'| {r["m"]}x{r["n"]}x{r["k"]} | {r["adapter"]} | {r["precision"]} | {r["ser_kernel"]} | {r["ser_gflops"]:.1f} | {r.get("tuned_kernel") or "-"} | {fmt(r.get("tuned_gflops"), ".1f")} | {fmt(r["torch_gflops"], ".1f")} | {fmt(r["torch_over_ser_time"], ".3f")} |')
    md += ["", "| features | adapter | clips | ser clips/s | PyTorch clips/s | ser speed / PyTorch |", "|---|---|---:|---:|---:|---:|"]
    for r in s["features"]:
        md.append(f'| MFCC etc. | {r["adapter"]} | {r["clips"]} | {r["ser_clips_per_s"]:.1f} | {fmt(r["torch_clips_per_s"], ".1f")} | {fmt(r["torch_over_ser_time"], ".3f")} |')
    md += ["", "| training epoch | adapter | model | precision | ser samples/s | PyTorch samples/s | ser speed / PyTorch |", "|---|---|---|---|---:|---:|---:|"]
    for r in s["train"]:
        name = {"cnn": "refined CNN", "mlp": "MLP", "lstm": "LSTM", "cnn-lstm": "CNN+LSTM", "cnn-frames": "refined CNN on frames"}.get(r["model"], r["model"])
        md.append(f'| {name} | {r["adapter"]} | {r["model"]} | {r["precision"]} | {r["ser_samples_per_s"]:.1f} | {fmt(r["torch_samples_per_s"], ".1f")} | {fmt(r["torch_over_ser_time"], ".3f")} |')
    if s["notes"]:
        md += ["", "Notes: " + "; ".join(s["notes"])]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    s = summarise(out)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)
    text = markdown(s)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    print(text)
