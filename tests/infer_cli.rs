//! `ser predict` and `ser eval` as users run them, with a freshly initialised model saved the
//! way `ser train` saves one.

mod common;

use common::gpu;
use ser::nn::checkpoint::{self, ModelMeta};
use ser::nn::{Architecture, Model};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ser() -> Command {
    common::ser_command()
}

fn sample_dir() -> PathBuf {
    common::originals_dir()
}

/// Saves an untrained refined CNN over time means (the default features' 59 columns, seven
/// classes) to `path`.
fn random_cnn(path: &Path) {
    let g = &gpu().gpu;
    let cfg = ser::features::FeatureConfig::default();
    let classes: Vec<ser::audio::Emotion> = ser::audio::Emotion::RAVDESS.iter().copied().filter(|e| *e != ser::audio::Emotion::Disgust).collect();
    let arch = Architecture::refined_cnn((cfg.dim(), 1), classes.len(), ser::nn::TimePooling::Flatten);
    let model = Model::new(g, &arch, 11).unwrap();
    let meta = ModelMeta {
        architecture: arch,
        data: ser::contract::DataContract {
            version: ser::contract::VERSION,
            classes,
            scaler: ser::dataset::Scaler { mean: vec![0.0; cfg.dim()], std: vec![10.0; cfg.dim()] },
            features: cfg,
            input: ser::dataset::Input::Vectors,
            speaker_norm: None,
            label_map: vec![],
            corpora: Default::default(),
        },
        training: Default::default(),
        temperatures: vec![],
    };
    checkpoint::save(g, std::slice::from_ref(&model), &meta, path).unwrap();
}

/// `ser ensemble` joins the built-in kernel ridge model (distribution input) and a network over
/// time means into one file; `ser predict` with it gives each file the mean of the two models'
/// probabilities, and `ser eval` scores it as the two models given one by one.
#[test]
fn an_ensemble_file_predicts_the_mean_of_its_members() {
    let dir = common::TempDir::new("ensemble-cli");
    let (cnn, pair) = (dir.0.join("cnn.safetensors"), dir.0.join("pair.safetensors"));
    random_cnn(&cnn);
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/ser.safetensors");
    let out = ser().args(["ensemble", "--model"]).arg(&builtin).arg("--model").arg(&cnn).arg("--out").arg(&pair).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("krr (distribution), network (vectors)"), "{}", String::from_utf8_lossy(&out.stderr));
    let predict = |model: &Path| {
        let o = ser().arg("predict").arg("--model").arg(model).arg(sample_dir()).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
    };
    let (a, b, mean) = (predict(&builtin), predict(&cnn), predict(&pair));
    assert_eq!(mean.len(), 8);
    let mut differs = false;
    for ((x, y), m) in a.iter().zip(&b).zip(&mean) {
        assert_eq!(x["file"], m["file"]);
        for (class, v) in m["probabilities"].as_object().unwrap() {
            let want = (x["probabilities"][class].as_f64().unwrap() + y["probabilities"][class].as_f64().unwrap()) / 2.0;
            assert!((v.as_f64().unwrap() - want).abs() < 1e-6, "{class}: {v} against {want}\n{x}\n{y}");
        }
        differs |= m["label"] != x["label"] || m["label"] != y["label"];
    }
    assert!(differs, "the members must disagree somewhere for this check to mean anything");
    let eval = |models: &[&Path]| {
        let mut c = ser();
        c.arg("eval").arg("--data").arg(sample_dir()).arg("--json");
        models.iter().for_each(|m| {
            c.arg("--model").arg(m);
        });
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["confusion"].clone()
    };
    assert_eq!(eval(&[&pair]), eval(&[&builtin, &cnn]));
    // One model is no ensemble.
    let out = ser().args(["ensemble", "--model"]).arg(&builtin).arg("--out").arg(dir.0.join("one.safetensors")).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least two"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The shipped ensembles predict the bundled clips as they did when they shipped: the same
/// labels, every probability within the built-in model's selftest tolerance.
/// weights/ser-ensemble.safetensors: kernel ridge and the CNN+LSTM on the 65 prosody columns;
/// weights/ser-speaker.safetensors: kernel ridge and an SVM on the distribution-voicing input, both
/// speaker-normalised (here the four clips taken as one speaker: their statistics, embeddings
/// lengths and voicing moments normalised together).
#[test]
fn the_shipped_ensembles_predict_the_bundled_clips_as_recorded() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let parse = |text: &str| text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>();
    for (model, extra, recorded) in [
        ("weights/ser-ensemble.safetensors", &[][..], "examples/clips/expected-ensemble.jsonl"),
        ("weights/ser-speaker.safetensors", &["--speaker-groups", "folder", "--min-speaker-clips", "4"][..], "examples/clips/expected-speaker.jsonl"),
    ] {
        let out = ser().args(["predict", "--model", model]).args(extra).arg("examples/clips").current_dir(root).output().unwrap();
        assert!(out.status.success(), "{model}: {}", String::from_utf8_lossy(&out.stderr));
        let (got, want) = (parse(&String::from_utf8_lossy(&out.stdout)), parse(&std::fs::read_to_string(root.join(recorded)).unwrap()));
        assert_eq!(got.len(), want.len(), "{model}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g["file"], &g["label"]), (&w["file"], &w["label"]), "{model}");
            for (class, v) in w["probabilities"].as_object().unwrap() {
                let d = (g["probabilities"][class].as_f64().unwrap() - v.as_f64().unwrap()).abs();
                assert!(d <= ser::selftest::MODEL_TOLERANCE, "{model}: {} {class}: {d}", w["file"]);
            }
        }
    }
}

/// `ser info` says what a model file holds without a GPU: an ensemble's members with their kinds,
/// inputs and training records (the JSON form), the shared contract in the text form; a file
/// that is not a model is refused naming it.
#[test]
fn info_describes_a_model_file_from_its_metadata() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = ser().args(["info", "--json", "weights/ser-speaker.safetensors"]).current_dir(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["kind"], "ensemble");
    let members = info["members"].as_array().unwrap();
    let kinds: Vec<&str> = members.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["krr", "svm"]);
    for m in members {
        assert_eq!(m["contract"]["input"], "distribution-voicing");
        assert_eq!(m["contract"]["speaker_norm"]["min_clips"], 30);
        // The training record as the file stores it: the run's configuration and the clips.
        assert_eq!(m["training"]["run"]["model"]["kind"], m["kind"], "{m}");
        assert!(m["training"]["train_clips"].as_u64().unwrap() > 1800, "{m}");
    }
    // Text: the built-in model, a single kernel ridge model on the distribution input.
    let out = ser().arg("info").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("a krr model") && text.contains("input: distribution\n") && text.contains("--split none"), "{text}");
    assert!(text.contains("classes: neutral, calm, happy, sad, angry, fearful, surprised (7)"), "{text}");
    let out = ser().args(["info", "README.md"]).current_dir(root).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("README.md"), "{e}");
}

#[test]
fn predict_and_eval_on_real_files() {
    let dir = std::env::temp_dir().join(format!("ser-infer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model_path = dir.join("model.safetensors");
    random_cnn(&model_path);
    // Any file name works for predict; a file that is not audio is reported, not fatal.
    let stranger = dir.join("my recording, take 2.wav");
    std::fs::copy(sample_dir().join("03-01-08-01-02-02-01.wav"), &stranger).unwrap();
    let junk = dir.join("junk.wav");
    std::fs::write(&junk, b"not audio").unwrap();
    let out = ser().arg("predict").arg("--model").arg(&model_path).arg(sample_dir()).arg(&stranger).arg(&junk).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Status 3: every good file predicted, the junk one skipped and listed.
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 9);
    for l in &lines {
        let probs = l["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 7);
        let total: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{l}");
        assert_eq!(probs[l["label"].as_str().unwrap()].as_f64(), l["confidence"].as_f64());
    }
    assert!(stderr.contains("skipped") && stderr.contains("junk.wav"), "{stderr}");
    // In chunks of three files (the junk file inside one of them): the same lines, in order.
    let chunked = ser().args(["predict", "--chunk", "3", "--model"]).arg(&model_path).arg(sample_dir()).arg(&stranger).arg(&junk).output().unwrap();
    assert!(chunked.status.code() == Some(3) && String::from_utf8_lossy(&chunked.stderr).contains("junk.wav"));
    assert_eq!(String::from_utf8_lossy(&chunked.stdout), String::from_utf8_lossy(&out.stdout));
    // Chunks closed by decoded samples (here: after every file) give the same predictions too.
    {
        let g = &gpu().gpu;
        let p = ser::infer::load_model(g, Some(&model_path)).unwrap();
        let files = ser::infer::collect_files(&[sample_dir()]).unwrap();
        let run = |o: ser::infer::PredictOptions| {
            let mut got = Vec::new();
            let failed = p.predict_files(g, &files, &o, |pr| got.push((pr.file, pr.probabilities))).unwrap();
            assert!(failed.is_empty());
            got
        };
        let by_samples = run(ser::infer::PredictOptions { samples_per_chunk: 1, ..Default::default() });
        assert_eq!(by_samples, run(ser::infer::PredictOptions::default()));
        assert_eq!(by_samples.len(), 8);
    }
    // The stereo original and its renamed copy are the same audio: the same prediction.
    let by_file = |needle: &str| lines.iter().find(|l| l["file"].as_str().unwrap().contains(needle)).unwrap()["probabilities"].clone();
    assert_eq!(by_file("03-01-08-01-02-02-01"), by_file("take 2"));

    let out = ser().arg("predict").arg("--format").arg("csv").arg("--model").arg(&model_path).arg(&stranger).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = text.lines();
    assert!(rows.next().unwrap().starts_with("file,label,confidence,angry,calm,fearful,happy,neutral,sad,surprised"));
    assert!(rows.next().unwrap().starts_with("\"") , "a file name with a comma is quoted: {text}");

    // --segment: a recording made of one clip three times over, cut at the clip's length, gives
    // three lines, each with its span and exactly the clip's own prediction (16 kHz float WAV:
    // no resampling, so every segment holds the clip's samples).
    let clip = ser::audio::load(&sample_dir().join("03-01-05-02-02-01-07.wav"), 16000).unwrap();
    let write = |path: &Path, copies: usize| {
        let spec = hound::WavSpec { channels: 1, sample_rate: 16000, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for _ in 0..copies {
            clip.iter().for_each(|&x| w.write_sample(x).unwrap());
        }
        w.finalize().unwrap();
    };
    let (one, three) = (dir.join("one.wav"), dir.join("three.wav"));
    write(&one, 1);
    write(&three, 3);
    let seconds = clip.len() as f64 / 16000.0;
    let run = |extra: &[&str], file: &Path| {
        let o = ser().arg("predict").arg("--model").arg(&model_path).args(extra).arg(file).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
    };
    let whole = run(&[], &one);
    let segs = run(&["--segment", &seconds.to_string()], &three);
    assert_eq!(segs.len(), 3);
    for (i, s) in segs.iter().enumerate() {
        assert!((s["start"].as_f64().unwrap() - i as f64 * seconds).abs() < 1e-9 && (s["end"].as_f64().unwrap() - (i + 1) as f64 * seconds).abs() < 1e-9, "{s}");
        assert_eq!(s["probabilities"], whole[0]["probabilities"], "segment {i}");
    }
    assert!(whole[0].get("start").is_none());
    // Half-overlapping segments: five, the last ending at the end of the file.
    let overlapping = run(&["--segment", &seconds.to_string(), "--segment-hop", &(seconds / 2.0).to_string()], &three);
    assert_eq!(overlapping.len(), 5);
    assert!((overlapping[4]["end"].as_f64().unwrap() - 3.0 * seconds).abs() < 1e-9);
    let csv = ser().args(["predict", "--format", "csv", "--segment", "1.5", "--model"]).arg(&model_path).arg(&one).output().unwrap();
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("file,start,end,label,confidence,angry"));
    let bad = ser().args(["predict", "--segment", "0", "--model"]).arg(&model_path).arg(&one).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("positive"));

    // eval on the labelled originals: the one disgust clip is left out (the model has no such class).
    let out = ser().arg("eval").arg("--model").arg(&model_path).arg("--data").arg(sample_dir()).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["macro_avg"]["support"], 7);
    assert_eq!(rep["confusion"].as_array().unwrap().len(), 7);

    // Features made with another configuration are refused with both configurations shown.
    let other = dir.join("other.safetensors");
    let made = ser().args(["features", "--no-cache", "--n-mels", "40", "--data"]).arg(sample_dir()).arg("--out").arg(&other).output().unwrap();
    assert!(made.status.success());
    let out = ser().arg("eval").arg("--model").arg(&model_path).arg("--features").arg(&other).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("different configuration") && err.contains("\"n_mels\":40"), "{err}");
    // A missing model is a clear error.
    let out = ser().args(["predict", "--model", "/no/such/model.safetensors"]).arg(&stranger).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/model.safetensors"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_readme_command_prints_no_error_lines_on_a_headless_machine() {
    // Mesa's device-select layer used to print "error: XDG_RUNTIME_DIR is invalid or not set"
    // twice on every run without a desktop session; users read that as a failure.
    let out = ser().args(["predict", "examples/clips"]).current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("XDG_RUNTIME_DIR").env_remove("NODEVICE_SELECT").output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.to_lowercase().contains("error"), "{err}");
}

/// The shipped model with its metadata and tensors edited, written to `path`.
fn edited_model(path: &Path, edit_meta: impl Fn(&mut std::collections::HashMap<String, String>), edit_tensor: impl Fn(&str, &mut Vec<u8>)) {
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/ser.safetensors")).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = m.metadata().clone().unwrap();
    edit_meta(&mut meta);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let mut data = t.data().to_vec();
            edit_tensor(&name, &mut data);
            (name, t.dtype(), t.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        owned.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

/// A kernel ridge model in the layout files had before kernel ridge was a kind of its own (a
/// layer network: Flatten, RbfKernel, Dense; the built-in model until session 29) loads and
/// predicts exactly as the same numbers in today's layout.
#[test]
fn a_kernel_ridge_file_in_the_old_network_layout_predicts_as_today_s() {
    let dir = common::TempDir::new("legacy-krr");
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/ser.safetensors")).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = m.metadata().clone().unwrap();
    let gamma = serde_json::from_str::<serde_json::Value>(&meta["krr"]).unwrap()["gamma"].as_f64().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (centres, coef, bias) = (st.tensor("krr.centres").unwrap(), st.tensor("krr.coef").unwrap(), st.tensor("krr.bias").unwrap());
    let (n, width) = (centres.shape()[0], centres.shape()[1]);
    let classes = bias.shape()[0];
    let architecture = serde_json::json!({"input": [width, 1], "layers": [{"type": "flatten"}, {"type": "rbf_kernel", "centres": n, "gamma": gamma}, {"type": "dense", "units": classes, "relu": false}]});
    meta.remove("kind");
    meta.remove("krr");
    meta.insert("architecture".into(), architecture.to_string());
    meta.insert("members".into(), "1".into());
    let norms: Vec<u8> = centres.data().chunks_exact(4 * width).flat_map(|row| row.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()).powi(2)).sum::<f32>().to_le_bytes()).collect();
    let views = vec![
        ("1.rbf.centres".to_string(), centres),
        ("1.rbf.centre_sq_norms".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n], &norms).unwrap()),
        ("2.dense.weight".to_string(), coef),
        ("2.dense.bias".to_string(), bias),
    ];
    let legacy = dir.0.join("legacy.safetensors");
    std::fs::write(&legacy, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    let clips = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clips");
    let predict = |model: Option<&Path>| {
        let mut cmd = ser();
        cmd.arg("predict").arg(&clips);
        if let Some(m) = model {
            cmd.arg("--model").arg(m);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    assert_eq!(predict(Some(&legacy)), predict(None));
}

#[test]
fn damaged_checkpoints_are_refused_at_load_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("ser-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clips");
    // Unchanged, the copy predicts (so the edits below are what gets refused).
    let same = dir.join("same.safetensors");
    edited_model(&same, |_| {}, |_, _| {});
    assert!(ser().arg("predict").arg("--model").arg(&same).arg(&clip).output().unwrap().status.success());
    let nan_weight = dir.join("nan.safetensors");
    edited_model(&nan_weight, |_| {}, |name, data| {
        if name == "krr.coef" {
            data[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
    });
    let zero_std = dir.join("zero-std.safetensors");
    edited_model(&zero_std, |meta| {
        let mut scaler: serde_json::Value = serde_json::from_str(&meta["scaler"]).unwrap();
        scaler["std"][3] = serde_json::json!(0.0);
        meta.insert("scaler".into(), scaler.to_string());
    }, |_, _| {});
    let hop_zero = dir.join("hop-zero.safetensors");
    edited_model(&hop_zero, |meta| {
        let mut f: serde_json::Value = serde_json::from_str(&meta["features"]).unwrap();
        f["hop"] = serde_json::json!(0);
        meta.insert("features".into(), f.to_string());
    }, |_, _| {});
    // Finite but huge kernel ridge coefficients: every score overflows to infinity and the
    // softmax to NaN, which would come out as class 0; it is an error naming the clip.
    let huge = dir.join("huge.safetensors");
    edited_model(&huge, |_| {}, |name, data| {
        if name == "krr.coef" {
            data.chunks_exact_mut(4).for_each(|c| c.copy_from_slice(&3e38f32.to_le_bytes()));
        }
    });
    for (model, why) in [(&nan_weight, "must be finite"), (&zero_std, "scaler column 3"), (&hop_zero, "hop 0 must be between 1"), (&huge, "are [NaN")] {
        let out = ser().arg("predict").arg("--model").arg(model).arg(&clip).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why) && out.stdout.is_empty(), "{model:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn clips_without_usable_signal_are_skipped_with_a_reason_and_the_status_says_partial() {
    let dir = std::env::temp_dir().join(format!("ser-unusable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let write = |name: &str, samples: Vec<i16>| {
        let mut w = hound::WavWriter::create(dir.join(name), spec).unwrap();
        samples.into_iter().for_each(|s| w.write_sample(s).unwrap());
        w.finalize().unwrap();
    };
    write("silent.wav", vec![0; 32_000]);
    write("constant.wav", vec![1200; 32_000]);
    write("ten-samples.wav", (0..10).map(|i| i * 1000).collect());
    write("one-sample.wav", vec![5000]);
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clips/03-01-01-01-01-01-01.wav"), dir.join("speech.wav")).unwrap();
    let out = ser().arg("predict").arg(&dir).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The speech is labelled; the four are skipped with their reasons, each file named once.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("speech.wav"), "{stdout}");
    for (name, why) in [("silent.wav", "no usable signal"), ("constant.wav", "no usable signal"), ("ten-samples.wav", "too short"), ("one-sample.wav", "too short")] {
        let line = stderr.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} not listed: {stderr}"));
        assert!(line.contains(why) && line.matches(name).count() == 1, "{line}");
    }
    assert_eq!(out.status.code(), Some(3), "some skipped: partial ({stderr})");
    assert!(stderr.contains("1 of 5 files predicted, 4 skipped"), "{stderr}");
    // Nothing usable at all: an error (status 1), no line.
    std::fs::remove_file(dir.join("speech.wav")).unwrap();
    let out = ser().arg("predict").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_lists_every_file_it_does_not_score_and_says_partial() {
    let dir = std::env::temp_dir().join(format!("ser-eval-skips-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["03-01-01-01-01-01-01.wav", "03-01-03-02-01-02-04.wav", "03-01-02-01-02-02-01.wav"] {
        let src = sample_dir().join(name);
        if src.exists() {
            std::fs::copy(&src, dir.join(name)).unwrap();
        }
    }
    std::fs::copy(sample_dir().join("03-01-01-01-01-01-01.wav"), dir.join("my-recording.wav")).unwrap();
    std::fs::write(dir.join("03-01-05-01-01-01-01.wav"), b"RIFF....WAVEjunk").unwrap();
    let out = ser().args(["eval", "--data"]).arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("my-recording.wav") && err.contains("follow none of the layout's names"), "{err}");
    assert!(err.contains("03-01-05-01-01-01-01.wav") && err.contains("1 files skipped"), "{err}");
    assert!(err.contains("scored "), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_file_name_that_is_not_utf8_can_be_found_again_from_the_output() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let dir = std::env::temp_dir().join(format!("ser-non-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = std::ffi::OsString::from_vec(b"caf\xe9 take 1.wav".to_vec());
    let path = dir.join(&name);
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clips/03-01-01-01-01-01-01.wav"), &path).unwrap();
    let out = ser().arg("predict").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let hex: String = path.as_os_str().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(line["file_hex"], hex.as_str(), "{line}");
    assert!(line["file"].as_str().unwrap().ends_with("caf\u{FFFD}{e9} take 1.wav"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shards_lists_and_resumable_outputs_for_archives() {
    let dir = std::env::temp_dir().join(format!("ser-archive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut c = ser();
        c.arg("predict").args(args).arg(sample_dir());
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    // Shards: contiguous runs of the sorted input; concatenated in order, the whole run.
    let (whole, _) = run(&[], &[]);
    assert_eq!(whole.lines().count(), 8);
    let shards: Vec<String> = (0..3).map(|i| run(&["--shard", &format!("{i}/3")], &[]).0).collect();
    assert_eq!(shards.concat(), whole);
    assert!(shards.iter().all(|s| !s.is_empty()));
    // The same shard from a Slurm array task and from a Kubernetes Indexed Job.
    let (slurm, log) = run(&[], &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
    assert_eq!(slurm, shards[1]);
    assert!(log.contains("shard 1/3 (from Slurm array task 1)"), "{log}");
    let (k8s, _) = run(&["--shard-count", "3"], &[("JOB_COMPLETION_INDEX", "2")]);
    assert_eq!(k8s, shards[2]);
    // A file list instead of arguments (and from standard input).
    let list = dir.join("list.txt");
    let mut names: Vec<String> = std::fs::read_dir(sample_dir()).unwrap().flatten().map(|e| e.path().display().to_string()).filter(|p| p.ends_with(".wav")).collect();
    names.sort();
    std::fs::write(&list, format!("{}\n\n", names.join("\n"))).unwrap();
    let o = ser().args(["predict", "--files-from"]).arg(&list).output().unwrap();
    assert_eq!(String::from_utf8(o.stdout).unwrap(), whole);
    let mut child = ser().args(["predict", "--files-from", "-"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), std::fs::read(&list).unwrap().as_slice()).unwrap();
    assert_eq!(String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap(), whole);
    // --out: what a kill leaves (three files done, a torn fourth line) is resumed into the file
    // an uninterrupted run writes, for both formats.
    for format in ["jsonl", "csv"] {
        let full = dir.join(format!("full.{format}"));
        let cut = dir.join(format!("cut.{format}"));
        run(&["--format", format, "--out", full.to_str().unwrap()], &[]);
        let text = std::fs::read_to_string(&full).unwrap();
        let keep: usize = text.split_inclusive('\n').take(if format == "csv" { 4 } else { 3 }).map(str::len).sum();
        std::fs::write(&cut, &text[..keep + 25]).unwrap();
        let (_, log) = run(&["--format", format, "--out", cut.to_str().unwrap()], &[]);
        assert!(log.contains("3 files already done, 5 to go"), "{log}");
        assert_eq!(std::fs::read_to_string(&cut).unwrap(), text, "{format}");
        // A finished output is left as it is.
        run(&["--format", format, "--out", cut.to_str().unwrap()], &[]);
        assert_eq!(std::fs::read_to_string(&cut).unwrap(), text, "{format}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn several_adapters_keep_the_output_in_input_order() {
    // Here: lavapipe through Vulkan and through GL, one worker each, one file per chunk, so the
    // blocks finish out of order and must be put back in order.
    let one = ser().arg("predict").arg(sample_dir()).output().unwrap();
    let many = ser().args(["predict", "--adapters", "all", "--chunk", "1"]).arg(sample_dir()).output().unwrap();
    assert!(many.status.success(), "{}", String::from_utf8_lossy(&many.stderr));
    let parse = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>();
    let (a, b) = (parse(&one), parse(&many));
    assert_eq!(a.len(), 8);
    assert_eq!(a.iter().map(|l| l["file"].clone()).collect::<Vec<_>>(), b.iter().map(|l| l["file"].clone()).collect::<Vec<_>>());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["label"], y["label"]);
        for (k, v) in x["probabilities"].as_object().unwrap() {
            assert!((v.as_f64().unwrap() - y["probabilities"][k].as_f64().unwrap()).abs() < 1e-4, "{x} {y}");
        }
    }
    // Every adapter `ser devices` lists opened its device and took its share: a line each, the
    // blocks adding up to the eight files.
    let err = String::from_utf8_lossy(&many.stderr);
    let adapters = ser::gpu::list_adapters().len();
    assert!(err.contains(&format!("predicting on {adapters} adapters")), "{err}");
    let blocks: Vec<usize> = err.lines().filter_map(|l| l.split(": ").nth(1)?.strip_suffix(" blocks of up to 1 files")?.parse().ok()).collect();
    assert_eq!((blocks.len(), blocks.iter().sum::<usize>()), (adapters, 8), "{err}");
    let bad = ser().args(["predict", "--adapters", "no-such-gpu"]).arg(sample_dir()).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("no such adapter"));
}

/// `predict`'s archive logic as a library call: a shard of the sorted input, CSV written to a
/// file as results arrive, a rerun that finds everything done, and the same bytes as the CLI.
#[test]
fn an_archive_run_is_a_library_call_the_cli_makes() {
    use ser::infer::archive::{self, ArchiveRun, OutputFormat, Progress, Shard, Workers};
    struct Count(usize, usize);
    impl Progress for Count {
        fn planned(&mut self, files: usize) {
            self.0 = files;
        }
        fn saw(&mut self, _: &ser::infer::Prediction) {
            self.1 += 1;
        }
    }
    let dir = common::TempDir::new("archive-lib");
    let out = dir.0.join("shard1.csv");
    let mut files: Vec<PathBuf> = std::fs::read_dir(sample_dir()).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "wav")).collect();
    files.reverse();
    let options = ser::infer::PredictOptions { files_per_chunk: 2, ..Default::default() };
    let shared = gpu();
    let predictor = ser::infer::load_model(&shared.gpu, None).unwrap();
    let run = |progress: &mut Count, logged: &std::cell::RefCell<Vec<String>>| {
        let run = ArchiveRun { files: files.clone(), shard: Some((Shard::parse("1/3").unwrap(), "a test".into())), format: OutputFormat::Csv, out: Some(&out), options: &options };
        archive::predict_archive(Workers::Local(&shared.gpu, &predictor), &predictor.meta, run, &mut |_| panic!("lines go to the file"), progress, &|m| logged.borrow_mut().push(m.to_string())).unwrap()
    };
    let (mut progress, logged) = (Count(0, 0), std::cell::RefCell::new(Vec::new()));
    let report = run(&mut progress, &logged);
    // 8 files: shard 1 of 3 is the sorted input's [2, 5).
    assert_eq!((report.files, report.predicted, report.failed.len()), (3, 3, 0));
    assert_eq!((progress.0, progress.1), (3, 3));
    assert_eq!(logged.borrow()[0], "shard 1/3 (from a test): 3 of 8 files");
    let written = std::fs::read_to_string(&out).unwrap();
    drop(shared);
    let cli = ser().args(["predict", "--format", "csv", "--shard", "1/3"]).arg(sample_dir()).output().unwrap();
    assert!(cli.status.success());
    assert_eq!(written, String::from_utf8(cli.stdout).unwrap(), "the library's file and the CLI's output");
    let shared = gpu();
    let (mut again, logged) = (Count(0, 0), std::cell::RefCell::new(Vec::new()));
    let run2 = ArchiveRun { files: files.clone(), shard: Some((Shard::parse("1/3").unwrap(), "a test".into())), format: OutputFormat::Csv, out: Some(&out), options: &options };
    let report = archive::predict_archive(Workers::Local(&shared.gpu, &predictor), &predictor.meta, run2, &mut |_| panic!("nothing to print"), &mut again, &|m| logged.borrow_mut().push(m.to_string())).unwrap();
    assert_eq!((report.files, report.predicted, again.1), (0, 0, 0));
    assert!(logged.borrow()[1].ends_with("3 files already done, 0 to go"), "{:?}", logged.borrow());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written, "a rerun changes nothing");
}

/// A progress hook hears every unit of a feature build and of a prediction run, in order and on
/// the calling thread, and its error stops the run there: that error comes back, no cache entry
/// is written, no prediction past the stop is emitted.
#[test]
fn progress_is_reported_as_the_work_goes_and_a_hook_s_error_stops_it_there() {
    use ser::features::corpus::{self, BuildOptions, Data};
    use ser::progress::{Progress, Step};
    use std::sync::{Arc, Mutex};
    let g = &gpu().gpu;
    let caller = std::thread::current().id();
    // Records each step (checking it comes on the calling thread); fails at `stop_at`.
    let recorder = |stop_at: Option<(&'static str, usize)>| {
        let steps: Arc<Mutex<Vec<Step>>> = Arc::default();
        let hook = Progress::new({
            let steps = steps.clone();
            move |s| {
                assert_eq!(std::thread::current().id(), caller, "{s:?} reported from a worker thread");
                steps.lock().unwrap().push(s);
                anyhow::ensure!(stop_at != Some((s.stage, s.done)), "stopped at {} {}", s.stage, s.done);
                Ok(())
            }
        });
        (steps, hook)
    };
    let cache = common::TempDir::new("progress-cache");
    let data = Data { sources: vec![ser::sources::Source::Folder(sample_dir())], selection: Default::default(), label_map: Default::default() };
    let cfg = ser::features::FeatureConfig::default();
    let options = |on_progress| BuildOptions { strict: false, cache_dir: Some(cache.0.clone()), progress: false, speed_copies: vec![], shard: None, on_progress };
    let (steps, hook) = recorder(Some(("decode", 8)));
    let err = corpus::build(g, &data, &cfg, &options(hook)).unwrap_err();
    assert_eq!(err.to_string(), "stopped at decode 8");
    assert_eq!(steps.lock().unwrap().iter().map(|s| (s.stage, s.done, s.total)).collect::<Vec<_>>(), [("read", 8, 8), ("decode", 8, 8)]);
    assert_eq!(std::fs::read_dir(&cache.0).unwrap().count(), 0, "a stopped build caches nothing");
    let (steps, hook) = recorder(None);
    let (built, _) = corpus::build(g, &data, &cfg, &options(hook)).unwrap();
    let steps = steps.lock().unwrap().clone();
    assert_eq!(steps.last(), Some(&Step { stage: "features", done: 8, total: 8 }), "{steps:?}");
    assert!(steps.windows(2).all(|w| w[0].stage != w[1].stage || w[0].done < w[1].done), "{steps:?}");
    assert_eq!(built.clips.len(), 8);
    assert!(std::fs::read_dir(&cache.0).unwrap().count() > 0, "the finished build is cached");

    let model = ser::infer::load_model(g, None).unwrap();
    let files = ser::infer::collect_files(&[sample_dir()]).unwrap();
    let (steps, hook) = recorder(Some(("predict", 6)));
    let o = ser::infer::PredictOptions { files_per_chunk: 3, on_progress: hook, ..Default::default() };
    let mut emitted = 0;
    let err = model.predict_files(g, &files, &o, |_| emitted += 1).unwrap_err();
    assert_eq!(err.to_string(), "stopped at predict 6");
    assert_eq!(emitted, 6, "the chunk before the stop was predicted, nothing after it");
    assert_eq!(steps.lock().unwrap().iter().map(|s| (s.stage, s.done, s.total)).collect::<Vec<_>>(), [("predict", 3, 8), ("predict", 6, 8)]);
}
