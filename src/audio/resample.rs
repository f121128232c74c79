//! Sample-rate conversion: a polyphase windowed-sinc (Kaiser) low-pass resampler for any pair of
//! integer rates, aligned so that output sample j sits exactly at input time j * from / to, as
//! soxr (librosa's default resampler) aligns it. Output length is ceil(n * to / from), as
//! librosa's `resample(..., fix=True)` gives.
//!
//! The filter follows soxr's "high quality" recipe: flat to ~91% of the lower Nyquist frequency,
//! stopped by 100%, ~120 dB of stopband attenuation. tests/audio.rs compares it against soxr.

use anyhow::{Result, bail};

/// Passband edge and stopband edge as fractions of the lower Nyquist frequency.
const PASS: f64 = 0.913;
const STOP: f64 = 1.0;
/// Stopband attenuation in dB, which sets the Kaiser window's shape and the filter length.
const ATTENUATION_DB: f64 = 120.0;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Zeroth-order modified Bessel function of the first kind (series; converges fast for x < 50).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while term > 1e-17 * sum {
        term *= (x / (2.0 * k)).powi(2);
        sum += term;
        k += 1.0;
    }
    sum
}

/// The filter for one rate pair, as a table of `phases` polyphase branches of `taps` each.
struct Polyphase {
    up: u64,
    down: u64,
    taps: usize,
    /// First input sample of a branch relative to floor(output time).
    left: i64,
    table: Vec<f32>,
}

impl Polyphase {
    fn new(from: u32, to: u32) -> Polyphase {
        let g = gcd(from as u64, to as u64);
        let (down, up) = (from as u64 / g, to as u64 / g);
        // Cutoff and transition in cycles per input sample.
        let nyquist = 0.5 * (to as f64 / from as f64).min(1.0);
        let cutoff = nyquist * (PASS + STOP) / 2.0;
        let transition = nyquist * (STOP - PASS);
        // Kaiser's formulas for window shape and length.
        let beta = 0.1102 * (ATTENUATION_DB - 8.7);
        let length = ((ATTENUATION_DB - 8.0) / (2.285 * 2.0 * std::f64::consts::PI * transition)).ceil() as i64;
        let half = length / 2 + 1;
        let taps = (2 * half) as usize;
        let left = -half + 1;
        let mut table = vec![0f32; up as usize * taps];
        let i0_beta = bessel_i0(beta);
        for phase in 0..up {
            // Output time within the input grid: floor part dropped, fraction phase / up.
            let frac = phase as f64 / up as f64;
            for t in 0..taps {
                let offset = (left + t as i64) as f64 - frac; // input sample minus output time
                let x = offset / half as f64;
                let w = if x.abs() >= 1.0 { 0.0 } else { bessel_i0(beta * (1.0 - x * x).sqrt()) / i0_beta };
                let arg = 2.0 * cutoff * offset;
                let sinc = if arg == 0.0 { 1.0 } else { (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg) };
                table[phase as usize * taps + t] = (2.0 * cutoff * sinc * w) as f32;
            }
        }
        Polyphase { up, down, taps, left, table }
    }

    fn run(&self, x: &[f32]) -> Vec<f32> {
        let n_out = (x.len() as u64 * self.up).div_ceil(self.down) as usize;
        (0..n_out)
            .map(|j| {
                let pos = j as u64 * self.down;
                let base = (pos / self.up) as i64 + self.left;
                let branch = &self.table[(pos % self.up) as usize * self.taps..][..self.taps];
                let mut acc = 0.0f64;
                for (t, &h) in branch.iter().enumerate() {
                    let k = base + t as i64;
                    if k >= 0 && (k as usize) < x.len() {
                        acc += h as f64 * x[k as usize] as f64;
                    }
                }
                acc as f32
            })
            .collect()
    }
}

pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == 0 || to == 0 {
        bail!("cannot resample {from} Hz -> {to} Hz");
    }
    if from == to {
        return Ok(samples.to_vec());
    }
    Ok(Polyphase::new(from, to).run(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_a_tone_in_band_and_removes_one_above_the_new_nyquist() {
        let (from, to) = (48_000u32, 16_000u32);
        let tone = |f: f64| -> Vec<f32> { (0..48_000).map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / from as f64).sin() as f32).collect() };
        let rms = |v: &[f32]| (v[4000..v.len() - 4000].iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / (v.len() - 8000) as f64).sqrt();
        let pass = resample(&tone(1000.0), from, to).unwrap();
        assert!((rms(&pass) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-4, "1 kHz rms {}", rms(&pass));
        // The resampled 1 kHz tone is the same tone at the new rate, sample for sample.
        for (j, y) in pass.iter().enumerate().skip(4000).take(100) {
            let want = (2.0 * std::f64::consts::PI * 1000.0 * j as f64 / to as f64).sin();
            assert!((*y as f64 - want).abs() < 1e-4, "sample {j}: {y} vs {want}");
        }
        let stop = resample(&tone(9000.0), from, to).unwrap();
        assert!(rms(&stop) < 1e-5, "9 kHz leaks: rms {}", rms(&stop));
    }
}
