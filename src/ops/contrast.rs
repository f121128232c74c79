//! Spectral contrast peaks and valleys (shaders/contrast.wgsl), with librosa's band layout.

use super::stft::fft_frequencies;
use crate::gpu::{ShaderFile, Access, DType, Gpu, KernelSpec, Step, Tensor, Texture};
use anyhow::{Result, bail};

pub const CONTRAST_WGSL: ShaderFile = ShaderFile {
    name: "contrast.wgsl",
    source: include_str!("../../shaders/contrast.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const CONTRAST: KernelSpec = KernelSpec {
    shader: &CONTRAST_WGSL,
    entry: "spectral_contrast",
    bindings: &[Access::Texture, Access::Read, Access::ReadWrite, Access::ReadWrite],
};

/// One octave band: bins [first, end) and how many extreme values to average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    pub first: usize,
    pub end: usize,
    pub q: usize,
}

/// librosa.feature.spectral_contrast's bands: [0, fmin], then octaves up to fmin * 2^n_bands,
/// each widened by one bin below, the last extended to Nyquist, all but the last dropping their
/// top bin; q = max(1, rint(quantile * bins in the widened band)).
pub fn bands(sample_rate: f64, n_fft: usize, fmin: f64, n_bands: usize, quantile: f64) -> Result<Vec<Band>> {
    if fmin <= 0.0 || n_bands == 0 || !(0.0 < quantile && quantile < 1.0) {
        bail!("spectral contrast needs fmin > 0, n_bands >= 1 and 0 < quantile < 1");
    }
    let freq = fft_frequencies(sample_rate, n_fft);
    let mut edges = vec![0.0];
    edges.extend((0..=n_bands).map(|k| fmin * 2f64.powi(k as i32)));
    if edges[..edges.len() - 1].iter().any(|&e| e >= sample_rate / 2.0) {
        bail!("spectral contrast: band edge exceeds Nyquist ({} Hz); reduce fmin ({fmin}) or the number of bands ({n_bands})", sample_rate / 2.0);
    }
    let mut out = Vec::new();
    for k in 0..=n_bands {
        let (lo, hi) = (edges[k], edges[k + 1]);
        let inside: Vec<usize> = (0..freq.len()).filter(|&b| freq[b] >= lo && freq[b] <= hi).collect();
        let (Some(&first_in), Some(&last_in)) = (inside.first(), inside.last()) else {
            bail!("spectral contrast: band {k} ({lo:.0}-{hi:.0} Hz) holds no FFT bin at n_fft = {n_fft}; raise n_fft or fmin");
        };
        let first = if k > 0 { first_in - 1 } else { first_in };
        let mut end = if k == n_bands { freq.len() } else { last_in + 1 };
        let count = end - first;
        if k < n_bands {
            end -= 1;
        }
        let q = ((quantile * count as f64).round_ties_even() as usize).max(1);
        if end <= first || end - first < q {
            bail!("spectral contrast: band {k} ({lo:.0}-{hi:.0} Hz) is too narrow at n_fft = {n_fft}; raise n_fft or fmin");
        }
        out.push(Band { first, end, q });
    }
    Ok(out)
}

/// The band table in the layout the kernel reads.
pub fn upload_bands(gpu: &Gpu, bands: &[Band]) -> Result<Tensor> {
    let flat: Vec<u32> = bands.iter().flat_map(|b| [b.first as u32, b.end as u32, b.q as u32, 0]).collect();
    gpu.upload(&flat, &[bands.len(), 4], DType::U32)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    frames: u32,
    bands: u32,
    stride: u32,
    _pad: u32,
}

/// peak and valley [frames, bands] from the first `frames` rows of power spectra (a texture of
/// stride / 4 texels per row).
pub fn peaks_and_valleys(step: &mut Step, spectra: &Texture, frames: usize, band_table: &Tensor, peak: &Tensor, valley: &Tensor) -> Result<()> {
    let n_bands = band_table.len() / 4;
    if peak.len() != frames * n_bands || valley.len() != peak.len() || (spectra.height() as usize) < frames {
        bail!("contrast: spectra {spectra:?}, peak {:?} / valley {:?} do not match {frames} frames x {n_bands} bands", peak.shape(), valley.shape());
    }
    let stride = spectra.width() as usize * 4;
    let p = Params { frames: frames as u32, bands: n_bands as u32, stride: stride as u32, _pad: 0 };
    let grid = [super::groups(frames * n_bands, 64)?, 1, 1];
    step.dispatch_bound(&CONTRAST, &[], &[spectra.into(), band_table.into(), peak.into(), valley.into()], bytemuck::bytes_of(&p), grid, "contrast.peaks_valleys")
}

/// Float64 reference for one frame of magnitudes: (peak, valley) per band.
pub fn reference(magnitude: &[f64], bands: &[Band]) -> Vec<(f64, f64)> {
    bands
        .iter()
        .map(|b| {
            let mut v = magnitude[b.first..b.end].to_vec();
            v.sort_by(f64::total_cmp);
            let valley = v[..b.q].iter().sum::<f64>() / b.q as f64;
            let peak = v[v.len() - b.q..].iter().sum::<f64>() / b.q as f64;
            (peak, valley)
        })
        .collect()
}
