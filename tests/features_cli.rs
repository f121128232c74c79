//! `ser features` as a user runs it: a folder with good clips, a stranger, broken files; the
//! file it writes; --strict; the cache.

mod common;

use common::TempDir;
use ser::features::set::FeatureSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ser() -> Command {
    common::ser_command()
}

fn sample(name: &str) -> PathBuf {
    common::original(name)
}


#[test]
fn features_of_a_messy_folder_skip_bad_files_and_report_them() {
    let dir = TempDir::new("features-cli");
    let data = dir.0.join("data");
    std::fs::create_dir_all(data.join("Actor_01/nested")).unwrap();
    std::fs::copy(sample("03-01-08-01-02-02-01.wav"), data.join("Actor_01/03-01-08-01-02-02-01.wav")).unwrap();
    std::fs::copy(sample("03-02-04-02-02-01-11.wav"), data.join("Actor_01/nested/03-02-04-02-02-01-11.wav")).unwrap();
    std::fs::copy(sample("03-01-01-01-01-01-01.wav"), data.join("my-recording.wav")).unwrap();
    std::fs::write(data.join("03-01-02-01-01-01-05.wav"), b"").unwrap();
    let good = std::fs::read(sample("03-01-05-02-02-01-07.wav")).unwrap();
    std::fs::write(data.join("03-01-05-02-02-01-07.wav"), &good[..good.len() / 3]).unwrap();
    std::fs::write(data.join("03-01-07-01-01-01-09.flac"), b"fLaC but not really").unwrap();
    let out = dir.0.join("out/features.safetensors");

    let run = ser().args(["features", "--no-cache", "--data"]).arg(&data).arg("--out").arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    // Written for the good clips; status 3: done in part, the skips listed.
    assert_eq!(run.status.code(), Some(3), "{err}");
    assert!(err.contains("3 files skipped"), "{err}");
    for bad in ["03-01-02-01-01-01-05.wav: ", "03-01-05-02-02-01-07.wav: ", "03-01-07-01-01-01-09.flac: "] {
        assert!(err.contains(bad), "{bad} not reported:\n{err}");
    }
    assert!(err.contains("RAVDESS names (03-01-05-02-01-01-07.wav) (5 files, 1 others not used)"), "the layout recognised: {err}");
    assert!(err.contains("1 audio files that follow none of the layout's names were not used") && err.contains("my-recording.wav"), "{err}");
    // Only bad files: refused, each with its reason (nothing is left to list them after).
    let bad = dir.0.join("bad/Actor_01");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("03-01-02-01-01-01-05.wav"), b"").unwrap();
    std::fs::write(bad.join("03-01-07-01-01-01-09.flac"), b"fLaC but not really").unwrap();
    let run = ser().args(["features", "--no-cache", "--data"]).arg(dir.0.join("bad")).arg("--out").arg(dir.0.join("bad.safetensors")).output().unwrap();
    let bad_err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && bad_err.contains("none of the 2 selected files could be decoded"), "{bad_err}");
    assert!(bad_err.contains("03-01-02-01-01-01-05.wav: ") && bad_err.contains("03-01-07-01-01-01-09.flac: "), "{bad_err}");

    let set = FeatureSet::read(&out).unwrap();
    assert_eq!(set.clips.len(), 2);
    assert_eq!(set.dim, 59);
    assert_eq!(set.clips[0].path, "Actor_01/03-01-08-01-02-02-01.wav");
    assert_eq!(set.clips[1].path, "Actor_01/nested/03-02-04-02-02-01-11.wav");
    assert_eq!(set.clips[1].emotion, Some(ser::audio::Emotion::Sad));
    assert_eq!(set.clips[1].actor, Some(11));
    assert_eq!(set.config, ser::features::FeatureConfig::default());
    // Frames are zero past each clip's length, and vectors are the mean of the real frames.
    for c in 0..2 {
        let len = set.lengths[c] as usize;
        assert!(len > 100 && len <= set.t_max);
        let frames = &set.frames[c * set.t_max * 59..(c + 1) * set.t_max * 59];
        assert!(frames[len * 59..].iter().all(|&v| v == 0.0));
        for j in 0..59 {
            let mean = (0..len).map(|t| frames[t * 59 + j] as f64).sum::<f64>() / len as f64;
            assert!((mean - set.vectors[c * 59 + j] as f64).abs() < 1e-3 * mean.abs().max(1.0), "clip {c} column {j}");
        }
    }

    // --strict stops at the first bad file, names it, and writes nothing.
    let strict_out = dir.0.join("strict.safetensors");
    let run = ser().args(["features", "--no-cache", "--strict", "--data"]).arg(&data).arg("--out").arg(&strict_out).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(err.contains("03-01-02-01-01-01-05.wav") && err.contains("--strict"), "{err}");
    assert!(!strict_out.exists());
    assert!(!err.contains("panicked"), "{err}");

    // Selection: song only, and dropping an emotion.
    let song = dir.0.join("song.safetensors");
    let run = ser().args(["features", "--no-cache", "--vocal", "song", "--drop", "disgust", "--data"]).arg(&data).arg("--out").arg(&song).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(FeatureSet::read(&song).unwrap().clips.len(), 1);
}

#[test]
fn the_cache_returns_the_same_features_and_notices_changed_files() {
    let dir = TempDir::new("features-cache");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(sample("03-01-01-01-01-01-01.wav"), data.join("03-01-01-01-01-01-01.wav")).unwrap();
    let cache = dir.0.join("cache");
    let run = |out: &Path| {
        let r = ser().args(["features", "--data"]).arg(&data).arg("--out").arg(out).arg("--cache").arg(&cache).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        String::from_utf8_lossy(&r.stderr).to_string()
    };
    let (a, b, c) = (dir.0.join("a.safetensors"), dir.0.join("b.safetensors"), dir.0.join("c.safetensors"));
    assert!(!run(&a).contains("from the cache"));
    assert!(run(&b).contains("from the cache"));
    assert_eq!(FeatureSet::read(&a).unwrap(), FeatureSet::read(&b).unwrap());
    // Same name, different contents: recomputed.
    std::fs::copy(sample("03-01-03-02-01-02-04.wav"), data.join("03-01-01-01-01-01-01.wav")).unwrap();
    assert!(!run(&c).contains("from the cache"));
    assert_ne!(FeatureSet::read(&a).unwrap().vectors, FeatureSet::read(&c).unwrap().vectors);
}

#[test]
fn a_folder_without_clips_is_a_clear_error() {
    let dir = TempDir::new("features-empty");
    let out = dir.0.join("x.safetensors");
    let r = ser().args(["features", "--no-cache", "--data"]).arg(&dir.0).arg("--out").arg(&out).output().unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("no layout recognised among its 0 audio files"), "{}", String::from_utf8_lossy(&r.stderr));
    let r = ser().args(["features", "--no-cache", "--data", "/no/such/folder", "--out"]).arg(&out).output().unwrap();
    assert!(String::from_utf8_lossy(&r.stderr).contains("no such file or folder"));
    assert!(!out.exists());
}

/// A 48 kHz original as users download it and its 16 kHz copy in the training data (SoX, 16-bit,
/// TPDF dither) must give the same features, or a model trained on one misreads the other. Before
/// resampled audio was dithered to 16 bits, the top spectral-contrast band differed by ~30 dB.
#[test]
fn a_48k_original_and_its_16k_training_copy_give_the_same_features() {
    let dir = TempDir::new("pairs");
    let originals = sample("");
    let copies = dir.0.join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let names: Vec<String> = std::fs::read_dir(&originals).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".wav")).collect();
    assert_eq!(names.len(), 8);
    for n in &names {
        let stem = n.trim_end_matches(".wav");
        std::fs::copy(common::copy_16k(stem), copies.join(format!("{stem}.flac"))).unwrap();
    }
    let extract = |data: &Path, out: &Path| {
        let o = ser().args(["features", "--no-cache", "--data"]).arg(data).arg("--out").arg(out).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        FeatureSet::read(out).unwrap()
    };
    let a = extract(&originals, &dir.0.join("48k.safetensors"));
    let b = extract(&copies, &dir.0.join("16k.safetensors"));
    let d = a.dim;
    for (i, clip) in a.clips.iter().enumerate() {
        let stem = Path::new(&clip.path).file_stem().unwrap().to_string_lossy().into_owned();
        let j = b.clips.iter().position(|c| c.path.contains(&stem)).unwrap();
        assert_eq!(a.lengths[i], b.lengths[j], "{stem}: frame counts");
        for (what, x, y) in [("mean", &a.vectors, &b.vectors), ("std", &a.stds, &b.stds)] {
            for k in 0..d {
                let diff = (x[i * d + k] - y[j * d + k]).abs();
                // Measured worst: MFCC 0.51, chroma 0.027, contrast 0.44 dB (different resamplers,
                // independent dither noise).
                let tol = if k < 40 { 1.0 } else if k < 52 { 0.05 } else { 1.0 };
                assert!(diff < tol, "{stem}: {what} of column {k} differs by {diff}");
            }
        }
    }
}

/// `ser bench features` runs the pipeline on synthetic clips and reports every kernel it timed
/// (the figures themselves are benchmarks, not asserted here).
#[test]
fn the_features_benchmark_reports_throughput_and_kernels() {
    let out = ser().args(["bench", "features", "--clips", "6", "--seconds", "1.5", "--repeats", "1", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["clips"], 6);
    let audio = r["audio_seconds"].as_f64().unwrap();
    assert!((6.0 * 0.8 * 1.5..=6.0 * 1.2 * 1.5).contains(&audio), "{r}");
    assert!(r["clips_per_s"].as_f64().unwrap() > 0.0);
    let kernels: Vec<&str> = r["kernels"].as_array().unwrap().iter().map(|k| k["kernel"].as_str().unwrap()).collect();
    for k in ["stft[1024].first", "stft[1024].stage", "stft[1024].power", "filterbank.mel", "contrast.peaks_valleys"] {
        assert!(kernels.contains(&k), "{k} missing from {kernels:?}");
    }
    let bad = ser().args(["bench", "features", "--clips", "0"]).output().unwrap();
    assert!(!bad.status.success());
}

#[test]
fn a_cached_build_still_lists_the_files_it_skipped_with_their_reasons_and_its_unverified_flacs() {
    let dir = TempDir::new("features-cache-skips");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(sample("03-01-08-01-02-02-01.wav"), data.join("03-01-08-01-02-02-01.wav")).unwrap();
    std::fs::write(data.join("03-01-02-01-01-01-05.wav"), b"RIFF....WAVEjunk").unwrap();
    // A FLAC written without an MD5 signature (STREAMINFO's bytes 26..42 all zero).
    let mut unsigned = std::fs::read(common::copy_16k("03-01-05-02-02-01-07")).unwrap();
    unsigned[26..42].fill(0);
    std::fs::write(data.join("03-01-05-02-02-01-07.flac"), unsigned).unwrap();
    let cache = dir.0.join("cache");
    for run in ["first", "cached"] {
        let o = ser().args(["features", "--data"]).arg(&data).arg("--out").arg(dir.0.join("f.safetensors")).arg("--cache").arg(&cache).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{run}: {err}");
        assert!(err.contains("03-01-02-01-01-01-05.wav: ") && err.contains("WAV"), "{run}: the reason, not only the name: {err}");
        assert!(err.contains("1 FLAC files carry no MD5 signature") && err.contains("03-01-05-02-02-01-07.flac"), "{run}: {err}");
        assert_eq!(err.contains("(from the cache)"), run == "cached", "{err}");
    }
}

#[test]
fn speed_copies_follow_each_clip_with_its_labels_and_scaled_length() {
    let dir = TempDir::new("features-speed");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for name in ["03-01-08-01-02-02-01.wav", "03-02-04-02-02-01-11.wav"] {
        std::fs::copy(sample(name), data.join(name)).unwrap();
    }
    let (plain, copied) = (dir.0.join("plain.safetensors"), dir.0.join("copied.safetensors"));
    let run = ser().args(["features", "--no-cache", "--data"]).arg(&data).arg("--out").arg(&plain).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run = ser().args(["features", "--no-cache", "--speed-copies", "0.9,1.25", "--data"]).arg(&data).arg("--out").arg(&copied).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && err.contains("6 clips (2 and 4 speed copies)"), "{err}");
    let (plain, copied) = (FeatureSet::read(&plain).unwrap(), FeatureSet::read(&copied).unwrap());
    // The originals first, unchanged; then each factor's copies in the same order.
    assert_eq!(copied.clips[..2], plain.clips[..]);
    assert_eq!(copied.vectors[..2 * copied.dim], plain.vectors[..]);
    for (i, factor) in [(2, 0.9f32), (3, 0.9), (4, 1.25), (5, 1.25)] {
        let (c, source) = (&copied.clips[i], &plain.clips[i % 2]);
        assert_eq!(c.speed, Some(factor));
        assert_eq!((c.path.as_str(), c.emotion, c.actor), (source.path.as_str(), source.emotion, source.actor));
        // A copy at speed f lasts 1/f as long (to a frame or two of padding).
        let want = plain.lengths[i % 2] as f32 / factor;
        assert!((copied.lengths[i] as f32 - want).abs() <= 2.0, "copy {i}: {} frames, want about {want}", copied.lengths[i]);
        assert_ne!(copied.vectors[i * copied.dim..][..copied.dim], plain.vectors[(i % 2) * plain.dim..][..plain.dim]);
    }
    // Scoring never builds copies: eval refuses the flag by name.
    let run = ser().args(["eval", "--speed-copies", "0.9", "--data"]).arg(&data).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && err.contains("--speed-copies") && err.contains("only ever train"), "{err}");
    // Factors that are not a change of speed, or not a sane one, are refused by name.
    for bad in ["1", "0.3", "0.9,0.9"] {
        let run = ser().args(["features", "--no-cache", "--speed-copies", bad, "--data"]).arg(&data).arg("--out").arg(dir.0.join("bad.safetensors")).output().unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && err.contains("--speed-copies"), "{bad}: {err}");
    }
}

/// `--shard I/N` builds contiguous parts of the labelled clips (or the part a Slurm array task
/// names); `--merge` joins them into the unsharded file, byte for byte, speed copies included.
#[test]
fn sharded_parts_merge_into_the_unsharded_file_byte_for_byte() {
    let dir = TempDir::new("features-shards");
    let data = common::originals_dir();
    let build = |extra: &[&str], out: &Path| {
        let o = ser().args(["features", "--no-cache", "--speed-copies", "0.9", "--data"]).arg(&data).args(extra).arg("--out").arg(out).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let whole = dir.0.join("whole.safetensors");
    build(&[], &whole);
    let parts: Vec<PathBuf> = (0..3).map(|i| dir.0.join(format!("part{i}.safetensors"))).collect();
    let err = build(&["--shard", "0/3"], &parts[0]);
    assert!(err.contains("shard 0/3: 2 of 8 labelled clips"), "{err}");
    build(&["--shard", "1/3"], &parts[1]);
    // The third part as a Slurm array task sees it.
    let o = ser().env("SLURM_ARRAY_TASK_ID", "2").env("SLURM_ARRAY_TASK_COUNT", "3").args(["features", "--no-cache", "--speed-copies", "0.9", "--data"]).arg(&data).arg("--out").arg(&parts[2]).output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("shard 2/3 (from Slurm array task 2)"), "{}", String::from_utf8_lossy(&o.stderr));
    let merged = dir.0.join("merged.safetensors");
    let o = ser().args(["features", "--merge"]).args(&parts).arg("--out").arg(&merged).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&merged).unwrap() == std::fs::read(&whole).unwrap(), "the merged file is the unsharded one");
    // A part of another configuration, or a part given twice, is refused by name.
    let other = dir.0.join("other.safetensors");
    let o = ser().args(["features", "--no-cache", "--n-mfcc", "20", "--shard", "0/3", "--data"]).arg(&data).arg("--out").arg(&other).output().unwrap();
    assert!(o.status.success());
    for (bad, needle) in [(vec![&parts[0], &other], "another feature configuration"), (vec![&parts[0], &parts[0]], "is also in")] {
        let o = ser().args(["features", "--merge"]).args(bad).arg("--out").arg(dir.0.join("bad.safetensors")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle) && err.contains("part0.safetensors"), "{err}");
    }
}

/// A feature set beyond the default: the file names every column, a model trained on it records
/// the set and computes it again when it predicts on audio, and a set that cannot be computed is
/// refused by name before any work.
#[test]
fn a_feature_set_with_pitch_trains_a_model_that_predicts_on_audio() {
    let dir = TempDir::new("features-set");
    let (features, model) = (dir.0.join("f.safetensors"), dir.0.join("m.safetensors"));
    let clips = common::originals_dir();
    let r = ser().args(["features", "--no-cache", "--set", "mfcc,rms,f0,voiced_prob,delta_f0,voiced", "--data"]).arg(&clips).arg("--out").arg(&features).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let set = FeatureSet::read(&features).unwrap();
    let names = FeatureSet::columns(&set.config);
    assert_eq!(set.dim, 45);
    assert_eq!(names[39..], ["mfcc_39", "rms", "f0", "voiced_prob", "delta_f0", "voiced"]);
    let (f0_col, delta_col, voiced_col) = (41, 43, 44);
    for (i, &n) in set.lengths.iter().enumerate() {
        let column = |j: usize| -> Vec<f64> { (0..n as usize).map(|t| set.frames[(i * set.t_max + t) * set.dim + j] as f64).collect() };
        let (f0, voiced) = (column(f0_col), column(voiced_col));
        // Every clip of speech has voiced frames (f0 above C2), and unvoiced ones at 0; the
        // voiced column flags the first.
        assert!(f0.iter().any(|&v| v > 65.0) && f0.contains(&0.0), "clip {i}: {f0:?}");
        assert!(f0.iter().zip(&voiced).all(|(&f, &v)| v == (f > 0.0) as u8 as f64), "clip {i}: {voiced:?} for {f0:?}");
        // f0's statistics are its voiced frames'; every other column's (its deltas included)
        // all frames'; the voiced column's mean is the voicing rate.
        let stat = |j: usize| (set.vectors[i * set.dim + j] as f64, set.stds[i * set.dim + j] as f64);
        let pitched: Vec<f64> = f0.iter().copied().filter(|&v| v > 0.0).collect();
        let (mean, std) = ser::ops::segment::reference_moments(&pitched, 1, ser::ops::segment::Frames::All);
        let (got_mean, got_std) = stat(f0_col);
        assert!((got_mean - mean[0]).abs() < 1e-3 * mean[0] && (got_std - std[0]).abs() < 1e-3 * mean[0], "clip {i}: f0 {got_mean} ± {got_std}, voiced frames {} ± {}", mean[0], std[0]);
        let (rate, _) = stat(voiced_col);
        assert!((rate - pitched.len() as f64 / n as f64).abs() < 1e-6, "clip {i}: voicing rate {rate}");
        let (delta_mean, _) = ser::ops::segment::reference_moments(&column(delta_col), 1, ser::ops::segment::Frames::All);
        assert!((stat(delta_col).0 - delta_mean[0]).abs() < 1e-3, "clip {i}: delta_f0's mean over all frames");
    }
    let r = ser().args(["train", "--model", "knn", "--knn-k", "1", "--input", "stats", "--split", "none", "--features"]).arg(&features).arg("--out").arg(&model).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = ser().args(["predict", "--model"]).arg(&model).arg(&clips).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(r.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8);
    // k = 1 on the clips it was fitted on: each is its own neighbour, so it gets its own label.
    for line in &lines {
        let file = line["file"].as_str().unwrap();
        let code: u8 = file.rsplit('/').next().unwrap()[6..8].parse().unwrap();
        let label = line["label"].as_str().unwrap();
        assert_eq!(ser::audio::Emotion::from_code(code).map(|e| e.to_string()).as_deref(), Some(label), "{line}");
    }
    for (set, n_fft, want) in [("mfcc,pitch", "1024", "\"pitch\" is not a feature"), ("rms,rms", "1024", "names rms twice"), ("mfcc,f0", "4096", "pitch")] {
        let r = ser().args(["features", "--no-cache", "--set", set, "--n-fft", n_fft, "--data"]).arg(&clips).arg("--out").arg(dir.0.join("x.safetensors")).output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(want), "--set {set} --n-fft {n_fft}: {err}");
    }
}
