//! The GPU runtime and its kernels against float64 CPU references, on one shared device.

mod common;

use common::{LoweredLimits, Rng, assert_close, fresh_seed, gpu};
use ser::gpu::DType;
use ser::ops::SHADERS;
use ser::ops::elementwise::{self, BinaryOp, UnaryOp};
use ser::ops::gemm::{self, GemmKernel, GemmOptions};


#[test]
fn every_shader_validates_with_only_the_requested_capabilities() {
    let g = gpu();
    let caps = g.gpu.capabilities();
    for shader in SHADERS {
        // naga validates on the CPU, so every shader is checked here, including those this device
        // cannot run (they are refused at run time, never silently used).
        let own = shader.capabilities();
        let runnable = (!shader.needs_f16 || g.gpu.has_f16())
            && (!shader.needs_subgroups || g.gpu.has_subgroups())
            && (!shader.needs_cooperative_matrix || g.gpu.has_cooperative_matrix());
        assert_eq!(caps.contains(own), runnable, "{}", shader.name);
        let module = ser::gpu::validate(shader, own).unwrap_or_else(|e| panic!("{e}"));
        // The entry points compiled without wgpu's bounds checks exist (a typo would silently
        // leave the checks in; a renamed kernel must not silently lose them either).
        for entry in shader.bounds_proven {
            assert!(module.entry_points.iter().any(|ep| ep.name == *entry), "{}: no entry point {entry}", shader.name);
        }
        // A file that declares a need really has it: without the capability naga refuses it.
        if !own.is_empty() {
            assert!(ser::gpu::validate(shader, naga::valid::Capabilities::empty()).is_err(), "{} validates without {own:?}", shader.name);
        }
    }
}

#[test]
fn every_file_in_shaders_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".wgsl") && name != "prelude.wgsl" {
            assert!(SHADERS.iter().any(|s| s.name == name), "{name} is not in ops::SHADERS, so no test validates it");
        }
    }
}

#[test]
fn validation_rejects_a_broken_shader() {
    // The validation test above is only worth something if validation can fail.
    const BROKEN: ser::gpu::ShaderFile = ser::gpu::ShaderFile {
        name: "broken.wgsl",
        source: "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }",
        needs_f16: false,
        needs_subgroups: false,
        needs_cooperative_matrix: false,
        bounds_proven: &[],
    };
    assert!(ser::gpu::validate(&BROKEN, naga::valid::Capabilities::empty()).is_err());
    const NEEDS_F16: ser::gpu::ShaderFile = ser::gpu::ShaderFile {
        name: "f16.wgsl",
        source: "enable f16;\n@compute @workgroup_size(1) fn main() { let x: f16 = 1.0h; }",
        needs_f16: true,
        needs_subgroups: false,
        needs_cooperative_matrix: false,
        bounds_proven: &[],
    };
    assert!(ser::gpu::validate(&NEEDS_F16, naga::valid::Capabilities::empty()).is_err());
    assert!(ser::gpu::validate(&NEEDS_F16, naga::valid::Capabilities::SHADER_FLOAT16).is_ok());
}

/// One GEMM case against the reference, with C poisoned (NaN, or random when beta != 0).
#[allow(clippy::too_many_arguments)]
fn check_gemm(rng: &mut Rng, batch: Option<usize>, broadcast_b: bool, m: usize, n: usize, k: usize, bias: bool, o: GemmOptions) {
    check_gemm_with(&gpu().gpu, rng, batch, broadcast_b, m, n, k, bias, o);
}

/// [`check_gemm`] on a device the caller has already locked: `ser selftest`'s GEMM case.
#[allow(clippy::too_many_arguments)]
fn check_gemm_with(g: &ser::gpu::Gpu, rng: &mut Rng, batch: Option<usize>, broadcast_b: bool, m: usize, n: usize, k: usize, bias: bool, o: GemmOptions) {
    let mut t = ser::selftest::Tally::default();
    ser::selftest::check_gemm(g, rng, &mut t, batch, broadcast_b, (m, n, k), bias, o).unwrap();
    assert!(t.passed(), "{} ({} of its tolerance)", t.worst_at, t.worst_ratio);
}

#[test]
fn gemm_vec4_kernels_run_on_aligned_sizes_off_the_tile_grid() {
    // Multiples of 4 (so the vec4 shapes do not fall back) that are not multiples of 32 or 64.
    let mut rng = Rng::new(fresh_seed("gemm_vec4"));
    for kernel in [GemmKernel::Vec4, GemmKernel::Vec4x8] {
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            for (m, n, k) in [(4, 4, 4), (68, 44, 36), (4, 132, 8), (100, 4, 20), (36, 72, 4)] {
                let o = GemmOptions { trans_a, trans_b, kernel, ..Default::default() };
                let d = gemm::GemmDims { batch: 1, m, n, k, broadcast_b: false };
                assert_eq!(kernel.for_dims(&d, &o), kernel, "{m}x{n}x{k} should not fall back");
                check_gemm(&mut rng, None, false, m, n, k, false, o);
            }
        }
    }
}

#[test]
fn gemm_epilogues_bias_relu_alpha_beta_and_batches() {
    let mut rng = Rng::new(fresh_seed("gemm_epilogue"));
    let runnable: Vec<GemmKernel> = GemmKernel::ALL.into_iter().filter(|k| k.runs_on(&gpu().gpu)).collect();
    for kernel in runnable {
        for (relu, bias, alpha, beta) in [(true, true, 1.0, 0.0), (false, true, -0.5, 1.0), (true, false, 2.0, 0.25)] {
            let o = GemmOptions { relu, alpha, beta, kernel, trans_b: rng.next_u64().is_multiple_of(2), ..Default::default() };
            check_gemm(&mut rng, None, false, 37, 20, 12, bias, o);
            check_gemm(&mut rng, Some(3), false, 9, 16, 8, bias, o);
            check_gemm(&mut rng, Some(5), true, 13, 8, 4, bias, o);
        }
    }
}

#[test]
fn gemm_on_sub_matrices_at_offsets_touches_only_its_rows() {
    // Per-clip products: rows first..first+m of A and C, one of several B matrices.
    let mut rng = Rng::new(fresh_seed("gemm_offsets"));
    let g = &gpu().gpu;
    for kernel in GemmKernel::ALL.into_iter().filter(|k| k.runs_on(g)) {
        let (rows, k, n, sets) = (29, 12, 8, 3);
        let a = rng.vec(rows * k, -1.0, 1.0);
        let b = rng.vec(sets * n * k, -1.0, 1.0);
        let ta = g.upload_f32(&a, &[rows, k]).unwrap();
        let tb = g.upload_f32(&b, &[sets, n, k]).unwrap();
        let tc = g.upload_f32(&vec![f32::NAN; rows * n], &[rows, n]).unwrap();
        let o = GemmOptions { trans_b: true, kernel, ..Default::default() };
        let mut step = g.step("test.gemm_at");
        let spans = [(0usize, 4usize, 2usize), (4, 13, 0), (20, 8, 1)];
        for &(first, m, set) in &spans {
            let d = gemm::GemmDims { batch: 1, m, n, k, broadcast_b: false };
            gemm::gemm_at(&mut step, (&ta, first * k), (&tb, set * n * k), None, (&tc, first * n), d, &o).unwrap();
        }
        step.submit().unwrap();
        let got = g.read_f32(&tc).unwrap();
        let mut want = vec![f64::NAN; rows * n];
        for &(first, m, set) in &spans {
            let d = gemm::GemmDims { batch: 1, m, n, k, broadcast_b: false };
            let part = gemm::reference(&a[first * k..], &b[set * n * k..], None, &[], &d, &o);
            want[first * n..(first + m) * n].copy_from_slice(&part);
        }
        // Row 28 belongs to no span: it must still hold the poison.
        assert_close(&format!("gemm_at {kernel:?}"), &got, &want, 1e-5, 1e-5);
    }
    // Offsets that are not multiples of 4, or extents past the end, are refused.
    let t = g.empty(&[64], DType::F32).unwrap();
    let d = gemm::GemmDims { batch: 1, m: 2, n: 4, k: 4, broadcast_b: false };
    let mut step = g.step("test.gemm_at.bad");
    assert!(gemm::gemm_at(&mut step, (&t, 2), (&t.clone(), 0), None, (&g.empty(&[8], DType::F32).unwrap(), 0), d, &GemmOptions::default()).is_err());
    assert!(gemm::gemm_at(&mut step, (&t, 60), (&t.clone(), 0), None, (&g.empty(&[8], DType::F32).unwrap(), 0), d, &GemmOptions::default()).is_err());
}

#[test]
fn bindings_of_the_wrong_kind_or_size_are_refused() {
    use ser::gpu::{Access, Binding, KernelSpec};
    use ser::ops::gemm::GEMM_WGSL;
    let g = &gpu().gpu;
    const PACK: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "pack_rows", bindings: &[Access::Read, Access::TextureWrite] };
    let buf = g.empty(&[16], DType::F32).unwrap();
    let buf2 = g.empty(&[16], DType::F32).unwrap();
    let tex = g.texture(4, 4).unwrap();
    let mut step = g.step("test.bindings");
    let err = step.dispatch_bound(&PACK, &[], &[Binding::Buffer(&buf), Binding::Buffer(&buf2)], &[0; 48], [1, 1, 1], "x").unwrap_err();
    assert!(err.to_string().contains("must be a Rgba32Float texture"), "{err}");
    let err = step.dispatch_bound(&PACK, &[], &[Binding::Texture(&tex), Binding::Texture(&tex)], &[0; 48], [1, 1, 1], "x").unwrap_err();
    assert!(err.to_string().contains("must be a buffer"), "{err}");
    // A texture of the other texel format is refused too (the bind group would fail validation).
    let uint_tex = g.texture_of(ser::gpu::TexelFormat::Rgba32Uint, 4, 4).unwrap();
    let err = step.dispatch_bound(&PACK, &[], &[Binding::Buffer(&buf), Binding::Texture(&uint_tex)], &[0; 48], [1, 1, 1], "x").unwrap_err();
    assert!(err.to_string().contains("must be a Rgba32Float texture"), "{err}");
    let err = step.dispatch_bound(&PACK, &[], &[Binding::Buffer(&buf)], &[0; 48], [1, 1, 1], "x").unwrap_err();
    assert!(err.to_string().contains("takes 2 bindings"), "{err}");
    // Textures past the adapter's side are refused with the limit, not created.
    let side = g.max_texture_side();
    let err = g.texture(side + 1, 1).unwrap_err();
    assert!(err.to_string().contains(&side.to_string()), "{err}");
    // Allocations are powers of two, but a texture reports the size asked for.
    let t = g.texture(5, 3).unwrap();
    assert_eq!((t.width(), t.height()), (5, 3));
}

#[test]
fn gemm_rejects_shapes_that_do_not_chain() {
    let g = &gpu().gpu;
    let a = g.empty(&[4, 5], DType::F32).unwrap();
    let b = g.empty(&[6, 3], DType::F32).unwrap();
    let c = g.empty(&[4, 3], DType::F32).unwrap();
    let mut step = g.step("test.bad");
    let err = gemm::gemm(&mut step, &a, &b, None, &c, &GemmOptions::default()).unwrap_err();
    assert!(err.to_string().contains("do not chain"), "{err}");
    let bias = g.empty(&[4], DType::F32).unwrap();
    let b = g.empty(&[5, 3], DType::F32).unwrap();
    let err = gemm::gemm(&mut step, &a, &b, Some(&bias), &c, &GemmOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bias"), "{err}");
    // Writing into a buffer that is also an input would race; the runtime refuses it.
    let sq = g.empty(&[4, 4], DType::F32).unwrap();
    let err = gemm::gemm(&mut step, &sq, &sq.clone(), None, &sq, &GemmOptions::default()).unwrap_err();
    assert!(err.to_string().contains("also bound"), "{err}");
    // tex8-shared's tile width must be a power of two up to 64, on both entry points.
    let (a, b, c) = (g.empty(&[4, 5], DType::F32).unwrap(), g.empty(&[5, 40], DType::F32).unwrap(), g.empty(&[4, 40], DType::F32).unwrap());
    for w in [0, 3, 128] {
        let o = GemmOptions { kernel: GemmKernel::Tex8Shared, row_lanes: Some(w), ..Default::default() };
        let err = gemm::gemm(&mut step, &a, &b, None, &c, &o).unwrap_err();
        assert!(err.to_string().contains("row_lanes"), "{err}");
        let fixed = gemm::FixedA::new(&mut step, &a, false, 40, &GemmOptions { kernel: GemmKernel::Tex8Shared, ..Default::default() }).unwrap();
        let err = gemm::gemm_fixed_a(&mut step, &fixed, &b, None, &c, &o).unwrap_err();
        assert!(err.to_string().contains("row_lanes"), "{err}");
    }
}

fn poisoned(g: &ser::gpu::Gpu, n: usize) -> ser::gpu::Tensor {
    g.upload_f32(&vec![f32::NAN; n], &[n]).unwrap()
}

#[test]
fn dispatches_past_the_workgroup_limit_are_split() {
    let mut rng = Rng::new(fresh_seed("split"));
    let g = &gpu().gpu;
    // Real limit: a 1 x N GEMM with the naive kernel (8 columns per workgroup) needs 65,537
    // workgroups along x, one past what the device allows in one dimension.
    let n = 8 * 65_537;
    let a = rng.vec(2, -1.0, 1.0);
    let b = rng.vec(2 * n, -1.0, 1.0);
    let (ta, tb, tc) = (g.upload_f32(&a, &[1, 2]).unwrap(), g.upload_f32(&b, &[2, n]).unwrap(), poisoned(g, n));
    let tc = tc.reshape(&[1, n]);
    let o = GemmOptions { kernel: GemmKernel::Naive, ..Default::default() };
    let mut step = g.step("test.split");
    let d = gemm::gemm(&mut step, &ta, &tb, None, &tc, &o).unwrap();
    step.submit().unwrap();
    assert_close("split gemm", &g.read_f32(&tc).unwrap(), &gemm::reference(&a, &b, None, &[], &d, &o), 1e-6, 1e-6);

    // Artificially low limits fold every grid shape, 3-D included, with ragged remainders.
    let limits = LoweredLimits::new(g);
    for limit in [7u32, 13, 64] {
        limits.dispatch_dim(limit);
        for kernel in GemmKernel::ALL.into_iter().filter(|k| k.runs_on(g)) {
            check_gemm_locked(g, &mut rng, kernel);
        }
        let x = rng.vec(5000, -1.0, 1.0);
        let (tx, ty) = (g.upload_f32(&x, &[5000]).unwrap(), poisoned(g, 5000));
        let mut step = g.step("test.split.unary");
        elementwise::unary(&mut step, UnaryOp::Neg, &tx, &ty).unwrap();
        step.submit().unwrap();
        assert_close("split unary", &g.read_f32(&ty).unwrap(), &x.iter().map(|&v| -(v as f64)).collect::<Vec<_>>(), 0.0, 0.0);
    }
}

#[test]
fn packed_gemm_splits_operands_taller_than_a_texture() {
    // With textures at most 24 texels a side, every shape below needs row, column or batch
    // chunks (and K = 90 needs 23 of the 24 texels per packed row); each chunk writes its own
    // block of C, bias and batch offsets included.
    let mut rng = Rng::new(fresh_seed("packed_split"));
    let lock = gpu();
    let g = &lock.gpu;
    let limits = LoweredLimits::new(g);
    limits.texture_side(24);
    for kernel in [GemmKernel::Tex8, GemmKernel::Tex8Shared] {
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let o = GemmOptions { trans_a, trans_b, kernel, relu: true, ..Default::default() };
            check_gemm_with(g, &mut rng, None, false, 61, 50, 90, true, o);
            check_gemm_with(g, &mut rng, Some(5), false, 9, 7, 12, true, o);
            check_gemm_with(g, &mut rng, Some(4), true, 30, 17, 8, false, o);
        }
    }
    let kernel = GemmKernel::Tex8;
    // K past 4 x the texture side cannot be packed: a clear error, not a wrong answer.
    let a = g.empty(&[2, 100], DType::F32).unwrap();
    let b = g.empty(&[100, 2], DType::F32).unwrap();
    let c = g.empty(&[2, 2], DType::F32).unwrap();
    let mut step = g.step("test.packed.too_wide");
    let err = gemm::gemm(&mut step, &a, &b, None, &c, &GemmOptions { kernel, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("texture side"), "{err}");
}

#[test]
fn a_fixed_a_serves_many_multiplies_in_either_layout() {
    // The solver's use: one op(A) prepared once, then products with several B, bias and ReLU
    // included, A transposed or not; packed for the texture kernels (narrow products take the
    // tall kernel, wide ones the square one; with a 24-texel texture side the 50 columns are
    // split into chunks), the buffer itself for the tile family.
    let mut rng = Rng::new(fresh_seed("fixed_a"));
    let lock = gpu();
    let g = &lock.gpu;
    let limits = LoweredLimits::new(g);
    for kernel in [GemmKernel::Tex8Shared, GemmKernel::Tile64] {
        for (limit, trans_a) in [(u32::MAX, false), (24, true)] {
            limits.texture_side(limit);
            let (m, k) = (21, 36);
            let a = rng.vec(m * k, -1.0, 1.0);
            let ta = g.upload_f32(&a, &if trans_a { [k, m] } else { [m, k] }).unwrap();
            let mut step = g.step("test.fixed_a");
            let fixed = gemm::FixedA::new(&mut step, &ta, trans_a, 40, &GemmOptions { kernel, ..Default::default() }).unwrap();
            assert_eq!(fixed.kernel(), kernel);
            let mut cases = Vec::new();
            for (n, trans_b, relu) in [(7usize, false, false), (50, true, true), (33, false, true)] {
                let b = rng.vec(k * n, -1.0, 1.0);
                let bias = rng.vec(n, -1.0, 1.0);
                let tb = g.upload_f32(&b, &if trans_b { [n, k] } else { [k, n] }).unwrap();
                let tbias = g.upload_f32(&bias, &[n]).unwrap();
                let tc = g.upload_f32(&vec![f32::NAN; m * n], &[m, n]).unwrap();
                let o = GemmOptions { trans_b, relu, ..Default::default() };
                let d = gemm::gemm_fixed_a(&mut step, &fixed, &tb, Some(&tbias), &tc, &o).unwrap();
                cases.push((b, bias, tc, d, GemmOptions { trans_a, ..o }));
            }
            assert!(fixed.rows_view(15, 7).is_err(), "rows past the end are refused");
            // A view of rows 5..16 times the second of two B matrices, into rows 5..16 of C: the
            // per-clip chroma's use (40 columns: the square packed kernel, unsplit).
            let (first, count, n) = (5usize, 11usize, 40usize);
            let bs = rng.vec(2 * n * k, -1.0, 1.0);
            let tbs = g.upload_f32(&bs, &[2, n, k]).unwrap();
            let tview = g.upload_f32(&vec![f32::NAN; m * n], &[m, n]).unwrap();
            let o = GemmOptions { trans_b: true, ..Default::default() };
            let view = match fixed.rows_view(first, count) {
                Ok(v) => Some(v),
                Err(e) => {
                    // A row view of a transposed buffer is not dense: refused, not wrong.
                    assert!(trans_a && !kernel.is_packed(), "{e}");
                    None
                }
            };
            if let Some(view) = &view {
                gemm::gemm_fixed_a_at(&mut step, view, (&tbs, n * k), None, (&tview, first * n), n, &o).unwrap();
            }
            step.submit().unwrap();
            if view.is_some() {
                let got = g.read_f32(&tview).unwrap();
                let a_rows: Vec<f32> = (first..first + count)
                    .flat_map(|r| (0..k).map(move |kk| if trans_a { kk * m + r } else { r * k + kk }))
                    .map(|i| a[i])
                    .collect();
                let d = gemm::GemmDims { batch: 1, m: count, n, k, broadcast_b: false };
                let mut want = vec![f64::NAN; m * n];
                want[first * n..(first + count) * n].copy_from_slice(&gemm::reference(&a_rows, &bs[n * k..], None, &[], &d, &o));
                assert_close(&format!("{kernel:?} fixed A view, limit {limit}"), &got, &want, 1e-5, 1e-5);
            }
            for (b, bias, tc, d, o) in cases {
                let want = gemm::reference(&a, &b, Some(&bias), &[], &d, &o);
                assert_close(&format!("{kernel:?} fixed A {d:?} {o:?} limit {limit}"), &g.read_f32(&tc).unwrap(), &want, 1e-5, 1e-5);
            }
        }
    }
}

#[test]
fn a_packed_texture_operand_is_unpacked_for_buffer_kernels() {
    // The spectra arrive packed (the STFT writes a texture); a buffer kernel gets them unpacked.
    let mut rng = Rng::new(fresh_seed("from_texture"));
    let g = &gpu().gpu;
    let (m, k, n) = (19, 24, 12);
    let a = rng.vec(m * k, -1.0, 1.0);
    let b = rng.vec(n * k, -1.0, 1.0);
    let (ta, tb) = (g.upload_f32(&a, &[m, k]).unwrap(), g.upload_f32(&b, &[n, k]).unwrap());
    let o = GemmOptions { trans_b: true, ..Default::default() };
    let mut step = g.step("test.from_texture");
    let packed = gemm::FixedA::new(&mut step, &ta, false, n, &GemmOptions { kernel: GemmKernel::Tex8, ..o }).unwrap();
    let tex = packed.packed_texture().expect("tex8 packs its operand");
    for kernel in [GemmKernel::Tex8, GemmKernel::Tile32, GemmKernel::Vec4x8] {
        let fixed = gemm::FixedA::from_texture(&mut step, tex, m, k, n, &GemmOptions { kernel, ..o }).unwrap();
        assert_eq!(fixed.packed_texture().is_some(), kernel.is_packed());
        let tc = g.upload_f32(&vec![f32::NAN; m * n], &[m, n]).unwrap();
        let d = gemm::gemm_fixed_a(&mut step, &fixed, &tb, None, &tc, &o).unwrap();
        step.submit().unwrap();
        step = g.step("test.from_texture");
        assert_close(&format!("{kernel:?} from texture"), &g.read_f32(&tc).unwrap(), &gemm::reference(&a, &b, None, &[], &d, &o), 1e-5, 1e-5);
    }
    assert!(gemm::FixedA::from_texture(&mut step, tex, m, k + 4, n, &o).is_err(), "a width that does not match is refused");
}

/// A batched GEMM on an already-locked device (the split test holds the lock while it lowers limits).
fn check_gemm_locked(g: &ser::gpu::Gpu, rng: &mut Rng, kernel: GemmKernel) {
    let (batch, m, n, k) = (3, 70, 68, 8);
    let a = rng.vec(batch * m * k, -1.0, 1.0);
    let b = rng.vec(batch * k * n, -1.0, 1.0);
    let ta = g.upload_f32(&a, &[batch, m, k]).unwrap();
    let tb = g.upload_f32(&b, &[batch, k, n]).unwrap();
    let tc = poisoned(g, batch * m * n).reshape(&[batch, m, n]);
    let o = GemmOptions { kernel, ..Default::default() };
    let mut step = g.step("test.split.gemm");
    let d = gemm::gemm(&mut step, &ta, &tb, None, &tc, &o).unwrap();
    step.submit().unwrap();
    assert_close(&format!("folded {kernel:?}"), &g.read_f32(&tc).unwrap(), &gemm::reference(&a, &b, None, &[], &d, &o), 1e-5, 1e-5);
}

#[test]
fn pooled_buffers_are_not_reused_while_a_recorded_step_needs_them() {
    let g = &gpu().gpu;
    let n = 4096;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let tx = g.upload_f32(&x, &[n]).unwrap();
    let ty = g.empty(&[n], DType::F32).unwrap();
    let mut step = g.step("test.pool");
    elementwise::unary(&mut step, UnaryOp::Neg, &tx, &ty).unwrap();
    // Dropping the input before submission must not free its buffer for the upload below.
    drop(tx);
    let other = g.upload_f32(&vec![7.0; n], &[n]).unwrap();
    step.submit().unwrap();
    let got = g.read_f32(&ty).unwrap();
    assert!(got.iter().zip(&x).all(|(g, x)| *g == -*x), "input was overwritten before the step ran");
    drop(other);
    // After the step, freed buffers do come back.
    let before = g.pool_free_bytes();
    let t = g.empty(&[n], DType::F32).unwrap();
    assert!(g.pool_free_bytes() < before, "a free buffer of the right class should have been reused");
    drop(t);
}

#[test]
fn steps_with_many_dispatches_chain_in_order() {
    // 300 dependent launches in one submission: y = y + 1, each reading the previous result.
    let g = &gpu().gpu;
    let n = 1000;
    let ones = g.upload_f32(&vec![1.0; n], &[n]).unwrap();
    let a = g.upload_f32(&vec![0.0; n], &[n]).unwrap();
    let b = g.empty(&[n], DType::F32).unwrap();
    let mut step = g.step("test.chain");
    for i in 0..300 {
        let (src, dst) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        elementwise::binary(&mut step, BinaryOp::Add, src, &ones, dst).unwrap();
    }
    step.submit().unwrap();
    assert!(g.read_f32(&a).unwrap().iter().all(|&v| v == 300.0));
}

#[test]
fn profiler_counts_every_dispatch_by_kernel() {
    let g = &gpu().gpu;
    let x = g.upload_f32(&vec![1.0; 2048], &[2048]).unwrap();
    let y = g.empty(&[2048], DType::F32).unwrap();
    g.reset_profile();
    g.set_profiling(true);
    let mut step = g.step("test.profile");
    for _ in 0..5 {
        elementwise::unary(&mut step, UnaryOp::Exp, &x, &y).unwrap();
    }
    elementwise::fill(&mut step, &y, 0.0).unwrap();
    step.submit().unwrap();
    g.set_profiling(false);
    let report = g.profile();
    let exp = report.kernels.iter().find(|k| k.kernel == "unary.Exp").expect("unary.Exp profiled");
    assert_eq!(exp.count, 5);
    assert!(exp.total_ms > 0.0 && exp.total_ms.is_finite());
    assert_eq!(report.kernels.iter().find(|k| k.kernel == "fill").unwrap().count, 1);
    assert!(report.table().contains("unary.Exp"));
    // Results are still right when every dispatch runs in its own timed pass.
    assert!(g.read_f32(&y).unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn uploads_and_reads_check_types_and_sizes() {
    let g = &gpu().gpu;
    assert!(g.upload_f32(&[1.0, 2.0], &[3]).is_err());
    let t = g.upload(&[1u32, 2, 3], &[3], DType::U32).unwrap();
    assert_eq!(g.read::<u32>(&t).unwrap(), vec![1, 2, 3]);
    assert!(g.read::<u16>(&t).is_err());
    let h: Vec<half::f16> = [0.5f32, -1.0, 3.0].iter().map(|&v| half::f16::from_f32(v)).collect();
    let t = g.upload(&h, &[3], DType::F16).unwrap();
    assert_eq!(g.read::<half::f16>(&t).unwrap(), h);
    let too_big = g.max_storage_binding() as usize / 4 + 1;
    assert!(g.empty(&[too_big], DType::F32).unwrap_err().to_string().contains("limit"));
}

#[test]
fn profiling_survives_steps_without_dispatches() {
    // A step of copies only, with timestamps on: nothing to time, and no panic.
    let g = &gpu().gpu;
    let a = g.upload_f32(&[1.0, 2.0, 3.0], &[3]).unwrap();
    let b = g.empty(&[3], DType::F32).unwrap();
    g.set_profiling(true);
    let mut step = g.step("test.copy_only");
    step.copy(&a, &b).unwrap();
    let result = step.submit();
    g.set_profiling(false);
    result.unwrap();
    assert_eq!(g.read_f32(&b).unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn reductions_past_llvmpipes_loop_limit_are_errors_not_wrong_sums() {
    // llvmpipe stops an invocation's loops after 65,535 iterations in all, silently: a column
    // sum of 70,000 rows would come back short. On a CPU adapter it is refused by name; on
    // any other it must be exact.
    let g = &common::gpu().gpu;
    let rows = 70_000;
    let x = g.upload_f32(&vec![1.0f32; rows * 2], &[rows, 2]).unwrap();
    let out = g.empty(&[2], ser::gpu::DType::F32).unwrap();
    let mut step = g.step("test.column_sum");
    let r = ser::ops::norm::column_sum(&mut step, &x, 2, rows, &out);
    if g.is_cpu() {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("65,535") && e.contains("column sum"), "{e}");
    } else {
        r.unwrap();
        step.submit().unwrap();
        assert_eq!(g.read_f32(&out).unwrap(), vec![rows as f32; 2]);
    }
    // The same rows in groups of 350 (a batch of 200 examples): no loop is long, on any adapter.
    let out = g.empty(&[2], ser::gpu::DType::F32).unwrap();
    let mut step = g.step("test.column_sum.groups");
    ser::ops::norm::column_sum(&mut step, &x, 2, 350, &out).unwrap();
    step.submit().unwrap();
    assert_eq!(g.read_f32(&out).unwrap(), vec![rows as f32; 2]);
}
