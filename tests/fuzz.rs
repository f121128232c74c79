//! Property-based fuzzing of everything that reads outside data: WAV and FLAC decoding, RAVDESS
//! names, manifests, feature files and checkpoints. Seeded mutations of valid inputs (bit flips,
//! extreme size fields, cuts, repeats), then the property: a clear error or a correct result,
//! never a panic or a non-finite output. The seeds themselves must be accepted, and so must a
//! floor of the mutants, so a reader that refused everything fails. Bounded here (SER_FUZZ_ITERS per target, default 300; the
//! seed is printed, SER_TEST_SEED replays it); a long run:
//!   SER_FUZZ_ITERS=200000 cargo test --release --test fuzz -- --nocapture
//! Inputs that once crashed or hung `ser` live in tests/fuzz-corpus/ and are replayed first.

mod common;

use ser::audio::{self, RavdessName};
use ser::rng::SplitMix64;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn iterations() -> usize {
    std::env::var("SER_FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(300)
}

/// The targets whose crashing inputs are kept in tests/fuzz-corpus/ (their folder must be there).
const WITH_CORPUS: [&str; 3] = ["wav", "names", "checkpoint"];

fn corpus(kind: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus").join(kind);
    let entries = match std::fs::read_dir(&dir) {
        Ok(d) => d,
        Err(e) if WITH_CORPUS.contains(&kind) => panic!("{}: {e}; the inputs that once crashed ser must be replayed", dir.display()),
        Err(_) => return Vec::new(),
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries.flatten().map(|e| (e.path(), std::fs::read(e.path()).unwrap())).collect();
    out.sort();
    assert!(!WITH_CORPUS.contains(&kind) || !out.is_empty(), "{}: empty", dir.display());
    out
}

/// One seeded mutation of `input`.
fn mutate(rng: &mut SplitMix64, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    let pick = |rng: &mut SplitMix64, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    for _ in 0..1 + pick(rng, 4) {
        if b.is_empty() {
            b.push(rng.next_u64() as u8);
            continue;
        }
        match pick(rng, 7) {
            0 => {
                let i = pick(rng, b.len());
                b[i] ^= 1 << pick(rng, 8);
            }
            1 => {
                let i = pick(rng, b.len());
                b[i] = [0u8, 0xff, 0x7f, 0x80, 1][pick(rng, 5)];
            }
            2 => {
                // An extreme little-endian u32 (chunk sizes, rates, counts).
                let i = pick(rng, b.len().saturating_sub(4));
                let v = [0u32, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 3][pick(rng, 6)];
                let end = (i + 4).min(b.len());
                b[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
            }
            3 => b.truncate(pick(rng, b.len())),
            4 => {
                let i = pick(rng, b.len());
                let n = pick(rng, 64).min(b.len() - i);
                let piece = b[i..i + n].to_vec();
                b.splice(i..i, piece);
            }
            5 => {
                let i = pick(rng, b.len());
                b.insert(i, rng.next_u64() as u8);
            }
            _ => {
                let i = pick(rng, b.len());
                let n = pick(rng, 16).min(b.len() - i);
                b.drain(i..i + n);
            }
        }
    }
    b
}

/// What a target made of an input that broke no property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Decoded, parsed or loaded, and the result checked.
    Accepted,
    /// Refused with a reason.
    Refused,
}

/// Runs `check` on the seeds themselves (each must be accepted: a reader that refused
/// everything would pass the properties), on the corpus, and on `iterations()` mutations of the
/// seeds; a panic or a broken property fails with the input saved for replay. At least
/// `min_accepted` of the mutations must be accepted, so that the properties are checked on real
/// results and not only on refusals.
fn fuzz(kind: &str, seeds: &[Vec<u8>], min_accepted: f64, check: impl Fn(&[u8]) -> Result<Verdict, String>) {
    for (i, s) in seeds.iter().enumerate() {
        assert_eq!(check(s), Ok(Verdict::Accepted), "{kind}: seed {i} is not accepted");
    }
    let seed = common::fresh_seed(kind);
    let mut rng = SplitMix64::new(seed);
    let replay: Vec<Vec<u8>> = corpus(kind).into_iter().map(|(_, b)| b).collect();
    let replayed = replay.len();
    let cases = replay.into_iter().chain((0..iterations()).map(|i| mutate(&mut rng, &seeds[i % seeds.len()])));
    let (mut n, mut accepted) = (0, 0);
    for (i, input) in cases.enumerate() {
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(Ok(Verdict::Accepted)) => accepted += (i >= replayed) as usize,
            Ok(Ok(Verdict::Refused)) => {}
            Ok(Err(why)) => fail(kind, i, &input, &why),
            Err(_) => fail(kind, i, &input, "panicked"),
        }
        n += 1;
    }
    let mutants = n - replayed;
    eprintln!("fuzz {kind}: {n} inputs ({replayed} replayed), {accepted} of {mutants} mutants accepted; no panic, no garbage");
    assert!(accepted as f64 >= min_accepted * mutants as f64, "{kind}: only {accepted} of {mutants} mutants accepted (at least {min_accepted} expected)");
}

fn fail(kind: &str, i: usize, input: &[u8], why: &str) -> ! {
    let saved = std::env::temp_dir().join(format!("ser-fuzz-{kind}-{i}.bin"));
    std::fs::write(&saved, input).unwrap();
    panic!("{kind} case {i}: {why}; input saved to {} (copy it into tests/fuzz-corpus/{kind}/ to keep it)", saved.display());
}

fn wav(channels: u16, rate: u32, bits: u16, float: bool, frames: usize) -> Vec<u8> {
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int } };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..frames * channels as usize {
            let x = ((i as f32) * 0.05).sin() * 0.5;
            match (float, bits) {
                (true, _) => w.write_sample(x).unwrap(),
                (false, 8) => w.write_sample((x * 127.0) as i8).unwrap(),
                (false, 16) => w.write_sample((x * 32767.0) as i16).unwrap(),
                (false, _) => w.write_sample((x * 8_000_000.0) as i32).unwrap(),
            }
        }
        w.finalize().unwrap();
    }
    cursor.into_inner()
}

/// Decoded audio must be finite, within the accepted level, at an accepted rate; a refusal
/// must say why.
fn check_audio(bytes: &[u8]) -> Result<Verdict, String> {
    match audio::decode_bytes(bytes) {
        Err(e) if format!("{e:#}").trim().is_empty() => Err("refused without a reason".into()),
        Err(_) => Ok(Verdict::Refused),
        Ok(a) if a.samples.is_empty() => Err("decoded to no samples".into()),
        Ok(a) if a.samples.iter().any(|s| !s.is_finite() || s.abs() > audio::decode::MAX_SAMPLE_MAGNITUDE) => Err("out-of-range sample".into()),
        Ok(a) if !(audio::decode::MIN_SAMPLE_RATE..=audio::decode::MAX_SAMPLE_RATE).contains(&a.sample_rate) => Err(format!("rate {}", a.sample_rate)),
        Ok(_) => Ok(Verdict::Accepted),
    }
}

#[test]
fn wav_decoding_never_panics_or_returns_garbage() {
    let seeds = vec![wav(1, 16_000, 16, false, 400), wav(2, 48_000, 24, false, 200), wav(1, 8_000, 8, false, 300), wav(2, 44_100, 32, true, 200)];
    fuzz("wav", &seeds, 0.2, check_audio);
}

#[test]
fn flac_decoding_never_panics_or_returns_garbage() {
    let flac = std::fs::read(common::copy_16k("03-01-01-01-01-01-01")).unwrap();
    fuzz("flac", &[flac], 0.02, check_audio);
}

#[test]
fn ravdess_names_parse_or_say_why() {
    let seeds: Vec<Vec<u8>> = ["03-01-05-02-02-01-07.wav", "Actor_12/03-02-06-01-01-02-12.flac", "03-01-01-01-01-01-01.WAV"].iter().map(|s| s.as_bytes().to_vec()).collect();
    fuzz("names", &seeds, 0.03, |b| {
        let name = String::from_utf8_lossy(b);
        match RavdessName::parse(&name) {
            Err(why) if why.is_empty() => Err("empty reason".into()),
            Err(_) => Ok(Verdict::Refused),
            Ok(n) if !(1..=24).contains(&n.actor) => Err(format!("actor {}", n.actor)),
            Ok(_) => Ok(Verdict::Accepted),
        }
    });
}

#[test]
fn feature_files_load_or_say_why() {
    let dir = std::env::temp_dir().join(format!("ser-fuzz-features-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = ser::features::FeatureConfig::default();
    let dim = config.dim();
    let (n, t_max) = (3, 4);
    let set = ser::features::set::FeatureSet {
        config,
        clips: (0..n).map(|c| ser::features::set::ClipInfo::unlabelled(format!("03-01-0{}-01-01-01-01.wav", c + 1))).collect(),
        frames: (0..n * t_max * dim).map(|i| (i % 97) as f32 * 0.1).collect(),
        lengths: vec![4, 2, 3],
        t_max,
        vectors: (0..n * dim).map(|i| (i % 13) as f32).collect(),
        stds: vec![1.0; n * dim],
        dim,
        label_map: vec![],
        distribution: vec![],
        distribution_width: 0,
        durations: vec![],
        voicing: vec![],
    };
    let path = dir.join("seed.safetensors");
    set.write(&path).unwrap();
    let seed = std::fs::read(&path).unwrap();
    let probe = dir.join("case.safetensors");
    fuzz("features", &[seed], 0.03, |b| {
        std::fs::write(&probe, b).unwrap();
        match ser::features::set::FeatureSet::read(&probe) {
            Err(_) => Ok(Verdict::Refused),
            Ok(s) if s.vectors.iter().chain(&s.stds).chain(&s.frames).any(|v| !v.is_finite()) => Err("non-finite features loaded".into()),
            Ok(s) if s.t_max > 0 && s.lengths.iter().any(|&l| l as usize > s.t_max) => Err("lengths past the frames".into()),
            Ok(_) => Ok(Verdict::Accepted),
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoints_load_or_say_why() {
    let shipped = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/ser.safetensors")).unwrap();
    let lock = common::gpu();
    let g = &lock.gpu;
    // Fewer iterations: each successful load builds a model on the device.
    let iters = iterations() / 3;
    let mut rng = SplitMix64::new(common::fresh_seed("checkpoint"));
    // Seeds of every kind: the shipped file, and small models of each other kind fitted on the
    // synthetic set through the library (knn, svm, rf, krr on summary statistics; an LSTM on
    // frames; an ensemble file of two), so that each kind's own reader is fuzzed, not only the
    // network one.
    let probe = common::synthetic_set();
    let mut seeds = vec![shipped];
    seeds.extend(seed_models(g));
    let per_seed = iters.div_ceil(seeds.len());
    let mutated: Vec<Vec<u8>> = seeds.iter().flat_map(|seed| (0..per_seed).map(|_| mutate(&mut rng, seed)).collect::<Vec<_>>()).collect();
    let cases = corpus("checkpoint").into_iter().map(|(_, b)| b).chain(seeds.clone()).chain(mutated);
    let (mut n, mut loaded) = (0, 0);
    for (i, input) in cases.enumerate() {
        n += 1;
        // Through the loader `ser predict` uses: every kind (the shipped file is a kernel ridge
        // model in network shape, so its mutations reach that conversion too).
        // A model that loads must also predict: finite probabilities summing to 1 on the
        // synthetic clips (when it reads their feature configuration), or a clear error.
        let verdict = catch_unwind(AssertUnwindSafe(|| {
            let p = ser::infer::load_model_bytes(g, "fuzz", input.clone())?;
            let proba = if p.meta.data.features == probe.config {
                let clips: Vec<usize> = (0..probe.clips.len()).step_by(9).collect();
                let mut set = probe.clone();
                p.prepare(g, &mut set).and_then(|()| p.clip_probabilities(g, &set, &clips)).ok()
            } else {
                None
            };
            anyhow::Ok((p.meta, proba))
        }));
        match verdict {
            Err(_) => fail("checkpoint", i, &input, "panicked"),
            Ok(Ok((meta, _))) if meta.data.scaler.std.iter().any(|s| !s.is_finite() || *s <= 0.0) => fail("checkpoint", i, &input, "bad scaler accepted"),
            Ok(Ok((_, Some(proba)))) if proba.iter().any(|row| row.iter().any(|v| !v.is_finite()) || (row.iter().sum::<f32>() - 1.0).abs() > 1e-3) => {
                fail("checkpoint", i, &input, "loaded, then predicted non-finite or unnormalised probabilities")
            }
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(_)) => {}
        }
    }
    eprintln!("fuzz checkpoint: {n} inputs, {loaded} loaded, the rest refused; no panic");
    // The seeds themselves (one of each kind) are among the inputs: each must have loaded.
    assert!(loaded >= seeds.len(), "only {loaded} inputs loaded, fewer than the {} seeds", seeds.len());
}

/// The bytes of one small model of each kind but the shipped one's, fitted on the synthetic set.
fn seed_models(g: &ser::gpu::Gpu) -> Vec<Vec<u8>> {
    use ser::experiment::{self, Run, RunConfig};
    use ser::models::{ModelConfig, ModelKind};
    use ser::dataset::{self, Input};
    let set = common::synthetic_set();
    let selection = ser::audio::Selection { vocal: ser::audio::VocalFilter::Both, drop: vec![ser::audio::Emotion::Disgust] };
    let l = dataset::labelled(&set, &selection).unwrap();
    let dir = std::env::temp_dir().join(format!("ser-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = Vec::new();
    // The sequence models with both poolings (attention has a trained vector of its own).
    let (mean, attention) = (ser::nn::TimePooling::Mean, ser::nn::TimePooling::Attention);
    for (kind, input, time_pooling) in [
        (ModelKind::Knn, Input::Stats, mean),
        (ModelKind::Svm, Input::Stats, mean),
        (ModelKind::Rf, Input::Stats, mean),
        (ModelKind::Krr, Input::Stats, mean),
        (ModelKind::Lstm, Input::Frames, attention),
        (ModelKind::CnnLstm, Input::Frames, mean),
    ] {
        let cfg = RunConfig { model: ModelConfig { kind, forest: ser::models::forest::Settings { trees: 5, ..Default::default() }, network: ser::models::network::Settings { lstm_units: 4, time_pooling, ..Default::default() }, ..Default::default() }, input, epochs: 1, ..Default::default() };
        let run = Run { gpu: g, cfg: &cfg, set: &set, labelled: &l, log: &|_| {}, on_epoch: None };
        let (train_all, test) = experiment::test_split(&run).unwrap();
        let (predictor, _) = experiment::fit_and_test(&run, &train_all, &test, None, None).unwrap();
        let path = dir.join(format!("{}.safetensors", kind.name()));
        ser::infer::save(g, &predictor, &path).unwrap();
        out.push(std::fs::read(&path).unwrap());
    }
    // An ensemble file of two of them (its members' files inside it are fuzzed too).
    let load = |kind: &str| ser::infer::load_model(g, Some(&dir.join(format!("{kind}.safetensors")))).unwrap();
    let pair = ser::infer::ensemble::join(vec![load("knn"), load("krr")]).unwrap();
    ser::infer::save(g, &pair, &dir.join("ensemble.safetensors")).unwrap();
    out.push(std::fs::read(dir.join("ensemble.safetensors")).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

/// Manifests (CSV with quotes and a byte-order mark, TSV, JSONL with EmoBox's keys) read into
/// labelled clips or refused with a reason naming the manifest; never a panic, never a clip
/// without a class, a missing file or a segment that ends before it starts. The seeds themselves
/// must load whole: a reader that refused everything would fail here.
#[test]
fn manifests_load_or_say_why() {
    use ser::sources::{LabelMap, Source};
    let dir = std::env::temp_dir().join(format!("ser-fuzz-manifests-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("audio")).unwrap();
    for name in ["a.flac", "b.flac", "c d.flac"] {
        std::fs::copy(common::copy_16k("03-01-01-01-01-01-01"), dir.join("audio").join(name)).unwrap();
    }
    // (format, seed, its clips, the share of mutants that must still load: measured 3-9%.)
    let seeds: [(&str, &str, usize, f64); 3] = [
        ("csv", "\u{feff}path,label,speaker,start,end,split\naudio/a.flac,neutral,s1,0,1.5,train\n\"audio/c d.flac\",\"ang\",s2,,,test\naudio/b.flac,sad,s1,0.5,2,valid\n", 3, 0.02),
        ("tsv", "path\tlabel\tspeaker\naudio/a.flac\thappy\tx\naudio/b.flac\tfear\ty\n", 2, 0.02),
        ("jsonl", "{\"key\": \"k1\", \"wav\": \"audio/a.flac\", \"emo\": \"neu\", \"speaker\": \"s\", \"channel\": 1}\n{\"key\": \"k2\", \"wav\": \"audio/b.flac\", \"emo\": \"sad\", \"start\": 0.25, \"end\": 1}\n", 2, 0.005),
    ];
    for (ext, text, clips, min_accepted) in seeds {
        let file = dir.join(format!("m.{ext}"));
        let load = |bytes: &[u8]| {
            std::fs::write(&file, bytes).unwrap();
            ser::sources::load(&[Source::Manifest(file.clone())], &Default::default(), &LabelMap::default())
        };
        let whole = load(text.as_bytes()).unwrap_or_else(|e| panic!("the {ext} seed: {e:#}"));
        assert_eq!(whole.clips.len(), clips, "the {ext} seed loads every row");
        fuzz(&format!("manifest-{ext}"), &[text.as_bytes().to_vec()], min_accepted, |b| match load(b) {
            Err(e) if !format!("{e:#}").contains("m.") => Err(format!("an error not naming the manifest: {e:#}")),
            Err(_) => Ok(Verdict::Refused),
            Ok(l) => match l.clips.iter().find(|c| c.info.emotion.is_none() || !c.file.is_file() || c.info.segment.is_some_and(|[s, e]| s >= e || s.is_nan() || e.is_nan())) {
                Some(c) => Err(format!("a bad clip got through: {c:?}")),
                None => Ok(Verdict::Accepted),
            },
        });
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
