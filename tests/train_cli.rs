//! `ser train` and `ser eval` as users run them, on a small synthetic feature file whose classes
//! are separable: the model must learn them, save itself, and evaluate the same way again.

mod common;

use ser::features::set::FeatureSet;
use std::path::PathBuf;
use std::process::Command;

fn ser() -> Command {
    common::ser_command()
}

use common::{synthetic_set, synthetic_set_with_voices};

/// A fresh folder holding the synthetic feature file: (folder, file).
fn workspace(tag: &str) -> (PathBuf, PathBuf) {
    workspace_with(tag, synthetic_set())
}

fn workspace_with(tag: &str, set: FeatureSet) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ser-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let features = dir.join("f.safetensors");
    set.write(&features).unwrap();
    (dir, features)
}

fn training_record(model: &std::path::Path) -> serde_json::Value {
    let bytes = std::fs::read(model).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    serde_json::from_str(&m.metadata().as_ref().unwrap()["training"]).unwrap()
}

/// The validation losses a saved model's record lists, from its `from`th epoch on.
fn val_losses(record: &serde_json::Value, from: usize) -> Vec<f64> {
    record["history"][0].as_array().unwrap()[from..].iter().map(|e| e["val_loss"].as_f64().unwrap()).collect()
}

/// The layers a saved network's architecture lists.
fn saved_layers(model: &std::path::Path) -> Vec<ser::nn::Layer> {
    let bytes = std::fs::read(model).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    serde_json::from_str::<ser::nn::Architecture>(&m.metadata().as_ref().unwrap()["architecture"]).unwrap().layers
}

#[test]
fn train_learns_saves_and_eval_repeats_the_report() {
    let (dir, features) = workspace("train-cli");
    let model = dir.join("m.safetensors");
    let out = ser()
        .args(["train", "--model", "mlp", "--input", "stats", "--batch-norm", "--hidden", "32", "--epochs", "40", "--ensemble", "2", "--drop", "disgust", "--lr", "3e-3", "--features"])
        .arg(&features)
        .arg("--out")
        .arg(&model)
        .arg("--log")
        .arg(dir.join("epochs.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("member 1 epoch") && stderr.contains("samples/s"), "{stderr}");
    // --log holds every epoch the record's history holds, member by member, as JSON lines.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("epochs.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let history = &training_record(&model)["history"];
    for member in 0..2 {
        let logged: Vec<&serde_json::Value> = rows.iter().filter(|r| r["member"] == member).collect();
        let kept = history[member].as_array().unwrap();
        assert_eq!(logged.len(), kept.len(), "member {member}");
        for (row, epoch) in logged.iter().zip(kept) {
            for key in ["epoch", "loss", "val_loss", "val_accuracy", "lr", "samples_per_s"] {
                // The record went through f64 (json!), the log line straight from the f32 lr.
                assert_eq!(row[key].as_f64().map(|v| v as f32), epoch[key].as_f64().map(|v| v as f32), "member {member}, {key}");
            }
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("macro avg") && text.contains("confusion matrix"), "{text}");
    let acc = training_record(&model)["test_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "test accuracy {acc} on separable classes (chance 0.14)");

    // ser eval on the same file scores every clip, not only the test part.
    let out = ser().args(["eval", "--json", "--model"]).arg(&model).arg("--features").arg(&features).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["macro_avg"]["support"], 7 * 24);
    assert!(rep["accuracy"].as_f64().unwrap() >= 0.9);

    // The kernel ridge model through the same command, and predict-time loading of it.
    let krr = dir.join("krr.safetensors");
    let out = ser().args(["train", "--model", "krr", "--input", "stats", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(&krr).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("CG iterations"), "{stderr}");
    let out = ser().args(["eval", "--json", "--model"]).arg(&krr).arg("--features").arg(&features).output().unwrap();
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rep["accuracy"].as_f64().unwrap() >= 0.9, "{rep}");

    // Cross-validation by actor: one line per fold and a mean.
    let out = ser().args(["train", "--split", "actor-folds", "--folds", "2", "--model", "mlp", "--input", "stats", "--hidden", "32", "--epochs", "5", "--drop", "disgust", "--features"]).arg(&features).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fold 0: speakers 01, 03") && text.contains("fold 1: speakers 02, 04") && text.contains("2-fold by speaker: accuracy"), "{text}");
    // Each fold's UAR (the mean of its per-class recalls), and their mean on the last line.
    let uar = |line: &str| -> f64 { line.split("UAR ").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|v| v.parse().ok()).expect(line) };
    let lines: Vec<&str> = text.lines().collect();
    let folds: Vec<f64> = lines.iter().filter(|l| l.starts_with("fold ")).map(|l| uar(l)).collect();
    assert_eq!(folds.len(), 2, "{text}");
    assert!(folds.iter().all(|u| (0.0..=1.0).contains(u)) && (uar(lines.last().unwrap()) - (folds[0] + folds[1]) / 2.0).abs() < 1e-4, "{text}");

    // Without --out nothing is trained for a random split; a class with no clips is named.
    let out = ser().args(["train", "--model", "mlp", "--epochs", "1", "--features"]).arg(&features).output().unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("disgust") || e.contains("--out"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_continues_exactly_where_the_checkpoint_was_taken() {
    let (dir, features) = workspace("resume-cli");
    // (stdout, stderr) of a run of `epochs` saved at `out`, fresh with the options `fresh`, or
    // resumed from a checkpoint, whose record gives every setting but --epochs.
    let run = |epochs: &str, out: &std::path::Path, resume: Option<&std::path::Path>, fresh: &[&str]| {
        let mut c = ser();
        c.args(["train", "--model", "mlp", "--input", "stats", "--hidden", "16", "--lr", "3e-4", "--drop", "disgust", "--seed", "4", "--epochs", epochs, "--features"]).arg(&features).arg("--out").arg(out);
        match resume {
            Some(r) => c.arg("--resume").arg(r),
            None => c.args(fresh),
        };
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let train = |epochs: &str, out: &std::path::Path, resume: Option<&std::path::Path>, precision: &str| run(epochs, out, resume, &["--precision", precision]).1;
    // In f32, and with bfloat16 GEMM operands, which the resumed run must take from the
    // checkpoint (it is not given again).
    for precision in ["f32", "bf16"] {
        let (straight, first, resumed) =
            (dir.join(format!("a-{precision}.safetensors")), dir.join(format!("b-{precision}.safetensors")), dir.join(format!("c-{precision}.safetensors")));
        train("10", &straight, None, precision);
        train("6", &first, None, precision);
        assert_eq!(training_record(&first)["saved_epoch"], 6, "the test needs the first run's best epoch to be its last");
        let log = train("10", &resumed, Some(&first), precision);
        assert!(log.contains("resuming") && log.contains("at epoch 6") && log.contains("epoch   7:") && !log.contains("epoch   6:"), "{log}");
        // Same weights, Adam moments, step, learning rate and per-epoch seeds: the same epochs 7-10.
        let (a, c) = (training_record(&straight), training_record(&resumed));
        assert_eq!(c["config"][0]["precision"], precision);
        assert_eq!(val_losses(&a, 6), val_losses(&c, 0), "{precision}");
        assert_eq!(a["test_accuracy"], c["test_accuracy"], "{precision}");
    }
    // One fold of a cross-validation by actor, stopped at epoch 6 and resumed from its fold
    // file, ends as the uninterrupted fold did: same epochs 7-10, same test score and fold line.
    let fold = |epochs: &str, out: &std::path::Path, resume: Option<&std::path::Path>| run(epochs, out, resume, &["--split", "actor-folds", "--folds", "2", "--fold", "1"]);
    let (straight, first, resumed) = (dir.join("fa.safetensors"), dir.join("fb.safetensors"), dir.join("fc.safetensors"));
    let (straight_line, _) = fold("10", &straight, None);
    fold("6", &first, None);
    let first_fold = ser::experiment::fold_path(&first, 1);
    assert_eq!(training_record(&first_fold)["saved_epoch"], 6, "the test needs the first run's best epoch to be its last");
    let (resumed_line, log) = fold("10", &resumed, Some(&first_fold));
    assert!(log.contains("at epoch 6") && log.contains("epoch   7:") && !log.contains("epoch   6:"), "{log}");
    assert!(straight_line.starts_with("fold 1: speakers 02, 04"), "{straight_line}");
    assert_eq!(straight_line, resumed_line);
    let (a, c) = (training_record(&ser::experiment::fold_path(&straight, 1)), training_record(&ser::experiment::fold_path(&resumed, 1)));
    assert_eq!(val_losses(&a, 6), val_losses(&c, 0));
    assert_eq!((&c["run"]["only_fold"], &c["test_accuracy"]), (&serde_json::json!(1), &a["test_accuracy"]));
    // Without --out the resumed fold would be lost: refused by name.
    let o = ser().args(["train", "--split", "actor-folds", "--epochs", "10", "--drop", "disgust", "--features"]).arg(&features).arg("--resume").arg(&first_fold).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("give --out FILE"), "{}", String::from_utf8_lossy(&o.stderr));

    // Kernel ridge keeps no optimizer state: a clear refusal.
    let krr = dir.join("krr.safetensors");
    assert!(ser().args(["train", "--model", "krr", "--input", "stats", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(&krr).output().unwrap().status.success());
    let o = ser().args(["train", "--epochs", "3", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(dir.join("d.safetensors")).arg("--resume").arg(&krr).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("nothing to resume"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every actor's voice scales and shifts every feature by much more than the classes differ.
/// With speaker normalisation a model trained on three actors recognises the fourth; without it
/// it cannot. The model then normalises at eval and predict time too, and refuses speakers with
/// too few clips.
#[test]
fn speaker_normalisation_recognises_an_unseen_voice() {
    let hash = |actor: u8, j: usize| ((actor as usize * 31 + j * 17) % 7) as f32 - 3.0;
    let (dir, features) = workspace_with("speaker-cli", synthetic_set_with_voices(|a, j| (1.0 + 0.25 * hash(a, j + 3), 3.0 * hash(a, j))));
    let train = |out: &std::path::Path, extra: &[&str]| {
        let o = ser()
            .args(["train", "--model", "krr", "--input", "stats", "--drop", "disgust", "--split", "actors", "--test-actors", "4", "--features"])
            .arg(&features)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let (plain, normed) = (dir.join("plain.safetensors"), dir.join("normed.safetensors"));
    train(&plain, &[]);
    let log = train(&normed, &["--speaker-norm"]);
    assert!(log.contains("speaker normalisation: 168 clips of 4 speakers"), "{log}");
    let (a_plain, a_normed) = (training_record(&plain)["test_accuracy"].as_f64().unwrap(), training_record(&normed)["test_accuracy"].as_f64().unwrap());
    eprintln!("held-out actor: accuracy {a_plain:.3} without, {a_normed:.3} with speaker normalisation");
    assert!(a_normed >= 0.9 && a_plain < 0.6, "held-out actor: accuracy {a_plain} without, {a_normed} with speaker normalisation");

    // eval normalises the file's speakers the same way: the test actor scores as in training.
    let eval = |extra: &[&str]| ser().args(["eval", "--json", "--model"]).arg(&normed).arg("--features").arg(&features).args(extra).output().unwrap();
    let o = eval(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(rep["accuracy"].as_f64().unwrap() >= 0.9, "{rep}");
    let o = eval(&["--min-speaker-clips", "43"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("\"actor 01\" has 42 clips") && e.contains("at least 43"), "{e}");
    // Speaker options for a model that does not normalise speakers are refused.
    let o = ser().args(["eval", "--speaker-groups", "folder", "--model"]).arg(&plain).arg("--features").arg(&features).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("without --speaker-norm"));

    // predict on real files (the synthetic set has ser's default feature configuration): the
    // eight 48 kHz originals are eight actors of one clip each, refused one by one; grouped by
    // their folder and allowed a group of eight, they are predicted.
    let sample = common::originals_dir();
    let o = ser().arg("predict").arg("--model").arg(&normed).arg(&sample).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.matches("skipped").count() == 8 && e.contains("\"actor 01\" has 2 clips") && e.contains("\"actor 20\" has 1 clip;") && e.contains("no file was predicted"), "{e}");
    let predict = |chunk: &str| ser().args(["predict", "--speaker-groups", "folder", "--min-speaker-clips", "8", "--chunk", chunk, "--model"]).arg(&normed).arg(&sample).output().unwrap();
    let o = predict("128");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 8);
    // Decoded three files at a time, the speaker's statistics still come from all eight.
    assert_eq!(predict("3").stdout, o.stdout);
    // A long recording of one voice, cut into 1 s segments and normalised with its own
    // statistics (--speaker-groups file): the eight originals back to back, 29 segments.
    let long = dir.join("long.wav");
    let spec = hound::WavSpec { channels: 1, sample_rate: 16000, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(&long, spec).unwrap();
    for f in ser::infer::collect_files(std::slice::from_ref(&sample)).unwrap() {
        ser::audio::load(&f, 16000).unwrap().iter().for_each(|&x| w.write_sample(x).unwrap());
    }
    w.finalize().unwrap();
    let segments = |min: &str| ser().args(["predict", "--segment", "1", "--speaker-groups", "file", "--min-speaker-clips", min, "--model"]).arg(&normed).arg(&long).output().unwrap();
    let o = segments("20");
    let e = String::from_utf8_lossy(&o.stderr);
    let lines = String::from_utf8_lossy(&o.stdout).lines().count();
    assert!(o.status.success() && lines >= 20 && e.contains(&format!("speaker normalisation: {lines} clips of 1 speakers")), "{lines} lines: {e}");
    let o = segments("1000");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains(&format!("speaker \"file {}\" has {lines} clips", long.display())), "{e}");
    assert_eq!(e.matches("skipped").count(), 1, "one line for the file, not one per segment: {e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ser bench train` trains on synthetic data and reports throughput and every layer it timed
/// (the figures themselves are benchmarks, not asserted here).
#[test]
fn the_training_benchmark_reports_throughput_and_layers() {
    let out = ser().args(["bench", "train", "--model", "mlp", "--samples", "96", "--epochs", "1", "--precision", "f32,bf16", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.iter().map(|r| r["precision"].as_str().unwrap()).collect::<Vec<_>>(), ["f32", "bf16"]);
    for r in &runs {
        assert!(r["samples_per_s"].as_f64().unwrap() > 0.0 && r["samples"] == 96, "{r}");
        let layers: Vec<&str> = r["layers"].as_array().unwrap().iter().map(|l| l["layer"].as_str().unwrap()).collect();
        for l in ["adam", "1.dense forward", "1.dense backward", "2.batch_norm backward"] {
            assert!(layers.contains(&l), "{l} missing from {layers:?}");
        }
        let dense = r["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "1.dense forward").unwrap();
        assert!(dense["gemm_gflop_per_s"].as_f64().unwrap() > 0.0, "{dense}");
    }
    // The recurrent model too, on frame sequences with lengths.
    let out = ser().args(["bench", "train", "--model", "lstm", "--samples", "8", "--batch-size", "4", "--epochs", "1", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    let layers: Vec<&str> = r["layers"].as_array().unwrap().iter().map(|l| l["layer"].as_str().unwrap()).collect();
    assert!(r["model"] == "lstm" && layers.contains(&"0.lstm backward") && layers.contains(&"1.time_mean forward"), "{r}");
}

#[test]
fn bad_flags_are_refused_up_front_naming_the_flag_and_range() {
    // Each once panicked, hung or said something misleading (issue 12); now clap refuses them
    // before any file is read or device opened, naming the flag and what it accepts.
    let (dir, features) = workspace("badflags");
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--batch-size", "0"], "--batch-size", "1 to"),
        (&["--test-fraction", "1.5"], "--test-fraction", "strictly between 0 and 1"),
        (&["--test-fraction", "0"], "--test-fraction", "strictly between 0 and 1"),
        (&["--epochs", "0"], "--epochs", "1 to"),
        (&["--hidden", "0"], "--hidden", "1 to"),
        (&["--rff-features", "0"], "--rff-features", "1 to"),
        (&["--lr", "nan"], "--lr", "not a finite number"),
        (&["--dropout", "1"], "--dropout", "[0, 1)"),
        (&["--n-fft", "1000"], "--n-fft", "power of two"),
        (&["--n-fft", "8"], "--n-fft", "32 to 65536"),
        (&["--hop", "0"], "--hop", "1 to"),
        (&["--sample-rate", "0"], "--sample-rate", "1000 to 384000"),
        (&["--folds", "1"], "--folds", "2 to 100000"),
    ];
    for (args, flag, why) in cases {
        let out = ser().arg("train").arg("--features").arg(&features).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(flag) && err.contains(why), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Checked after parsing, still before any work: a NaN tuning, more MFCCs than mel bands.
    for (args, why) in [(&["--tuning", "NaN"][..], "--tuning"), (&["--n-mfcc", "80"][..], "--n-mfcc 80 is more than --n-mels 64")] {
        let out = ser().args(["features", "--data"]).arg(&dir).arg("--out").arg(dir.join("x.safetensors")).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{args:?}: {err}");
    }
    // An input the asked features cannot give: refused before any clip is extracted.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = ser().args(["train", "--model", "krr", "--input", "distribution-voicing", "--split", "none", "--data"]).arg(root.join("tests/clips/16k")).arg("--out").arg(dir.join("v.safetensors")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no `voiced` column") && err.contains("--set"), "{err}");
    assert!(!err.contains("features:") && !dir.join("v.safetensors").exists(), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn feature_files_with_impossible_lengths_or_non_finite_values_are_refused() {
    let mut long = synthetic_set();
    long.lengths[3] = long.t_max as u32 + 5;
    let (dir, features) = workspace_with("badlengths", long);
    let out = ser().arg("train").arg("--features").arg(&features).args(["--input", "frames", "--epochs", "1"]).arg("--out").arg(dir.join("m.safetensors")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("claims 17 frames, past the file's 12") && !err.contains("panicked"), "{err}");
    let mut nan = synthetic_set();
    nan.vectors[59 * 5 + 2] = f32::NAN;
    nan.write(&features).unwrap();
    let out = ser().arg("train").arg("--features").arg(&features).args(["--epochs", "1"]).arg("--out").arg(dir.join("m.safetensors")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("clip 5") && err.contains("non-finite"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn outputs_are_checked_before_any_work_and_never_replace_links_or_devices() {
    let (dir, features) = workspace("outs");
    let target = dir.join("real.safetensors");
    std::fs::write(&target, b"keep me").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, dir.join("link.safetensors")).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        #[cfg(unix)]
        (dir.join("link.safetensors"), "symbolic link"),
        (dir.clone(), "not a regular file"),
        (dir.join("real.safetensors/model.safetensors"), "cannot create the folder"),
        #[cfg(unix)]
        (PathBuf::from("/dev/null"), "not a regular file"),
    ];
    for (out, why) in cases {
        let started = std::time::Instant::now();
        let res = ser().arg("train").arg("--features").arg(&features).args(["--epochs", "50"]).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success() && err.contains("--out") && err.contains(why), "{out:?}: {err}");
        // Refused up front: no epoch ran (fifty would take far longer).
        assert!(!err.contains("epoch") && started.elapsed().as_secs() < 20, "{out:?}: {err}");
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me", "the link's target is untouched");
    // Holding out every actor leaves nothing to train on: said so, not a texture error.
    let res = ser().arg("train").arg("--features").arg(&features).args(["--drop", "disgust", "--split", "actors", "--test-actors", "1,2,3,4"]).arg("--out").arg(dir.join("m.safetensors")).output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && err.contains("hold out every speaker"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_run_resumes_from_its_last_best_epoch_and_replays_the_uninterrupted_one() {
    use std::io::BufRead;
    let (dir, features) = workspace("kill");
    let args = ["train", "--model", "mlp", "--input", "stats", "--hidden", "16", "--lr", "3e-4", "--drop", "disgust", "--seed", "9", "--patience", "100"];
    let straight = dir.join("straight.safetensors");
    let o = ser().args(args).args(["--epochs", "14", "--features"]).arg(&features).arg("--out").arg(&straight).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same run, killed (SIGKILL: no chance to clean up) once epoch 5 is logged.
    let killed = dir.join("killed.safetensors");
    let mut child = ser().args(args).args(["--epochs", "400", "--features"]).arg(&features).arg("--out").arg(&killed).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in std::io::BufReader::new(stderr).lines() {
        if line.unwrap().contains("epoch   5:") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What it left: a complete model of its best epoch so far, marked partial, resumable.
    let record = training_record(&killed);
    let saved = record["saved_epoch"].as_u64().unwrap() as usize;
    assert!(record["partial"] == true && (1..=6).contains(&saved), "{record}");
    let resumed = dir.join("resumed.safetensors");
    let o = ser().args(["train", "--epochs", "14", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(&resumed).arg("--resume").arg(&killed).output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && log.contains(&format!("at epoch {saved}")), "{log}");
    // Epochs saved+1..14 are the uninterrupted run's, to the bit.
    let (a, c) = (training_record(&straight), training_record(&resumed));
    assert_eq!(val_losses(&a, saved), val_losses(&c, 0));
    assert!(c.get("partial").is_none_or(|p| p != true), "the finished model is not partial");
    // Resuming on other clips is refused (the checkpoint records which clips trained it).
    let all = synthetic_set();
    let keep: Vec<usize> = (0..all.clips.len()).filter(|i| i % 10 != 3).collect();
    let rows = |v: &[f32], w: usize| keep.iter().flat_map(|&i| v[i * w..(i + 1) * w].to_vec()).collect::<Vec<f32>>();
    let fewer = ser::features::set::FeatureSet {
        clips: keep.iter().map(|&i| all.clips[i].clone()).collect(),
        lengths: keep.iter().map(|&i| all.lengths[i]).collect(),
        vectors: rows(&all.vectors, all.dim),
        stds: rows(&all.stds, all.dim),
        frames: rows(&all.frames, all.t_max * all.dim),
        ..all.clone()
    };
    let other = dir.join("other.safetensors");
    fewer.write(&other).unwrap();
    let o = ser().args(["train", "--epochs", "14", "--drop", "disgust", "--features"]).arg(&other).arg("--out").arg(dir.join("x.safetensors")).arg("--resume").arg(&killed).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("trained on other clips"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_ridge_without_enough_validation_says_so_instead_of_flattening_probabilities() {
    let (dir, features) = workspace("krr-val");
    let model = dir.join("krr.safetensors");
    let o = ser().args(["train", "--model", "krr", "--input", "stats", "--drop", "disgust", "--val-fraction", "0.01", "--features"]).arg(&features).arg("--out").arg(&model).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("too few to calibrate"), "{err}");
    let r = training_record(&model);
    assert_eq!(r["kernel_ridge"]["calibrated"], false);
    assert_eq!(r["kernel_ridge"]["temperature"], 1.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn knn_trains_saves_loads_and_evaluates_through_the_same_commands() {
    let (dir, features) = workspace("knn-cli");
    let model = dir.join("knn.safetensors");
    let o = ser().args(["train", "--model", "knn", "--knn-k", "5", "--knn-weights", "distance", "--input", "stats", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(&model).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(err.contains("knn (k 5, Distance votes)"), "{err}");
    let r = training_record(&model);
    assert_eq!(r["knn"]["k"], 5);
    // The synthetic classes are separable: knn finds them.
    assert!(r["test_accuracy"].as_f64().unwrap() > 0.9, "{r}");
    // The saved model evaluates to the report training printed: on the clips its seed held out
    // (seed 0, a fifth), the same accuracy and confusion matrix.
    let e = ser().args(["eval", "--held-out-of-seed", "0", "--model"]).arg(&model).arg("--features").arg(&features).arg("--json").output().unwrap();
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!((&rep["accuracy"], &rep["confusion"]), (&r["test_report"]["accuracy"], &r["test_report"]["confusion"]), "eval against training's report");
    let printed: f64 = out.lines().find(|l| l.trim_start().starts_with("accuracy")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).expect(&out);
    assert!((rep["accuracy"].as_f64().unwrap() - printed).abs() < 0.005, "printed {printed}, eval {}", rep["accuracy"]);
    // It has nothing to resume, and a model of a kind this ser does not know is refused by name.
    let o = ser().args(["train", "--epochs", "3", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(dir.join("r.safetensors")).arg("--resume").arg(&model).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("knn"), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&model).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = m.metadata().clone().unwrap();
    assert_eq!(meta["kind"], "knn");
    meta.insert("kind".into(), "boosted-trees".into());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let other = dir.join("boosted.safetensors");
    std::fs::write(&other, safetensors::serialize(tensors, Some(meta)).unwrap()).unwrap();
    let e = ser().args(["eval", "--model"]).arg(&other).arg("--features").arg(&features).output().unwrap();
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && err.contains("\"boosted-trees\"") && err.contains("does not know"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn svm_and_forest_train_save_load_and_evaluate_through_the_same_commands() {
    let (dir, features) = workspace("classical-cli");
    for (kind, flags, said) in [("svm", &["--svm-c", "3"][..], "support vectors"), ("rf", &["--trees", "40", "--rf-bins", "32"][..], "nodes, depth")] {
        let model = dir.join(format!("{kind}.safetensors"));
        let split = dir.join(format!("{kind}-split.safetensors"));
        let o = ser().args(["train", "--model", kind, "--input", "stats", "--drop", "disgust"]).args(flags).arg("--features").arg(&features).arg("--out").arg(&model).arg("--export-split").arg(&split).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.contains(said), "{kind}: {err}");
        let r = training_record(&model);
        let trained = r["test_accuracy"].as_f64().unwrap();
        assert!(trained > 0.9, "{kind}: {r}");
        assert!(r["fit_seconds"].as_f64().unwrap() > 0.0 && r["test_predict_seconds"].as_f64().unwrap() > 0.0, "{r}");
        // The file names its kind, and loads back to the same scores on the same clips (eval
        // tests every labelled clip, so its accuracy is over more clips: it must still be high,
        // and the test clips' probabilities must be those training printed).
        let bytes = std::fs::read(&model).unwrap();
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["kind"], if kind == "rf" { "forest" } else { kind });
        let e = ser().args(["eval", "--model"]).arg(&model).arg("--features").arg(&features).arg("--json").output().unwrap();
        assert!(e.status.success(), "{kind}: {}", String::from_utf8_lossy(&e.stderr));
        let rep: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        assert!(rep["accuracy"].as_f64().unwrap() > 0.9, "{kind}: {rep}");
        // The exported split holds what the final fit saw and the test rows.
        let bytes = std::fs::read(&split).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (xtr, ytr, xte) = (st.tensor("x_train").unwrap(), st.tensor("y_train").unwrap(), st.tensor("x_test").unwrap());
        assert_eq!(xtr.shape()[0], ytr.shape()[0]);
        assert_eq!(xte.shape()[0] as u64, r["test_clips"].as_u64().unwrap());
        assert_eq!(xtr.shape()[0] as u64, r["train_clips"].as_u64().unwrap() + r["validation_clips"].as_u64().unwrap());
        // Nothing to resume.
        let o = ser().args(["train", "--epochs", "3", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(dir.join("r.safetensors")).arg("--resume").arg(&model).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("nothing to resume"), "{kind}: {err}");
    }
    // Damaged files are refused by name: a forest child pointing backwards (a walk that would
    // never end) and a non-finite svm offset.
    for (kind, tensor) in [("rf", "forest.left"), ("svm", "svm.rho")] {
        let path = dir.join(format!("{kind}.safetensors"));
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st.tensors().into_iter().map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
        for (n, _, _, data) in &mut owned {
            if n == tensor {
                if kind == "rf" {
                    // The first internal root's left child set to 0.
                    data[..4].copy_from_slice(&0u32.to_le_bytes());
                } else {
                    data[..8].copy_from_slice(&f64::NAN.to_le_bytes());
                }
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = owned.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
        let bad = dir.join(format!("bad-{kind}.safetensors"));
        std::fs::write(&bad, safetensors::serialize(views, m.metadata().clone()).unwrap()).unwrap();
        let e = ser().args(["eval", "--model"]).arg(&bad).arg("--features").arg(&features).output().unwrap();
        let err = String::from_utf8_lossy(&e.stderr);
        assert!(!e.status.success() && err.contains("bad-") && (err.contains("damaged") || err.contains("non-finite")), "{kind}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn recurrent_models_train_on_frames_save_evaluate_and_resume() {
    let (dir, features) = workspace("lstm-cli");
    // Summary inputs are refused by name: the recurrent models read frame sequences.
    let o = ser().args(["train", "--model", "lstm", "--input", "stats", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(dir.join("x.safetensors")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--input frames"), "{}", String::from_utf8_lossy(&o.stderr));
    for kind in ["lstm", "cnn-lstm"] {
        let model = dir.join(format!("{kind}.safetensors"));
        // The LSTM with gradients clipped by global norm (recorded, and kept by --resume).
        let clip = if kind == "lstm" { "1" } else { "0" };
        // The CNN+LSTM pools its steps by attention, the LSTM is Keras's plain one: one direction,
        // its last state (saved, evaluated, predicted, resumed alike).
        let (pooling, directions) = if kind == "lstm" { ("last", "1") } else { ("attention", "2") };
        let o = ser().args(["train", "--model", kind, "--input", "frames", "--lstm-units", "16", "--lstm-directions", directions, "--epochs", "12", "--lr", "3e-3", "--clip-norm", clip, "--time-pooling", pooling, "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(&model).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{kind}: {err}");
        let r = training_record(&model);
        assert_eq!(r["clip_norm"].as_f64(), Some(clip.parse().unwrap()), "{kind}: {r}");
        assert_eq!(r["run"]["model"]["time_pooling"].as_str(), Some(pooling), "{kind}: {r}");
        assert_eq!(r["run"]["model"]["lstm_directions"].as_u64(), Some(directions.parse().unwrap()), "{kind}: {r}");
        let lstm = ser::nn::Layer::Lstm { units: 16, bidirectional: directions == "2", sequences: pooling != "last" };
        assert!(saved_layers(&model).contains(&lstm), "{kind}: {:?}", saved_layers(&model));
        // The synthetic classes differ in every frame: a recurrent model finds them.
        assert!(r["test_accuracy"].as_f64().unwrap() > 0.8, "{kind}: {r}");
        let e = ser().args(["eval", "--model"]).arg(&model).arg("--features").arg(&features).arg("--json").output().unwrap();
        assert!(e.status.success(), "{kind}: {}", String::from_utf8_lossy(&e.stderr));
        let rep: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        assert!(rep["accuracy"].as_f64().unwrap() > 0.8, "{kind}: {rep}");
        // It predicts audio files, cut into segments too (each segment its own frame sequence).
        let audio = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clips/03-01-01-01-01-01-01.wav");
        let pr = ser().args(["predict", "--segment", "1", "--model"]).arg(&model).arg(&audio).output().unwrap();
        assert!(pr.status.success(), "{kind} predict: {}", String::from_utf8_lossy(&pr.stderr));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&pr.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(lines.len() >= 3 && lines.iter().all(|l| l["end"].as_f64().unwrap() > l["start"].as_f64().unwrap()), "{kind}: {lines:?}");
        // Its checkpoint keeps Adam's state: it resumes.
        let resumed = dir.join(format!("{kind}-more.safetensors"));
        let o = ser().args(["train", "--epochs", "14", "--drop", "disgust", "--features"]).arg(&features).arg("--resume").arg(&model).arg("--out").arg(&resumed).output().unwrap();
        assert!(o.status.success(), "{kind} resume: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(training_record(&resumed)["clip_norm"].as_f64(), Some(clip.parse().unwrap()), "{kind}: the resumed run's clipping");
        assert_eq!(training_record(&resumed)["run"]["model"]["time_pooling"].as_str(), Some(pooling), "{kind}: the resumed run's pooling");
        assert!(saved_layers(&resumed).contains(&lstm), "{kind}: the resumed model's LSTM {:?}", saved_layers(&resumed));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_trains_each_model_on_one_split_and_prints_the_study_beside_it() {
    let (dir, features) = workspace("compare");
    let base = ["compare", "--drop", "disgust", "--input", "stats", "--models", "knn,mlp", "--epochs", "4", "--hidden", "16", "--folds", "2"];
    let o = ser().args(base).arg("--features").arg(&features).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["study"].as_array().unwrap().len(), 7);
    let ours = v["ser"].as_array().unwrap();
    assert_eq!(ours.iter().map(|r| r["model"].as_str().unwrap()).collect::<Vec<_>>(), ["knn", "mlp"]);
    // Each row is what `ser train` gives for that model on the same split: the random split's
    // test accuracy as the training record has it, the folds' mean as train prints it.
    for r in ours {
        let kind = r["model"].as_str().unwrap();
        let flags = ["--model", kind, "--drop", "disgust", "--input", "stats", "--epochs", "4", "--hidden", "16"];
        let model = dir.join(format!("compare-{kind}.safetensors"));
        let o = ser().arg("train").args(flags).arg("--features").arg(&features).arg("--out").arg(&model).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(r["random_accuracy"], training_record(&model)["test_accuracy"], "{kind}: random split");
        let o = ser().arg("train").args(flags).args(["--split", "speaker-folds", "--folds", "2", "--features"]).arg(&features).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let mean: f64 = text.split("2-fold by speaker: accuracy ").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|v| v.parse().ok()).expect(&text);
        assert!((r["by_actor_accuracy"].as_f64().unwrap() - mean).abs() < 5e-5, "{kind}: by speaker {} against {mean}", r["by_actor_accuracy"]);
    }
    let md = ser().args(base).arg("--features").arg(&features).arg("--no-actor-folds").output().unwrap();
    let text = String::from_utf8_lossy(&md.stdout);
    assert!(md.status.success() && text.contains("| KNN | 0.56 | ") && text.contains("| SVM | 0.30 | not run (add svm to --models)") && text.contains("| LSTM | 0.62 | not run (add lstm to --models)") && text.contains("ser mlp (not in the study)"), "{text}");
    // The recurrent model reads frames though --input says stats.
    let o = ser().args(["compare", "--drop", "disgust", "--input", "stats", "--models", "cnn-lstm", "--epochs", "2", "--lstm-units", "8", "--no-actor-folds", "--json"]).arg("--features").arg(&features).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("input Frames"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ser eval --held-out-of-seed N` scores the test clips of `ser train --seed N` (the same
/// accuracy as the training record), and repeated --model averages an ensemble of any kinds.
#[test]
fn eval_scores_a_training_splits_test_clips_and_ensembles_of_any_kinds() {
    let (dir, features) = workspace("eval-held-out");
    let mut recorded = Vec::new();
    for (kind, input) in [("knn", "stats"), ("mlp", "stats")] {
        let model = dir.join(format!("{kind}.safetensors"));
        let o = ser().args(["train", "--model", kind, "--input", input, "--seed", "3", "--epochs", "8", "--drop", "disgust", "--features"]).arg(&features).arg("--out").arg(&model).output().unwrap();
        assert!(o.status.success(), "{kind}: {}", String::from_utf8_lossy(&o.stderr));
        recorded.push(training_record(&model)["test_accuracy"].as_f64().unwrap());
        let e = ser().args(["eval", "--held-out-of-seed", "3", "--json", "--model"]).arg(&model).arg("--features").arg(&features).output().unwrap();
        assert!(e.status.success(), "{kind}: {}", String::from_utf8_lossy(&e.stderr));
        let rep: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        assert_eq!(rep["accuracy"].as_f64(), recorded.last().copied(), "{kind}: eval on the held-out clips vs the training record");
        assert!(String::from_utf8_lossy(&e.stderr).contains("scored 35 clips"), "{}", String::from_utf8_lossy(&e.stderr));
    }
    let e = ser().args(["eval", "--held-out-of-seed", "3", "--json", "--model"]).arg(dir.join("knn.safetensors")).arg("--model").arg(dir.join("mlp.safetensors")).arg("--features").arg(&features).output().unwrap();
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(e.status.success() && err.contains("2 models' averaged probabilities"), "{err}");
    // The command scores what the library's ensemble evaluation (tests/experiment.rs checks its
    // averaging) gives for the same two files.
    let rep: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    let g = &common::gpu().gpu;
    let members: Vec<_> = ["knn", "mlp"].iter().map(|k| ser::infer::load_model(g, Some(&dir.join(format!("{k}.safetensors")))).unwrap()).collect();
    let options = ser::infer::EvalOptions { held_out_of_seed: Some((3, 0.2)), held_out_fold: None, groups: ser::contract::SpeakerGroups::Auto, min_clips: None };
    let want = ser::infer::evaluate(g, &members, &FeatureSet::read(&features).unwrap(), &options).unwrap();
    assert_eq!(rep["confusion"], serde_json::to_value(&want.report.confusion).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fold's model as users make and score it: `ser train --split actor-folds --fold K --out M`
/// saves `M.foldK` (calibrated), `ser eval --held-out-fold K` scores the fold's actors with the
/// figure the fold printed, another fold is refused, and `ser calibrate` writes the same
/// temperature again.
#[test]
fn a_fold_model_is_saved_scored_on_its_actors_and_calibrated() {
    let (dir, features) = workspace("fold-cli");
    let model = dir.join("m.safetensors");
    let out = ser()
        .args(["train", "--model", "mlp", "--input", "stats", "--hidden", "16", "--epochs", "4", "--drop", "disgust", "--split", "actor-folds", "--folds", "4", "--fold", "2", "--features"])
        .arg(&features)
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stderr.contains("calibration on"), "{stderr}");
    let printed: f64 = stdout.split("accuracy ").nth(1).and_then(|s| s.split(',').next()).and_then(|s| s.parse().ok()).expect(&stdout);
    let fold_model = dir.join("m.safetensors.fold2");
    let eval = |fold: &str| ser().args(["eval", "--json", "--folds", "4", "--held-out-fold", fold, "--model"]).arg(&fold_model).arg("--features").arg(&features).output().unwrap();
    let out = eval("2");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // One actor of four: 7 classes x 6 clips.
    assert_eq!(rep["macro_avg"]["support"], 42);
    assert!((rep["accuracy"].as_f64().unwrap() - printed).abs() < 5e-5, "{} against {printed}", rep["accuracy"]);
    let out = eval("1");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("trained on fold 2 of 4"), "{}", String::from_utf8_lossy(&out.stderr));
    let calibrated = dir.join("c.safetensors");
    let out = ser().args(["calibrate", "--model"]).arg(&fold_model).arg("--features").arg(&features).arg("--out").arg(&calibrated).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let temperatures = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap();
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        m.metadata().as_ref().unwrap()["temperatures"].clone()
    };
    assert_eq!(temperatures(&calibrated), temperatures(&fold_model));
    std::fs::remove_dir_all(&dir).unwrap();
}
