//! The two recurrent kernels agree on clip-length sequences: 399 steps of 64 units, past
//! llvmpipe's 65,535 loop iterations per invocation (which silently cut both kernels short
//! before the walk was split over dispatches), every valid step written.

mod common;
use ser::ops::lstm::*;

#[test]
fn both_recurrent_kernels_walk_whole_clip_length_sequences_alike() {
    let g = &common::gpu().gpu;
    let (batch, steps, input, units) = (32usize, 399usize, 59usize, 64usize);
    let mut rng = ser::rng::SplitMix64::new(1);
    let x = rng.vec(batch * steps * input, -1.0, 1.0);
    let wx = rng.vec(input * 4 * units, -0.2, 0.2);
    let wh = rng.vec(units * 4 * units, -0.2, 0.2);
    let b = rng.vec(4 * units, -0.2, 0.2);
    let lengths: Vec<u32> = (0..batch).map(|i| (150 + i * 8) as u32).collect(); // 150 to 398
    let mut outs = Vec::new();
    for kernel in LstmKernel::ALL {
        let tx = g.upload_f32(&x, &[batch * steps, input]).unwrap();
        let (twx, twh, tb) = (g.upload_f32(&wx, &[input, 4 * units]).unwrap(), g.upload_f32(&wh, &[units, 4 * units]).unwrap(), g.upload_f32(&b, &[4 * units]).unwrap());
        let lt = lengths_tensor(g, &lengths).unwrap();
        let hs = g.empty(&[batch * steps, units], ser::gpu::DType::F32).unwrap();
        let hl = g.empty(&[batch, units], ser::gpu::DType::F32).unwrap();
        let mut step = g.step("dbg");
        step.zero(&hs); step.zero(&hl);
        let s = LstmShape { batch, steps, input, units, reverse: false, out_stride: units, out_col: 0, kernel, steps_per_dispatch: None, precision: Default::default() };
        let _sv = forward(&mut step, &s, &tx, &LstmWeights { wx: &twx, wh: &twh, b: &tb }, &lt, &hs, &hl).unwrap();
        step.submit().unwrap();
        outs.push(g.read_f32(&hs).unwrap());
    }
    for (kernel, out) in LstmKernel::ALL.iter().zip(&outs) {
        for bi in 0..batch {
            let rows = (0..steps).filter(|t| out[(bi * steps + t) * units..(bi * steps + t + 1) * units].iter().any(|v| *v != 0.0)).count();
            assert_eq!(rows, lengths[bi] as usize, "{kernel:?}: sequence {bi} has {rows} steps written of {}", lengths[bi]);
        }
    }
    let worst = outs[0].iter().zip(&outs[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "the kernels differ by {worst}");
}

/// The weight gradients X^T dG and H^T dG over clip-length batches (32 x 399 rows), against a
/// float64 sum: on CPU adapters through dG packed once and shared by both products (checked to
/// be the path taken), elsewhere through the direct GEMMs.
#[test]
fn weight_gradients_over_tall_batches_match_a_float64_sum() {
    let g = &common::gpu().gpu;
    let (batch, steps, input, units) = (32usize, 399usize, 59usize, 64usize);
    let (rows, g4) = (batch * steps, 4 * units);
    let mut rng = ser::rng::SplitMix64::new(common::fresh_seed("lstm-weight-gradients"));
    let x = rng.vec(rows * input, -1.0, 1.0);
    let h = rng.vec(rows * units, -1.0, 1.0);
    let dg = rng.vec(rows * g4, -1.0, 1.0);
    let s = LstmShape { batch, steps, input, units, reverse: false, out_stride: units, out_col: 0, kernel: LstmKernel::Workgroup, steps_per_dispatch: None, precision: Default::default() };
    let (tx, th, tdg) = (g.upload_f32(&x, &[rows, input]).unwrap(), g.upload_f32(&h, &[rows, units]).unwrap(), g.upload_f32(&dg, &[rows, g4]).unwrap());
    let dwx = g.upload_f32(&vec![f32::NAN; input * g4], &[input, g4]).unwrap();
    let dwh = g.upload_f32(&vec![f32::NAN; units * g4], &[units, g4]).unwrap();
    let mut step = g.step("test");
    let shared = weight_gradients(&mut step, &s, &tx, &th, &tdg, &dwx, &dwh).unwrap();
    step.submit().unwrap();
    assert_eq!(shared, g.is_cpu(), "CPU adapters share one packing of dG");
    for (a, width, got) in [(&x, input, &dwx), (&h, units, &dwh)] {
        let mut want = vec![0f64; width * g4];
        for r in 0..rows {
            for i in 0..width {
                let av = a[r * width + i] as f64;
                for k in 0..g4 {
                    want[i * g4 + k] += av * dg[r * g4 + k] as f64;
                }
            }
        }
        common::assert_close("weight gradient", &g.read_f32(got).unwrap(), &want, 1e-3, 1e-4);
    }
}
