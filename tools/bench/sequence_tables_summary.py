#!/usr/bin/env python3
"""Summarises the logs of tools/bench/sequence_tables.sh as docs/results/history.md's table rows.

    python3 tools/bench/sequence_tables_summary.py [OUT]   (OUT: the script's log folder)

Per model and speaker normalisation: random-split accuracy and macro F1 over the seeds that
finished (mean and population standard deviation), and the 5-fold by-actor figures when the
folds finished (or the folds so far). Standard library only.
"""
import os
import re
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ser-sequence-tables"
saved = re.compile(r"saved .* \(test accuracy ([0-9.]+), macro F1 ([0-9.]+)\)")
fold = re.compile(r"^fold (\d+): actors .*: accuracy ([0-9.]+), macro F1 ([0-9.]+)")


def mean_sd(values, each=False):
    """mean ± population sd (n), with every value in run order after the count when `each`."""
    if not values:
        return "-"
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    listed = ": " + ", ".join(f"{v:.3f}" for v in values) if each else ""
    return f"{statistics.mean(values):.3f} ± {sd:.3f} ({len(values)}{listed})"


rows = {}
for name in sorted(os.listdir(out)):
    if not name.endswith(".log"):
        continue
    tag, _, kind = name[:-4].rpartition("-")
    # Only the runs' logs (MODEL[-norm]-seedS, -foldK, -actors), not the driver's own.
    if not tag or not (kind.startswith("seed") or kind.startswith("fold") or kind == "actors"):
        continue
    text = open(os.path.join(out, name)).read()
    row = rows.setdefault(tag, {"acc": [], "f1": [], "fold_acc": [], "fold_f1": [], "folds_done": False})
    folds = {}
    if kind.startswith("seed"):
        m = saved.search(text)
        if m:
            row["acc"].append(float(m.group(1)))
            row["f1"].append(float(m.group(2)))
    elif kind == "actors" or kind.startswith("fold"):
        for line in text.splitlines():
            m = fold.match(line)
            if m:
                # Each fold's line is logged as it ends and printed again at the end: once each.
                folds[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
        # A whole cross-validation in one log, or one fold per log (--fold K).
        seen = row.setdefault("folds", {})
        seen.update(folds)
        row["fold_acc"] = [seen[k][0] for k in sorted(seen)]
        row["fold_f1"] = [seen[k][1] for k in sorted(seen)]
        row["folds_done"] = row["folds_done"] or "-fold by actor:" in text or len(seen) == 5

print("| model | random 80/20 accuracy (seeds) | macro F1 | 5-fold by actor accuracy (folds) | macro F1 |")
print("|---|---:|---:|---:|---:|")
for tag, r in rows.items():
    model = tag.replace("-norm", ", --speaker-norm")
    folds = mean_sd(r["fold_acc"], each=True) + ("" if r["folds_done"] or not r["fold_acc"] else ", unfinished")
    print(f"| {model} | {mean_sd(r['acc'], each=True)} | {mean_sd(r['f1'])} | {folds} | {mean_sd(r['fold_f1'])} |")
