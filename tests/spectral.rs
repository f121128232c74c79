//! Spectral kernels (STFT, filterbanks, dB, DCT, chroma, contrast) against float64 references.

mod common;

use common::{Rng, assert_close, fresh_seed, gpu};
use ser::gpu::{DType, Gpu, Tensor};
use ser::ops::stft::{self, SpectrumLayout};

/// Uploads clips as the feature pipeline lays them out: concatenated samples, a clip table and
/// the clip of every frame.
fn upload_clips(g: &Gpu, clips: &[Vec<f32>], layout: &SpectrumLayout) -> (Tensor, Tensor, Tensor, usize) {
    let mut signal = Vec::new();
    let mut table = Vec::new();
    let mut frame_clip = Vec::new();
    for (i, c) in clips.iter().enumerate() {
        let frames = layout.frames(c.len());
        table.extend_from_slice(&[signal.len() as u32, c.len() as u32, frame_clip.len() as u32, frames as u32]);
        frame_clip.extend(std::iter::repeat_n(i as u32, frames));
        signal.extend_from_slice(c);
    }
    if signal.is_empty() {
        signal.push(0.0);
    }
    let n = frame_clip.len();
    (
        g.upload_f32(&signal, &[signal.len()]).unwrap(),
        g.upload(&table, &[table.len()], DType::U32).unwrap(),
        g.upload(&frame_clip, &[n], DType::U32).unwrap(),
        n,
    )
}

#[test]
fn stft_power_matches_a_direct_dft_for_many_clips_at_once() {
    let mut rng = Rng::new(fresh_seed("stft"));
    let g = &gpu().gpu;
    for (n_fft, hop) in [(4, 1), (8, 3), (64, 16), (512, 100), (2048, 512)] {
        let layout = SpectrumLayout::new(n_fft, hop).unwrap();
        // Lengths below one frame, odd ones, one sample, and a few frames' worth.
        let lens = [1usize, 2, n_fft / 2 + 1, n_fft - 1, 3 * n_fft + 7, 2500];
        let clips: Vec<Vec<f32>> = lens.iter().map(|&n| rng.vec(n, -1.0, 1.0)).collect();
        let (signal, table, frame_clip, frames) = upload_clips(g, &clips, &layout);
        let window: Vec<f32> = stft::hann(n_fft).iter().map(|&w| w as f32).collect();
        let window = g.upload_f32(&window, &[n_fft]).unwrap();
        let out = g.upload_f32(&vec![f32::NAN; frames * layout.stride], &[frames, layout.stride]).unwrap();
        let mut step = g.step("test.stft");
        stft::power(&mut step, &layout, &signal, &table, &frame_clip, &window, &out).unwrap();
        step.submit().unwrap();
        let got = g.read_f32(&out).unwrap();
        let mut row = 0;
        for (c, clip) in clips.iter().enumerate() {
            for (t, want) in stft::reference(clip, &layout).iter().enumerate() {
                let got_row = &got[row * layout.stride..(row + 1) * layout.stride];
                let mut want_row = want.clone();
                want_row.resize(layout.stride, 0.0);
                // float32 FFT: error grows like log2(n) * eps relative to the frame's energy.
                let scale = want.iter().sum::<f64>().max(1e-30);
                assert_close(&format!("n_fft {n_fft} hop {hop} clip {c} (len {}) frame {t}", clip.len()), got_row, &want_row, 1e-6 * scale, 0.0);
                row += 1;
            }
        }
    }
}
