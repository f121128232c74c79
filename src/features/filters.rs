//! Filterbanks and transforms built on the host in float64, exactly as librosa defines them, then
//! handed to the GPU as float32: mel (Slaney or HTK), chroma, the orthonormal DCT-II.

/// Hz to mel: HTK's formula, or Slaney's (linear below 1 kHz, logarithmic above; librosa's default).
pub fn hz_to_mel(f: f64, htk: bool) -> f64 {
    if htk {
        return 2595.0 * (1.0 + f / 700.0).log10();
    }
    let f_sp = 200.0 / 3.0;
    let (min_log_hz, logstep) = (1000.0, (6.4f64).ln() / 27.0);
    let min_log_mel = min_log_hz / f_sp;
    if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { f / f_sp }
}

pub fn mel_to_hz(m: f64, htk: bool) -> f64 {
    if htk {
        return 700.0 * (10f64.powf(m / 2595.0) - 1.0);
    }
    let f_sp = 200.0 / 3.0;
    let (min_log_hz, logstep) = (1000.0, (6.4f64).ln() / 27.0);
    let min_log_mel = min_log_hz / f_sp;
    if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m }
}

/// numpy's linspace(start, stop, n) with the endpoint.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { stop } else { start + step * i as f64 }).collect()
}

pub use crate::ops::stft::fft_frequencies;

/// `librosa.filters.mel`: [n_mels][n_fft / 2 + 1], triangular filters, Slaney area norm.
pub fn mel(sample_rate: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64, htk: bool) -> Vec<Vec<f64>> {
    let fft_f = fft_frequencies(sample_rate, n_fft);
    let mel_f: Vec<f64> =
        linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2).into_iter().map(|m| mel_to_hz(m, htk)).collect();
    (0..n_mels)
        .map(|i| {
            let (lo, mid, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
            let enorm = 2.0 / (hi - lo);
            fft_f
                .iter()
                .map(|&f| {
                    let lower = (f - lo) / (mid - lo);
                    let upper = (hi - f) / (hi - mid);
                    lower.min(upper).max(0.0) * enorm
                })
                .collect()
        })
        .collect()
}

/// `librosa.core.convert.hz_to_octs`.
fn hz_to_octs(f: f64, tuning: f64, bins_per_octave: usize) -> f64 {
    let a440 = 440.0 * 2f64.powf(tuning / bins_per_octave as f64);
    (f / (a440 / 16.0)).log2()
}

/// `librosa.filters.chroma` with its defaults (ctroct 5, octwidth 2, norm 2, base_c):
/// [n_chroma][n_fft / 2 + 1].
pub fn chroma(sample_rate: f64, n_fft: usize, n_chroma: usize, tuning: f64) -> Vec<Vec<f64>> {
    let nc = n_chroma as f64;
    let (ctroct, octwidth) = (5.0, 2.0);
    // Bin frequencies 1..n_fft (endpoint excluded), in chroma bins, with a fake bin 0 below them.
    let mut frqbins: Vec<f64> = (1..n_fft)
        .map(|i| nc * hz_to_octs(sample_rate * i as f64 / n_fft as f64, tuning, n_chroma))
        .collect();
    frqbins.insert(0, frqbins[0] - 1.5 * nc);
    let mut binwidth: Vec<f64> = frqbins.windows(2).map(|w| (w[1] - w[0]).max(1.0)).collect();
    binwidth.push(1.0);
    let half = (nc / 2.0).round();
    let mut wts = vec![vec![0.0; n_fft]; n_chroma];
    for (b, (&fb, &bw)) in frqbins.iter().zip(&binwidth).enumerate() {
        let mut column: Vec<f64> = (0..n_chroma)
            .map(|c| {
                let d = (fb - c as f64 + half + 10.0 * nc).rem_euclid(nc) - half;
                (-0.5 * (2.0 * d / bw).powi(2)).exp()
            })
            .collect();
        let norm = column.iter().map(|v| v * v).sum::<f64>().sqrt();
        let octave = (-0.5 * ((fb / nc - ctroct) / octwidth).powi(2)).exp();
        for (c, v) in column.iter_mut().enumerate() {
            // librosa.util.normalize leaves columns with a norm below the smallest normal as they are.
            let n = if norm < f64::MIN_POSITIVE { 1.0 } else { norm };
            wts[c][b] = *v / n * octave;
        }
    }
    // base_c: roll so that row 0 is C rather than A.
    let shift = 3 * (n_chroma / 12);
    (0..n_chroma).map(|c| wts[(c + shift) % n_chroma][..n_fft / 2 + 1].to_vec()).collect()
}

/// Orthonormal DCT-II (scipy's `dct(type=2, norm="ortho")`): [n_out][n_in].
pub fn dct_ortho(n_out: usize, n_in: usize) -> Vec<Vec<f64>> {
    let n = n_in as f64;
    (0..n_out)
        .map(|k| {
            let scale = if k == 0 { (1.0 / n).sqrt() } else { (2.0 / n).sqrt() };
            (0..n_in).map(|i| scale * (std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2.0 * n)).cos()).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scale_round_trips_and_matches_known_points() {
        for htk in [false, true] {
            for f in [0.0, 100.0, 999.0, 1000.0, 4000.0, 11025.0] {
                assert!((mel_to_hz(hz_to_mel(f, htk), htk) - f).abs() < 1e-9 * f.max(1.0));
            }
        }
        // librosa.hz_to_mel(1000) == 15 (Slaney), librosa.hz_to_mel(1000, htk=True) ~ 999.99.
        assert!((hz_to_mel(1000.0, false) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(1000.0, true) - 999.985_537_139_624_4).abs() < 1e-9);
    }

    #[test]
    fn dct_rows_are_orthonormal() {
        let d = dct_ortho(13, 13);
        for i in 0..13 {
            for j in 0..13 {
                let dot: f64 = d[i].iter().zip(&d[j]).map(|(a, b)| a * b).sum();
                assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }
}
