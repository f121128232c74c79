//! Spectral kernels (STFT, filterbanks, dB, DCT, chroma, contrast) against float64 references.

mod common;

use common::{LoweredLimits, Rng, assert_close, fresh_seed, gpu};
use ser::gpu::{DType, Gpu, Tensor};

/// Clip tables for frame-major matrices: clips of the given frame counts, back to back.
fn clip_table(g: &Gpu, frames_per_clip: &[usize]) -> (Tensor, Tensor, Vec<(usize, usize)>) {
    let mut table = Vec::new();
    let mut frame_clip = Vec::new();
    let mut spans = Vec::new();
    for (i, &n) in frames_per_clip.iter().enumerate() {
        table.extend_from_slice(&[0, 0, frame_clip.len() as u32, n as u32]);
        spans.push((frame_clip.len(), n));
        frame_clip.extend(std::iter::repeat_n(i as u32, n));
    }
    let f = frame_clip.len();
    (
        g.upload(&table, &[frames_per_clip.len(), 4], DType::U32).unwrap(),
        g.upload(&frame_clip, &[f], DType::U32).unwrap(),
        spans,
    )
}

#[test]
fn power_to_db_floors_each_clip_against_its_own_maximum() {
    use ser::ops::segment::{self, DbOptions};
    let mut rng = Rng::new(fresh_seed("power_to_db"));
    let g = &gpu().gpu;
    let counts = [4usize, 1, 9, 2];
    let cols = 5;
    let (clips, _, spans) = clip_table(g, &counts);
    let rows: usize = counts.iter().sum();
    // Values over 12 orders of magnitude, some zeros, so both amin and top_db bite.
    let values: Vec<f32> = (0..rows * cols).map(|i| if i % 11 == 0 { 0.0 } else { 10f32.powf(rng.uniform(-12.0, 3.0)) }).collect();
    for o in [DbOptions::default(), DbOptions { reference: 3.5, amin: 1e-6, top_db: Some(40.0) }, DbOptions { top_db: None, ..Default::default() }] {
        let t = g.upload_f32(&values, &[rows, cols]).unwrap();
        let scratch = g.empty(&[counts.len()], DType::F32).unwrap();
        let mut step = g.step("test.db");
        segment::power_to_db(&mut step, &clips, &t, &scratch, &o).unwrap();
        step.submit().unwrap();
        let got = g.read_f32(&t).unwrap();
        let mut want = Vec::new();
        for &(first, n) in &spans {
            let clip: Vec<f64> = values[first * cols..(first + n) * cols].iter().map(|&v| v as f64).collect();
            want.extend(segment::reference_db(&clip, &o));
        }
        assert_close(&format!("power_to_db {o:?}"), &got, &want, 2e-4, 1e-6);
    }
}

#[test]
fn assemble_pads_and_moments_summarise_each_clip() {
    use ser::ops::segment::{self, Frames};
    let mut rng = Rng::new(fresh_seed("assemble"));
    let g = &gpu().gpu;
    let counts = [3usize, 7, 1];
    let (clips, _, spans) = clip_table(g, &counts);
    let rows: usize = counts.iter().sum();
    let (cols, width, offset, t_max) = (3, 8, 2, 7);
    // A large common offset on the last column: a one-pass variance would cancel it away. Zeros
    // (unvoiced f0) in about a third of the first column, in the first clip's first frame, and in
    // all of the last clip's (whose voiced moments are then 0).
    let src: Vec<f32> = rng
        .vec(rows * cols, -5.0, 5.0)
        .iter()
        .enumerate()
        .map(|(i, v)| match (i % cols, i / cols) {
            (j, _) if j == cols - 1 => 3000.0 + v,
            (0, r) if r == 0 || r == rows - 1 || *v < -5.0 / 3.0 => 0.0,
            _ => *v,
        })
        .collect();
    let t_src = g.upload_f32(&src, &[rows, cols]).unwrap();
    for taken in [Frames::All, Frames::Nonzero] {
        let frames = g.upload_f32(&vec![f32::NAN; counts.len() * t_max * width], &[counts.len(), t_max, width]).unwrap();
        let vectors = g.upload_f32(&vec![f32::NAN; counts.len() * width], &[counts.len(), width]).unwrap();
        let stds = g.upload_f32(&vec![f32::NAN; counts.len() * width], &[counts.len(), width]).unwrap();
        let mut step = g.step("test.assemble");
        segment::assemble(&mut step, &clips, &t_src, &frames, offset).unwrap();
        segment::mean(&mut step, &clips, &t_src, &vectors, offset, taken).unwrap();
        segment::std(&mut step, &clips, &t_src, &stds, offset, taken).unwrap();
        step.submit().unwrap();
        let got = g.read_f32(&frames).unwrap();
        let got_v = g.read_f32(&vectors).unwrap();
        let got_s = g.read_f32(&stds).unwrap();
        for (c, &(first, n)) in spans.iter().enumerate() {
            for j in 0..cols {
                for t in 0..t_max {
                    let want = if t < n { src[(first + t) * cols + j] } else { 0.0 };
                    assert_eq!(got[(c * t_max + t) * width + offset + j], want, "clip {c} t {t} col {j}");
                }
            }
            let clip: Vec<f64> = src[first * cols..(first + n) * cols].iter().map(|&v| v as f64).collect();
            let (mean, std) = segment::reference_moments(&clip, cols, taken);
            for j in 0..cols {
                // float32 rounding of values near 3000 is 1.2e-4; the mean and std keep that scale.
                let tol = if j == cols - 1 { 5e-4 } else { 1e-5 };
                assert!((got_v[c * width + offset + j] as f64 - mean[j]).abs() < tol, "{taken:?} mean clip {c} col {j}: {} vs {}", got_v[c * width + offset + j], mean[j]);
                assert!((got_s[c * width + offset + j] as f64 - std[j]).abs() < tol, "{taken:?} std clip {c} col {j}: {} vs {}", got_s[c * width + offset + j], std[j]);
            }
            // Columns outside [offset, offset + cols) are left untouched (still the NaN poison).
            assert!(got[c * t_max * width].is_nan() && got_v[c * width + width - 1].is_nan() && got_s[c * width].is_nan());
        }
    }
}

#[test]
fn normalize_rows_scales_by_the_largest_magnitude() {
    use ser::ops::segment;
    let mut rng = Rng::new(fresh_seed("normalize_rows"));
    let g = &gpu().gpu;
    let (rows, cols) = (67, 12);
    let mut v = rng.vec(rows * cols, -2.0, 2.0);
    v[5 * cols..6 * cols].fill(0.0);
    let t = g.upload_f32(&v, &[rows, cols]).unwrap();
    let mut step = g.step("test.normalize");
    segment::normalize_rows(&mut step, &t).unwrap();
    step.submit().unwrap();
    let mut want = Vec::new();
    for r in v.chunks(cols) {
        let m = r.iter().fold(0f64, |m, x| m.max(x.abs() as f64));
        want.extend(r.iter().map(|&x| if m > 0.0 { x as f64 / m } else { 0.0 }));
    }
    assert_close("normalize_rows", &g.read_f32(&t).unwrap(), &want, 1e-7, 1e-6);
}

#[test]
fn contrast_peaks_and_valleys_match_a_sort_including_ties() {
    use ser::ops::contrast::{self, Band};
    let mut rng = Rng::new(fresh_seed("contrast"));
    let g = &gpu().gpu;
    let (stride, frames) = (52, 9);
    let bands = [Band { first: 0, end: 5, q: 1 }, Band { first: 4, end: 20, q: 3 }, Band { first: 19, end: 49, q: 5 }, Band { first: 48, end: 49, q: 1 }];
    // Magnitudes from a few levels so ties are common, squared into powers.
    let levels = [0.0f32, 0.5, 1.0, 2.0, 3.0];
    let power: Vec<f32> = (0..frames * stride)
        .map(|_| {
            let m = if rng.next_u64().is_multiple_of(3) { levels[rng.next_u64() as usize % levels.len()] } else { rng.uniform(0.0, 3.0) };
            m * m
        })
        .collect();
    let t_power = g.upload_texture(&power, (stride / 4) as u32, frames as u32).unwrap();
    let table = contrast::upload_bands(g, &bands).unwrap();
    let peak = g.upload_f32(&vec![f32::NAN; frames * bands.len()], &[frames, bands.len()]).unwrap();
    let valley = g.upload_f32(&vec![f32::NAN; frames * bands.len()], &[frames, bands.len()]).unwrap();
    let mut step = g.step("test.contrast");
    contrast::peaks_and_valleys(&mut step, &t_power, frames, &table, &peak, &valley).unwrap();
    step.submit().unwrap();
    let (mut want_p, mut want_v) = (Vec::new(), Vec::new());
    for f in 0..frames {
        let mag: Vec<f64> = power[f * stride..(f + 1) * stride].iter().map(|&p| (p as f64).sqrt()).collect();
        for (p, v) in contrast::reference(&mag, &bands) {
            want_p.push(p);
            want_v.push(v);
        }
    }
    assert_close("contrast peaks", &g.read_f32(&peak).unwrap(), &want_p, 1e-6, 1e-6);
    assert_close("contrast valleys", &g.read_f32(&valley).unwrap(), &want_v, 1e-6, 1e-6);
}

#[test]
fn contrast_bands_follow_librosa_edges() {
    use ser::ops::contrast::{Band, bands};
    // librosa 0.11 at sr 16000, n_fft 1024 (bins every 15.625 Hz), fmin 200, 6 bands, q 0.02:
    // band edges 0, 200, 400, .. 12800 Hz, widened one bin down, the last running to Nyquist.
    let b = bands(16000.0, 1024, 200.0, 6, 0.02).unwrap();
    assert_eq!(b[0], Band { first: 0, end: 12, q: 1 });
    assert_eq!(b[1], Band { first: 12, end: 25, q: 1 });
    assert_eq!(b[6], Band { first: 409, end: 513, q: 2 });
    // Bands above Nyquist are refused with a clear message, as librosa refuses them.
    let err = bands(8000.0, 512, 200.0, 6, 0.02).unwrap_err().to_string();
    assert!(err.contains("Nyquist"), "{err}");
}

#[test]
fn clips_longer_than_one_gpu_batch_are_refused_with_their_length() {
    // A batch's spectra are one texture, so a clip may have at most one texture side of frames.
    // With the side lowered to 64, a 2 s clip at 16 kHz (126 frames at hop 256) is refused and a
    // 0.5 s one (32 frames) is not.
    use ser::features::{FeatureConfig, corpus};
    let lock = gpu();
    let g = &lock.gpu;
    let limits = LoweredLimits::new(g);
    limits.texture_side(64);
    let cfg = FeatureConfig::default();
    let err = corpus::check_length(g, &cfg, 32_000).unwrap_err().to_string();
    assert!(err.contains("too long") && err.contains("126 frames") && err.contains("64"), "{err}");
    corpus::check_length(g, &cfg, 8_000).unwrap();
}

/// `--tuning estimate` walks each clip's pitch candidates in one workgroup; on CPU adapters a
/// recording long enough to pass llvmpipe's loop limit there is refused by name instead of
/// estimated from part of its candidates, while a clip-length one is estimated.
#[test]
fn tuning_estimates_that_a_cpu_adapter_would_cut_short_are_refused() {
    use ser::features::{Extractor, FeatureConfig, Tuning};
    let lock = gpu();
    let g = &lock.gpu;
    let cfg = FeatureConfig { tuning: Tuning::Estimate, ..FeatureConfig::default() };
    let ex = Extractor::new(g, &cfg).unwrap();
    // A rich harmonic tone with a slow vibrato and a little noise: many peaks every frame.
    let tone = |seconds: f64| -> Vec<f32> {
        let mut rng = ser::rng::SplitMix64::new(5);
        (0..(seconds * 16000.0) as usize)
            .map(|i| {
                let t = i as f64 / 16000.0;
                let f0 = 180.0 * (1.0 + 0.02 * (6.0 * t).sin());
                let harmonics: f64 = (1..=20).map(|h| (std::f64::consts::TAU * f0 * h as f64 * t).sin() / h as f64).sum();
                (0.2 * harmonics) as f32 + rng.uniform(-0.01, 0.01)
            })
            .collect()
    };
    let short = tone(3.0);
    ex.extract(g, &[&short]).unwrap();
    let long = tone(240.0);
    match ex.extract(g, &[&long]) {
        Err(e) if g.is_cpu() => assert!(e.to_string().contains("--tuning estimate") && e.to_string().contains("pitch candidates"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => assert!(!g.is_cpu(), "a CPU adapter estimated a 4-minute recording's tuning in one workgroup"),
    }
}
