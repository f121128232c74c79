#!/usr/bin/env python3
"""The same RAVDESS audio under other corpora's conventions must give the same predictions.

    python3 tools/eval/other_names.py SER_BINARY RAVDESS_DIR WORK_DIR [MODEL]

lays the clips of RAVDESS_DIR (RAVDESS names, any depth) out again in WORK_DIR, as symbolic links
(nothing is copied):

- `crema-d/`: CREMA-D names, `10AA_VSR_EMO_INT.flac` (speaker 1000 + actor; the sentence field
  spells vocal channel, statement and repetition, S/G A/B A/B; intensity MD or HI). CREMA-D has
  no calm or surprised: those clips are left out.
- `manifest.csv`: every clip, `path,label,speaker` with the class names and `actor07`-style speakers;
- `emobox.jsonl`: the same as EmoBox's JSONL (`key`, `wav`, `emo` with 3-letter codes, `speaker`).

Then it runs, with MODEL (default: the built-in model):
1. `ser predict` on RAVDESS_DIR and on crema-d/, and checks every clip's probabilities are equal;
2. `ser features` on RAVDESS_DIR, `--manifest manifest.csv` and `--manifest emobox.jsonl`, and
   checks every clip's features are equal (so any model predicts them alike);
3. `ser eval --json` on RAVDESS_DIR and on the manifest, and checks the reports are equal.
It prints one line per check and a summary; exit status 1 on any difference.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "checkpoint"))
from predict import read_safetensors  # noqa: E402

EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
CREMA = {"neutral": "NEU", "happy": "HAP", "sad": "SAD", "angry": "ANG", "fearful": "FEA", "disgust": "DIS"}


def main():
    ser, ravdess, work = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    model = ["--model", sys.argv[4]] if len(sys.argv) > 4 else []
    crema_dir = os.path.join(work, "crema-d")
    os.makedirs(crema_dir, exist_ok=True)
    rows, crema_name = [], {}
    for folder, _, files in sorted(os.walk(ravdess)):
        for f in sorted(files):
            if not f.endswith((".wav", ".flac")):
                continue
            stem, ext = os.path.splitext(f)
            fields = stem.split("-")
            if len(fields) != 7:
                continue
            _, vocal, emo, intensity, statement, repetition, actor = (int(x) for x in fields)
            label = EMOTIONS[emo - 1]
            path = os.path.join(folder, f)
            rows.append((path, label, actor, stem))
            if label in CREMA:
                sentence = "SG"[vocal - 1] + "AB"[statement - 1] + "AB"[repetition - 1]
                name = f"{1000 + actor}_{sentence}_{CREMA[label]}_{['MD', 'HI'][intensity - 1]}{ext}"
                link = os.path.join(crema_dir, name)
                if not os.path.lexists(link):
                    os.symlink(path, link)
                crema_name[stem] = name
    with open(os.path.join(work, "manifest.csv"), "w") as m:
        m.write("path,label,speaker\n")
        for path, label, actor, _ in rows:
            m.write(f"{path},{label},actor{actor:02}\n")
    with open(os.path.join(work, "emobox.jsonl"), "w") as m:
        for path, label, actor, stem in rows:
            m.write(json.dumps({"key": stem, "wav": path, "emo": label[:3], "speaker": f"actor{actor:02}", "channel": 1}) + "\n")
    print(f"{len(rows)} clips; {len(crema_name)} under CREMA-D names")
    failures = 0

    def run(*args):
        r = subprocess.run([ser, *args], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"ser {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
        return r.stdout

    def by_stem(out):
        return {os.path.splitext(os.path.basename(json.loads(l)["file"]))[0]: json.loads(l)["probabilities"] for l in out.splitlines()}

    ravdess_p = by_stem(run("predict", *model, ravdess))
    crema_p = by_stem(run("predict", *model, crema_dir))
    differ = [s for s, name in crema_name.items() if ravdess_p[s] != crema_p[os.path.splitext(name)[0]]]
    failures += len(differ)
    print(f"predict, RAVDESS names against CREMA-D names: {len(crema_name) - len(differ)} of {len(crema_name)} clips with equal probabilities")

    sets = {}
    for what, args in [("ravdess", ["--data", ravdess]), ("manifest", ["--manifest", os.path.join(work, "manifest.csv")]), ("emobox", ["--manifest", os.path.join(work, "emobox.jsonl")])]:
        out = os.path.join(work, f"{what}.safetensors")
        run("features", "--no-cache", *args, "--out", out)
        tensors, meta = read_safetensors(out)
        clips = json.loads(meta["clips"])
        vectors = [tensors["vectors"][1][i * tensors["vectors"][0][1]:(i + 1) * tensors["vectors"][0][1]] for i in range(len(clips))]
        sets[what] = {os.path.splitext(os.path.basename(c["path"]))[0]: (c["emotion"], v) for c, v in zip(clips, vectors)}
    for what in ["manifest", "emobox"]:
        same = sum(1 for s, v in sets["ravdess"].items() if sets[what].get(s) == v)
        failures += len(sets["ravdess"]) - same
        print(f"features, RAVDESS names against {what}: {same} of {len(sets['ravdess'])} clips with equal labels and features")

    reports = [json.loads(run("eval", "--no-cache", "--json", *model, *args)) for args in (["--data", ravdess], ["--manifest", os.path.join(work, "manifest.csv")])]
    keys = ["accuracy", "uar", "macro_f1", "confusion"]
    equal = all(reports[0][k] == reports[1][k] for k in keys)
    failures += not equal
    print(f"eval, RAVDESS names against the manifest: {'equal' if equal else 'DIFFERENT'} (accuracy {reports[0]['accuracy']:.4f}, UAR {reports[0]['uar']:.4f}, macro F1 {reports[0]['macro_f1']:.4f})")
    print("all equal" if failures == 0 else f"{failures} differences")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
