//! RBF kernels and the conjugate-gradient kernel ridge solve against float64 references.

mod common;

use common::{Rng, assert_close, fresh_seed, gpu};
use ser::gpu::DType;
use ser::ops::kernel;

#[test]
fn rbf_kernel_matches_reference_at_awkward_sizes() {
    let mut rng = Rng::new(fresh_seed("rbf"));
    let g = &gpu().gpu;
    for (rows, cols, d) in [(1, 1, 1), (7, 13, 5), (33, 70, 118), (130, 9, 3)] {
        let x = rng.vec(rows * d, -2.0, 2.0);
        let c = rng.vec(cols * d, -2.0, 2.0);
        let gamma = 1.0 / d as f32;
        let (tx, tc) = (g.upload_f32(&x, &[rows, d]).unwrap(), g.upload_f32(&c, &[cols, d]).unwrap());
        let (xn, cn) = (g.empty(&[rows], DType::F32).unwrap(), g.empty(&[cols], DType::F32).unwrap());
        let k = g.upload_f32(&vec![f32::NAN; rows * cols], &[rows, cols]).unwrap();
        let mut step = g.step("test.rbf");
        kernel::sq_norms(&mut step, &tx, &xn).unwrap();
        kernel::sq_norms(&mut step, &tc, &cn).unwrap();
        kernel::rbf(&mut step, &tx, &xn, &tc, &cn, gamma, &k).unwrap();
        step.submit().unwrap();
        let want = kernel::reference_rbf(&x, &c, d, gamma as f64);
        // exp(-gamma d2) with d2 from norms minus dots: cancellation costs ~1e-6 of |x|^2 in d2.
        assert_close(&format!("rbf {rows}x{cols}x{d}"), &g.read_f32(&k).unwrap(), &want, 2e-5, 1e-4);
    }
}

#[test]
fn conjugate_gradients_solve_kernel_ridge_for_every_column() {
    let mut rng = Rng::new(fresh_seed("cg"));
    let g = &gpu().gpu;
    let (n, c, dim) = (67, 5, 6);
    let pts = rng.vec(n * dim, -1.0, 1.0);
    let k64 = kernel::reference_rbf(&pts, &pts, dim, 0.5);
    let d64: Vec<f64> = (0..n).map(|_| rng.uniform(0.02, 0.3) as f64).collect();
    let mut y = rng.vec(n * c, -1.0, 1.0);
    // One column of zeros: it must stay zero, not turn into NaN.
    for i in 0..n {
        y[i * c + 2] = 0.0;
    }
    let k = g.upload_f32(&k64.iter().map(|v| *v as f32).collect::<Vec<_>>(), &[n, n]).unwrap();
    let d = g.upload_f32(&d64.iter().map(|v| *v as f32).collect::<Vec<_>>(), &[n]).unwrap();
    let ty = g.upload_f32(&y, &[n, c]).unwrap();
    let (a, report) = kernel::solve_ridge(g, &k, &d, &ty, 1e-5, 2000).unwrap();
    let want = kernel::reference_solve(&k64, &d64, &y.iter().map(|v| *v as f64).collect::<Vec<_>>(), n, c);
    eprintln!("{report:?}");
    assert!(report.relative_residual < 1e-5 && report.iterations < 2000, "{report:?}");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert_close("ridge solution", &g.read_f32(&a).unwrap(), &want, 1e-3 * scale, 1e-3);
}
