//! Training kernels against float64 references, and their gradients against finite differences
//! of those references, on random inputs at awkward sizes.

mod common;

use common::{Rng, assert_close, fresh_seed, gpu};
use ser::gpu::{DType, Gpu, Tensor};
use ser::ops::gemm::{self, GemmOptions};
use ser::ops::{conv, dropout, loss, norm, optim, pool};

fn up(g: &Gpu, v: &[f64], shape: &[usize]) -> Tensor {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    g.upload_f32(&f, shape).unwrap()
}

fn poisoned(g: &Gpu, shape: &[usize]) -> Tensor {
    g.upload_f32(&vec![f32::NAN; shape.iter().product()], shape).unwrap()
}

fn rand64(rng: &mut Rng, n: usize) -> Vec<f64> {
    // Values representable in f32, so GPU and reference start from the same numbers.
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f64).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central finite difference of f at x along every coordinate.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-5;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let keep = x[i];
            x[i] = keep + h;
            let up = f(&x);
            x[i] = keep - h;
            let down = f(&x);
            x[i] = keep;
            (up - down) / (2.0 * h)
        })
        .collect()
}

#[test]
fn conv1d_forward_and_gradients_match_reference_and_finite_differences() {
    let mut rng = Rng::new(fresh_seed("conv1d"));
    let g = &gpu().gpu;
    for (batch, l_in, c_in, c_out, k, same) in [(2, 7, 3, 5, 5, true), (3, 11, 1, 4, 3, true), (1, 9, 4, 3, 4, false), (2, 5, 2, 7, 5, false), (1, 6, 3, 2, 2, true)] {
        let s = conv::ConvShape::new(batch, l_in, c_in, k, same).unwrap();
        let x = rand64(&mut rng, batch * l_in * c_in);
        let w = rand64(&mut rng, k * c_in * c_out);
        let bias = rand64(&mut rng, c_out);
        let r = rand64(&mut rng, batch * s.l_out * c_out);
        let (tx, tw, tb, tr) = (up(g, &x, &[batch, l_in, c_in]), up(g, &w, &[k * c_in, c_out]), up(g, &bias, &[c_out]), up(g, &r, &[batch * s.l_out, c_out]));
        let cols = poisoned(g, &[batch * s.l_out, s.width()]);
        let y = poisoned(g, &[batch * s.l_out, c_out]);
        let dcols = poisoned(g, &[batch * s.l_out, s.width()]);
        let dx = poisoned(g, &[batch, l_in, c_in]);
        let dw = poisoned(g, &[k * c_in, c_out]);
        let mut step = g.step("test.conv");
        conv::im2col(&mut step, &s, &tx, &cols).unwrap();
        gemm::gemm(&mut step, &cols, &tw, Some(&tb), &y, &GemmOptions::default()).unwrap();
        // Backward for L = sum(y * r): dW = cols^T r, dcols = r W^T, dx = col2im(dcols).
        gemm::gemm(&mut step, &cols, &tr, None, &dw, &GemmOptions { trans_a: true, ..Default::default() }).unwrap();
        gemm::gemm(&mut step, &tr, &tw, None, &dcols, &GemmOptions { trans_b: true, ..Default::default() }).unwrap();
        conv::col2im(&mut step, &s, &dcols, &dx).unwrap();
        step.submit().unwrap();
        let what = format!("conv b{batch} l{l_in} c{c_in}->{c_out} k{k} same={same}");
        assert_close(&format!("{what} forward"), &g.read_f32(&y).unwrap(), &conv::reference(&s, &x, &w, &bias, c_out), 1e-5, 1e-5);
        let loss_x = |xv: &[f64]| dot(&conv::reference(&s, xv, &w, &bias, c_out), &r);
        let loss_w = |wv: &[f64]| dot(&conv::reference(&s, &x, wv, &bias, c_out), &r);
        assert_close(&format!("{what} dx"), &g.read_f32(&dx).unwrap(), &numeric_grad(&x, loss_x), 1e-4, 1e-4);
        assert_close(&format!("{what} dw"), &g.read_f32(&dw).unwrap(), &numeric_grad(&w, loss_w), 1e-4, 1e-4);
    }
}

#[test]
fn column_sum_matches_reference() {
    let mut rng = Rng::new(fresh_seed("column_sum"));
    let g = &gpu().gpu;
    for (rows, cols) in [(1, 1), (7, 3), (130, 67)] {
        let x = rand64(&mut rng, rows * cols);
        let out = poisoned(g, &[cols]);
        let mut step = g.step("test.colsum");
        norm::column_sum(&mut step, &up(g, &x, &[rows, cols]), cols, &out).unwrap();
        step.submit().unwrap();
        let want: Vec<f64> = (0..cols).map(|j| (0..rows).map(|i| x[i * cols + j]).sum()).collect();
        assert_close("column_sum", &g.read_f32(&out).unwrap(), &want, 1e-5, 1e-5);
    }
}

#[test]
fn batch_norm_forward_backward_and_moving_averages() {
    let mut rng = Rng::new(fresh_seed("batchnorm"));
    let g = &gpu().gpu;
    let o = norm::BatchNorm::default();
    for (rows, cols) in [(2, 1), (13, 5), (67, 3)] {
        // An offset mean checks the two-pass variance.
        let x: Vec<f64> = rand64(&mut rng, rows * cols).iter().map(|v| 3.0 + v).collect();
        let gamma = rand64(&mut rng, cols);
        let beta = rand64(&mut rng, cols);
        let r = rand64(&mut rng, rows * cols);
        let moving0: Vec<f64> = (0..cols).flat_map(|_| [0.0, 1.0]).collect();
        let affine: Vec<f64> = (0..cols).flat_map(|j| [beta[j], gamma[j]]).collect();
        let ta = up(g, &affine, &[cols, 2]);
        let stats = poisoned(g, &[cols, 2]);
        let moving = up(g, &moving0, &[cols, 2]);
        let t = norm::BnTensors { affine: &ta, stats: &stats, moving: &moving };
        let tx = up(g, &x, &[rows, cols]);
        let (y, dx, gs) = (poisoned(g, &[rows, cols]), poisoned(g, &[rows, cols]), poisoned(g, &[cols, 2]));
        let mut step = g.step("test.bn");
        norm::forward_train(&mut step, &o, &t, &tx, &y).unwrap();
        norm::backward(&mut step, &t, &tx, &up(g, &r, &[rows, cols]), &gs, &dx).unwrap();
        step.submit().unwrap();
        let eps = o.eps as f64;
        let (want_y, mean, var) = norm::reference_forward(&x, cols, &gamma, &beta, eps);
        assert_close(&format!("bn forward {rows}x{cols}"), &g.read_f32(&y).unwrap(), &want_y, 1e-4, 1e-4);
        let loss_x = |xv: &[f64]| dot(&norm::reference_forward(xv, cols, &gamma, &beta, eps).0, &r);
        assert_close(&format!("bn dx {rows}x{cols}"), &g.read_f32(&dx).unwrap(), &numeric_grad(&x, loss_x), 2e-3, 2e-3);
        let loss_g = |gv: &[f64]| dot(&norm::reference_forward(&x, cols, gv, &beta, eps).0, &r);
        let loss_b = |bv: &[f64]| dot(&norm::reference_forward(&x, cols, &gamma, bv, eps).0, &r);
        let (dg, db) = (numeric_grad(&gamma, loss_g), numeric_grad(&beta, loss_b));
        let want_gs: Vec<f64> = (0..cols).flat_map(|j| [db[j], dg[j]]).collect();
        assert_close("bn (dbeta, dgamma)", &g.read_f32(&gs).unwrap(), &want_gs, 1e-3, 1e-3);
        let m = o.momentum as f64;
        let want_moving: Vec<f64> = (0..cols).flat_map(|j| [(1.0 - m) * mean[j], m + (1.0 - m) * var[j]]).collect();
        assert_close("bn moving averages", &g.read_f32(&moving).unwrap(), &want_moving, 1e-6, 1e-5);
        // Evaluation mode normalises with the moving statistics.
        let ye = poisoned(g, &[rows, cols]);
        let mut step = g.step("test.bn.eval");
        norm::forward_eval(&mut step, &o, &t, &tx, &ye).unwrap();
        step.submit().unwrap();
        let want_e: Vec<f64> = (0..rows * cols).map(|i| {
            let j = i % cols;
            gamma[j] * (x[i] - want_moving[2 * j]) / (want_moving[2 * j + 1] + eps).sqrt() + beta[j]
        }).collect();
        assert_close("bn eval", &g.read_f32(&ye).unwrap(), &want_e, 1e-4, 1e-4);
    }
}

#[test]
fn max_pool_forward_and_backward() {
    let mut rng = Rng::new(fresh_seed("maxpool"));
    let g = &gpu().gpu;
    for (batch, l_in, ch, size, stride) in [(2, 7, 3, 2, 2), (1, 9, 2, 3, 2), (3, 5, 1, 2, 1), (1, 4, 5, 4, 4)] {
        let s = pool::PoolShape::new(batch, l_in, ch, size, stride).unwrap();
        // Distinct values (no ties) so the finite differences see a smooth function.
        let mut x: Vec<f64> = (0..batch * l_in * ch).map(|i| i as f64 / 64.0).collect();
        for i in (1..x.len()).rev() {
            x.swap(i, rng.next_u64() as usize % (i + 1));
        }
        let r = rand64(&mut rng, batch * s.l_out * ch);
        let out = batch * s.l_out * ch;
        let (y, winner, dx) = (poisoned(g, &[out]), g.empty(&[out], DType::U32).unwrap(), poisoned(g, &[batch * l_in * ch]));
        let mut step = g.step("test.pool");
        pool::forward(&mut step, &s, &up(g, &x, &[x.len()]), &winner, &y).unwrap();
        pool::backward(&mut step, &s, &up(g, &r, &[out]), &winner, &dx).unwrap();
        step.submit().unwrap();
        let (want_y, want_w) = pool::reference(&s, &x);
        assert_close("maxpool forward", &g.read_f32(&y).unwrap(), &want_y, 0.0, 0.0);
        assert_eq!(g.read::<u32>(&winner).unwrap(), want_w.iter().map(|&w| w as u32).collect::<Vec<_>>());
        let loss = |xv: &[f64]| dot(&pool::reference(&s, xv).0, &r);
        assert_close(&format!("maxpool dx {s:?}"), &g.read_f32(&dx).unwrap(), &numeric_grad(&x, loss), 1e-6, 1e-5);
    }
}

#[test]
fn dropout_is_seeded_unbiased_and_repeats_its_mask_for_the_gradient() {
    let g = &gpu().gpu;
    let n = 100_003;
    let ones = g.upload_f32(&vec![1.0; n], &[n]).unwrap();
    for (rate, seed) in [(0.3f32, 7u64), (0.4, 0xdead_beef_1234), (0.0, 1)] {
        let (y1, y2, other) = (poisoned(g, &[n]), poisoned(g, &[n]), poisoned(g, &[n]));
        let mut step = g.step("test.dropout");
        dropout::apply(&mut step, rate, seed, &ones, &y1).unwrap();
        dropout::apply(&mut step, rate, seed, &ones, &y2).unwrap();
        dropout::apply(&mut step, rate, seed + 1, &ones, &other).unwrap();
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
fn softmax_cross_entropy_loss_and_gradient() {
    let mut rng = Rng::new(fresh_seed("softmax_ce"));
    let g = &gpu().gpu;
    for (batch, classes) in [(1, 2), (5, 7), (67, 8)] {
        // Large logits check the max subtraction.
        let z: Vec<f64> = rand64(&mut rng, batch * classes).iter().map(|v| 30.0 * v).collect();
        let labels: Vec<u32> = (0..batch).map(|_| (rng.next_u64() % classes as u64) as u32).collect();
        let w: Vec<f64> = (0..classes).map(|_| rng.uniform(0.5, 2.0) as f64).collect();
        let (loss_t, dz) = (poisoned(g, &[batch]), poisoned(g, &[batch, classes]));
        let mut step = g.step("test.ce");
        loss::softmax_cross_entropy(&mut step, &up(g, &z, &[batch, classes]), &g.upload(&labels, &[batch], DType::U32).unwrap(), &up(g, &w, &[classes]), &loss_t, &dz).unwrap();
        step.submit().unwrap();
        let (want_loss, want_grad) = loss::reference(&z, &labels, &w, classes);
        assert_close("ce loss", &g.read_f32(&loss_t).unwrap(), &want_loss, 1e-4, 1e-5);
        assert_close("ce grad", &g.read_f32(&dz).unwrap(), &want_grad, 1e-6, 1e-5);
        let mean_loss = |zv: &[f64]| loss::reference(zv, &labels, &w, classes).0.iter().sum::<f64>() / batch as f64;
        assert_close("ce grad vs finite differences", &g.read_f32(&dz).unwrap(), &numeric_grad(&z, mean_loss), 1e-5, 1e-4);
    }
}

#[test]
fn adam_steps_match_reference() {
    let mut rng = Rng::new(fresh_seed("adam"));
    let g = &gpu().gpu;
    let n = 1031;
    for o in [optim::Adam::default(), optim::Adam { lr: 0.01, weight_decay: 0.01, ..Default::default() }] {
        let mut w = rand64(&mut rng, n);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let (tw, tm, tv) = (up(g, &w, &[n]), up(g, &m, &[n]), up(g, &v, &[n]));
        for t in 1..=5 {
            let grad = rand64(&mut rng, n);
            let mut step = g.step("test.adam");
            optim::adam(&mut step, &o, t, &up(g, &grad, &[n]), &tw, &tm, &tv).unwrap();
            step.submit().unwrap();
            optim::reference(&o, t, &grad, &mut w, &mut m, &mut v);
        }
        assert_close(&format!("adam {o:?} weights"), &g.read_f32(&tw).unwrap(), &w, 1e-6, 1e-5);
        assert_close("adam m", &g.read_f32(&tm).unwrap(), &m, 1e-7, 1e-5);
        assert_close("adam v", &g.read_f32(&tv).unwrap(), &v, 1e-8, 1e-5);
    }
}
