//! Dropout's mask. The other training kernels (conv, batch norm, pooling, loss, Adam) are
//! checked against float64 references and finite differences by `ser selftest`'s checks, which
//! tests/selftest.rs runs.

mod common;

use common::gpu;
use ser::gpu::{Gpu, Tensor};
use ser::ops::dropout;

fn poisoned(g: &Gpu, shape: &[usize]) -> Tensor {
    g.upload_f32(&vec![f32::NAN; shape.iter().product()], shape).unwrap()
}

#[test]
fn dropout_is_seeded_unbiased_and_repeats_its_mask_for_the_gradient() {
    let g = &gpu().gpu;
    let n = 100_003;
    let ones = g.upload_f32(&vec![1.0; n], &[n]).unwrap();
    for (rate, seed) in [(0.3f32, 7u64), (0.4, 0xdead_beef_1234), (0.0, 1)] {
        let (y1, y2, other) = (poisoned(g, &[n]), poisoned(g, &[n]), poisoned(g, &[n]));
        let mut step = g.step("test.dropout");
        dropout::apply(&mut step, rate, seed, None, &ones, &y1).unwrap();
        dropout::apply(&mut step, rate, seed, None, &ones, &y2).unwrap();
        dropout::apply(&mut step, rate, seed + 1, None, &ones, &other).unwrap();
        step.submit().unwrap();
        let (a, b, c) = (g.read_f32(&y1).unwrap(), g.read_f32(&y2).unwrap(), g.read_f32(&other).unwrap());
        assert_eq!(a, b, "same seed, same mask");
        let scale = 1.0 / (1.0 - rate);
        for (i, v) in a.iter().enumerate() {
            let keep = dropout::reference_keep(rate, seed, i as u32);
            assert_eq!(*v, if keep { scale } else { 0.0 }, "element {i}");
        }
        let kept = a.iter().filter(|v| **v != 0.0).count() as f64 / n as f64;
        // Binomial standard deviation at n = 1e5 is ~0.0015; allow 5 of them.
        assert!((kept - (1.0 - rate as f64)).abs() < 0.008, "rate {rate}: kept {kept}");
        // The expectation is preserved: mean of y is 1.
        let mean = a.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.012, "mean {mean}");
        if rate > 0.0 {
            assert_ne!(a, c, "another seed, another mask");
        }
    }
}

#[test]
fn dropout_over_a_cut_batch_draws_each_element_as_the_full_length_batch_does() {
    let g = &gpu().gpu;
    let mut rng = ser::rng::SplitMix64::new(common::fresh_seed("dropout-cut"));
    // 5 examples of 7 steps x 3 channels, cut from a model input of 12 steps.
    let (batch, steps, full, channels) = (5, 7, 12, 3);
    let (rate, seed) = (0.5f32, rng.next_u64());
    let x = rng.vec(batch * full * channels, 0.5, 1.5);
    let cut: Vec<f32> = (0..batch).flat_map(|b| x[b * full * channels..(b * full + steps) * channels].to_vec()).collect();
    let (tx, tc) = (g.upload_f32(&x, &[x.len()]).unwrap(), g.upload_f32(&cut, &[cut.len()]).unwrap());
    let (y_full, y_cut) = (poisoned(g, &[x.len()]), poisoned(g, &[cut.len()]));
    let mut step = g.step("test.dropout.cut");
    dropout::apply(&mut step, rate, seed, None, &tx, &y_full).unwrap();
    dropout::apply(&mut step, rate, seed, Some((steps * channels, full * channels)), &tc, &y_cut).unwrap();
    step.submit().unwrap();
    let (a, b) = (g.read_f32(&y_full).unwrap(), g.read_f32(&y_cut).unwrap());
    let want: Vec<f32> = (0..batch).flat_map(|e| a[e * full * channels..(e * full + steps) * channels].to_vec()).collect();
    assert_eq!(b, want, "a cut batch's elements must be dropped as at full length");
    assert!(b.contains(&0.0) && b.iter().any(|&v| v != 0.0));
    // Rows that do not divide the tensor, or longer than at full length, are refused.
    let mut step = g.step("test.dropout.bad");
    assert!(dropout::apply(&mut step, rate, seed, Some((4, 8)), &tc, &y_cut).is_err());
    assert!(dropout::apply(&mut step, rate, seed, Some((steps * channels, channels)), &tc, &y_cut).is_err());
}


#[test]
fn architectures_too_large_to_hold_are_refused_before_allocating() {
    use ser::nn::{Architecture, Layer};
    // A checkpoint's architecture is data: [2^31, 1] inputs once made Model::new ask for 140 TB.
    let huge_input = Architecture { input: (1 << 31, 1), layers: vec![Layer::Flatten, Layer::Dense { units: 7, relu: false }] };
    let e = huge_input.shapes().unwrap_err().to_string();
    assert!(e.contains("the input") && e.contains("over the"), "{e}");
    let huge_weight = Architecture { input: (1, 59), layers: vec![Layer::Flatten, Layer::Dense { units: 1 << 24, relu: true }, Layer::Dense { units: 7, relu: false }] };
    let e = huge_weight.shapes().unwrap_err().to_string();
    assert!(e.contains("layer 1") && e.contains("weights"), "{e}");
    let overflow = Architecture { input: (usize::MAX, 2), layers: vec![] };
    assert!(overflow.shapes().is_err());
    let empty = Architecture { input: (0, 59), layers: vec![Layer::Dense { units: 7, relu: false }] };
    assert!(empty.shapes().unwrap_err().to_string().contains("empty"));
    let g = &gpu().gpu;
    assert!(ser::nn::Model::new(g, &huge_input, 0).is_err());
    // The refined CNN on RAVDESS-sized input is far inside the bound.
    assert!(Architecture::refined_cnn((59, 1), 7, ser::nn::TimePooling::Flatten).shapes().is_ok());
}

#[test]
fn training_settings_no_run_can_use_are_refused() {
    use ser::train::TrainConfig;
    assert!(TrainConfig::default().check().is_ok());
    for bad in [TrainConfig { batch_size: 0, ..Default::default() }, TrainConfig { epochs: 0, ..Default::default() }, TrainConfig { first_epoch: 5, epochs: 4, ..Default::default() }, TrainConfig { lr_factor: 0.0, ..Default::default() }] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
}
