//! End-to-end training on a small synthetic task that must be learned, and reproducibility.

mod common;

use common::{Rng, gpu};
use ser::nn::{Architecture, Layer, Model, RecurrentHead, TimePooling};
use ser::ops::gemm::Precision;
use ser::dataset::Dataset;
use ser::nn::predict;
use ser::train::{self, TrainConfig};

/// Three classes of 16-step, 2-channel sequences: channel 0 is a sine of 1, 2 or 4 cycles with
/// a random phase, both channels carry noise.
fn waves(rng: &mut Rng, n: usize) -> Dataset {
    let mut d = Dataset { width: 32, ..Default::default() };
    for _ in 0..n {
        let class = (rng.next_u64() % 3) as u32;
        let cycles = [1.0, 2.0, 4.0][class as usize];
        let phase = rng.uniform(0.0, std::f32::consts::TAU);
        for t in 0..16 {
            d.x.push((std::f32::consts::TAU * cycles * t as f32 / 16.0 + phase).sin() + rng.uniform(-0.3, 0.3));
            d.x.push(rng.uniform(-0.3, 0.3));
        }
        d.y.push(class);
    }
    d
}

fn small_cnn() -> Architecture {
    Architecture {
        input: (16, 2),
        layers: vec![
            Layer::Conv1d { filters: 8, kernel: 3, same: true, relu: true },
            Layer::BatchNorm,
            Layer::MaxPool { size: 2, stride: 2 },
            Layer::Dropout { rate: 0.1 },
            Layer::Flatten,
            Layer::Dense { units: 16, relu: true },
            Layer::Dropout { rate: 0.1 },
            Layer::Dense { units: 3, relu: false },
        ],
    }
}

#[test]
fn a_small_cnn_learns_a_synthetic_task_and_repeats_itself_exactly() {
    let g = &gpu().gpu;
    let mut rng = Rng::new(42);
    let (tr, va) = (waves(&mut rng, 300), waves(&mut rng, 90));
    let cfg = TrainConfig { epochs: 25, batch_size: 16, seed: 7, ..Default::default() };
    let run = || {
        let mut model = Model::new(g, &small_cnn(), 3).unwrap();
        model.adam.lr = 3e-3;
        let log = train::fit(g, &mut model, &tr, &va, &[1.0, 1.0, 1.0], &cfg, |_| {}).unwrap();
        let logits = predict::predict(g, &model, &va, 64).unwrap();
        (log, logits)
    };
    let (log, logits) = run();
    let (_, acc) = predict::loss_and_accuracy(&logits, &va.y, 3);
    let first = &log[0];
    let last = log.last().unwrap();
    eprintln!("epoch 1: loss {:.3} val_acc {:.3}; epoch {}: loss {:.3} val_acc {:.3}; restored best: val_acc {acc:.3}", first.loss, first.val_accuracy, last.epoch, last.loss, last.val_accuracy);
    assert!(last.loss < first.loss * 0.5, "training loss did not fall: {:.3} -> {:.3}", first.loss, last.loss);
    assert!(acc >= 0.9, "validation accuracy {acc:.3} after training (chance is 0.33)");
    // Same seed, same adapter: the same numbers, bit for bit (no atomics in any training kernel).
    let (log2, logits2) = run();
    assert_eq!(logits, logits2);
    assert_eq!(log.iter().map(|e| e.loss).collect::<Vec<_>>(), log2.iter().map(|e| e.loss).collect::<Vec<_>>());
}

#[test]
fn a_run_resumed_where_the_next_epochs_do_not_improve_replays_the_uninterrupted_run() {
    // A resumed run starts from the state saved when validation last improved (epoch k). When
    // epochs k+1 and k+2 do not beat epoch k, the uninterrupted run counts them towards its
    // patience and halves the learning rate after k+2; the resumed run must do the same, not
    // take epoch k+1 as a new best (which would also overwrite the saved model with a worse
    // one), and keep epoch k's weights if nothing later beats them.
    let g = &gpu().gpu;
    let mut rng = Rng::new(11);
    let (tr, va) = (waves(&mut rng, 120), waves(&mut rng, 30));
    let cfg = TrainConfig { epochs: 20, batch_size: 16, seed: 3, lr_patience: 2, patience: 100, ..Default::default() };
    let fresh = || {
        let mut m = Model::new(g, &small_cnn(), 3).unwrap();
        m.adam.lr = 1e-2;
        m
    };
    let fit = |model: &mut Model, cfg: &TrainConfig| {
        let mut saved = Vec::new();
        let fitted = train::fit_saving(g, model, &tr, &va, &[1.0; 3], cfg, |_| Ok(()), |_, e| {
            saved.push(e.epoch);
            Ok(())
        });
        (fitted.unwrap(), saved)
    };
    let mut straight = fresh();
    let (whole, whole_saved) = fit(&mut straight, &cfg);
    let log = &whole.log;
    let best_before = |i: usize| log[..i].iter().map(|e| e.val_loss).fold(f64::INFINITY, f64::min);
    let k = (1..log.len() - 3)
        .find(|&i| log[i].val_loss < best_before(i) && log[i + 1].val_loss >= log[i].val_loss && log[i + 2].val_loss >= log[i].val_loss)
        .map(|i| log[i].epoch)
        .unwrap_or_else(|| panic!("no best epoch followed by two worse ones, the case this test needs: {:?}", log.iter().map(|e| e.val_loss).collect::<Vec<_>>()));
    assert!(log[k + 2].lr < log[k - 1].lr, "the uninterrupted run halves the learning rate after epoch {}", k + 2);
    // The same run stopped at epoch k (its model then is the state saved at k), then resumed.
    let mut resumed = fresh();
    fit(&mut resumed, &TrainConfig { epochs: k, ..cfg.clone() });
    let (rest, rest_saved) = fit(&mut resumed, &TrainConfig { first_epoch: k + 1, ..cfg.clone() });
    let numbers = |l: &[train::Epoch]| l.iter().map(|e| (e.epoch, e.loss, e.val_loss, e.lr)).collect::<Vec<_>>();
    assert_eq!(numbers(&rest.log), numbers(&log[k..]), "the resumed epochs are the uninterrupted run's");
    assert_eq!(rest_saved, whole_saved.into_iter().filter(|&e| e > k).collect::<Vec<_>>(), "saved at the same improvements only");
    assert_eq!(rest.kept_epoch, whole.kept_epoch);
    assert_eq!(predict::predict(g, &resumed, &va, 64).unwrap(), predict::predict(g, &straight, &va, 64).unwrap(), "the same weights kept");
}

#[test]
fn the_small_cnn_also_learns_with_bfloat16_gemm_operands() {
    // Mixed precision: the conv and dense GEMMs round their operands to bfloat16 while training
    // (sums, weights and Adam's state stay f32). It must learn as the f32 run does, its numbers
    // must differ from the f32 run's (the rounding is really applied). Inference is f32 by
    // construction: precision is an argument of a training step, not a state of the model.
    let g = &gpu().gpu;
    let mut rng = Rng::new(42);
    let (tr, va) = (waves(&mut rng, 300), waves(&mut rng, 90));
    let run = |precision| {
        let cfg = TrainConfig { epochs: 25, batch_size: 16, seed: 7, precision, ..Default::default() };
        let mut model = Model::new(g, &small_cnn(), 3).unwrap();
        model.adam.lr = 3e-3;
        let log = train::fit(g, &mut model, &tr, &va, &[1.0, 1.0, 1.0], &cfg, |_| {}).unwrap();
        let (_, acc) = predict::loss_and_accuracy(&predict::predict(g, &model, &va, 64).unwrap(), &va.y, 3);
        (log, acc)
    };
    let (log, acc) = run(Precision::Bf16);
    let (first, last) = (&log[0], log.last().unwrap());
    eprintln!("bf16: epoch 1 loss {:.3}; epoch {} loss {:.3}; restored best val_acc {acc:.3}", first.loss, last.epoch, last.loss);
    assert!(last.loss < first.loss * 0.5, "training loss did not fall: {:.3} -> {:.3}", first.loss, last.loss);
    assert!(acc >= 0.9, "validation accuracy {acc:.3} after training in bf16 (chance is 0.33)");
    let (log32, _) = run(Precision::F32);
    assert_ne!(log.iter().map(|e| e.loss).collect::<Vec<_>>(), log32.iter().map(|e| e.loss).collect::<Vec<_>>(), "bf16 and f32 runs gave identical losses");
}

#[test]
fn the_refined_cnn_builds_with_the_studys_shapes() {
    let arch = Architecture::refined_cnn((59, 1), 7, ser::nn::TimePooling::Flatten);
    let shapes = arch.shapes().unwrap();
    // 59 -> pool 29 -> 14 -> 7 positions; 512 channels flattened to 3584.
    assert!(shapes.contains(&(29, 128)) && shapes.contains(&(14, 256)) && shapes.contains(&(7, 512)));
    assert!(shapes.contains(&(1, 3584)));
    assert_eq!(*shapes.last().unwrap(), (1, 7));
    assert_eq!(arch.classes().unwrap(), 7);
    let bad = Architecture { input: (8, 2), layers: vec![Layer::Dense { units: 3, relu: false }] };
    assert!(bad.shapes().unwrap_err().to_string().contains("Flatten"));
}

#[test]
fn checkpoints_round_trip_and_bad_files_are_refused_without_losing_anything() {
    use ser::nn::checkpoint::{self, ModelMeta};
    let g = &gpu().gpu;
    let mut rng = Rng::new(5);
    let (tr, va) = (waves(&mut rng, 60), waves(&mut rng, 30));
    let arch = small_cnn();
    let mut model = Model::new(g, &arch, 1).unwrap();
    let cfg = TrainConfig { epochs: 2, batch_size: 16, ..Default::default() };
    train::fit(g, &mut model, &tr, &va, &[1.0; 3], &cfg, |_| {}).unwrap();
    let meta = ModelMeta {
        architecture: arch.clone(),
        data: ser::contract::DataContract {
            version: ser::contract::VERSION,
            classes: vec![ser::audio::Emotion::Neutral, ser::audio::Emotion::Happy, ser::audio::Emotion::Sad],
            features: ser::features::FeatureConfig { n_mfcc: 13, n_mels: 32, ..Default::default() },
            input: ser::dataset::Input::Vectors,
            scaler: ser::dataset::Scaler { mean: vec![0.0; 13 + 12 + 7], std: vec![1.0; 13 + 12 + 7] },
            speaker_norm: None,
            label_map: vec![],
            corpora: Default::default(),
        },
        training: ser::nn::record::TrainingRecord { model: Some("test".into()), ..Default::default() },
        temperatures: vec![],
    };
    let dir = std::env::temp_dir().join(format!("ser-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    checkpoint::save(g, std::slice::from_ref(&model), &meta, &path).unwrap();
    let (loaded, meta2) = checkpoint::load(g, &path).unwrap();
    let loaded = &loaded[0];
    assert_eq!(meta2, meta);
    assert_eq!(predict::predict(g, loaded, &va, 64).unwrap(), predict::predict(g, &model, &va, 64).unwrap());

    // Truncated and corrupt files: clear errors naming the file.
    let bytes = std::fs::read(&path).unwrap();
    let bad = dir.join("truncated.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", checkpoint::load(g, &bad).err().unwrap());
    assert!(e.contains("truncated.safetensors") && e.contains("not a valid safetensors"), "{e}");
    std::fs::write(&bad, b"garbage").unwrap();
    assert!(checkpoint::load(g, &bad).is_err());
    // A checkpoint whose architecture disagrees with its tensors.
    let other = ModelMeta { architecture: Architecture { input: (16, 2), layers: vec![Layer::Flatten, Layer::Dense { units: 3, relu: false }] }, ..meta.clone() };
    let mismatched = dir.join("mismatched.safetensors");
    checkpoint::save(g, std::slice::from_ref(&model), &meta, &mismatched).unwrap();
    let text = std::fs::read(&mismatched).unwrap();
    let st = safetensors::SafeTensors::read_metadata(&text).unwrap().1;
    assert!(st.metadata().as_ref().unwrap().contains_key("architecture"));
    let model_other = Model::new(g, &other.architecture, 0).unwrap();
    checkpoint::save(g, std::slice::from_ref(&model_other), &meta, &mismatched).unwrap();
    let e = format!("{:#}", checkpoint::load(g, &mismatched).err().unwrap());
    // Refused by the size of what it claims (the file cannot hold the weights) or by a missing
    // tensor, whichever is found first; never loaded.
    assert!(e.contains("mismatched.safetensors") && (e.contains("no tensor") || e.contains("more than the")), "{e}");

    // A model holding NaN is not saved, and the good file already there is left as it was.
    let t = &model.tensors()[0].1.clone();
    g.write(t, &vec![f32::NAN; t.len()]).unwrap();
    let e = format!("{:#}", checkpoint::save(g, std::slice::from_ref(&model), &meta, &path).unwrap_err());
    assert!(e.contains("NaN"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_mlp_with_batch_norm_learns_the_synthetic_task() {
    let g = &gpu().gpu;
    let mut rng = Rng::new(11);
    let (tr, va) = (waves(&mut rng, 300), waves(&mut rng, 90));
    let arch = Architecture::mlp((16, 2), 3, &[32, 16], 0.1, true);
    assert_eq!(arch.shapes().unwrap()[1], (1, 32));
    let mut model = Model::new(g, &arch, 2).unwrap();
    model.adam.lr = 3e-3;
    model.adam.weight_decay = 1e-3;
    let cfg = TrainConfig { epochs: 30, batch_size: 16, seed: 4, ..Default::default() };
    let log = train::fit(g, &mut model, &tr, &va, &[1.0, 1.0, 1.0], &cfg, |_| {}).unwrap();
    let (_, acc) = predict::loss_and_accuracy(&predict::predict(g, &model, &va, 64).unwrap(), &va.y, 3);
    assert!(log.last().unwrap().loss < log[0].loss * 0.5, "training loss did not fall");
    assert!(acc >= 0.85, "validation accuracy {acc:.3} (chance is 0.33)");
}

#[test]
fn stats_input_is_the_scaled_means_then_standard_deviations() {
    use ser::features::set::{ClipInfo, FeatureSet};
    use ser::dataset::{self, Input};
    // Two clips of 2 columns: 3 frames and 1 frame.
    let frames = vec![1.0, 10.0, 2.0, 20.0, 3.0, 60.0, 5.0, 7.0, 0.0, 0.0, 0.0, 0.0];
    use ser::audio::Emotion;
    let clip = |a, emotion| ClipInfo { path: format!("Actor_0{a}/x.wav"), emotion: Some(emotion), actor: Some(a), vocal: None, intensity: None, statement: None, repetition: None, speed: None, speaker: None, corpus: None, segment: None, split: None };
    let set = FeatureSet {
        config: ser::features::FeatureConfig { n_mfcc: 1, n_chroma: 1, contrast_bands: 0, ..Default::default() },
        clips: vec![clip(1, Emotion::Happy), clip(2, Emotion::Sad)],
        frames,
        lengths: vec![3, 1],
        t_max: 3,
        vectors: vec![2.0, 30.0, 5.0, 7.0],
        stds: vec![(2f32 / 3.0).sqrt(), (1400f32 / 3.0).sqrt(), 0.0, 0.0],
        dim: 2,
        label_map: vec![],
        distribution: vec![],
        distribution_width: 0,
        durations: vec![],
        voicing: vec![],
    };
    let drop = Emotion::ALL.iter().copied().filter(|e| ![Emotion::Happy, Emotion::Sad].contains(e)).collect();
    let selection = ser::audio::Selection { vocal: ser::audio::VocalFilter::Both, drop };
    let l = dataset::labelled(&set, &selection).unwrap();
    assert_eq!(Input::Stats.shape(2, 3), (4, 1));
    let scaler = dataset::fit_scaler(&set, &l, &[0, 1], Input::Stats);
    assert_eq!(scaler.mean, vec![3.5, 18.5, set.stds[0] / 2.0, set.stds[1] / 2.0]);
    let d = dataset::dataset(&set, &l, &[0, 1], Input::Stats, &scaler);
    assert_eq!(d.width, 4);
    // Two examples per column: standardised values are +-1.
    for (i, v) in d.x.iter().enumerate() {
        assert!((v.abs() - 1.0).abs() < 1e-5, "x[{i}] = {v}");
    }
    assert!(d.x[0] < 0.0 && d.x[4] > 0.0 && d.x[2] > 0.0 && d.x[6] < 0.0);
    // Frames: padded to the longest clip, scaled per column over real frames only.
    let f = dataset::dataset(&set, &l, &[0, 1], Input::Frames, &dataset::fit_scaler(&set, &l, &[0, 1], Input::Frames));
    assert_eq!(f.width, 6);
    assert_eq!(&f.x[8..], &[0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn an_ensemble_round_trips_and_averages_its_members_probabilities() {
    use ser::nn::checkpoint::{self, ModelMeta};
    let g = &gpu().gpu;
    let mut rng = Rng::new(9);
    let va = waves(&mut rng, 20);
    let arch = Architecture::mlp((16, 2), 3, &[8], 0.0, false);
    let models = vec![Model::new(g, &arch, 1).unwrap(), Model::new(g, &arch, 2).unwrap()];
    let meta = ModelMeta {
        architecture: arch,
        data: ser::contract::DataContract {
            version: ser::contract::VERSION,
            classes: vec![ser::audio::Emotion::Neutral, ser::audio::Emotion::Happy, ser::audio::Emotion::Sad],
            features: ser::features::FeatureConfig::default(),
            input: ser::dataset::Input::Frames,
            scaler: ser::dataset::Scaler { mean: vec![0.0; 59], std: vec![1.0; 59] },
            speaker_norm: None,
            label_map: vec![],
            corpora: Default::default(),
        },
        training: Default::default(),
        temperatures: vec![],
    };
    let path = std::env::temp_dir().join(format!("ser-ensemble-{}.safetensors", std::process::id()));
    checkpoint::save(g, &models, &meta, &path).unwrap();
    let (loaded, _) = checkpoint::load(g, &path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.len(), 2);
    let p = ser::infer::Predictor::new(Box::new(ser::models::network::Networks(loaded)), meta);
    let got = p.probabilities(g, &va).unwrap();
    let each: Vec<Vec<Vec<f32>>> = models.iter().map(|m| predict::softmax_rows(&predict::predict(g, m, &va, 8).unwrap(), 3)).collect();
    assert_ne!(each[0], each[1], "members must differ for the test to mean anything");
    for (i, row) in got.iter().enumerate() {
        for j in 0..3 {
            assert!((row[j] - (each[0][i][j] + each[1][i][j]) / 2.0).abs() < 1e-6);
        }
    }
}

#[test]
fn random_fourier_features_approximate_the_rbf_kernel_stay_fixed_and_learn() {
    let g = &gpu().gpu;
    let (d, features) = (32usize, 4096usize);
    let arch = Architecture::fourier((16, 2), 3, features, 1.0);
    let gamma = 1.0 / d as f64;
    let mut model = Model::new(g, &arch, 5).unwrap();
    let fixed = |m: &Model| -> Vec<Vec<f32>> { m.tensors().iter().filter(|(n, _)| n.contains("fourier")).map(|(_, t)| g.read_f32(t).unwrap()).collect() };
    let before = fixed(&model);
    let (w, b) = (&before[0], &before[1]);
    assert_eq!((w.len(), b.len()), (d * features, features));
    // z(x).z(y) estimates exp(-gamma |x - y|^2) with standard error ~ 1/sqrt(2 D).
    let mut rng = Rng::new(8);
    let z = |x: &[f32]| -> Vec<f64> {
        (0..features).map(|j| (2.0 / features as f64).sqrt() * ((0..d).map(|i| x[i] as f64 * w[i * features + j] as f64).sum::<f64>() + b[j] as f64).cos()).collect()
    };
    for _ in 0..5 {
        let x = rng.vec(d, -1.0, 1.0);
        let y: Vec<f32> = x.iter().map(|v| v + rng.uniform(-0.6, 0.6)).collect();
        let dist: f64 = x.iter().zip(&y).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
        let approx: f64 = z(&x).iter().zip(z(&y)).map(|(a, b)| a * b).sum();
        let exact = (-gamma * dist).exp();
        assert!((approx - exact).abs() < 0.06, "kernel {exact:.3}, features give {approx:.3}");
    }
    // Training moves the classifier only, and it learns the synthetic task.
    let (tr, va) = (waves(&mut rng, 300), waves(&mut rng, 90));
    model.adam.lr = 1e-2;
    let cfg = TrainConfig { epochs: 30, batch_size: 16, seed: 1, ..Default::default() };
    train::fit(g, &mut model, &tr, &va, &[1.0, 1.0, 1.0], &cfg, |_| {}).unwrap();
    assert_eq!(fixed(&model), before);
    let (_, acc) = predict::loss_and_accuracy(&predict::predict(g, &model, &va, 64).unwrap(), &va.y, 3);
    assert!(acc >= 0.85, "validation accuracy {acc:.3} (chance is 0.33)");
}

#[test]
fn refit_replays_a_schedule_on_more_data() {
    let g = &gpu().gpu;
    let mut rng = Rng::new(12);
    let tr = waves(&mut rng, 200);
    let va = waves(&mut rng, 60);
    let arch = Architecture::mlp((16, 2), 3, &[16], 0.0, false);
    let mut model = Model::new(g, &arch, 3).unwrap();
    let cfg = TrainConfig { batch_size: 16, seed: 2, ..Default::default() };
    let lrs = [3e-3, 3e-3, 3e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4];
    let mut seen = Vec::new();
    train::fit_schedule(g, &mut model, &tr, &[1.0; 3], &cfg, &lrs, |e, loss, lr| seen.push((e, loss, lr))).unwrap();
    assert_eq!(seen.iter().map(|s| s.2).collect::<Vec<_>>(), lrs);
    assert!(seen.last().unwrap().1 < seen[0].1 * 0.7, "loss fell: {seen:?}");
    assert_eq!(model.adam.lr, 5e-4);
    let (_, acc) = predict::loss_and_accuracy(&predict::predict(g, &model, &va, 64).unwrap(), &va.y, 3);
    assert!(acc >= 0.8, "validation accuracy {acc:.3}");
}

#[test]
fn profiles_attribute_time_and_gemm_flops_to_layers() {
    let g = &gpu().gpu;
    let mut rng = Rng::new(13);
    let tr = waves(&mut rng, 32);
    let mut model = Model::new(g, &small_cnn(), 1).unwrap();
    g.reset_profile();
    g.set_profiling(true);
    let cfg = TrainConfig { epochs: 1, batch_size: 16, ..Default::default() };
    train::fit(g, &mut model, &tr, &tr, &[1.0; 3], &cfg, |_| {}).unwrap();
    g.set_profiling(false);
    let report = g.profile();
    g.reset_profile();
    let scopes: Vec<String> = report.scopes().into_iter().map(|s| s.0).collect();
    for want in ["0.conv1d forward", "0.conv1d backward", "5.dense forward", "5.dense backward", "1.batch_norm backward", "adam", "0.conv1d inference"] {
        assert!(scopes.iter().any(|s| s == want), "no scope {want:?} in {scopes:?}");
    }
    // The first layer computes no input gradient: its backward is the two weight-gradient
    // kernels (GEMM, bias column sum) only, with the GEMM's FLOPs counted.
    let conv_bwd: Vec<_> = report.kernels.iter().filter(|k| k.kernel.starts_with("0.conv1d backward/")).collect();
    assert!(conv_bwd.iter().all(|k| !k.kernel.contains("col2im")), "{conv_bwd:?}");
    // (Packing passes of the texture GEMM, if any, are attributed to the layer but count no FLOPs.)
    let gemm = conv_bwd.iter().find(|k| k.kernel.contains("gemm") && !k.kernel.ends_with("gemm.pack")).unwrap();
    assert!(gemm.gflop_per_s > 0.0 && gemm.gflop_per_s.is_finite());
    assert!(report.scope_table().contains("5.dense forward"));
}

#[test]
fn kernel_ridge_fits_the_synthetic_task_and_calibrates_its_scores() {
    use ser::models::kernel_ridge::KernelRidge;
    let g = &gpu().gpu;
    let mut rng = Rng::new(21);
    let (tr, va, te) = (waves(&mut rng, 200), waves(&mut rng, 60), waves(&mut rng, 90));
    let (mut model, report) = KernelRidge::fit(g, &tr, 3, &[1.0; 3], 1.0 / 32.0, 0.01).unwrap();
    assert!(report.relative_residual < 1e-4, "{report:?}");
    // The centres are the training examples, exactly.
    assert_eq!(model.centre_rows(), &tr.x[..]);
    let (loss_before, _) = predict::loss_and_accuracy(&model.scores(g, &va).unwrap(), &va.y, 3);
    let cal = model.calibrate(g, &va).unwrap();
    let t = cal.temperature;
    let (loss_after, acc_after) = predict::loss_and_accuracy(&model.scores(g, &va).unwrap(), &va.y, 3);
    assert!(t > 1.0 && loss_after < loss_before, "temperature {t}: validation loss {loss_before:.3} -> {loss_after:.3}");
    // What calibrate reports is what the rescaled model gives.
    assert!((cal.val_loss - loss_after).abs() < 1e-4 && cal.val_accuracy == acc_after, "{cal:?} vs {loss_after}, {acc_after}");
    let (_, acc) = predict::loss_and_accuracy(&model.scores(g, &te).unwrap(), &te.y, 3);
    assert!(acc >= 0.9, "test accuracy {acc:.3} (chance is 0.33)");
    // The ridge system holds: (K + lambda I) A = Y at the training rows, i.e. the training
    // scores before calibration are Y - lambda A; checked through the scores' sign pattern.
    let (raw, _) = KernelRidge::fit(g, &tr, 3, &[1.0; 3], 1.0 / 32.0, 0.01).unwrap();
    let s = raw.scores(g, &tr).unwrap();
    let agree = s.chunks(3).zip(&tr.y).filter(|(row, y)| row.iter().enumerate().all(|(k, v)| (*v > 0.0) == (k == **y as usize))).count();
    assert!(agree as f64 / tr.len() as f64 > 0.99, "training scores have the wrong signs for {} of {}", tr.len() - agree, tr.len());
    // Bad settings are refused.
    assert!(KernelRidge::fit(g, &tr, 3, &[1.0; 3], 1.0, 0.0).is_err() && KernelRidge::fit(g, &tr, 2, &[1.0; 2], 1.0, 0.1).is_err());
}

#[test]
fn knn_classifies_separable_clusters_and_matches_a_brute_force_vote() {
    use ser::models::knn::{Knn, KnnWeights, vote};
    let g = &gpu().gpu;
    let mut rng = Rng::new(common::fresh_seed("knn"));
    // Three clusters in 7 dimensions, 40 points each; queries drawn from the same clusters.
    let make = |rng: &mut Rng, n: usize| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n {
            let c = (i % 3) as u32;
            for j in 0..7 {
                x.push(if j == c as usize { 4.0 } else { 0.0 } + rng.uniform(-1.0, 1.0));
            }
            y.push(c);
        }
        ser::dataset::Dataset { x, y, width: 7, lengths: Vec::new() }
    };
    let (train, test) = (make(&mut rng, 120), make(&mut rng, 31));
    for weights in [KnnWeights::Uniform, KnnWeights::Distance] {
        let model = Knn::fit(g, &train, 3, 5, weights).unwrap();
        let p = model.predict_proba(g, &test).unwrap();
        let accuracy = ser::report::accuracy_of(&p, &test.y);
        assert!(accuracy > 0.95, "{weights:?}: accuracy {accuracy}");
        // The probabilities a CPU brute-force search and the same vote give (neighbour sets can
        // differ only between rows at the same distance within f32 rounding: none here).
        let want = ser::ops::knn::reference(&test.x, &train.x, 7, 5);
        for (q, w) in want.iter().enumerate() {
            let idx: Vec<u32> = w.iter().map(|(j, _)| *j).collect();
            let d2: Vec<f32> = w.iter().map(|(_, d)| *d as f32).collect();
            let expect = vote(&idx, &d2, &train.y, 3, weights);
            for (a, b) in p[q].iter().zip(&expect) {
                assert!((a - b).abs() < 1e-4, "{weights:?} query {q}: {:?} vs {expect:?}", p[q]);
            }
        }
    }
    assert!(Knn::fit(g, &train, 3, 0, KnnWeights::Uniform).is_err() && Knn::fit(g, &train, 3, 17, KnnWeights::Uniform).is_err());
}

/// Gaussian naive Bayes, the contributing guide's worked example family: it learns separable
/// clusters, its GPU probabilities (one GEMM over [x², x]) are the float64 reference's, and a
/// save and load gives the same probabilities bit for bit.
#[test]
fn naive_bayes_learns_clusters_and_its_gpu_probabilities_are_the_float64_reference() {
    use ser::models::naive_bayes::{NaiveBayes, predict_proba_reference};
    let g = &gpu().gpu;
    let mut rng = Rng::new(common::fresh_seed("naive bayes"));
    // Three classes in the 118 values of `--input stats` (what a model file's contract says):
    // class c is centred on feature c, with its own spread.
    const W: usize = 118;
    let make = |rng: &mut Rng, n: usize| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n {
            let c = (i % 3) as u32;
            for j in 0..W {
                x.push(if j == c as usize { 3.0 } else { 0.0 } + rng.uniform(-1.0, 1.0) * (1.0 + c as f32 * 0.5));
            }
            y.push(c);
        }
        ser::dataset::Dataset { x, y, width: W, lengths: Vec::new() }
    };
    let (train, test) = (make(&mut rng, 123), make(&mut rng, 37));
    let model = NaiveBayes::fit(g, &train, 3).unwrap();
    let p = model.predict_proba(g, &test).unwrap();
    let accuracy = ser::report::accuracy_of(&p, &test.y);
    assert!(accuracy > 0.9, "accuracy {accuracy}");
    let (means, vars, priors) = model.parts();
    // The class means and shares are the data's.
    let class0: Vec<&[f32]> = train.x.chunks(W).zip(&train.y).filter(|(_, y)| **y == 0).map(|(r, _)| r).collect();
    let mean00 = class0.iter().map(|r| r[0] as f64).sum::<f64>() / class0.len() as f64;
    assert!((means[0] as f64 - mean00).abs() < 1e-5 && (priors[0] - 41.0 / 123.0).abs() < 1e-6, "{} {mean00} {}", means[0], priors[0]);
    let want = predict_proba_reference(means, vars, priors, W, &test.x);
    for (q, (got, want)) in p.iter().zip(&want).enumerate() {
        for (a, b) in got.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-4, "query {q}: {got:?} vs {want:?}");
        }
    }
    let dir = common::TempDir::new("gnb");
    let meta = ser::nn::checkpoint::ModelMeta {
        architecture: ser::models::input_only((W, 1)),
        data: ser::contract::DataContract {
            version: ser::contract::VERSION,
            classes: vec![ser::audio::Emotion::Neutral, ser::audio::Emotion::Happy, ser::audio::Emotion::Sad],
            features: Default::default(),
            input: ser::dataset::Input::Stats,
            scaler: ser::dataset::Scaler { mean: vec![0.0; W], std: vec![1.0; W] },
            speaker_norm: None,
            label_map: vec![],
            corpora: Default::default(),
        },
        training: Default::default(),
        temperatures: Vec::new(),
    };
    let path = dir.0.join("gnb.safetensors");
    ser::store::write_atomic(&path, &model.to_bytes(&meta).unwrap()).unwrap();
    let loaded = ser::infer::load_model(g, Some(&path)).unwrap();
    assert_eq!(loaded.classifier.family().kind, "gnb");
    assert_eq!(loaded.probabilities(g, &test).unwrap(), p);
    // A class without a clip has no mean: refused.
    let two_classes = ser::dataset::Dataset { y: train.y.iter().map(|&y| y.min(1)).collect(), ..train.clone() };
    let Err(e) = NaiveBayes::fit(g, &two_classes, 3) else { panic!("a class without clips fitted") };
    assert!(e.to_string().contains("class 2 has no training clip"), "{e}");
}

/// Two informative features of six (the class is which quadrant of (x0, x1): an XOR no single
/// threshold separates), four of continuous noise. The informative ones take 6 values each, so
/// each gets its own bin and a cut at 0 exists (quantile bins of a continuous feature cut where
/// the quantiles fall, not necessarily at a class boundary: docs/RESULTS.md).
fn quadrants(rng: &mut Rng, n: usize) -> Dataset {
    let mut d = Dataset { width: 6, ..Default::default() };
    for _ in 0..n {
        let mut row: Vec<f32> = (0..6).map(|_| rng.uniform(-1.0, 1.0)).collect();
        for v in &mut row[..2] {
            let k = (rng.next_u64() % 6) as i32 - 3;
            *v = 0.3 * (if k >= 0 { k + 1 } else { k }) as f32;
        }
        d.y.push(((row[0] > 0.0) as u32) ^ (((row[1] > 0.0) as u32) + 2 * (row[0] > 0.0 && row[1] > 0.0) as u32));
        d.x.extend(row);
    }
    d
}

#[test]
fn forest_separates_an_xor_exactly_and_the_gpu_evaluates_it_as_the_reference() {
    use ser::models::forest::{Forest, ForestConfig};
    let g = &gpu().gpu;
    let seed = common::fresh_seed("forest");
    let mut rng = Rng::new(seed);
    let (train, test) = (quadrants(&mut rng, 400), quadrants(&mut rng, 200));
    // Every feature a candidate at each node: sqrt(6) = 2 would often miss both informative
    // ones near the top, which a forest of 25 trees averages out but a single test need not.
    let cfg = ForestConfig { trees: 25, max_features: Some(6), bins: 16, seed, ..Default::default() };
    let (forest, report) = Forest::fit(g, &train, 3, &[1.0, 1.0, 1.0], &cfg).unwrap();
    assert!(report.depth >= 2, "{report:?}");
    let accuracy = |d: &Dataset| {
        let p = forest.predict_proba(g, d).unwrap();
        ser::report::accuracy_of(&p, &d.y)
    };
    assert_eq!(accuracy(&train), 1.0, "seed {seed}");
    assert!(accuracy(&test) > 0.97, "seed {seed}: test accuracy {}", accuracy(&test));
    // The GPU's probabilities are the float64 walk's.
    let got = forest.predict_proba(g, &test).unwrap();
    for (q, (a, b)) in got.iter().zip(forest.predict_proba_reference(&test)).enumerate() {
        for (x, y) in a.iter().zip(&b) {
            assert!((*x as f64 - y).abs() < 1e-5, "seed {seed} query {q}: {a:?} vs {b:?}");
        }
    }
    // The same seed grows the same forest.
    let (again, _) = Forest::fit(g, &train, 3, &[1.0, 1.0, 1.0], &cfg).unwrap();
    assert_eq!(again.predict_proba(g, &test).unwrap(), got);
    // The depth limit is obeyed: stumps, a root and two leaves each.
    let (_, r) = Forest::fit(g, &train, 3, &[1.0, 1.0, 1.0], &ForestConfig { max_depth: Some(1), ..cfg }).unwrap();
    assert!(r.depth == 1 && r.nodes == 3 * cfg.trees && r.leaves == 2 * cfg.trees, "{r:?}");
}

#[test]
fn forest_bins_cut_between_distinct_values() {
    use ser::models::forest::{bin_of, edges};
    // Few distinct values: one bin each, cuts halfway between them.
    let mut v = vec![3.0, 1.0, 2.0, 1.0, 3.0];
    assert_eq!(edges(&mut v, 8), vec![1.5, 2.5]);
    // Many: at most bins - 1 cuts, strictly increasing, every bin used.
    let mut v: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
    let e = edges(&mut v.clone(), 16);
    assert!(e.len() == 15 && e.windows(2).all(|w| w[0] < w[1]), "{e:?}");
    let mut used = vec![0; 16];
    for x in &v {
        used[bin_of(*x, &e) as usize] += 1;
    }
    assert!(used.iter().all(|&c| c > 50), "{used:?}");
    // x <= edge[b] exactly when bin <= b.
    for x in v.drain(..) {
        for (b, &cut) in e.iter().enumerate() {
            assert_eq!(x <= cut, bin_of(x, &e) as usize <= b);
        }
    }
    // A constant feature has no cut.
    assert!(edges(&mut [0.5; 9], 4).is_empty());
}

#[test]
fn svm_separates_clusters_and_its_gpu_decisions_match_a_float64_sum() {
    use ser::models::svm::{Svm, SvmConfig, pairs};
    let g = &gpu().gpu;
    let seed = common::fresh_seed("svm");
    let mut rng = Rng::new(seed);
    // Four classes: clusters in 5 dimensions with overlap, so some alphas sit at their bounds.
    let make = |rng: &mut Rng, n: usize| {
        let mut d = Dataset { width: 5, ..Default::default() };
        for i in 0..n {
            let c = (i % 4) as u32;
            for j in 0..5 {
                d.x.push(if j == c as usize { 2.0 } else { 0.0 } + rng.uniform(-1.2, 1.2));
            }
            d.y.push(c);
        }
        d
    };
    let (train, test) = (make(&mut rng, 161), make(&mut rng, 83));
    let cfg = SvmConfig { c: 3.0, gamma: Some(0.3), seed, ..Default::default() };
    let (svm, report) = Svm::fit(g, &train, 4, &[1.0, 2.0, 1.0, 0.5], &cfg).unwrap();
    assert!(report.support_vectors > 0 && report.support_vectors <= train.len(), "{report:?}");
    let p = svm.predict_proba(g, &test).unwrap();
    let acc = ser::report::accuracy_of(&p, &test.y);
    assert!(acc > 0.85, "seed {seed}: accuracy {acc}");
    for row in &p {
        let s: f32 = row.iter().sum();
        assert!((s - 1.0).abs() < 1e-4 && row.iter().all(|v| *v >= 0.0), "{row:?}");
    }
    // Decision values: the GPU's RBF rows and coefficient GEMM against a float64 sum.
    let got = svm.decisions(g, &test).unwrap();
    let want = svm.decisions_reference(&test);
    assert_eq!(got.len(), test.len() * pairs(4).len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "seed {seed}: decision {i}: {a} vs {b}");
    }
}

/// The recurrent head of the small sequence models below: 8 units per direction, both directions.
fn small_head(pooling: TimePooling) -> RecurrentHead {
    RecurrentHead { units: 8, bidirectional: true, pooling }
}

/// The models that read their steps' lengths and reduce them before the dense layers, small:
/// for each pooling the LSTM, the CNN+LSTM and the refined CNN (mean, attention), and the
/// LSTM's last state of one and of two directions.
fn pooled_models(steps: usize, channels: usize) -> Vec<Architecture> {
    let mut models = Vec::new();
    for p in [TimePooling::Mean, TimePooling::Attention] {
        models.extend([Architecture::lstm((steps, channels), 3, small_head(p)), Architecture::cnn_lstm((steps, channels), 3, small_head(p)), Architecture::refined_cnn((steps, channels), 3, p)]);
    }
    let last = |bidirectional| RecurrentHead { bidirectional, ..small_head(TimePooling::Last) };
    models.extend([Architecture::lstm((steps, channels), 3, last(false)), Architecture::cnn_lstm((steps, channels), 3, last(true))]);
    models
}

/// Which of two tones came first: 2-channel sequences of 10-24 valid steps (zero-padded to
/// 24), a pulse on channel 0 and one on channel 1 at two random distinct steps, class 0 when
/// channel 0's comes first. The time means of both classes are the same in distribution: only
/// a model that reads the order can tell them apart.
fn tone_order(rng: &mut Rng, n: usize) -> Dataset {
    let steps = 24;
    let mut d = Dataset { width: steps * 2, ..Default::default() };
    for _ in 0..n {
        let len = 10 + (rng.next_u64() % 15) as usize;
        let a = (rng.next_u64() % len as u64) as usize;
        let mut b = (rng.next_u64() % (len as u64 - 1)) as usize;
        if b >= a {
            b += 1;
        }
        let mut x = vec![0f32; steps * 2];
        for t in 0..len {
            x[t * 2] = rng.uniform(-0.2, 0.2);
            x[t * 2 + 1] = rng.uniform(-0.2, 0.2);
        }
        x[a * 2] += 1.0;
        x[b * 2 + 1] += 1.0;
        d.x.extend(x);
        d.y.push((a > b) as u32);
        d.lengths.push(len as u32);
    }
    d
}

#[test]
fn an_lstm_learns_which_tone_came_first_which_time_averages_cannot() {
    let g = &gpu().gpu;
    let mut rng = Rng::new(common::fresh_seed("lstm-order"));
    let (tr, va) = (tone_order(&mut rng, 400), tone_order(&mut rng, 120));
    let cfg = TrainConfig { epochs: 30, batch_size: 32, seed: 3, patience: 30, ..Default::default() };
    let run = |arch: &Architecture, data: &dyn Fn(&Dataset) -> Dataset| {
        let mut model = Model::new(g, arch, 5).unwrap();
        model.adam.lr = 1e-2;
        let (t, v) = (data(&tr), data(&va));
        let log = train::fit(g, &mut model, &t, &v, &[1.0, 1.0], &cfg, |_| {}).unwrap();
        let logits = predict::predict(g, &model, &v, 64).unwrap();
        (predict::loss_and_accuracy(&logits, &v.y, 2).1, log, logits)
    };
    let head = |bidirectional, pooling| RecurrentHead { units: 16, bidirectional, pooling };
    let (acc, log, logits) = run(&Architecture::lstm((24, 2), 2, head(true, TimePooling::Mean)), &|d| d.clone());
    assert!(acc >= 0.95, "lstm validation accuracy {acc:.3} (chance 0.5); losses {:?}", log.iter().map(|e| e.loss).collect::<Vec<_>>());
    // With attention pooling too, and with one direction's last state (Keras's plain LSTM):
    // it must carry which tone came first from up to 23 steps before the clip's end.
    for (bidirectional, pooling) in [(true, TimePooling::Attention), (false, TimePooling::Last)] {
        let (acc, log, _) = run(&Architecture::lstm((24, 2), 2, head(bidirectional, pooling)), &|d| d.clone());
        assert!(acc >= 0.95, "lstm ({pooling:?}, bidirectional {bidirectional}): validation accuracy {acc:.3}; losses {:?}", log.iter().map(|e| e.loss).collect::<Vec<_>>());
    }
    // The same seed gives the same numbers, bit for bit.
    let (_, log2, logits2) = run(&Architecture::lstm((24, 2), 2, head(true, TimePooling::Mean)), &|d| d.clone());
    assert_eq!(logits, logits2);
    assert_eq!(log.iter().map(|e| e.loss).collect::<Vec<_>>(), log2.iter().map(|e| e.loss).collect::<Vec<_>>());
    // The time means (what the refined CNN reads as its input vector) leave it at chance.
    let means = |d: &Dataset| {
        let mut m = Dataset { width: 2, ..Default::default() };
        for (i, row) in d.x.chunks(d.width).enumerate() {
            let len = d.lengths[i] as f32;
            m.x.extend([(0..24).map(|t| row[t * 2]).sum::<f32>() / len, (0..24).map(|t| row[t * 2 + 1]).sum::<f32>() / len]);
            m.y.push(d.y[i]);
        }
        m
    };
    let mlp = Architecture::mlp((2, 1), 2, &[32, 32], 0.0, false);
    let (acc_means, ..) = run(&mlp, &means);
    assert!(acc_means < 0.7, "an MLP on the time means reached {acc_means:.3}");
}

/// Batches of sequences are cut after their longest clip (to a multiple of 16 steps) where the
/// model reduces time before any flat layer: the logits are those of the whole padded batch.
/// A model whose weights depend on the length (a Flatten over frames) is refused a short one.
#[test]
fn sequence_batches_cut_after_their_longest_clip_give_the_padded_batchs_logits() {
    let g = &gpu().gpu;
    let mut rng = Rng::new(common::fresh_seed("cut-batches"));
    let (steps, channels, n) = (40usize, 3usize, 21usize);
    let mut d = Dataset { width: steps * channels, ..Default::default() };
    for i in 0..n {
        let len = 1 + (rng.next_u64() % 16) as usize;
        d.x.extend((0..steps * channels).map(|e| if e / channels < len { rng.uniform(-1.0, 1.0) } else { 0.0 }));
        d.y.push((i % 3) as u32);
        d.lengths.push(len as u32);
    }
    for arch in pooled_models(steps, channels) {
        assert!(arch.takes_shorter_batches());
        let model = Model::new(g, &arch, 4).unwrap();
        // nn::predict cuts each batch to 16 steps; the whole batch padded to 40 goes in here.
        let cut = predict::predict(g, &model, &d, 8).unwrap();
        let mut whole = Vec::new();
        for (c, chunk) in d.lengths.chunks(8).enumerate() {
            let x = g.upload_f32(&d.x[c * 8 * d.width..(c * 8 + chunk.len()) * d.width], &[chunk.len(), d.width]).unwrap();
            let mut step = g.step("test");
            let logits = model.logits(&mut step, &x, Some(chunk), chunk.len()).unwrap();
            step.submit().unwrap();
            whole.extend(g.read_f32(&logits).unwrap());
        }
        // And a batch of 16 steps handed to the model directly (every clip is at most 13 long);
        // 13 steps would drop the cnn-lstm's last pooling windows: refused by name.
        let short = |s: usize| -> Vec<f32> { d.x.chunks(d.width).flat_map(|row| row[..s * channels].to_vec()).collect() };
        if arch.step_quantum() == 4 {
            let x = g.upload_f32(&short(13), &[n, 13 * channels]).unwrap();
            let err = model.logits(&mut g.step("test"), &x, Some(&d.lengths), n).expect_err("13 steps through two poolings").to_string();
            assert!(err.contains("a multiple of 4 steps"), "{err}");
        }
        let x = g.upload_f32(&short(16), &[n, 16 * channels]).unwrap();
        let mut step = g.step("test");
        let logits = model.logits(&mut step, &x, Some(&d.lengths), n).unwrap();
        step.submit().unwrap();
        let direct = g.read_f32(&logits).unwrap();
        assert_eq!(cut.len(), whole.len());
        for ((a, b), c) in cut.iter().zip(&whole).zip(&direct) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()) && (c - b).abs() <= 1e-5 * (1.0 + b.abs()), "{:?}: cut {a}, 16 steps {c} vs whole {b}", arch.layers[0]);
        }
    }
    let flat = Architecture { input: (steps, channels), layers: vec![Layer::Flatten, Layer::Dense { units: 3, relu: false }] };
    assert!(!flat.takes_shorter_batches());
    let model = Model::new(g, &flat, 4).unwrap();
    let x = g.upload_f32(&vec![0.0; 2 * 16 * channels], &[2, 16 * channels]).unwrap();
    let mut step = g.step("test");
    let err = model.logits(&mut step, &x, None, 2).expect_err("a 16-step batch for a 40-step flat model").to_string();
    assert!(err.contains("is not [2, 40, 3]"), "{err}");
}

/// Training is as blind to padding as inference: the same batch padded to the model's 40 steps
/// and cut after its longest clip (16 steps) gives the same losses and, after two Adam steps
/// with dropout and augmentation on, the same weights, for every model that pools its steps.
/// The layers such models were saved with before (BatchNorm then MaskPadding: batch statistics
/// over the padding too) do not, which shows the comparison can fail.
#[test]
fn training_steps_on_a_batch_padded_two_ways_agree() {
    let g = &gpu().gpu;
    let mut rng = Rng::new(common::fresh_seed("padded-training"));
    let (steps, cut, channels, batch) = (40usize, 16usize, 3usize, 6usize);
    let lengths: Vec<u32> = (0..batch).map(|i| if i == 0 { cut as u32 } else { 1 + (rng.next_u64() % cut as u64) as u32 }).collect();
    let x: Vec<f32> = (0..batch * steps * channels).map(|e| if (e / channels) % steps < lengths[e / (steps * channels)] as usize { rng.uniform(-1.0, 1.0) } else { 0.0 }).collect();
    let x_cut: Vec<f32> = x.chunks(steps * channels).flat_map(|row| row[..cut * channels].to_vec()).collect();
    let labels = g.upload(&(0..batch as u32).map(|i| i % 3).collect::<Vec<u32>>(), &[batch], ser::gpu::DType::U32).unwrap();
    let class_weight = g.upload_f32(&[1.0, 1.5, 0.7], &[3]).unwrap();
    // Losses of both steps and how far they moved every weight, for the batch of `width` steps.
    let train_two_steps = |arch: &Architecture, augment: bool, input: &[f32], width: usize| -> (Vec<f32>, Vec<f32>) {
        let mut model = Model::new(g, arch, 11).unwrap();
        let initial: Vec<f32> = model.params().iter().flat_map(|p| g.read_f32(&p.value).unwrap()).collect();
        if augment {
            model.augment = ser::ops::dropout::Augment { noise: 0.2, time_mask: 3, feature_mask: 1 };
        }
        let x = g.upload_f32(input, &[batch, width * channels]).unwrap();
        let mut losses = Vec::new();
        for seed in [5, 6] {
            let mut step = g.step("test.padded-training");
            let l = model.train_step(&mut step, &x, Some(&lengths), &labels, &class_weight, seed, Precision::F32).unwrap();
            step.submit().unwrap();
            losses.extend(g.read_f32(&l).unwrap());
        }
        let weights: Vec<f32> = model.params().iter().flat_map(|p| g.read_f32(&p.value).unwrap()).collect();
        (losses, weights.iter().zip(&initial).map(|(w, w0)| w - w0).collect())
    };
    let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p - q).abs() / (1.0 + q.abs())).fold(0f32, f32::max);
    // Adam moves each weight by about the learning rate per step whatever its gradient's size,
    // so a gradient that is a sum cancelling to near zero (a convolution's weight under batch
    // norm) moves by an amount its summation order decides. The updates must agree as a whole
    // (their difference small beside their norm) and no weight may move differently by more than
    // a tenth of one step.
    let update_gap = |a: &[f32], b: &[f32]| {
        let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| (x as f64).powi(2)).sum::<f64>().sqrt();
        let relative = norm(&mut a.iter().zip(b).map(|(p, q)| p - q)) / norm(&mut b.iter().copied()).max(1e-30);
        let largest = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        (relative, largest)
    };
    for (k, arch) in pooled_models(steps, channels).into_iter().enumerate() {
        let augment = k % 2 == 0;
        let (loss_whole, w_whole) = train_two_steps(&arch, augment, &x, steps);
        let (loss_cut, w_cut) = train_two_steps(&arch, augment, &x_cut, cut);
        let (dl, (relative, largest)) = (worst(&loss_cut, &loss_whole), update_gap(&w_cut, &w_whole));
        assert!(dl <= 1e-5 && relative <= 1e-4 && largest <= 1e-4, "{:?} (augment {augment}): losses differ by {dl:e}, the updates by {relative:e} of their norm and at most {largest:e}", arch.layers[..2].to_vec());
        // The layers of earlier checkpoints: batch statistics see the padding.
        if arch.layers.contains(&Layer::SequenceBatchNorm) {
            let old = Architecture {
                input: arch.input,
                layers: arch.layers.iter().flat_map(|l| if *l == Layer::SequenceBatchNorm { vec![Layer::BatchNorm, Layer::MaskPadding] } else { vec![l.clone()] }).collect(),
            };
            let (loss_whole, _) = train_two_steps(&old, augment, &x, steps);
            let (loss_cut, _) = train_two_steps(&old, augment, &x_cut, cut);
            assert!(worst(&loss_cut, &loss_whole) > 1e-4, "{:?}: batch statistics over the padding made no difference", old.layers[..3].to_vec());
        }
    }
}

/// The attention layer's whole backward inside a model (the kernels' score gradient, then the
/// GEMM that sums it into dw): Adam's first step moves each weight by lr against the sign of its
/// gradient, which must be the sign of the loss's central difference.
#[test]
fn attention_poolings_first_adam_step_follows_the_loss_gradient() {
    let g = &gpu().gpu;
    let mut rng = Rng::new(common::fresh_seed("attention-step"));
    let (steps, ch, n, classes) = (12usize, 5usize, 9usize, 3usize);
    let arch = Architecture { input: (steps, ch), layers: vec![Layer::AttentionPool, Layer::Dense { units: classes, relu: false }] };
    let lengths: Vec<u32> = vec![12, 1, 7, 3, 12, 5, 9, 2, 11];
    let x: Vec<f32> = (0..n * steps * ch).map(|e| if ((e / ch) % steps) < lengths[e / ch / steps] as usize { rng.uniform(-2.0, 2.0) } else { 0.0 }).collect();
    let y: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
    let mut model = Model::new(g, &arch, 8).unwrap();
    let tx = g.upload_f32(&x, &[n, steps * ch]).unwrap();
    let vector = |m: &Model| m.params().into_iter().find(|p| p.name.ends_with("attention.vector")).expect("the attention vector").value.clone();
    let w0 = g.read_f32(&vector(&model)).unwrap();
    let loss = |m: &Model, w: &[f32]| -> f64 {
        g.write(&vector(m), w).unwrap();
        let mut step = g.step("test");
        let logits = m.logits(&mut step, &tx, Some(&lengths), n).unwrap();
        step.submit().unwrap();
        predict::loss_and_accuracy(&g.read_f32(&logits).unwrap(), &y, classes).0
    };
    let h = 1e-2f32;
    let fd: Vec<f64> = (0..ch)
        .map(|i| {
            let (mut up, mut down) = (w0.clone(), w0.clone());
            up[i] += h;
            down[i] -= h;
            (loss(&model, &up) - loss(&model, &down)) / (2.0 * h as f64)
        })
        .collect();
    g.write(&vector(&model), &w0).unwrap();
    let labels = g.upload(&y, &[n], ser::gpu::DType::U32).unwrap();
    let weights = g.upload_f32(&vec![1.0; classes], &[classes]).unwrap();
    let mut step = g.step("test");
    model.train_step(&mut step, &tx, Some(&lengths), &labels, &weights, 1, Precision::F32).unwrap();
    step.submit().unwrap();
    let w1 = g.read_f32(&vector(&model)).unwrap();
    let mut checked = 0;
    for i in 0..ch {
        if fd[i].abs() > 1e-3 {
            checked += 1;
            assert_eq!((w0[i] - w1[i]).signum(), fd[i].signum() as f32, "weight {i}: moved {} with a loss slope of {}", w1[i] - w0[i], fd[i]);
        }
    }
    assert!(checked >= 3, "slopes {fd:?}");
}

/// Temperature scaling: on scores that are surer than they are right, the fitted factor is
/// below 1 and lowers the cross-entropy; on scores that are right but timid it is above 1. Its
/// loss is the lowest of the searched grid's neighbours, no prediction changes, and too few
/// clips leave it at 1, marked uncalibrated.
#[test]
fn temperature_scaling_fits_the_factor_that_calibrates_the_scores() {
    let mut rng = common::Rng::new(common::fresh_seed("temperature_scaling"));
    let (n, k) = (300, 4);
    let labels: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
    // Right 60% of the time, always with a margin of 8: overconfident.
    let sure: Vec<f32> = (0..n)
        .flat_map(|i| {
            let winner = if rng.uniform(0.0, 1.0) < 0.6 { labels[i] as usize } else { (labels[i] as usize + 1) % k };
            (0..k).map(move |c| if c == winner { 8.0 } else { 0.0 })
        })
        .collect();
    // Right 95% of the time with a margin of 0.2: timid.
    let timid: Vec<f32> = (0..n)
        .flat_map(|i| {
            let winner = if rng.uniform(0.0, 1.0) < 0.95 { labels[i] as usize } else { (labels[i] as usize + 1) % k };
            (0..k).map(move |c| if c == winner { 0.2 } else { 0.0 })
        })
        .collect();
    for (scores, below_one) in [(&sure, true), (&timid, false)] {
        let c = predict::fit_temperature(scores, &labels, k);
        assert!(c.calibrated);
        assert_eq!(c.temperature < 1.0, below_one, "{c:?}");
        let loss_at = |t: f32| predict::loss_and_accuracy(&scores.iter().map(|v| v * t).collect::<Vec<_>>(), &labels, k).0;
        let step = 10f32.powf(3.0 / 60.0);
        assert!(c.val_loss < loss_at(1.0) && c.val_loss <= loss_at(c.temperature * step) && c.val_loss <= loss_at(c.temperature / step), "{c:?}");
        // A positive factor keeps every argmax.
        assert_eq!(c.val_accuracy, predict::loss_and_accuracy(scores, &labels, k).1);
    }
    let few = predict::fit_temperature(&sure[..4 * k], &labels[..4], k);
    assert!(!few.calibrated && few.temperature == 1.0, "{few:?}");
}

/// With tuning on, training chooses every kernel before its first epoch: preparing the model
/// tunes every bucket that training and validation then run (fit tunes nothing new), and
/// preparing changes nothing in the model (the same run with and without it gives the same
/// epochs). Its own device: the kernel table belongs to the device.
#[test]
fn training_tunes_its_kernels_before_the_first_epoch() {
    use ser::ops::autotune::{self, AutotuneMode};
    use ser::ops::gemm::table;
    let _one_at_a_time = gpu();
    let g = &common::device().unwrap();
    autotune::configure(g, AutotuneMode::Fast, None, None);
    let mut rng = Rng::new(5);
    let (tr, va) = (waves(&mut rng, 70), waves(&mut rng, 30));
    let cfg = TrainConfig { epochs: 2, batch_size: 16, seed: 3, precision: Precision::Bf16, ..Default::default() };
    let buckets = || table::table(g).lock().choices.keys().cloned().collect::<Vec<_>>();
    assert!(buckets().is_empty());
    let mut prepared = Model::new(g, &small_cnn(), 9).unwrap();
    prepared.prepare_kernels(g, &[16, 70 % 16], &[30], Precision::Bf16).unwrap();
    let tuned = buckets();
    assert!(tuned.iter().any(|b| b.starts_with("bf16 tn")), "no weight-gradient multiply was prepared: {tuned:?}");
    assert!(tuned.iter().any(|b| b.starts_with("f32")), "no inference multiply was prepared: {tuned:?}");
    assert_eq!(prepared.step, 0, "preparing took an Adam step");
    let log = train::fit(g, &mut prepared, &tr, &va, &[1.0; 3], &cfg, |_| {}).unwrap();
    assert_eq!(buckets(), tuned, "training tuned a bucket that preparing missed");
    let used: Vec<String> = autotune::used(g).into_keys().collect();
    assert!(used.iter().all(|b| tuned.contains(b)), "ran {used:?}, prepared {tuned:?}");
    let mut plain = Model::new(g, &small_cnn(), 9).unwrap();
    let plain_log = train::fit(g, &mut plain, &tr, &va, &[1.0; 3], &cfg, |_| {}).unwrap();
    let numbers = |l: &[train::Epoch]| l.iter().map(|e| (e.loss, e.val_loss)).collect::<Vec<_>>();
    assert_eq!(numbers(&log), numbers(&plain_log), "preparing changed the model");
}
