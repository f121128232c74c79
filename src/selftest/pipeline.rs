//! Pipeline-level checks: the STFT against a direct DFT, the filterbank, the whole feature
//! pipeline (mel dB, MFCC, chroma with estimated tuning, contrast) against librosa golden files
//! compiled into the binary, and the built-in model's probabilities on the bundled clips.

use super::{Check, Size, Tally};
use crate::features::{Extractor, FeatureConfig};
use crate::gpu::{DType, Gpu, LoweredLimits, Tensor, Texture};
use crate::ops::descriptors::{self, SpectralShape};
use crate::ops::filterbank::{self, Filterbank};
use crate::ops::pitch::{self, Periods};
use crate::ops::stft::{self, SpectrumLayout};
use crate::rng::SplitMix64;
use anyhow::{Context, Result, bail};
use safetensors::SafeTensors;

pub(super) fn checks() -> Vec<Check> {
    vec![
        Check { name: "stft", family: "spectral", run: stft_power },
        Check { name: "filterbank", family: "spectral", run: filterbank },
        Check { name: "descriptors", family: "spectral", run: frame_descriptors },
        Check { name: "pitch", family: "spectral", run: pitch_kernels },
        Check { name: "features-vs-librosa", family: "features", run: features_vs_librosa },
        Check { name: "built-in-model", family: "end-to-end", run: built_in_model },
    ]
}

/// Uploads clips as the feature pipeline lays them out: concatenated samples, a clip table and
/// the clip of every frame. With `aligned`, clips start at multiples of 4 samples; without,
/// frames take the unaligned read path.
fn upload_clips(g: &Gpu, clips: &[Vec<f32>], layout: &SpectrumLayout, aligned: bool) -> Result<(Texture, Tensor, Tensor, usize)> {
    let mut signal = Vec::new();
    let mut table = Vec::new();
    let mut frame_clip = Vec::new();
    for (i, c) in clips.iter().enumerate() {
        let frames = layout.frames(c.len());
        table.extend_from_slice(&[signal.len() as u32, c.len() as u32, frame_clip.len() as u32, frames as u32]);
        frame_clip.extend(std::iter::repeat_n(i as u32, frames));
        signal.extend_from_slice(c);
        if aligned {
            signal.resize(signal.len().next_multiple_of(4), 0.0);
        }
    }
    if signal.is_empty() {
        signal.push(0.0);
    }
    let n = frame_clip.len();
    Ok((stft::upload_signal(g, &signal)?, g.upload(&table, &[table.len()], DType::U32)?, g.upload(&frame_clip, &[n], DType::U32)?, n))
}

/// The STFT power of many clips at once against a direct float64 DFT: both first stages (radix
/// 2 when log2(n_fft / 2) is odd, radix 4 when even), both read paths (clips padded to whole
/// texels or not), and a signal wrapping over texture rows (the texture side lowered to 256).
fn stft_power(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let limits = LoweredLimits::new(g);
    let all = [(16, 3, 0, false), (32, 5, 0, false), (64, 16, 0, true), (64, 16, 0, false), (512, 100, 0, true), (1024, 256, 0, true), (2048, 512, 0, false), (64, 16, 256, true)];
    let quick = [(16, 3, 0, false), (64, 16, 0, true), (1024, 256, 0, true), (64, 16, 256, true)];
    for (n_fft, hop, side, aligned) in if size == Size::Quick { &quick[..] } else { &all[..] } {
        let (n_fft, hop, side, aligned) = (*n_fft, *hop, *side, *aligned);
        limits.texture_side(if side == 0 { u32::MAX } else { side });
        let layout = SpectrumLayout::new(n_fft, hop)?;
        // Lengths below one frame, odd ones, one sample, and a few frames' worth.
        let lens = [1usize, 2, n_fft / 2 + 1, n_fft - 1, 3 * n_fft + 7, 2500];
        let clips: Vec<Vec<f32>> = lens.iter().map(|&n| rng.vec(n, -1.0, 1.0)).collect();
        let (signal, table, frame_clip, frames) = upload_clips(g, &clips, &layout, aligned)?;
        if side != 0 && signal.height() <= 1 {
            bail!("stft: the signal should wrap over texture rows with the side lowered to {side}");
        }
        let window: Vec<f32> = stft::hann(n_fft).iter().map(|&w| w as f32).collect();
        let window = stft::upload_window(g, &window)?;
        // Spectra poisoned with NaN first, so an unwritten bin fails.
        let spectra = g.upload_texture(&vec![f32::NAN; frames * layout.stride], (layout.stride / 4) as u32, frames as u32)?;
        let mut step = g.step("selftest.stft");
        stft::power(&mut step, &layout, &signal, &table, aligned, &frame_clip, &window, &spectra)?;
        step.submit()?;
        let got = g.read_texture(&spectra)?;
        let mut row = 0;
        for (c, clip) in clips.iter().enumerate() {
            for (f, want) in stft::reference(clip, &layout).iter().enumerate() {
                let got_row = &got[row * layout.stride..(row + 1) * layout.stride];
                let mut want_row = want.clone();
                want_row.resize(layout.stride, 0.0);
                // float32 FFT: error grows like log2(n) * eps relative to the frame's energy.
                let scale = want.iter().sum::<f64>().max(1e-30);
                t.close(&format!("stft n_fft {n_fft} hop {hop} clip {c} (len {}) frame {f}", clip.len()), got_row, &want_row, 1e-6 * scale, 0.0);
                row += 1;
            }
        }
    }
    Ok(())
}

/// The frame descriptors against their float64 references: the spectral ones on the GPU's own
/// power spectra of random clips (so that only the descriptor kernel is compared), with a
/// silent clip (every sum zero) among them; the zero-crossing rate exactly, on clips with
/// values at and within the zero threshold; deltas of random rows in clips longer and shorter
/// than the delta window. Outputs are poisoned with NaN first.
fn frame_descriptors(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let settings: &[(usize, usize)] = if size == Size::Quick { &[(64, 16)] } else { &[(64, 16), (512, 128), (1024, 256)] };
    for &(n_fft, hop) in settings {
        let layout = SpectrumLayout::new(n_fft, hop)?;
        let lens = [1usize, 3, n_fft / 2 + 3, 2 * n_fft + 5, 9 * hop + 1];
        let mut clips: Vec<Vec<f32>> = lens.iter().map(|&n| rng.vec(n, -1.0, 1.0)).collect();
        clips.push(vec![0.0; n_fft + 3]);
        // Exact zeros, values inside the threshold (either sign) and tiny negatives past it.
        clips.push((0..3 * hop + 2).map(|i| [0.0, -1e-11, 1e-11, -2e-10, 0.5, -0.25][i % 6]).collect());
        let (signal, table, frame_clip, frames) = upload_clips(g, &clips, &layout, true)?;
        let window: Vec<f32> = stft::hann(n_fft).iter().map(|&w| w as f32).collect();
        let window = stft::upload_window(g, &window)?;
        let spectra = g.upload_texture(&vec![0.0; frames * layout.stride], (layout.stride / 4) as u32, frames as u32)?;
        let poisoned = || g.upload_f32(&vec![f32::NAN; frames], &[frames]);
        let shape = SpectralShape { rms: poisoned()?, centroid: poisoned()?, bandwidth: poisoned()?, rolloff: poisoned()?, flatness: poisoned()? };
        let zcr = poisoned()?;
        let sr = 16_000.0;
        let mut step = g.step("selftest.descriptors");
        stft::power(&mut step, &layout, &signal, &table, true, &frame_clip, &window, &spectra)?;
        descriptors::spectral_shape(&mut step, &spectra, frames, n_fft, sr, &shape)?;
        descriptors::zero_crossing_rate(&mut step, &signal, &table, &frame_clip, n_fft, hop, &zcr)?;
        step.submit()?;
        let power = g.read_texture(&spectra)?;
        let want: Vec<[f64; 5]> = (0..frames)
            .map(|f| descriptors::spectral_reference(&power[f * layout.stride..][..layout.n_bins].iter().map(|&v| v as f64).collect::<Vec<_>>(), n_fft, sr))
            .collect();
        let outputs = [("rms", &shape.rms, 1e-6), ("centroid", &shape.centroid, 0.0), ("bandwidth", &shape.bandwidth, 0.0), ("rolloff", &shape.rolloff, 0.0), ("flatness", &shape.flatness, 1e-6)];
        for (k, (name, got, atol)) in outputs.into_iter().enumerate() {
            let got = g.read_f32(got)?;
            let column: Vec<f64> = want.iter().map(|w| w[k]).collect();
            if name == "rolloff" {
                // The first bin whose running sum reaches 85%: a float32 running sum may cross
                // one bin earlier or later than the float64 one where they are that close.
                let bin = sr / n_fft as f64;
                t.close(&format!("rolloff n_fft {n_fft}"), &got, &column, bin * 1.001, 0.0);
            } else {
                t.close(&format!("{name} n_fft {n_fft}"), &got, &column, atol, 1e-4);
            }
        }
        let want_zcr: Vec<f64> = clips.iter().flat_map(|c| descriptors::zero_crossing_reference(c, n_fft, hop)).collect();
        t.close(&format!("zcr n_fft {n_fft} hop {hop}"), &g.read_f32(&zcr)?, &want_zcr, 0.0, 0.0);

        let cols = 3;
        let x = rng.vec(frames * cols, -2.0, 2.0);
        let tx = g.upload_f32(&x, &[frames, cols])?;
        let dx = g.upload_f32(&vec![f32::NAN; frames * cols], &[frames, cols])?;
        let mut step = g.step("selftest.delta");
        descriptors::delta(&mut step, &table, &frame_clip, &tx, &dx)?;
        step.submit()?;
        let mut want_dx = vec![0.0; frames * cols];
        let mut first = 0;
        for c in &clips {
            let n = layout.frames(c.len());
            for col in 0..cols {
                let rows: Vec<f64> = (0..n).map(|r| x[(first + r) * cols + col] as f64).collect();
                for (r, v) in descriptors::delta_reference(&rows).into_iter().enumerate() {
                    want_dx[(first + r) * cols + col] = v;
                }
            }
            first += n;
        }
        t.require(clips.iter().any(|c| layout.frames(c.len()) < descriptors::DELTA_WIDTH) && clips.iter().any(|c| layout.frames(c.len()) > descriptors::DELTA_WIDTH), || "delta: the check needs clips on both sides of the window".into());
        t.close(&format!("delta n_fft {n_fft}"), &g.read_f32(&dx)?, &want_dx, 1e-6, 1e-5);
    }
    Ok(())
}

/// The difference function of every frame against its float64 reference (random clips, a
/// silent one, a clip shorter than a frame, and tones with noise that have clear troughs),
/// and yin's choice on the GPU's own difference function against the reference's choice on
/// the same values. Outputs are poisoned with NaN first.
fn pitch_kernels(g: &Gpu, rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let settings: &[(usize, usize, f64)] = if size == Size::Quick { &[(1024, 256, 16_000.0)] } else { &[(1024, 256, 16_000.0), (512, 100, 8_000.0), (2048, 512, 48_000.0)] };
    for &(frame_length, hop, sr) in settings {
        let periods = Periods::new(sr, frame_length, pitch::FMIN, pitch::FMAX)?;
        let layout = SpectrumLayout::new(frame_length, hop)?;
        let tone = |hz: f64, n: usize, rng: &mut SplitMix64| -> Vec<f32> {
            (0..n).map(|i| (0.5 * (std::f64::consts::TAU * hz * i as f64 / sr).sin()) as f32 + rng.uniform(-0.05, 0.05)).collect()
        };
        let mut clips: Vec<Vec<f32>> = vec![rng.vec(3 * frame_length + 17, -1.0, 1.0), vec![0.0; frame_length + 5], rng.vec(frame_length / 3, -1.0, 1.0)];
        clips.push(tone(110.0, 4 * frame_length + 3, rng));
        clips.push(tone(347.0, 2 * frame_length, rng));
        let (signal, table, frame_clip, frames) = upload_clips(g, &clips, &layout, true)?;
        let cmndf = g.upload_f32(&vec![f32::NAN; frames * periods.len()], &[frames, periods.len()])?;
        let f0 = g.upload_f32(&vec![f32::NAN; frames], &[frames])?;
        let bins = pitch::pitch_bins(pitch::FMIN, pitch::FMAX);
        let observed = g.upload_f32(&vec![f32::NAN; frames * bins], &[frames, bins])?;
        let voiced = g.upload_f32(&vec![f32::NAN; frames], &[frames])?;
        let priors = pitch::observation_priors();
        let priors = g.upload_f32(&priors, &[priors.len()])?;
        let mut step = g.step("selftest.pitch");
        pitch::cmndf(&mut step, &signal, &table, &frame_clip, pitch::Framing { length: frame_length, hop, periods }, &cmndf)?;
        pitch::yin(&mut step, &cmndf, periods, sr, &f0)?;
        pitch::pyin_observe(&mut step, &cmndf, periods, sr, &priors, &observed, &voiced)?;
        step.submit()?;
        let got = g.read_f32(&cmndf)?;
        let (got_observed, got_voiced) = (g.read_f32(&observed)?, g.read_f32(&voiced)?);
        // The other workgroup width gives the same values, bit for bit (every sum in the same
        // order whatever the width).
        let this = pitch::pitch_lanes(g);
        for lanes in pitch::PITCH_LANES.into_iter().filter(|&l| l != this) {
            let (cmndf2, observed2, voiced2) = (g.upload_f32(&vec![f32::NAN; frames * periods.len()], &[frames, periods.len()])?, g.upload_f32(&vec![f32::NAN; frames * bins], &[frames, bins])?, g.upload_f32(&vec![f32::NAN; frames], &[frames])?);
            let mut step = g.step("selftest.pitch_lanes");
            pitch::cmndf_with(&mut step, &signal, &table, &frame_clip, pitch::Framing { length: frame_length, hop, periods }, &cmndf2, lanes)?;
            pitch::pyin_observe_with(&mut step, &cmndf2, periods, sr, &priors, &observed2, &voiced2, lanes)?;
            step.submit()?;
            let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            t.require(same(&g.read_f32(&cmndf2)?, &got), || format!("cmndf frame {frame_length} at {sr} Hz: {lanes} lanes differ from {this}"));
            t.require(same(&g.read_f32(&observed2)?, &got_observed) && same(&g.read_f32(&voiced2)?, &got_voiced), || format!("pyin frame {frame_length} at {sr} Hz: {lanes} lanes differ from {this}"));
        }
        let want: Vec<f64> = clips.iter().flat_map(|c| pitch::frames_of(c, frame_length, hop)).flat_map(|frame| pitch::cmndf_reference(&frame, periods)).collect();
        t.close(&format!("cmndf frame {frame_length} at {sr} Hz"), &got, &want, 1e-4, 1e-4);
        let want_f0: Vec<f64> = got.chunks(periods.len()).map(|row| pitch::yin_reference(&row.iter().map(|&v| v as f64).collect::<Vec<_>>(), periods, sr)).collect();
        t.close(&format!("yin frame {frame_length} at {sr} Hz"), &g.read_f32(&f0)?, &want_f0, 0.0, 1e-5);
        // pyin's observations on the same difference function; a frame with a candidate on a
        // bin's rounding boundary is compared by its voiced probability only.
        let (mut got_rows, mut want_rows, mut want_voiced) = (Vec::new(), Vec::new(), Vec::new());
        for (fr, row) in got.chunks(periods.len()).enumerate() {
            let o = pitch::pyin_observe_reference(&row.iter().map(|&v| v as f64).collect::<Vec<_>>(), periods, sr);
            if !o.near_boundary {
                got_rows.extend_from_slice(&got_observed[fr * bins..(fr + 1) * bins]);
                want_rows.extend(o.observed);
            }
            want_voiced.push(o.voiced);
        }
        t.require(got_rows.len() * 10 >= frames * bins * 9, || format!("pyin: only {} of {frames} frames away from bin boundaries", got_rows.len() / bins));
        t.close(&format!("pyin observations frame {frame_length} at {sr} Hz"), &got_rows, &want_rows, 1e-6, 1e-4);
        t.close(&format!("pyin voiced probability frame {frame_length} at {sr} Hz"), &got_voiced, &want_voiced, 1e-6, 1e-4);
        t.require(want_voiced.iter().any(|&v| v > 0.5) && want_voiced.iter().any(|&v| v < 0.5), || "pyin: the check needs voiced and unvoiced frames".into());
        // pyin's decoding of those observations against the full float64 Viterbi, clip by clip.
        let width = pitch::transition_width(sr, hop);
        let band = pitch::transition_band(bins, width);
        let band = g.upload_f32(&band, &[band.len()])?;
        let longest = clips.iter().map(|c| layout.frames(c.len())).max().unwrap_or(0);
        // Both widths of the kernel, whichever this device would choose.
        let mut decoded_by = Vec::new();
        for lanes in [pitch::ViterbiLanes::Wide, pitch::ViterbiLanes::Narrow] {
            let decoded = g.upload_f32(&vec![f32::NAN; frames], &[frames])?;
            let mut step = g.step("selftest.pyin_decode");
            pitch::pyin_decode_with(&mut step, &observed, &voiced, &table, longest, &band, width, &decoded, lanes)?;
            step.submit()?;
            decoded_by.push((lanes, g.read_f32(&decoded)?));
        }
        let mut want_f0 = Vec::new();
        let mut first = 0;
        for c in &clips {
            let n = layout.frames(c.len());
            let rows: Vec<Vec<f64>> = (first..first + n).map(|fr| got_observed[fr * bins..(fr + 1) * bins].iter().map(|&v| v as f64).collect()).collect();
            let v: Vec<f64> = got_voiced[first..first + n].iter().map(|&v| v as f64).collect();
            want_f0.extend(pitch::pyin_decode_reference(&rows, &v, width));
            first += n;
        }
        for (lanes, got_f0) in &decoded_by {
            t.close(&format!("pyin f0 frame {frame_length} at {sr} Hz, {lanes:?} Viterbi"), got_f0, &want_f0, 0.0, 1e-5);
        }
        t.require(want_f0.iter().any(|&f| f > 0.0) && want_f0.contains(&0.0), || format!("pyin decode: the check needs voiced and unvoiced frames: {want_f0:?}"));
        // The tones' frames away from the clip edges find the tone (no octave errors; within
        // 3%, as the noise and the period's quantisation allow).
        let f0s = g.read_f32(&f0)?;
        for (c, hz) in [(3, 110.0), (4, 347.0)] {
            let start: usize = clips[..c].iter().map(|x| layout.frames(x.len())).sum();
            let inner = &f0s[start + 2..start + layout.frames(clips[c].len()) - 2];
            t.require(inner.iter().all(|&v| ((v as f64) / hz - 1.0).abs() < 0.03), || format!("yin on a {hz} Hz tone at {sr} Hz: {inner:?}"));
        }
    }
    Ok(())
}

/// Banded filterbank rows (zeros outside a random range) and one all-zero row.
fn filterbank(g: &Gpu, rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    let (bins, stride, frames) = (37, 40, 9);
    let spectra: Vec<f32> = (0..frames * stride).map(|i| if i % stride < bins { rng.uniform(0.0, 4.0) } else { 0.0 }).collect();
    let t_spectra = g.upload_texture(&spectra, (stride / 4) as u32, frames as u32)?;
    let weights: Vec<Vec<f64>> = (0..7)
        .map(|r| {
            let lo = rng.next_u64() as usize % bins;
            let hi = lo + rng.next_u64() as usize % (bins - lo) + 1;
            (0..bins).map(|b| if r != 3 && b >= lo && b < hi { rng.uniform(0.0, 1.0) as f64 } else { 0.0 }).collect()
        })
        .collect();
    let fb = Filterbank::upload(g, &weights, stride)?;
    let out = g.upload_f32(&vec![f32::NAN; frames * 7], &[frames, 7])?;
    let mut step = g.step("selftest.filterbank");
    filterbank::apply(&mut step, &fb, &t_spectra, frames, &out, "selftest")?;
    step.submit()?;
    // The weights are rounded to f32 on upload; the reference uses the same values.
    let w32: Vec<Vec<f64>> = weights.iter().map(|r| r.iter().map(|&v| v as f32 as f64).collect()).collect();
    let want: Vec<f64> = (0..frames)
        .flat_map(|f| {
            let s: Vec<f64> = spectra[f * stride..f * stride + bins].iter().map(|&v| v as f64).collect();
            filterbank::reference(&s, &w32)
        })
        .collect();
    t.close("filterbank", &g.read_f32(&out)?, &want, 1e-5, 1e-5);
    Ok(())
}

/// librosa 0.11 golden files (tools/golden/make_golden.py) compiled in: the synthetic signals.
/// The tests add the two 48 kHz RAVDESS originals from the shared data.
pub const EMBEDDED_GOLDENS: [(&str, &[u8]); 5] = [
    ("silence", include_bytes!("../../tests/golden/silence.safetensors")),
    ("tone440", include_bytes!("../../tests/golden/tone440.safetensors")),
    ("chirp", include_bytes!("../../tests/golden/chirp.safetensors")),
    ("noise", include_bytes!("../../tests/golden/noise.safetensors")),
    ("short", include_bytes!("../../tests/golden/short.safetensors")),
];

// Absolute tolerances, about 5x the largest error measured on these signals (docs/results/history.md, "Feature parity with librosa 0.11" has
// the table). float32 FFTs reproduce librosa's float64 ones to ~1e-7 of each frame's energy, so
// mel powers agree to ~1e-4 relative (1e-3 dB) and everything derived from them follows.
const TOL_MEL_DB: f64 = 5e-3;
const TOL_MFCC: f64 = 2e-3;
const TOL_CHROMA: f64 = 2e-5;
const TOL_CONTRAST: f64 = 0.03;
/// Time averages of MFCC, chroma and contrast (contrast only where every valley is resolvable).
const TOL_MEAN: [f64; 3] = [1e-3, 1e-6, 0.01];
/// Contrast is compared where the band's valley lies within this many dB (20 log10) of its
/// frame's largest magnitude; below it float32 FFT noise dominates the valley.
const RESOLVABLE_VALLEY_DB: f32 = -90.0;
/// Pure synthetic signals whose far bands hold only numerical noise (valleys > 100 dB below the
/// frame maximum); their contrast time averages are averages of noise and are not compared.
const NOISE_FLOOR_VALLEYS: [&str; 2] = ["tone440", "chirp"];

/// One librosa golden file: its tensors and metadata.
pub struct Golden<'b> {
    st: SafeTensors<'b>,
    sample_rate: u32,
}

impl<'b> Golden<'b> {
    pub fn parse(bytes: &'b [u8]) -> Result<Golden<'b>> {
        let (_, meta) = SafeTensors::read_metadata(bytes)?;
        let sample_rate = meta.metadata().as_ref().and_then(|m| m.get("sample_rate")).context("golden file without sample_rate")?.parse()?;
        Ok(Golden { st: SafeTensors::deserialize(bytes)?, sample_rate })
    }

    /// (data, shape) of a float32 tensor.
    pub fn tensor(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self.st.tensor(name).with_context(|| format!("golden tensor {name}"))?;
        Ok((bytemuck::pod_collect_to_vec(t.data()), t.shape().to_vec()))
    }
}

/// Features of `signal` at librosa's defaults (tuning estimated on the GPU) and at ser's,
/// against the golden file frame by frame and as time averages. Each feature's largest error
/// goes into the tally as a ratio to its tolerance.
pub fn compare_with_librosa(g: &Gpu, name: &str, golden: &Golden, signal: &[f32], t: &mut Tally) -> Result<()> {
    for setting in ["librosa", "ser"] {
        let cfg = match setting {
            "librosa" => FeatureConfig::librosa(golden.sample_rate),
            _ => FeatureConfig { sample_rate: golden.sample_rate, ..FeatureConfig::default() },
        };
        let ex = Extractor::new(g, &cfg)?;
        let parts = ex.extract_parts(g, &[signal])?;
        let tuning = golden.tensor(&format!("{setting}.tuning"))?.0[0];
        // Estimated (librosa setting) or fixed at 0 (ser's): the same histogram bin as librosa.
        t.require(parts.tunings[0] as f32 == tuning, || format!("{name} {setting}: tuning {} but librosa estimated {tuning}", parts.tunings[0]));
        let (first, frames) = parts.clip_frames[0];
        for (feat, ours, tol) in [("mel_db", &parts.mel_db, TOL_MEL_DB), ("mfcc", &parts.mfcc, TOL_MFCC), ("chroma", &parts.chroma, TOL_CHROMA), ("contrast", &parts.contrast, TOL_CONTRAST)] {
            let (gold, shape) = golden.tensor(&format!("{setting}.{feat}"))?;
            let rows = shape[0];
            if shape[1] != frames {
                t.fault(format!("{name} {setting} {feat}: {frames} frames, librosa has {}", shape[1]));
                continue;
            }
            // Ours frame-major [frames, rows], librosa's [rows, frames]; contrast only where
            // the valley is resolvable (the rest as NaN = "skip").
            let mask = if feat == "contrast" { Some(golden.tensor(&format!("{setting}.contrast_valley_rel_db"))?.0) } else { None };
            let (mut got, mut want) = (Vec::new(), Vec::new());
            for tt in 0..frames {
                for r in 0..rows {
                    if mask.as_ref().is_none_or(|m| m[r * frames + tt] > RESOLVABLE_VALLEY_DB) {
                        got.push(ours[(first + tt) * rows + r]);
                        want.push(gold[r * frames + tt] as f64);
                    }
                }
            }
            t.close(&format!("{name} {setting} {feat}"), &got, &want, tol, 0.0);
            if let Some(k) = ["mfcc", "chroma", "contrast"].iter().position(|f| *f == feat) {
                if feat == "contrast" && NOISE_FLOOR_VALLEYS.contains(&name) {
                    continue;
                }
                // Time averages, as the classical models use them.
                let mean_of = |at: &dyn Fn(usize) -> f64| (0..frames).map(at).sum::<f64>() / frames as f64;
                let ours_mean: Vec<f32> = (0..rows).map(|r| mean_of(&|tt| ours[(first + tt) * rows + r] as f64) as f32).collect();
                let gold_mean: Vec<f64> = (0..rows).map(|r| mean_of(&|tt| gold[r * frames + tt] as f64)).collect();
                t.close(&format!("{name} {setting} {feat} time average"), &ours_mean, &gold_mean, TOL_MEAN[k], 0.0);
            }
        }
        compare_descriptors(g, name, golden, signal, setting, &cfg, &parts, t)?;
    }
    Ok(())
}

/// (atol, rtol) of each frame descriptor against librosa, about 5x the largest error measured
/// on the golden signals (docs/RESULTS.md, "Frame descriptors against librosa"); the
/// zero-crossing rate is exact.
const TOL_DESCRIPTORS: [(&str, f64, f64); 5] = [("rms", 1e-6, 5e-5), ("zcr", 0.0, 0.0), ("centroid", 0.01, 2e-4), ("bandwidth", 0.01, 1e-4), ("flatness", 7e-5, 5e-3)];
/// A cent as a frequency ratio.
const CENT: f64 = 1.000_577_789_506_554_9;
/// Frames quieter than this rms (-80 dB of full scale) are not held to librosa's yin.
const YIN_AUDIBLE_RMS: f64 = 1e-4;
/// The bandwidth of a pure tone or chirp is the spread of the FFT's rounding noise (about 1e-7
/// of the peak, weighted by its squared distance from the centroid), where two float32 FFTs
/// differ by up to 13% of a 10 Hz bandwidth; on those signals it is held to this share.
const TOL_TONAL_BANDWIDTH: f64 = 0.2;

/// The frame descriptors and the deltas of MFCC and rms against librosa's, frame by frame.
/// Rolloff is the first bin where a running sum reaches 85%: where float32 sums of two FFTs
/// cross that share a bin apart, it differs by one bin, so it is held to one bin and most
/// frames must agree exactly.
#[allow(clippy::too_many_arguments)]
fn compare_descriptors(g: &Gpu, name: &str, golden: &Golden, signal: &[f32], setting: &str, cfg: &FeatureConfig, parts: &crate::features::FeatureParts, t: &mut Tally) -> Result<()> {
    let (first, frames) = parts.clip_frames[0];
    let ours = |feat: &str| -> &[f32] {
        match feat {
            "rms" => &parts.rms,
            "zcr" => &parts.zcr,
            "centroid" => &parts.centroid,
            "bandwidth" => &parts.bandwidth,
            "rolloff" => &parts.rolloff,
            _ => &parts.flatness,
        }
    };
    for (feat, atol, rtol) in TOL_DESCRIPTORS {
        let (atol, rtol) = if feat == "bandwidth" && NOISE_FLOOR_VALLEYS.contains(&name) { (0.0, TOL_TONAL_BANDWIDTH) } else { (atol, rtol) };
        let gold = golden.tensor(&format!("{setting}.{feat}"))?.0;
        t.close(&format!("{name} {setting} {feat}"), &ours(feat)[first..first + frames], &gold.iter().map(|&v| v as f64).collect::<Vec<_>>(), atol, rtol);
    }
    let bin = cfg.sample_rate as f64 / cfg.n_fft as f64;
    let gold = golden.tensor(&format!("{setting}.rolloff"))?.0;
    let got = &parts.rolloff[first..first + frames];
    t.close(&format!("{name} {setting} rolloff"), got, &gold.iter().map(|&v| v as f64).collect::<Vec<_>>(), bin * 1.001, 0.0);
    let exact = got.iter().zip(&gold).filter(|(a, b)| (**a as f64 - **b as f64).abs() < bin / 2.0).count();
    t.require(exact * 10 >= frames * 9, || format!("{name} {setting} rolloff: {exact} of {frames} frames on librosa's bin"));
    // yin: within a cent of librosa on every frame louder than -80 dB (rms 1e-4); quieter
    // frames' difference functions are rounding noise (digital near-silence at 1e-7 to 1e-9 in
    // the RAVDESS originals), where librosa's FFT and ser's direct sums pick different troughs.
    if !parts.yin.is_empty() {
        let gold = golden.tensor(&format!("{setting}.yin"))?.0;
        let rms = golden.tensor(&format!("{setting}.rms"))?.0;
        let ours = &parts.yin[first..first + frames];
        let (got, want): (Vec<f32>, Vec<f64>) = (0..frames).filter(|&i| rms[i] as f64 >= YIN_AUDIBLE_RMS).map(|i| (ours[i], gold[i] as f64)).unzip();
        t.close(&format!("{name} {setting} yin (frames above -80 dB)"), &got, &want, 0.0, CENT - 1.0);
        let within = ours.iter().zip(&gold).filter(|(a, b)| (**a as f64 / **b as f64 - 1.0).abs() <= CENT - 1.0).count();
        t.require(within * 100 >= frames * 97, || format!("{name} {setting} yin: {within} of {frames} frames within a cent of librosa's"));
        // pyin's voiced probability, likewise on the frames above -80 dB (within 3.6e-7
        // measured); on near-silence a rounding-noise trough may move no_trough_prob (0.01).
        let gold = golden.tensor(&format!("{setting}.voiced_prob"))?.0;
        let ours = &parts.voiced_prob[first..first + frames];
        let (got, want): (Vec<f32>, Vec<f64>) = (0..frames).filter(|&i| rms[i] as f64 >= YIN_AUDIBLE_RMS).map(|i| (ours[i], gold[i] as f64)).unzip();
        t.close(&format!("{name} {setting} voiced_prob (frames above -80 dB)"), &got, &want, 2e-6, 0.0);
        t.close(&format!("{name} {setting} voiced_prob"), ours, &gold.iter().map(|&v| v as f64).collect::<Vec<_>>(), 0.011, 0.0);
        // pyin's f0 (0 where unvoiced): the same voicing and within a cent on every frame
        // above -80 dB (measured: on every frame of the golden signals), and on 99% of all.
        let gold = golden.tensor(&format!("{setting}.f0"))?.0;
        let ours = &parts.f0[first..first + frames];
        let agrees = |i: usize| (ours[i] > 0.0) == (gold[i] > 0.0) && (gold[i] == 0.0 || (ours[i] as f64 / gold[i] as f64 - 1.0).abs() <= CENT - 1.0);
        let (got, want): (Vec<f32>, Vec<f64>) = (0..frames).filter(|&i| rms[i] as f64 >= YIN_AUDIBLE_RMS).map(|i| (ours[i], gold[i] as f64)).unzip();
        t.close(&format!("{name} {setting} pyin f0 (frames above -80 dB)"), &got, &want, 0.0, CENT - 1.0);
        let agreeing = (0..frames).filter(|&i| agrees(i)).count();
        t.require(agreeing * 100 >= frames * 99, || format!("{name} {setting} pyin f0: {agreeing} of {frames} frames agree with librosa's"));
    }
    // Deltas, where librosa computes them (9 frames or more).
    if let Ok((gold_mfcc, shape)) = golden.tensor(&format!("{setting}.delta_mfcc")) {
        use crate::features::{Block, Descriptor};
        let with_deltas = FeatureConfig { set: vec![Block { descriptor: Descriptor::Mfcc, delta: true }, Block { descriptor: Descriptor::Rms, delta: true }], ..cfg.clone() };
        let f = Extractor::new(g, &with_deltas)?.extract(g, &[signal])?;
        let rows = shape[0];
        let gold_rms = golden.tensor(&format!("{setting}.delta_rms"))?.0;
        let got_mfcc: Vec<f32> = (0..frames).flat_map(|tt| f.frames[tt * f.dim..][..rows].to_vec()).collect();
        let gold_mfcc = &gold_mfcc;
        let want_mfcc: Vec<f64> = (0..frames).flat_map(|tt| (0..rows).map(move |r| gold_mfcc[r * frames + tt] as f64)).collect();
        t.close(&format!("{name} {setting} delta_mfcc"), &got_mfcc, &want_mfcc, TOL_MFCC, 0.0);
        let got_rms: Vec<f32> = (0..frames).map(|tt| f.frames[tt * f.dim + rows]).collect();
        t.close(&format!("{name} {setting} delta_rms"), &got_rms, &gold_rms.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1e-6, 1e-4);
    }
    Ok(())
}

fn features_vs_librosa(g: &Gpu, _rng: &mut SplitMix64, size: Size, t: &mut Tally) -> Result<()> {
    let goldens = if size == Size::Quick { &EMBEDDED_GOLDENS[1..3] } else { &EMBEDDED_GOLDENS[..] };
    for (name, bytes) in goldens {
        let golden = Golden::parse(bytes)?;
        let signal = golden.tensor("signal")?.0;
        compare_with_librosa(g, name, &golden, &signal, t)?;
    }
    Ok(())
}

/// The bundled clips (RAVDESS originals, 48 kHz, one stereo; CC BY-NC-SA 4.0, Livingstone &
/// Russo 2018), compiled in with what the built-in model gave for them when it shipped.
const BUNDLED_CLIPS: [(&str, &[u8]); 4] = [
    ("03-01-01-01-01-01-01.wav", include_bytes!("../../examples/clips/03-01-01-01-01-01-01.wav")),
    ("03-01-03-02-01-02-04.wav", include_bytes!("../../examples/clips/03-01-03-02-01-02-04.wav")),
    ("03-01-05-02-02-01-07.wav", include_bytes!("../../examples/clips/03-01-05-02-02-01-07.wav")),
    ("03-02-04-02-02-01-11.wav", include_bytes!("../../examples/clips/03-02-04-02-02-01-11.wav")),
];
const RECORDED: &str = include_str!("../../examples/clips/expected.jsonl");

/// Every probability within this of the recorded one, and the same label. Recorded on lavapipe;
/// through GL the largest difference is ~5e-7, so this leaves room for other adapters' sin/cos,
/// exp and summation orders while catching any real fault (a wrong kernel moves them by 0.1-1).
pub const MODEL_TOLERANCE: f64 = 1e-3;

fn built_in_model(g: &Gpu, _rng: &mut SplitMix64, _size: Size, t: &mut Tally) -> Result<()> {
    let model = crate::infer::load_model(g, None)?;
    let rate = model.meta.data.features.sample_rate;
    let signals = BUNDLED_CLIPS
        .iter()
        .map(|(name, bytes)| crate::audio::decode_bytes(bytes).and_then(|a| crate::audio::to_rate(&a, rate)).with_context(|| name.to_string()))
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = BUNDLED_CLIPS.iter().map(|(n, _)| n.to_string()).collect();
    let predictions = model.predict_signals(g, &names, &signals.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
    for (line, p) in RECORDED.lines().zip(&predictions) {
        let want: serde_json::Value = serde_json::from_str(line)?;
        let label = want["label"].as_str().unwrap_or_default();
        t.require(p.label == label, || format!("{}: {} but the built-in model gave {label} when it shipped", p.file, p.label));
        let (got, want): (Vec<f32>, Vec<f64>) = p.probabilities.iter().map(|(class, v)| (*v, want["probabilities"][class].as_f64().unwrap_or(f64::NAN))).unzip();
        t.close(&format!("{} probabilities", p.file), &got, &want, MODEL_TOLERANCE, 0.0);
    }
    t.require(predictions.len() == RECORDED.lines().count(), || format!("{} predictions for {} recorded clips", predictions.len(), RECORDED.lines().count()));
    Ok(())
}
