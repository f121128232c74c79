//! Any corpus, as a user brings it: the same RAVDESS clips laid out under CREMA-D, EmoDB, TESS
//! and SAVEE names, as an audiofolder, as folders per class and as manifests (the audio is the
//! same, so the features must be); segments cut from a long recording; a learnable synthetic
//! corpus trained under one corpus's names, split by speaker, and scored under another's; and
//! every way a folder or manifest can be wrong.

mod common;

use common::TempDir;
use ser::audio::Emotion;
use ser::features::set::FeatureSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ser() -> Command {
    common::ser_command()
}


fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `ser features --no-cache ARGS --out OUT`, which must succeed; the set and stderr.
fn features(args: &[&str], paths: &[&Path], out: &Path) -> (FeatureSet, String) {
    let mut c = ser();
    c.args(["features", "--no-cache"]);
    for (a, p) in args.iter().zip(paths) {
        c.arg(a).arg(p);
    }
    let o = c.arg("--out").arg(out).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    (FeatureSet::read(out).unwrap(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// The eight 16 kHz training copies: (stem, emotion, actor).
fn clips() -> Vec<(String, Emotion, u8)> {
    let manifest = std::fs::read_to_string(common::clips_dir().join("16k/MANIFEST.tsv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .map(|l| {
            let stem = l.split('\t').next().unwrap().trim_end_matches(".flac").to_string();
            let n = ser::audio::RavdessName::parse(&stem).unwrap();
            (stem, n.emotion, n.actor)
        })
        .collect()
}

/// A clip laid out again: (relative path, its original stem, class, speaker).
type Laid = (String, String, Emotion, Option<String>);

#[test]
fn every_layout_and_manifest_gives_the_same_clips_the_same_features_labels_and_speakers() {
    let dir = TempDir::new("sources-layouts");
    let root = &dir.0;
    let clips = clips();
    // Each layout: (flag, path, [(relative path, stem, class, speaker)]).
    let mut layouts: Vec<(&str, PathBuf, &str, Vec<Laid>)> = Vec::new();
    let mut add = |flag, path: PathBuf, layout, rows: Vec<Laid>| layouts.push((flag, path, layout, rows));
    let code = |e: Emotion, table: &[(Emotion, &str)]| table.iter().find(|(x, _)| *x == e).map(|(_, c)| c.to_string());
    let crema = [(Emotion::Angry, "ANG"), (Emotion::Disgust, "DIS"), (Emotion::Fearful, "FEA"), (Emotion::Happy, "HAP"), (Emotion::Neutral, "NEU"), (Emotion::Sad, "SAD")];
    let emodb = [(Emotion::Angry, "W"), (Emotion::Disgust, "E"), (Emotion::Fearful, "A"), (Emotion::Happy, "F"), (Emotion::Neutral, "N"), (Emotion::Sad, "T")];
    let tess = [(Emotion::Angry, "angry"), (Emotion::Disgust, "disgust"), (Emotion::Fearful, "fear"), (Emotion::Happy, "happy"), (Emotion::Neutral, "neutral"), (Emotion::Surprised, "ps"), (Emotion::Sad, "sad")];
    let savee = [(Emotion::Angry, "a"), (Emotion::Disgust, "d"), (Emotion::Fearful, "f"), (Emotion::Happy, "h"), (Emotion::Neutral, "n"), (Emotion::Sad, "sa"), (Emotion::Surprised, "su")];
    let rows = |table: &[(Emotion, &str)], name: &dyn Fn(usize, &str, u8) -> (String, String)| {
        clips.iter().enumerate().filter_map(|(i, (stem, e, actor))| code(*e, table).map(|c| (i, stem, *e, *actor, c))).map(|(i, stem, e, actor, c)| {
            let (relative, speaker) = name(i, &c, actor);
            (relative, stem.clone(), e, Some(speaker))
        }).collect::<Vec<_>>()
    };
    let ravdess: Vec<_> = clips.iter().map(|(s, e, a)| (format!("Actor_{a:02}/{s}.flac"), s.clone(), *e, Some(format!("{a:02}")))).collect();
    add("--data", root.join("ravdess"), "RAVDESS names", ravdess);
    add("--data", root.join("crema-d"), "CREMA-D names", rows(&crema, &|_, c, a| (format!("AudioWAV/10{a:02}_IEO_{c}_XX.flac"), format!("10{a:02}"))));
    add("--data", root.join("emodb"), "EmoDB names", rows(&emodb, &|i, c, a| (format!("wav/{a:02}a0{i}{c}a.flac"), format!("{a:02}"))));
    add("--data", root.join("tess"), "TESS names", rows(&tess, &|i, c, _| (format!("OAF_{c}/OAF_word{i}_{c}.flac"), "OAF".into())));
    add("--data", root.join("savee"), "SAVEE names", rows(&savee, &|i, c, _| (format!("KL/{c}{i:02}.flac"), "KL".into())));
    let named = |e: Emotion| clips.iter().map(|(s, x, a)| (s.clone(), *x, *a)).filter(|c| c.1 == e).count();
    assert_eq!(named(Emotion::Calm), 1, "the eight clips hold one calm clip, which only some layouts can name");
    // Names that follow no convention (a RAVDESS name would be read as one, whatever its folder).
    let by_class: Vec<_> = clips.iter().enumerate().map(|(i, (s, e, _))| (format!("{}/take{i}.flac", e.name()), s.clone(), *e, None)).collect();
    add("--data", root.join("classes"), "one folder per class", by_class);
    let audiofolder: Vec<_> = clips.iter().map(|(s, e, a)| (format!("train/{s}.flac"), s.clone(), *e, Some(format!("spk{a}")))).collect();
    add("--data", root.join("audiofolder"), "audiofolder", audiofolder);
    let listed: Vec<_> = clips.iter().map(|(s, e, a)| (format!("audio/{s}.flac"), s.clone(), *e, Some(format!("v{a}")))).collect();
    add("--manifest", root.join("lists/clips.csv"), "a manifest", listed.clone());
    add("--manifest", root.join("lists/emobox.jsonl"), "a manifest", listed.clone());
    add("--manifest", root.join("lists/clips.tsv"), "a manifest", listed);

    for (flag, path, _, rows) in &layouts {
        let folder = if *flag == "--data" { path.clone() } else { path.parent().unwrap().to_path_buf() };
        for (relative, stem, _, _) in rows {
            copy(&common::copy_16k(stem), &folder.join(relative));
        }
    }
    // The metadata and manifests: a byte-order mark and quoted fields in the CSV, EmoBox's keys
    // and its short labels in the JSONL, plain tab-separated values.
    let (_, audiofolder, _, rows) = &layouts[6];
    let mut csv = String::from("file_name,label,speaker\n");
    rows.iter().for_each(|(r, _, e, s)| csv += &format!("{r},{},{}\n", e.name(), s.as_deref().unwrap()));
    std::fs::write(audiofolder.join("metadata.csv"), csv).unwrap();
    let (_, _, _, rows) = &layouts[7];
    let short = |e: &Emotion| e.name()[..3].to_string();
    let mut csv = String::from("\u{feff}path,label,speaker\n");
    rows.iter().for_each(|(r, _, e, s)| csv += &format!("\"{r}\",\"{}\",{}\n", e.name(), s.as_deref().unwrap()));
    std::fs::write(&layouts[7].1, csv).unwrap();
    let jsonl: String = rows.iter().map(|(r, st, e, s)| format!("{}\n", serde_json::json!({"key": st, "wav": r, "emo": short(e), "speaker": s, "channel": 1}))).collect();
    std::fs::write(&layouts[8].1, jsonl).unwrap();
    let mut tsv = String::from("path\tlabel\tspeaker\n");
    rows.iter().for_each(|(r, _, e, s)| tsv += &format!("{r}\t{}\t{}\n", e.name(), s.as_deref().unwrap()));
    std::fs::write(&layouts[9].1, tsv).unwrap();

    let mut reference: Option<FeatureSet> = None;
    for (i, (flag, path, layout, rows)) in layouts.iter().enumerate() {
        let (set, err) = features(&[flag], &[path], &root.join(format!("{i}.safetensors")));
        assert!(err.contains(layout), "{flag} {}: the layout is named: {err}", path.display());
        assert_eq!(set.clips.len(), rows.len(), "{}: {err}", path.display());
        let reference = reference.get_or_insert_with(|| set.clone());
        for (relative, stem, class, speaker) in rows {
            let c = set.clips.iter().position(|c| c.path == *relative).unwrap_or_else(|| panic!("{relative} missing from {:?}", set.clips));
            let r = reference.clips.iter().position(|c| c.path.contains(stem.as_str())).unwrap();
            assert_eq!(set.clips[c].emotion, Some(*class), "{relative}");
            assert_eq!(set.clips[c].speaker_id(), *speaker, "{relative}");
            // The same audio: the same features, to the bit.
            let d = set.dim;
            assert_eq!(set.lengths[c], reference.lengths[r], "{relative}");
            assert_eq!(set.vectors[c * d..][..d], reference.vectors[r * d..][..d], "{relative}: vectors");
            assert_eq!(set.stds[c * d..][..d], reference.stds[r * d..][..d], "{relative}: stds");
        }
    }
}

/// A 16 kHz float WAV of `samples`.
fn write_wav(path: &Path, samples: &[f32], rate: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    samples.iter().for_each(|&x| w.write_sample(x).unwrap());
    w.finalize().unwrap();
}

#[test]
fn segments_of_a_long_recording_give_the_features_of_the_same_samples_in_their_own_files() {
    let dir = TempDir::new("sources-segments");
    let root = &dir.0;
    // Two 48 kHz originals back to back: cut at the file's own rate, before resampling.
    let parts: Vec<Vec<f32>> = ["03-01-01-01-01-01-01.wav", "03-01-03-02-01-02-04.wav"].iter().map(|n| ser::audio::decode_file(&common::original(n)).unwrap().samples).collect();
    write_wav(&root.join("long/session.wav"), &parts.concat(), 48_000);
    write_wav(&root.join("own/first.wav"), &parts[0], 48_000);
    write_wav(&root.join("own/second.wav"), &parts[1], 48_000);
    let (n0, n1) = (parts[0].len() as f64, parts[1].len() as f64);
    let end = (n0 + n1) / 48_000.0;
    let manifest = format!(
        "path,label,speaker,start,end\nlong/session.wav,neutral,s1,0,{}\nlong/session.wav,happy,s1,{},{end}\nown/first.wav,neutral,s1,,\nown/second.wav,happy,s1,,\n",
        n0 / 48_000.0,
        n0 / 48_000.0
    );
    std::fs::write(root.join("m.csv"), &manifest).unwrap();
    let (set, _) = features(&["--manifest"], &[&root.join("m.csv")], &root.join("f.safetensors"));
    assert_eq!(set.clips.len(), 4);
    assert_eq!(set.clips[0].segment, Some([0.0, n0 / 48_000.0]));
    let d = set.dim;
    for (segment, own) in [(0, 2), (1, 3)] {
        assert_eq!(set.lengths[segment], set.lengths[own]);
        assert_eq!(set.vectors[segment * d..][..d], set.vectors[own * d..][..d], "segment {segment}");
        assert_eq!(set.frames[segment * set.t_max * d..][..set.lengths[own] as usize * d], set.frames[own * set.t_max * d..][..set.lengths[own] as usize * d]);
    }
    // A segment past the file's end is skipped and listed with the reason (exit status 3); one
    // with start >= end is a manifest error naming the line.
    std::fs::write(root.join("past.csv"), format!("path,label,start,end\nown/first.wav,sad,0,1\nlong/session.wav,sad,1,{}\n", end + 0.5)).unwrap();
    let o = ser().args(["features", "--no-cache", "--manifest"]).arg(root.join("past.csv")).arg("--out").arg(root.join("p.safetensors")).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("runs past the file's end"), "{}", text(&o));
    std::fs::write(root.join("bad.csv"), "path,label,start,end\nown/first.wav,sad,0,1\nown/first.wav,sad,2,2\n").unwrap();
    let o = ser().args(["features", "--no-cache", "--manifest"]).arg(root.join("bad.csv")).arg("--out").arg(root.join("b.safetensors")).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("bad.csv line 3: start 2 is not before end 2"), "{}", text(&o));
}

#[test]
fn folders_and_manifests_that_cannot_be_read_are_refused_naming_the_file_line_and_counts() {
    let dir = TempDir::new("sources-refusals");
    let root = &dir.0;
    let clip = common::copy_16k("03-01-01-01-01-01-01");
    let run = |args: &[&str], paths: &[&Path]| {
        let mut c = ser();
        c.args(["features", "--no-cache"]);
        for (a, p) in args.iter().zip(paths) {
            c.arg(a).arg(p);
        }
        c.arg("--out").arg(root.join("out.safetensors")).output().unwrap()
    };
    let refused = |o: &Output, needles: &[&str]| {
        let t = text(o);
        assert!(!o.status.success(), "{t}");
        for n in needles {
            assert!(t.contains(n), "{n:?} not in: {t}");
        }
        assert!(!root.join("out.safetensors").exists(), "nothing written");
    };
    // Two conventions in one folder.
    copy(&clip, &root.join("mixed/03-01-01-01-01-01-01.flac"));
    copy(&clip, &root.join("mixed/1001_DFA_ANG_XX.flac"));
    copy(&clip, &root.join("mixed/1002_DFA_SAD_XX.flac"));
    refused(&run(&["--data"], &[&root.join("mixed")]), &["more than one corpus", "1 RAVDESS names", "2 CREMA-D names"]);
    // No convention and no class folders.
    copy(&clip, &root.join("none/take1.flac"));
    copy(&clip, &root.join("none/misc/take2.flac"));
    refused(&run(&["--data"], &[&root.join("none")]), &["no layout recognised among its 2 audio files", "--manifest"]);
    // Manifests.
    copy(&clip, &root.join("m/a.flac"));
    copy(&clip, &root.join("m/b.flac"));
    let manifest = |name: &str, body: &str| {
        let p = root.join("m").join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    refused(&run(&["--manifest"], &[&manifest("nolabel.csv", "path,speaker\na.flac,x\n")]), &["nolabel.csv: no label column"]);
    refused(&run(&["--manifest"], &[&manifest("fields.csv", "path,label\na.flac,sad\nb.flac\n")]), &["fields.csv line 3: 1 fields where the header has 2"]);
    refused(&run(&["--manifest"], &[&manifest("twice.csv", "path,label\na.flac,sad\nb.flac,sad\na.flac,happy\n")]), &["twice.csv line 4: the same clip (a.flac) is listed twice: first at", "twice.csv line 2"]);
    refused(&run(&["--manifest"], &[&manifest("odd.jsonl", "{\"wav\": \"a.flac\", \"emo\": \"frustrated\"}\n{\"wav\": \"b.flac\", \"emo\": \"xyz\"}\n")]), &["\"frustrated\" (1 clip, first at", "\"xyz\"", "--label-map"]);
    refused(&run(&["--manifest"], &[&manifest("notjson.jsonl", "{\"wav\": \"a.flac\"\n")]), &["notjson.jsonl line 1: not JSON"]);
    refused(&run(&["--manifest"], &[&manifest("m.txt", "path,label\n")]), &[".csv, .tsv or .jsonl"]);
    // An audiofolder whose metadata names no file column.
    std::fs::create_dir_all(root.join("af")).unwrap();
    copy(&clip, &root.join("af/a.flac"));
    std::fs::write(root.join("af/metadata.csv"), "audio,label\na.flac,sad\n").unwrap();
    refused(&run(&["--data"], &[&root.join("af")]), &["metadata.csv: no path column (one of path, file_name"]);
    // A label map places unknown labels and drops others; a missing file is skipped and listed.
    let odd = manifest("ok.jsonl", "{\"wav\": \"a.flac\", \"emo\": \"frustrated\"}\n{\"wav\": \"b.flac\", \"emo\": \"xyz\"}\n{\"wav\": \"gone.flac\", \"emo\": \"sad\"}\n");
    let o = ser().args(["features", "--no-cache", "--label-map", "frustrated=angry,xyz=drop", "--manifest"]).arg(&odd).arg("--out").arg(root.join("ok.safetensors")).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("ok.jsonl line 3: gone.flac: no such file"), "{}", text(&o));
    let set = FeatureSet::read(&root.join("ok.safetensors")).unwrap();
    assert_eq!(set.clips.iter().map(|c| (c.path.as_str(), c.emotion)).collect::<Vec<_>>(), vec![("a.flac", Some(Emotion::Angry))]);
    // A map file that maps to no class.
    std::fs::write(root.join("map.json"), "{\"a\": \"grumpy\"}").unwrap();
    let o = ser().args(["features", "--no-cache", "--label-map"]).arg(root.join("map.json")).arg("--manifest").arg(&odd).arg("--out").arg(root.join("x.safetensors")).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("\"a\" maps to \"grumpy\", which is not a class"), "{}", text(&o));
}

/// A synthetic corpus a model can learn: each class a voiced tone of its own pitch contour and
/// brightness, each speaker a pitch register; 0.6 s clips at 16 kHz.
fn synthetic_clip(class: usize, speaker: usize, take: usize) -> Vec<f32> {
    let rate = 16_000.0;
    let mut rng = ser::rng::SplitMix64::new((class * 1000 + speaker * 10 + take) as u64);
    let base = 110.0 * (1.0 + 0.03 * speaker as f64);
    let pitch = [1.0, 1.6, 2.2, 0.8][class];
    let slope = [0.0, 0.4, -0.3, -0.2][class];
    let bright: f64 = [0.3, 0.6, 0.9, 0.15][class];
    let n = (0.6 * rate) as usize;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let f0 = base * pitch * (1.0 + slope * t);
            phase += 2.0 * std::f64::consts::PI * f0 / rate;
            let voiced: f64 = (1..=12).map(|h| bright.powi(h - 1) * (h as f64 * phase).sin()).sum();
            let noise = ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.02;
            (0.2 * voiced * (std::f64::consts::PI * t / 0.6).sin() + noise) as f32
        })
        .collect()
}

#[test]
fn a_model_trained_under_one_corpus_names_scores_the_same_audio_under_another_and_on_a_union() {
    let dir = TempDir::new("sources-cross");
    let root = &dir.0;
    let classes = [(Emotion::Neutral, "NEU", "N"), (Emotion::Happy, "HAP", "F"), (Emotion::Angry, "ANG", "W"), (Emotion::Sad, "SAD", "T")];
    let sentences = ["IEO", "TIE", "DFA", "ITS"];
    let mut emodb_names = Vec::new();
    for (k, (_, crema, emodb)) in classes.iter().enumerate() {
        for speaker in 0..6 {
            for (take, sentence) in sentences.iter().enumerate() {
                let audio = synthetic_clip(k, speaker, take);
                write_wav(&root.join(format!("crema/{}_{sentence}_{crema}_XX.wav", 1001 + speaker)), &audio, 16_000);
                let emodb_name = format!("{:02}a0{take}{emodb}a.wav", 10 + speaker);
                write_wav(&root.join("emodb").join(&emodb_name), &audio, 16_000);
                emodb_names.push(emodb_name);
            }
        }
    }
    // A second corpus's disgust clips: a class the model never saw.
    for take in 0..3 {
        write_wav(&root.join(format!("emodb/{:02}b0{take}Ea.wav", 20)), &synthetic_clip(take % 4, 7, take), 16_000);
    }
    let model = root.join("krr.safetensors");
    let train = ser().args(["train", "--no-cache", "--model", "krr", "--input", "stats", "--split", "speakers", "--test-speakers", "1005,1006", "--data"]).arg(root.join("crema")).arg("--out").arg(&model).output().unwrap();
    let t = text(&train);
    assert!(train.status.success() && t.contains("CREMA-D names (1001_DFA_ANG_XX.wav) (96 files)"), "{t}");
    assert!(t.contains("4 classes, train 56 / validation 8 / test 32 clips"), "{t}");
    let accuracy: f64 = t.lines().find(|l| l.trim_start().starts_with("accuracy")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    assert!(accuracy >= 0.9, "two speakers never heard: {t}");
    // The model records the corpus it saw and its classes.
    let bytes = std::fs::read(&model).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    assert_eq!(meta["corpora"], r#"{"crema-d":{"clips":96,"speakers":6}}"#);
    assert_eq!((meta["classes"].as_str(), meta["data_contract"].as_str()), (r#"["neutral","happy","sad","angry"]"#, "1"));
    assert!(!meta.contains_key("label_map"), "no map, none recorded");
    // Two speakers never heard: the classes are easy, so nearly all right.
    let eval = |data: &Path, extra: &[&str]| {
        let o = ser().args(["eval", "--no-cache", "--json", "--model"]).arg(&model).arg("--data").arg(data).args(extra).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        (serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (crema, _) = eval(&root.join("crema"), &[]);
    let (emodb, err) = eval(&root.join("emodb"), &[]);
    assert!(err.contains("EmoDB names (03a01Fa.wav) (99 files)") && err.contains("3 clips with emotions the model does not know were left out (disgust 3)"), "{err}");
    for key in ["accuracy", "uar", "macro_f1", "confusion"] {
        assert_eq!(crema[key], emodb[key], "{key}: the same audio under other names scores the same");
    }
    assert!(crema["uar"].as_f64().unwrap() > 0.9, "{crema}");
    // Per clip: predict the same audio under both names.
    let predict = |dir: &str| {
        let o = ser().args(["predict", "--model"]).arg(&model).arg(root.join(dir)).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let mut rows: Vec<(String, String)> = String::from_utf8_lossy(&o.stdout).lines().map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["file"].as_str().unwrap().rsplit('/').next().unwrap().to_string(), v["probabilities"].to_string())
        }).collect();
        rows.sort();
        rows
    };
    let by_crema: std::collections::HashMap<String, String> = predict("crema").into_iter().collect();
    let by_emodb: std::collections::HashMap<String, String> = predict("emodb").into_iter().collect();
    let mut i = 0;
    for (_, crema, _) in &classes {
        for speaker in 0..6 {
            for sentence in &sentences {
                let c = format!("{}_{sentence}_{crema}_XX.wav", 1001 + speaker);
                assert_eq!(by_crema[&c], by_emodb[&emodb_names[i]], "{c} against {}", emodb_names[i]);
                i += 1;
            }
        }
    }
    // `ser compare` trains each model on one corpus and scores it on another as well.
    let compare = ser().args(["compare", "--no-cache", "--models", "krr,knn", "--no-actor-folds", "--input", "stats", "--json", "--data"]).arg(root.join("crema")).arg("--test-data").arg(root.join("emodb")).output().unwrap();
    assert!(compare.status.success(), "{}", text(&compare));
    let rows: serde_json::Value = serde_json::from_slice(&compare.stdout).unwrap();
    for row in rows["ser"].as_array().unwrap() {
        assert_eq!(row["other_clips"], 96, "{row}");
        assert!(row["other_uar"].as_f64().unwrap() > 0.8 && row["random_uar"].as_f64().is_some(), "{row}");
    }
    // A manifest's own split column is honoured without --split: speakers 1001-1004 train,
    // 1005 validates, 1006 is the test.
    let mut manifest = String::from("path,label,speaker,split\n");
    for (_, crema, _) in &classes {
        for speaker in 1001..=1006 {
            let split = match speaker { 1005 => "valid", 1006 => "test", _ => "train" };
            for sentence in &sentences {
                manifest += &format!("crema/{speaker}_{sentence}_{crema}_XX.wav,{crema},{speaker},{split}\n");
            }
        }
    }
    std::fs::write(root.join("split.csv"), manifest).unwrap();
    let given = ser().args(["train", "--no-cache", "--model", "krr", "--input", "stats", "--label-map", "HAP=happy", "--manifest"]).arg(root.join("split.csv")).arg("--out").arg(root.join("given.safetensors")).output().unwrap();
    let t = text(&given);
    assert!(given.status.success() && t.contains("train 64 / validation 16 / test 16 clips"), "{t}");
    // The data contract records the label map and the corpus, and the model loads with them.
    let bytes = std::fs::read(root.join("given.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    assert_eq!((meta["label_map"].as_str(), meta["corpora"].as_str()), (r#"[["hap","happy"]]"#, r#"{"manifest":{"clips":96,"speakers":6}}"#));
    let g = &common::gpu().gpu;
    let loaded = ser::infer::load_model(g, Some(&root.join("given.safetensors"))).unwrap();
    assert_eq!(loaded.meta.data.label_map, vec![("hap".to_string(), "happy".to_string())]);
    // A contract newer than this build reads is refused by name.
    let mut newer = bytes.clone();
    let key = br#""data_contract":"1""#;
    let at = newer.windows(key.len()).position(|w| w == key).unwrap();
    newer[at + key.len() - 2] = b'7';
    std::fs::write(root.join("newer.safetensors"), &newer).unwrap();
    let e = format!("{:#}", ser::infer::load_model(g, Some(&root.join("newer.safetensors"))).err().unwrap());
    assert!(e.contains("data contract version 7 is newer"), "{e}");
    let mut bad = std::fs::read_to_string(root.join("split.csv")).unwrap();
    bad = bad.replacen(",train\n", ",\n", 1);
    std::fs::write(root.join("gap.csv"), bad).unwrap();
    let gap = ser().args(["train", "--no-cache", "--model", "krr", "--input", "stats", "--split", "given", "--manifest"]).arg(root.join("gap.csv")).arg("--out").arg(root.join("gap.safetensors")).output().unwrap();
    assert!(!gap.status.success() && text(&gap).contains("carries no split while others do"), "{}", text(&gap));
    // A manifest without speakers trains on a random split; a split by speaker says what it lacks.
    let nameless: String = std::fs::read_to_string(root.join("split.csv")).unwrap().lines().map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string() + "\n").collect();
    std::fs::write(root.join("nameless.csv"), nameless).unwrap();
    let random = ser().args(["train", "--no-cache", "--model", "krr", "--input", "stats", "--manifest"]).arg(root.join("nameless.csv")).arg("--out").arg(root.join("r.safetensors")).output().unwrap();
    assert!(random.status.success(), "{}", text(&random));
    let by_speaker = ser().args(["train", "--no-cache", "--model", "krr", "--input", "stats", "--split", "speaker-folds", "--manifest"]).arg(root.join("nameless.csv")).output().unwrap();
    assert!(!by_speaker.status.success() && text(&by_speaker).contains("--split speaker-folds needs every clip's speaker, and crema/1001_IEO_NEU_XX.wav has none"), "{}", text(&by_speaker));
    // The union of two corpora: speakers kept apart by corpus, cross-validated by speaker with
    // EmoBox's number of folds (12 speakers once disgust is dropped: 3 folds), and the model's record names both corpora.
    let union = ser().args(["train", "--no-cache", "--model", "krr", "--input", "stats", "--split", "speaker-folds", "--drop", "disgust", "--data"]).arg(root.join("crema")).arg("--data").arg(root.join("emodb")).output().unwrap();
    let t = text(&union);
    assert!(union.status.success() && t.contains("3-fold by speaker") && t.contains("crema/1001") && t.contains("emodb/10"), "{t}");
}
