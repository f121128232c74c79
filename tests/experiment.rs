//! Training as a library call: `ser::experiment` with a typed configuration, on the synthetic
//! feature set the CLI tests use (7 classes, 4 actors, separable): a fit learns and records its
//! whole configuration, `resume` reads that configuration back, actor folds hold out each
//! actor once, and bad configurations are refused by name.

mod common;

use ser::audio::{Emotion, Selection, VocalFilter};
use ser::experiment::{self, Run, RunConfig, Split};
use ser::models::{ModelConfig, ModelKind, knn, network};
use ser::nn::{Layer, TimePooling};
use ser::dataset::{self, Input};
use ser::contract::speaker::SpeakerGroups;

/// The study's classes: disgust dropped.
fn selection() -> Selection {
    Selection { vocal: VocalFilter::Both, drop: vec![Emotion::Disgust] }
}

fn labelled(set: &ser::features::set::FeatureSet) -> dataset::Labelled {
    dataset::labelled(set, &selection()).unwrap()
}

#[test]
fn a_run_learns_records_its_configuration_and_resumes_with_it() {
    let g = &common::gpu().gpu;
    let set = common::synthetic_set();
    let l = labelled(&set);
    let cfg = RunConfig { model: ModelConfig { kind: ModelKind::Mlp, network: network::Settings { hidden: vec![32], ..Default::default() }, ..Default::default() }, epochs: 12, lr: 3e-3, clip_norm: 5.0, seed: 4, ..Default::default() };
    let lines = std::cell::RefCell::new(Vec::new());
    let log = |line: &str| lines.borrow_mut().push(line.to_string());
    let run = Run { gpu: g, cfg: &cfg, set: &set, labelled: &l, log: &log, on_epoch: None };
    let (train_all, test) = experiment::test_split(&run).unwrap();
    assert_eq!(train_all.len() + test.len(), l.clips.len());
    let dir = std::env::temp_dir().join(format!("ser-experiment-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("mlp.safetensors");
    let (predictor, report) = experiment::fit_and_test(&run, &train_all, &test, None, Some(&out)).unwrap();
    let report = report.expect("a random split has a test set");
    assert!(report.accuracy > 0.8, "test accuracy {}", report.accuracy);
    // Progress went to the log, one line per epoch (early stopping may end sooner).
    assert!(lines.borrow().iter().filter(|l| l.starts_with("epoch")).count() >= 1, "{:?}", lines.borrow());
    // The record holds the configuration itself.
    let recorded: RunConfig = serde_json::from_value(predictor.meta.training.run.clone().unwrap()).unwrap();
    assert_eq!(recorded, cfg);
    // fit_and_test saved the best epoch as it went: resume reads the model and its configuration.
    let (resumed, resumed_cfg) = experiment::resume(g, &out).unwrap();
    assert_eq!(resumed_cfg, cfg);
    experiment::check_resume(&run, &resumed).unwrap();
    // Its probabilities were calibrated on the validation clips: one temperature, recorded,
    // kept by the file, and applied to the logits before the softmax.
    assert_eq!(predictor.meta.temperatures.len(), 1);
    let t = predictor.meta.temperatures[0];
    assert!(t > 0.0 && t != 1.0 && predictor.meta.training.calibration.as_ref().map(|c| c[0].temperature) == Some(t), "{t} {:?}", predictor.meta.training.calibration);
    let saved = dir.join("final.safetensors");
    ser::infer::save(g, &predictor, &saved).unwrap();
    let mut loaded = ser::infer::load_model(g, Some(&saved)).unwrap();
    assert_eq!(loaded.meta.temperatures, vec![t]);
    let test_set = loaded.dataset(&set, &test.iter().map(|&p| l.clips[p]).collect::<Vec<_>>(), test.iter().map(|&p| l.labels[p]).collect()).unwrap();
    let members = loaded.classifier.networks().expect("a network");
    let logits = ser::nn::predict::predict(g, &members[0], &test_set, 64).unwrap();
    let scaled = ser::nn::predict::softmax_rows(&logits.iter().map(|v| v * t).collect::<Vec<_>>(), 7);
    assert_eq!(loaded.probabilities(g, &test_set).unwrap(), scaled);
    // `ser calibrate` finds the same validation clips again from the record: the same factor.
    loaded.meta.temperatures.clear();
    let fits = experiment::calibrate_saved(g, &mut loaded, &set, SpeakerGroups::Actor, None).unwrap();
    assert_eq!((fits[0].temperature, loaded.meta.temperatures.clone()), (t, vec![t]));
    // Another clip set is refused.
    let mut other = set.clone();
    other.clips[0].path = "Actor_01/elsewhere.wav".into();
    let err = experiment::check_resume(&Run { set: &other, ..run }, &resumed).unwrap_err().to_string();
    assert!(err.contains("other clips"), "{err}");
    // So is another selection of classes (here calm dropped too), naming both and what to give.
    let fewer = dataset::labelled(&set, &Selection { vocal: VocalFilter::Both, drop: vec![Emotion::Disgust, Emotion::Calm] }).unwrap();
    let err = experiment::check_resume(&Run { labelled: &fewer, ..run }, &resumed).unwrap_err().to_string();
    assert!(err.contains("classes neutral, calm, happy") && err.contains("these clips have neutral, happy") && err.contains("--drop"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn actor_folds_hold_each_actor_out_once() {
    let g = &common::gpu().gpu;
    let set = common::synthetic_set();
    let l = labelled(&set);
    let cfg = RunConfig { model: ModelConfig { kind: ModelKind::Knn, ..Default::default() }, input: Input::Stats, split: Split::ActorFolds, folds: 4, ..Default::default() };
    let run = Run { gpu: g, cfg: &cfg, set: &set, labelled: &l, log: &|_| {}, on_epoch: None };
    let dir = std::env::temp_dir().join(format!("ser-folds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("knn.safetensors");
    let folds = experiment::actor_folds(&run, Some(&out), None).unwrap();
    let mut held: Vec<String> = folds.iter().flat_map(|f| f.held_out.clone()).collect();
    held.sort();
    assert_eq!(held, ["01", "02", "03", "04"]);
    for f in &folds {
        // 7 classes x 6 clips per actor.
        assert_eq!(f.test_clips, 42, "{f:?}");
        assert!(f.accuracy > 0.8, "{f:?}");
    }
    // One fold alone (a cross-validation spread over processes) is that fold, the same score.
    let one = experiment::actor_folds(&Run { cfg: &RunConfig { only_fold: Some(2), ..cfg.clone() }, ..run }, None, None).unwrap();
    assert_eq!((one.len(), &one[0].held_out, one[0].accuracy), (1, &folds[2].held_out, folds[2].accuracy));
    let err = experiment::actor_folds(&Run { cfg: &RunConfig { only_fold: Some(4), ..cfg.clone() }, ..run }, None, None).unwrap_err().to_string();
    assert!(err.contains("--fold 4"), "{err}");
    // More folds than actors is refused by name.
    let err = experiment::actor_folds(&Run { cfg: &RunConfig { folds: 5, ..cfg.clone() }, ..run }, None, None).unwrap_err().to_string();
    assert!(err.contains("--folds 5"), "{err}");

    // Each fold's saved model, scored by `ser eval --held-out-fold K`, sees exactly that fold's
    // actors and scores what the fold scored.
    let options = |fold| ser::infer::EvalOptions { held_out_of_seed: None, held_out_fold: Some((fold, 4)), groups: SpeakerGroups::Actor, min_clips: None };
    let load = |fold| ser::infer::load_model(g, Some(&experiment::fold_path(&out, fold))).unwrap();
    for (k, f) in folds.iter().enumerate() {
        let ev = ser::infer::evaluate(g, &[load(k)], &set, &options(k)).unwrap();
        let expected: Vec<usize> = (0..l.clips.len()).filter(|&p| l.speakers[p].as_ref().is_some_and(|s| f.held_out.contains(s))).map(|p| l.clips[p]).collect();
        assert_eq!(ev.clips, expected, "fold {k}");
        assert_eq!(ev.report.accuracy, f.accuracy, "fold {k}");
    }
    // A model of another fold has heard these actors: refused, naming it.
    let err = ser::infer::evaluate(g, &[load(1), load(2)], &set, &options(1)).expect_err("refused").to_string();
    assert!(err.contains("model 2 was trained on fold 2 of 4"), "{err}");
    let err = ser::infer::evaluate(g, &[load(1)], &set, &ser::infer::EvalOptions { held_out_fold: Some((4, 5)), ..options(1) }).expect_err("refused").to_string();
    assert!(err.contains("--held-out-fold 4 of --folds 5"), "{err}");
    // A network's fold model is calibrated on its fold's validation clips, which `ser
    // calibrate` finds again from its record.
    let mlp = RunConfig { model: ModelConfig { kind: ModelKind::Mlp, network: network::Settings { hidden: vec![8], ..Default::default() }, ..Default::default() }, input: Input::Stats, epochs: 3, only_fold: Some(1), ..cfg.clone() };
    let net = dir.join("mlp.safetensors");
    experiment::actor_folds(&Run { cfg: &mlp, ..run }, Some(&net), None).unwrap();
    let mut m = ser::infer::load_model(g, Some(&experiment::fold_path(&net, 1))).unwrap();
    let t = m.meta.temperatures.clone();
    assert_eq!(t.len(), 1);
    m.meta.temperatures.clear();
    experiment::calibrate_saved(g, &mut m, &set, SpeakerGroups::Actor, None).unwrap();
    assert_eq!(m.meta.temperatures, t);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn configurations_a_model_cannot_take_are_refused_by_name() {
    let g = &common::gpu().gpu;
    let set = common::synthetic_set();
    let l = labelled(&set);
    // A recurrent model on summary vectors.
    let cfg = RunConfig { model: ModelConfig { kind: ModelKind::Lstm, ..Default::default() }, input: Input::Stats, epochs: 1, ..Default::default() };
    let run = Run { gpu: g, cfg: &cfg, set: &set, labelled: &l, log: &|_| {}, on_epoch: None };
    let (train_all, test) = experiment::test_split(&run).unwrap();
    let err = experiment::fit_and_test(&run, &train_all, &test, None, None).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("--input frames"), "{err}");
    // Flatten is the refined CNN's head, not the LSTM's.
    let flat_lstm = ModelConfig { kind: ModelKind::Lstm, network: network::Settings { time_pooling: TimePooling::Flatten, ..Default::default() }, ..Default::default() };
    let err = flat_lstm.architecture(Input::Frames, (12, 59), 7).unwrap_err().to_string();
    assert!(err.contains("--time-pooling flatten"), "{err}");
    // The last state is the LSTM's, not the refined CNN's; an LSTM has one or two directions.
    let last_cnn = ModelConfig { kind: ModelKind::Cnn, network: network::Settings { time_pooling: TimePooling::Last, ..Default::default() }, ..Default::default() };
    let err = last_cnn.architecture(Input::Frames, (12, 59), 7).unwrap_err().to_string();
    assert!(err.contains("--time-pooling last"), "{err}");
    let three_ways = ModelConfig { kind: ModelKind::CnnLstm, network: network::Settings { lstm_directions: 3, ..Default::default() }, ..Default::default() };
    let err = three_ways.architecture(Input::Frames, (12, 59), 7).unwrap_err().to_string();
    assert!(err.contains("--lstm-directions is 1 or 2, not 3"), "{err}");
    // Actors that are not in the data.
    let cfg = RunConfig { split: Split::Actors, test_actors: vec![9], ..Default::default() };
    let err = experiment::test_split(&Run { cfg: &cfg, ..run }).unwrap_err().to_string();
    assert!(err.contains("--test-actors [9]"), "{err}");
    // A fold of a split that has none.
    let cfg = RunConfig { only_fold: Some(1), ..Default::default() };
    let err = experiment::test_split(&Run { cfg: &cfg, ..run }).unwrap_err().to_string();
    assert!(err.contains("--fold 1") && err.contains("--split random"), "{err}");
    // The defaults are the CLI's: `ser train --help` shows them.
    let d = RunConfig::default();
    assert_eq!((d.epochs, d.batch_size, d.model.kind, d.model.network.lstm_units, d.model.network.lstm_directions, d.clip_norm), (30, 32, ModelKind::Cnn, 64, 2, 0.0));
}

/// Input augmentation (time and feature masks, noise) changes training, repeats itself with the
/// same seed, is recorded with the run, and the model still learns through it.
#[test]
fn augmentation_changes_training_repeatably_and_still_learns() {
    let g = &common::gpu().gpu;
    let set = common::synthetic_set();
    let l = labelled(&set);
    let base = RunConfig { model: ModelConfig { kind: ModelKind::Lstm, network: network::Settings { lstm_units: 8, ..Default::default() }, ..Default::default() }, input: Input::Frames, epochs: 10, lr: 1e-2, seed: 2, ..Default::default() };
    let augmented = RunConfig { augment: ser::ops::dropout::Augment { noise: 0.2, time_mask: 3, feature_mask: 6 }, ..base.clone() };
    let losses = |cfg: &RunConfig| {
        let run = Run { gpu: g, cfg, set: &set, labelled: &l, log: &|_| {}, on_epoch: None };
        let (train_all, test) = experiment::test_split(&run).unwrap();
        let (p, rep) = experiment::fit_and_test(&run, &train_all, &test, None, None).unwrap();
        let history: Vec<f64> = p.meta.training.other["history"][0].as_array().unwrap().iter().map(|e| e["loss"].as_f64().unwrap()).collect();
        (history, rep.unwrap().accuracy, p.meta.training.run.as_ref().unwrap()["augment"].clone())
    };
    let (plain, ..) = losses(&base);
    let (first, accuracy, recorded) = losses(&augmented);
    let (second, ..) = losses(&augmented);
    assert_eq!(first, second, "the same seed draws the same augmentation");
    assert_ne!(first, plain, "augmentation changed nothing");
    assert!(accuracy > 0.8, "accuracy {accuracy} with augmentation");
    assert_eq!(recorded, serde_json::json!({"noise": 0.2f32 as f64, "time_mask": 3, "feature_mask": 6}));
}

/// The synthetic set with one copy of every clip "at speed 0.9": its features shifted, so that
/// a copy's rows are told apart from its source's.
fn with_copies(set: &ser::features::set::FeatureSet) -> ser::features::set::FeatureSet {
    let mut out = set.clone();
    let n = set.clips.len();
    for i in 0..n {
        out.clips.push(ser::features::set::ClipInfo { speed: Some(0.9), ..set.clips[i].clone() });
        out.frames.extend(set.frames[i * set.t_max * set.dim..][..set.t_max * set.dim].iter().map(|v| v + 0.25));
        out.lengths.push(set.lengths[i]);
        out.vectors.extend(set.vectors[i * set.dim..][..set.dim].iter().map(|v| v + 0.25));
        out.stds.extend_from_slice(&set.stds[i * set.dim..][..set.dim]);
    }
    out
}

#[test]
fn speed_copies_train_beside_their_source_and_never_reach_validation_or_test() {
    let g = &common::gpu().gpu;
    let plain = common::synthetic_set();
    let set = with_copies(&plain);
    let (l, l_plain) = (labelled(&set), labelled(&plain));
    // Splits are made over the originals: the same positions with or without copies.
    assert_eq!((&l.clips, &l.labels, &l.speakers), (&l_plain.clips, &l_plain.labels, &l_plain.speakers));
    let n = plain.clips.len();
    for (p, &c) in l.clips.iter().enumerate() {
        assert_eq!(l.copies[p], [c + n], "position {p}");
    }
    assert!(l_plain.copies.iter().all(Vec::is_empty));
    // Training rows: the positions, then their copies (with their sources' labels); any other
    // part: the positions alone.
    let scaler = dataset::fit_scaler(&set, &l, &[0, 1, 2], Input::Stats);
    let train = dataset::training_dataset(&set, &l, &[0, 5], Input::Stats, &scaler);
    let alone = dataset::dataset(&set, &l, &[0, 5], Input::Stats, &scaler);
    let w = train.width;
    assert_eq!((train.len(), alone.len()), (4, 2));
    assert_eq!(train.x[..2 * w], alone.x[..]);
    assert_eq!(train.y, [l.labels[0], l.labels[5], l.labels[0], l.labels[5]]);
    assert_eq!(train.x[2 * w..3 * w], dataset::example(&set, n + l.clips[0], Input::Stats, 1, &scaler)[..]);
    assert_ne!(train.x[2 * w..3 * w], train.x[..w]);
    // A whole run: the test and validation parts as without copies, the copies in training.
    let cfg = RunConfig { model: ModelConfig { kind: ModelKind::Mlp, network: network::Settings { hidden: vec![16], ..Default::default() }, ..Default::default() }, epochs: 2, seed: 3, ..Default::default() };
    let lines = std::cell::RefCell::new(Vec::new());
    let log = |line: &str| lines.borrow_mut().push(line.to_string());
    let run = Run { gpu: g, cfg: &cfg, set: &set, labelled: &l, log: &log, on_epoch: None };
    let (train_all, test) = experiment::test_split(&run).unwrap();
    let (predictor, report) = experiment::fit_and_test(&run, &train_all, &test, None, None).unwrap();
    let (val, tr) = (predictor.meta.training.validation_clips.unwrap(), predictor.meta.training.train_clips.unwrap());
    assert_eq!(report.unwrap().classes.iter().map(|c| c.support).sum::<usize>(), test.len());
    assert_eq!(tr, 2 * (train_all.len() - val), "every training clip brings its copy; validation none");
    let header = lines.borrow().iter().find(|x| x.contains("classes, train")).cloned().unwrap();
    assert!(header.contains(&format!("({} originals and {} speed copies)", tr / 2, tr / 2)), "{header}");
    // What --resume checks tells the two apart.
    assert_ne!(experiment::data_fingerprint(&set, &l), experiment::data_fingerprint(&plain, &l_plain));
    // A copy labelled unlike its source is refused by name.
    let mut wrong = set.clone();
    wrong.clips[n].emotion = Some(if plain.clips[0].emotion == Some(Emotion::Sad) { Emotion::Happy } else { Emotion::Sad });
    let err = dataset::labelled(&wrong, &Selection { vocal: VocalFilter::Both, drop: vec![Emotion::Disgust] }).err().expect("refused").to_string();
    assert!(err.contains(&plain.clips[0].path) && err.contains("differ"), "{err}");
}

/// `infer::evaluate` (what `ser eval` runs) scores exactly the clips a `--seed N` run held out,
/// with that run's predictions; an ensemble of a model with itself predicts as the model; speed
/// copies and clips of other classes are counted and left out; mismatched ensembles are refused.
#[test]
fn evaluation_scores_the_clips_a_seed_held_out_as_the_run_did() {
    let g = &common::gpu().gpu;
    let set = with_copies(&common::synthetic_set());
    let l = labelled(&set);
    // An MLP trained briefly on a hard split errs on some clips, so a wrong selection shows.
    let cfg = RunConfig { model: ModelConfig { kind: ModelKind::Mlp, network: network::Settings { hidden: vec![8], ..Default::default() }, ..Default::default() }, epochs: 2, seed: 5, test_fraction: 0.3, ..Default::default() };
    let run = Run { gpu: g, cfg: &cfg, set: &set, labelled: &l, log: &|_| {}, on_epoch: None };
    let (train_all, test) = experiment::test_split(&run).unwrap();
    let (predictor, report) = experiment::fit_and_test(&run, &train_all, &test, None, None).unwrap();
    let report = report.unwrap();
    let options = |held| ser::infer::EvalOptions { held_out_of_seed: held, held_out_fold: None, groups: SpeakerGroups::Actor, min_clips: None };
    let ev = ser::infer::evaluate(g, std::slice::from_ref(&predictor), &set, &options(Some((5, 0.3)))).unwrap();
    assert_eq!(ev.clips, test.iter().map(|&p| l.clips[p]).collect::<Vec<_>>());
    assert_eq!((ev.report.confusion.clone(), ev.report.accuracy), (report.confusion.clone(), report.accuracy));
    assert_eq!((ev.speed_copies, ev.other_classes), (set.clips.len() / 2, 0));
    // Every original clip without a held-out split; the same model twice averages to itself.
    let dir = std::env::temp_dir().join(format!("ser-evaluate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mlp.safetensors");
    ser::infer::save(g, &predictor, &path).unwrap();
    let load = || ser::infer::load_model(g, Some(&path)).unwrap();
    let all = ser::infer::evaluate(g, &[load()], &set, &options(None)).unwrap();
    assert_eq!(all.clips, l.clips);
    let both = ser::infer::evaluate(g, &[load(), load()], &set, &options(None)).unwrap();
    assert_eq!(both.report.confusion, all.report.confusion);
    // An ensemble of two different models (this MLP and a kNN of other votes) predicts the
    // argmax of their averaged probabilities: neither member alone, nor the first one's vote.
    let knn_cfg = RunConfig { model: ModelConfig { kind: ModelKind::Knn, knn: knn::Settings { k: 1, ..Default::default() }, ..Default::default() }, input: Input::Stats, ..cfg.clone() };
    let knn_run = Run { cfg: &knn_cfg, ..run };
    let (knn, _) = experiment::fit_and_test(&knn_run, &train_all, &test, None, None).unwrap();
    let members = [load(), knn];
    let pair = ser::infer::evaluate(g, &members, &set, &options(None)).unwrap();
    let probs = |m: &ser::infer::Predictor| m.probabilities(g, &m.dataset(&set, &l.clips, l.labels.clone()).unwrap()).unwrap();
    let (a, b) = (probs(&members[0]), probs(&members[1]));
    let averaged: Vec<u32> = a.iter().zip(&b).map(|(p, q)| ser::report::argmax(&p.iter().zip(q).map(|(x, y)| x + y).collect::<Vec<f32>>()) as u32).collect();
    let want = ser::report::Report::new(&predictor.class_names(), &l.labels, &averaged);
    assert_eq!(pair.report.confusion, want.confusion);
    let alone = |p: &[Vec<f32>]| p.iter().map(|r| ser::report::argmax(r) as u32).collect::<Vec<u32>>();
    assert!(alone(&a) != averaged || alone(&b) != averaged, "the members must disagree somewhere for this check to mean anything");
    // A clip of a class the model does not know is counted and left out.
    let mut disgust = set.clone();
    disgust.clips[l.clips[0]].emotion = Some(Emotion::Disgust);
    let ev = ser::infer::evaluate(g, &[load()], &disgust, &options(None)).unwrap();
    assert_eq!((ev.other_classes, &ev.clips[..]), (1, &l.clips[1..]));
    // An ensemble member with other classes is refused.
    let mut other = load();
    other.meta.data.classes.swap(0, 1);
    let err = ser::infer::evaluate(g, &[load(), other], &set, &options(None)).expect_err("refused").to_string();
    assert!(err.contains("model 2 of the ensemble"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The refined CNN over frames pools its steps as --time-pooling says (the mean by default: the
/// study's Flatten does not train on RAVDESS's frames), and its batches are then cut after
/// their longest clip; over time means or statistics it always flattens, as the study's.
#[test]
fn the_refined_cnn_pools_frames_and_flattens_summaries() {
    let head = |cfg: &ModelConfig, input: Input, shape| {
        let arch = cfg.architecture(input, shape, 7).unwrap();
        arch.layers.iter().find(|l| matches!(l, Layer::Flatten | Layer::TimeMean | Layer::AttentionPool)).cloned().unwrap()
    };
    let cnn = ModelConfig { kind: ModelKind::Cnn, ..Default::default() };
    assert_eq!(head(&cnn, Input::Frames, (40, 59)), Layer::TimeMean);
    assert!(cnn.architecture(Input::Frames, (40, 59), 7).unwrap().takes_shorter_batches());
    let attention = ModelConfig { network: network::Settings { time_pooling: TimePooling::Attention, ..Default::default() }, ..cnn.clone() };
    assert_eq!(head(&attention, Input::Frames, (40, 59)), Layer::AttentionPool);
    let flat = ModelConfig { network: network::Settings { time_pooling: TimePooling::Flatten, ..Default::default() }, ..cnn.clone() };
    assert_eq!(head(&flat, Input::Frames, (40, 59)), Layer::Flatten);
    assert!(!flat.architecture(Input::Frames, (40, 59), 7).unwrap().takes_shorter_batches());
    for input in [Input::Vectors, Input::Stats] {
        assert_eq!(head(&attention, input, (59, 1)), Layer::Flatten);
    }
    // What `resume` reads back as the head of a saved model, whatever its record says.
    for (cfg, want) in [(&cnn, TimePooling::Mean), (&attention, TimePooling::Attention), (&flat, TimePooling::Flatten)] {
        assert_eq!(cfg.architecture(Input::Frames, (40, 59), 7).unwrap().time_pooling(), Some(want));
    }
    // And it learns the synthetic task over frames with the mean head.
    let g = &common::gpu().gpu;
    let set = common::synthetic_set();
    let l = labelled(&set);
    let cfg = RunConfig { model: cnn, input: Input::Frames, epochs: 8, seed: 1, ..Default::default() };
    let run = Run { gpu: g, cfg: &cfg, set: &set, labelled: &l, log: &|_| {}, on_epoch: None };
    let (train_all, test) = experiment::test_split(&run).unwrap();
    let (_, report) = experiment::fit_and_test(&run, &train_all, &test, None, None).unwrap();
    let accuracy = report.unwrap().accuracy;
    assert!(accuracy > 0.8, "test accuracy {accuracy}");
}

/// The data a run reads: with speaker normalisation every actor's clip summaries are
/// standardised by that actor's own statistics (voices shift every column by far more than the
/// classes differ); without it the features are the file's, untouched.
#[test]
fn a_run_reads_each_speaker_standardised_only_when_it_normalises_speakers() {
    let shared = common::gpu();
    let g = &shared.gpu;
    let set = common::synthetic_set_with_voices(|actor, column| (1.0 + actor as f32, 7.0 * actor as f32 - 0.01 * column as f32));
    let selection = selection();
    let plain = RunConfig { input: Input::Stats, ..Default::default() };
    let (same, l) = experiment::labelled_for_run(g, set.clone(), &selection, &plain, SpeakerGroups::Actor).unwrap();
    assert_eq!((&same.vectors, &same.stds, l.clips.len()), (&set.vectors, &set.stds, 7 * 24));
    let (normed, l) = experiment::labelled_for_run(g, set.clone(), &selection, &RunConfig { speaker_norm: Some(10), ..plain }, SpeakerGroups::Actor).unwrap();
    let d = set.dim;
    for actor in 1..=4u8 {
        let clips: Vec<usize> = (0..l.clips.len()).filter(|&p| l.speakers[p] == Some(format!("{actor:02}"))).map(|p| l.clips[p]).collect();
        for j in 0..d {
            let column = |t: &[f32]| clips.iter().map(|&c| t[c * d + j] as f64).collect::<Vec<_>>();
            let (before, after) = (column(&set.vectors), column(&normed.vectors));
            let mean = after.iter().sum::<f64>() / after.len() as f64;
            let sd = (after.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / after.len() as f64).sqrt();
            assert!(mean.abs() < 1e-4 && (sd - 1.0).abs() < 1e-3, "actor {actor} column {j}: mean {mean}, sd {sd}");
            assert!(before.iter().sum::<f64>().abs() / before.len() as f64 > 1.0, "the voice moved actor {actor}'s column {j}");
        }
    }
}

/// A model fitted on the random split of `set` as `cfg` prepares it, saved and loaded again.
struct SavedFit {
    /// The set as the run prepared it (speaker-normalised where `cfg` says so).
    prepared: ser::features::set::FeatureSet,
    predictor: ser::infer::Predictor,
    loaded: ser::infer::Predictor,
    /// The test clips (indices into the set) and the fitted model's accuracy on them.
    clips: Vec<usize>,
    accuracy: f64,
    _dir: common::TempDir,
}

fn fit_save_load(g: &ser::gpu::Gpu, set: &ser::features::set::FeatureSet, cfg: &RunConfig, tag: &str) -> SavedFit {
    let (prepared, l) = experiment::labelled_for_run(g, set.clone(), &selection(), cfg, SpeakerGroups::Actor).unwrap();
    let run = Run { gpu: g, cfg, set: &prepared, labelled: &l, log: &|_| {}, on_epoch: None };
    let (train_all, test) = experiment::test_split(&run).unwrap();
    let (predictor, report) = experiment::fit_and_test(&run, &train_all, &test, None, None).unwrap();
    let dir = common::TempDir::new(tag);
    let path = dir.0.join("model.safetensors");
    ser::infer::save(g, &predictor, &path).unwrap();
    let loaded = ser::infer::load_model(g, Some(&path)).unwrap();
    assert_eq!(loaded.meta.data.input, cfg.input);
    let clips = test.iter().map(|&p| l.clips[p]).collect();
    SavedFit { prepared, predictor, loaded, clips, accuracy: report.unwrap().accuracy, _dir: dir }
}

impl SavedFit {
    /// Both models' probabilities of the test clips of `set`: (fitted, loaded).
    fn probabilities(&self, g: &ser::gpu::Gpu, set: &ser::features::set::FeatureSet) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let p = |m: &ser::infer::Predictor| m.probabilities(g, &m.dataset(set, &self.clips, vec![0; self.clips.len()]).unwrap()).unwrap();
        (p(&self.predictor), p(&self.loaded))
    }
}

/// Two classes whose clips differ only in how their columns move together: independently, or
/// all with one shared factor. Each clip's columns are standardised, then scaled and shifted by
/// its speaker's gain and offset. Clip statistics cannot tell them apart; the distribution input's
/// embedding can, by actor, and its saved model predicts the same after loading. A set without
/// the embedding is refused by name.
#[test]
fn the_distribution_input_tells_apart_clips_whose_statistics_agree() {
    let shared = common::gpu();
    let g = &shared.gpu;
    let mut rng = ser::rng::SplitMix64::new(common::fresh_seed("distribution input"));
    let mut set = common::empty_set(48);
    let (dim, t_max) = (set.dim, set.t_max);
    for (k, emotion) in [Emotion::Neutral, Emotion::Angry].into_iter().enumerate() {
        for actor in 1..=4u8 {
            for rep in 0..16 {
                let len = 32 + rep % 17;
                let mut frames = vec![0f32; t_max * dim];
                let shared: Vec<f64> = (0..len).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
                for j in 0..dim {
                    // Drawn, then standardised within the clip: every clip's statistics are
                    // exactly its speaker's offset and gain.
                    let draws: Vec<f64> = (0..len).map(|t| if k == 0 { rng.uniform(-1.0, 1.0) as f64 } else { shared[t] + 0.1 * rng.uniform(-1.0, 1.0) as f64 }).collect();
                    let m = draws.iter().sum::<f64>() / len as f64;
                    let sd = (draws.iter().map(|v| (v - m).powi(2)).sum::<f64>() / len as f64).sqrt();
                    for (t, v) in draws.iter().enumerate() {
                        frames[t * dim + j] = ((1.0 + actor as f64) * (v - m) / sd + 5.0 * actor as f64) as f32;
                    }
                }
                for j in 0..dim {
                    let c: Vec<f64> = (0..len).map(|t| frames[t * dim + j] as f64).collect();
                    let m = c.iter().sum::<f64>() / len as f64;
                    set.vectors.push(m as f32);
                    set.stds.push((c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / len as f64).sqrt() as f32);
                }
                set.frames.extend(frames);
                set.lengths.push(len as u32);
                set.clips.push(ser::features::set::ClipInfo { path: format!("Actor_{actor:02}/{k}-{rep}.wav"), emotion: Some(emotion), actor: Some(actor), ..ser::features::set::ClipInfo::unlabelled("") });
            }
        }
    }
    let by_actor = |input: Input| {
        let cfg = RunConfig { model: ModelConfig { kind: ModelKind::Krr, ..Default::default() }, input, split: Split::ActorFolds, folds: 4, speaker_norm: Some(8), ..Default::default() };
        let (prepared, l) = experiment::labelled_for_run(g, set.clone(), &selection(), &cfg, SpeakerGroups::Actor).unwrap();
        let run = Run { gpu: g, cfg: &cfg, set: &prepared, labelled: &l, log: &|_| {}, on_epoch: None };
        let folds = experiment::actor_folds(&run, None, None).unwrap();
        folds.iter().map(|f| f.accuracy).sum::<f64>() / folds.len() as f64
    };
    let (stats, distribution) = (by_actor(Input::Stats), by_actor(Input::Distribution));
    assert!(stats < 0.7 && distribution > 0.8, "by actor: stats {stats}, distribution {distribution}");
    // Saved and loaded, the model refuses a set without the embedding and predicts the same
    // once the set has it.
    let cfg = RunConfig { model: ModelConfig { kind: ModelKind::Krr, ..Default::default() }, input: Input::Distribution, ..Default::default() };
    let fit = fit_save_load(g, &set, &cfg, "distribution");
    assert!(fit.accuracy > 0.95);
    let err = fit.loaded.dataset(&set, &fit.clips, vec![0; fit.clips.len()]).unwrap_err().to_string();
    assert!(err.contains("distribution"), "{err}");
    let mut fresh = set.clone();
    dataset::prepare(g, &mut fresh, Input::Distribution).unwrap();
    assert_eq!(fit.probabilities(g, &fresh).1, fit.probabilities(g, &fit.prepared).0);
}

/// Two classes whose clips differ only in how long they last, each speaker at its own tempo (a
/// slower speaker's fast clips as long as a faster one's slow clips), their frames drawn alike
/// and standardised within each clip. By actor with speaker normalisation the
/// distribution-length input hears the tempo and the distribution input cannot; the lengths are
/// the clips' in seconds, and the saved model predicts the same after loading.
#[test]
fn the_distribution_length_input_hears_a_speaker_s_tempo() {
    let shared = common::gpu();
    let g = &shared.gpu;
    let mut rng = ser::rng::SplitMix64::new(common::fresh_seed("distribution-length input"));
    let mut set = common::empty_set(64);
    let (dim, t_max) = (set.dim, set.t_max);
    for (k, emotion) in [Emotion::Angry, Emotion::Neutral].into_iter().enumerate() {
        for actor in 1..=4u8 {
            for rep in 0..16 {
                let len = 16 + 6 * actor as usize + 8 * k + rep % 4;
                let mut frames = vec![0f32; t_max * dim];
                for j in 0..dim {
                    let draws: Vec<f64> = (0..len).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
                    let m = draws.iter().sum::<f64>() / len as f64;
                    let sd = (draws.iter().map(|v| (v - m).powi(2)).sum::<f64>() / len as f64).sqrt();
                    for (t, v) in draws.iter().enumerate() {
                        frames[t * dim + j] = ((v - m) / sd + actor as f64) as f32;
                    }
                }
                // Each column's clip mean and deviation: the speaker's offset, and 1.
                set.vectors.extend(std::iter::repeat_n(actor as f32, dim));
                set.stds.extend(std::iter::repeat_n(1.0, dim));
                set.frames.extend(frames);
                set.lengths.push(len as u32);
                set.clips.push(ser::features::set::ClipInfo { path: format!("Actor_{actor:02}/{k}-{rep}.wav"), emotion: Some(emotion), actor: Some(actor), ..ser::features::set::ClipInfo::unlabelled("") });
            }
        }
    }
    let cfg = |input: Input| RunConfig { model: ModelConfig { kind: ModelKind::Krr, ..Default::default() }, input, split: Split::ActorFolds, folds: 4, speaker_norm: Some(8), ..Default::default() };
    let by_actor = |input: Input| {
        let cfg = cfg(input);
        let (prepared, l) = experiment::labelled_for_run(g, set.clone(), &selection(), &cfg, SpeakerGroups::Actor).unwrap();
        let run = Run { gpu: g, cfg: &cfg, set: &prepared, labelled: &l, log: &|_| {}, on_epoch: None };
        let folds = experiment::actor_folds(&run, None, None).unwrap();
        folds.iter().map(|f| f.accuracy).sum::<f64>() / folds.len() as f64
    };
    let (without, with) = (by_actor(Input::Distribution), by_actor(Input::DistributionLength));
    assert!(without < 0.75 && with > 0.95, "by actor: distribution {without}, distribution-length {with}");
    let mut fresh = set.clone();
    dataset::prepare(g, &mut fresh, Input::DistributionLength).unwrap();
    // A clip of n centred frames lasts (n - 1) hops.
    let seconds = |len: u32| (len - 1) as f64 * fresh.config.hop as f64 / fresh.config.sample_rate as f64;
    assert_eq!(fresh.durations.len(), fresh.lengths.len());
    for (got, &n) in fresh.durations.iter().zip(&fresh.lengths) {
        assert!((*got as f64 - seconds(n)).abs() < 1e-6, "{n} frames: {got} s");
    }
    // Saved and loaded, the same probabilities on the same (normalised) clips.
    let fit = fit_save_load(g, &set, &RunConfig { split: Split::Random, ..cfg(Input::DistributionLength) }, "distribution-length");
    let (want, got) = fit.probabilities(g, &fit.prepared);
    assert_eq!(got, want);
}

/// The distribution-voicing input: each clip's first 8 MFCCs' moments over its voiced frames and
/// over its unvoiced ones, found by column name (here after other columns), equal to the float64
/// reference; speaker normalisation standardises them with the other tables; a model saved and
/// loaded predicts the same; features without pyin's `voiced` flag are refused by name.
#[test]
fn the_distribution_voicing_input_takes_moments_on_each_side_of_the_voicing_flag() {
    use ser::features::{Block, Descriptor};
    let g = &common::gpu().gpu;
    let mut rng = ser::rng::SplitMix64::new(common::fresh_seed("distribution-voicing input"));
    let config = ser::features::FeatureConfig { set: vec![Block::of(Descriptor::Rms), Block::of(Descriptor::Mfcc), Block::of(Descriptor::Voiced)], ..Default::default() };
    let names = config.feature_names();
    let flag = names.iter().position(|n| n == "voiced").unwrap();
    let take: Vec<usize> = (0..8).map(|i| names.iter().position(|n| *n == format!("mfcc_{i}")).unwrap()).collect();
    assert_eq!((take[0], flag), (1, names.len() - 1));
    let mut set = common::empty_set(40);
    set.config = config;
    set.dim = names.len();
    let (dim, t_max) = (set.dim, set.t_max);
    for (k, emotion) in [Emotion::Angry, Emotion::Neutral].into_iter().enumerate() {
        for actor in 1..=4u8 {
            for rep in 0..16 {
                // Lengths from 0 voiced frames (rep 0: none) to all voiced (rep 1).
                let len = 20 + rep % 19;
                let mut frames = vec![0f32; t_max * dim];
                for t in 0..len {
                    let voiced = match rep {
                        0 => false,
                        1 => true,
                        _ => rng.below(2) == 1,
                    };
                    for j in 0..dim {
                        frames[t * dim + j] = if j == flag {
                            voiced as u8 as f32
                        } else {
                            // The voiced frames' MFCCs lifted in one class, lowered in the other.
                            let sign = if voiced == (k == 0) { 1.0 } else { -1.0 };
                            rng.uniform(-1.0, 1.0) + sign * 0.5 + 10.0 * actor as f32
                        };
                    }
                }
                let rows: Vec<f64> = frames[..len * dim].iter().map(|&v| v as f64).collect();
                let (m, sd) = ser::ops::segment::reference_moments(&rows, dim, ser::ops::segment::Frames::All);
                set.vectors.extend(m.iter().map(|&v| v as f32));
                set.stds.extend(sd.iter().map(|&v| v as f32));
                set.frames.extend(frames);
                set.lengths.push(len as u32);
                set.clips.push(ser::features::set::ClipInfo { path: format!("Actor_{actor:02}/{k}-{rep}.wav"), emotion: Some(emotion), actor: Some(actor), ..ser::features::set::ClipInfo::unlabelled("") });
            }
        }
    }
    let mut fresh = set.clone();
    dataset::prepare(g, &mut fresh, Input::DistributionVoicing).unwrap();
    assert_eq!((fresh.voicing.len(), fresh.durations.len()), (set.clips.len() * 32, set.clips.len()));
    for c in 0..set.clips.len() {
        let want = ser::ops::segment::reference_split_moments(&set.frames[c * t_max * dim..][..set.lengths[c] as usize * dim], dim, &take, flag);
        for (j, (&got, want)) in fresh.voicing[c * 32..(c + 1) * 32].iter().zip(want).enumerate() {
            assert!((got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "clip {c} moment {j}: {got} against {want}");
        }
    }
    // A clip with no voiced frame has zeros on that side, one with every frame voiced on the other.
    assert!(fresh.voicing[..16].iter().all(|&v| v == 0.0) && fresh.voicing[32 + 16..64].iter().all(|&v| v == 0.0));
    // Clips picked and sets joined keep each clip's moments with it.
    let picked = fresh.select(&[3, 0]);
    assert_eq!(picked.voicing, [&fresh.voicing[3 * 32..4 * 32], &fresh.voicing[..32]].concat());
    let joined = ser::features::set::FeatureSet::concat(vec![picked.clone(), fresh.select(&[5])]).unwrap();
    assert_eq!(joined.voicing, [&picked.voicing[..], &fresh.voicing[5 * 32..6 * 32]].concat());
    // Trained with speaker normalisation, saved and loaded: the same probabilities.
    let cfg = RunConfig { model: ModelConfig { kind: ModelKind::Krr, ..Default::default() }, input: Input::DistributionVoicing, speaker_norm: Some(8), ..Default::default() };
    let fit = fit_save_load(g, &set, &cfg, "distribution-voicing");
    assert_ne!(fit.prepared.voicing, fresh.voicing, "speaker normalisation left the voicing moments as they were");
    assert!(fit.accuracy > 0.9);
    let (want, got) = fit.probabilities(g, &fit.prepared);
    assert_eq!(got, want);
    // Without the flag: refused, naming it and how to extract it.
    let mut no_flag = common::empty_set(4);
    no_flag.clips.push(ser::features::set::ClipInfo::unlabelled("a.wav"));
    no_flag.lengths.push(2);
    no_flag.frames = vec![0.5; 4 * no_flag.dim];
    let err = dataset::prepare(g, &mut no_flag, Input::DistributionVoicing).unwrap_err().to_string();
    assert!(err.contains("`voiced`") && err.contains("--set"), "{err}");
}

/// An ensemble file joins models of other kinds and inputs (kernel ridge on the distribution
/// input, an LSTM on frames): loaded again it predicts the mean of its members' probabilities,
/// scores as its members given one by one, flattens an ensemble given as a member, and refuses
/// members it cannot average and files that nest ensembles.
#[test]
fn an_ensemble_file_averages_members_of_other_kinds_and_inputs() {
    let g = &common::gpu().gpu;
    let set = common::synthetic_set();
    let dir = common::TempDir::new("ensemble");
    let fit = |kind: ModelKind, input: Input, speaker_norm: Option<usize>, name: &str| {
        let model = ModelConfig { kind, network: network::Settings { lstm_units: 4, ..Default::default() }, ..Default::default() };
        let cfg = RunConfig { model, input, epochs: 2, seed: 4, speaker_norm, ..Default::default() };
        let (prepared, l) = experiment::labelled_for_run(g, set.clone(), &selection(), &cfg, SpeakerGroups::Actor).unwrap();
        let run = Run { gpu: g, cfg: &cfg, set: &prepared, labelled: &l, log: &|_| {}, on_epoch: None };
        let (train_all, test) = experiment::test_split(&run).unwrap();
        let path = dir.0.join(name);
        ser::infer::save(g, &experiment::fit_and_test(&run, &train_all, &test, None, None).unwrap().0, &path).unwrap();
        path
    };
    let krr = fit(ModelKind::Krr, Input::Distribution, None, "krr.safetensors");
    let lstm = fit(ModelKind::Lstm, Input::Frames, None, "lstm.safetensors");
    let load = |p: &std::path::Path| ser::infer::load_model(g, Some(p)).unwrap();
    let joined = ser::infer::ensemble::join(vec![load(&krr), load(&lstm)]).unwrap();
    let pair = dir.0.join("pair.safetensors");
    ser::infer::save(g, &joined, &pair).unwrap();
    let loaded = load(&pair);
    assert_eq!(loaded.kind(), "ensemble");
    assert_eq!(loaded.members().map(|m| (m.classifier.family().kind, m.meta.data.input)).collect::<Vec<_>>(), [("krr", Input::Distribution), ("network", Input::Frames)]);
    assert_eq!(ser::infer::load_meta(Some(&pair)).unwrap(), load(&krr).meta);

    let l = labelled(&set);
    let mut prepared = set.clone();
    loaded.prepare(g, &mut prepared).unwrap();
    let got = loaded.clip_probabilities(g, &prepared, &l.clips).unwrap();
    let alone = |p: &std::path::Path| {
        let m = load(p);
        m.probabilities(g, &m.dataset(&prepared, &l.clips, l.labels.clone()).unwrap()).unwrap()
    };
    let (a, b) = (alone(&krr), alone(&lstm));
    for (i, row) in got.iter().enumerate() {
        for (k, v) in row.iter().enumerate() {
            assert!((v - (a[i][k] + b[i][k]) / 2.0).abs() < 1e-6, "clip {i} class {k}: {v} against {} and {}", a[i][k], b[i][k]);
        }
    }
    let argmax = |p: &[Vec<f32>]| p.iter().map(|r| ser::report::argmax(r)).collect::<Vec<_>>();
    assert!(argmax(&a) != argmax(&got) || argmax(&b) != argmax(&got), "the members must disagree somewhere for this check to mean anything");
    // A dataset of one input cannot stand for an ensemble's.
    assert!(loaded.probabilities(g, &loaded.dataset(&prepared, &l.clips, l.labels.clone()).unwrap()).is_err());
    let options = ser::infer::EvalOptions { held_out_of_seed: None, held_out_fold: None, groups: SpeakerGroups::Actor, min_clips: None };
    let as_file = ser::infer::evaluate(g, &[load(&pair)], &set, &options).unwrap();
    let one_by_one = ser::infer::evaluate(g, &[load(&krr), load(&lstm)], &set, &options).unwrap();
    assert_eq!(as_file.report.confusion, one_by_one.report.confusion);

    // An ensemble given as a member adds its members.
    let three = ser::infer::ensemble::join(vec![load(&pair), load(&krr)]).unwrap();
    assert_eq!(three.members().count(), 3);
    // Members that cannot be averaged are refused, saying why.
    let mut other_classes = load(&krr);
    other_classes.meta.data.classes.swap(0, 1);
    let err = ser::infer::ensemble::join(vec![load(&lstm), other_classes]).err().unwrap().to_string();
    assert!(err.contains("model 2") && err.contains("classes"), "{err}");
    let normalised = fit(ModelKind::Krr, Input::Stats, Some(8), "krr-norm.safetensors");
    let err = ser::infer::ensemble::join(vec![load(&krr), load(&normalised)]).err().unwrap().to_string();
    assert!(err.contains("normalises speakers"), "{err}");
    assert!(ser::infer::ensemble::join(vec![load(&krr)]).is_err());
    // A file that holds an ensemble inside an ensemble is refused at load.
    let bytes = std::fs::read(&pair).unwrap();
    let stored = ["member0", "member1"].map(|name| ser::store::Stored { name, dtype: safetensors::Dtype::U8, shape: vec![bytes.len()], bytes: &bytes });
    let metadata = [("format", "ser.model.v1"), ("kind", "ensemble"), ("members", "2")].map(|(k, v)| (k.to_string(), v.to_string())).into_iter().collect();
    let nested = dir.0.join("nested.safetensors");
    std::fs::write(&nested, ser::store::to_safetensors(&stored, metadata).unwrap()).unwrap();
    let err = format!("{:#}", ser::infer::load_model(g, Some(&nested)).err().unwrap());
    assert!(err.contains("an ensemble inside an ensemble"), "{err}");
}
