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
