//! Batched STFT to the power spectrum (shaders/stft.wgsl), librosa's framing (center=True, zero
//! padding) and periodic Hann window. The FFT runs stage by stage through textures; the spectra
//! stay in a texture for the filterbanks, the chroma GEMM and spectral contrast.

use crate::gpu::{ShaderFile, Access, Gpu, KernelSpec, Step, TexelFormat, Tensor, Texture};
use anyhow::{Result, bail};

/// Centre frequency of each FFT bin (`librosa.fft_frequencies`: numpy's linspace from 0 to the
/// Nyquist frequency, the last bin exactly Nyquist).
pub fn fft_frequencies(sample_rate: f64, n_fft: usize) -> Vec<f64> {
    let n = n_fft / 2 + 1;
    if n == 1 {
        return vec![0.0];
    }
    let nyquist = sample_rate / 2.0;
    let step = nyquist / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { nyquist } else { step * i as f64 }).collect()
}

pub const STFT_WGSL: ShaderFile = ShaderFile {
    name: "stft.wgsl",
    source: include_str!("../../shaders/stft.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const FRAME_INFO: KernelSpec = KernelSpec {
    shader: &STFT_WGSL,
    entry: "frame_info",
    bindings: &[Access::Read, Access::Read, Access::TextureWriteUint],
};
const FIRST: KernelSpec = KernelSpec {
    shader: &STFT_WGSL,
    entry: "fft_first",
    bindings: &[Access::Texture, Access::Texture, Access::TextureUint, Access::TextureWrite],
};
const STAGE: KernelSpec =
    KernelSpec { shader: &STFT_WGSL, entry: "fft_stage", bindings: &[Access::Texture, Access::TextureWrite] };
const POWER: KernelSpec = KernelSpec {
    shader: &STFT_WGSL,
    entry: "fft_power",
    bindings: &[Access::Texture, Access::TextureWrite],
};

/// Shape of a batch of spectra: rows of `stride` floats, the first `n_bins` of them used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpectrumLayout {
    pub n_fft: usize,
    pub hop: usize,
    pub n_bins: usize,
    /// Row length: n_bins rounded up to a multiple of 4 (zeros past n_bins).
    pub stride: usize,
}

impl SpectrumLayout {
    pub fn new(n_fft: usize, hop: usize) -> Result<SpectrumLayout> {
        if !n_fft.is_power_of_two() || n_fft < 16 {
            bail!("n_fft = {n_fft}: the GPU FFT needs a power of two of at least 16");
        }
        if hop == 0 {
            bail!("hop length must be positive");
        }
        let n_bins = n_fft / 2 + 1;
        Ok(SpectrumLayout { n_fft, hop, n_bins, stride: n_bins.next_multiple_of(4) })
    }

    /// Frames librosa produces for `len` samples with center=True.
    pub fn frames(&self, len: usize) -> usize {
        1 + len / self.hop
    }
}

/// scipy's `get_window("hann", n, fftbins=True)`: the periodic Hann window, in float64.
pub fn hann(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).collect()
}

/// Texels (four samples) per row of a signal texture.
const SIGNAL_ROW: usize = 4096;

/// Uploads samples (all clips back to back; pad each clip to a multiple of 4 samples so that
/// frames read whole texels) as the texture [`power`] reads. Rows are a power of two of texels
/// wide, so that the kernels find a sample's texel with a shift and a mask (llvmpipe divides
/// one SIMD lane at a time).
pub fn upload_signal(gpu: &Gpu, samples: &[f32]) -> Result<Texture> {
    let side = gpu.max_texture_side() as usize;
    let width = SIGNAL_ROW.min(1 << side.ilog2());
    let rows = samples.len().div_ceil(4 * width).max(1);
    gpu.upload_texture(samples, width as u32, rows as u32)
        .map_err(|e| anyhow::anyhow!("stft: {} samples do not fit one signal texture: {e}", samples.len()))
}

/// Uploads the analysis window (n_fft values) as the texture [`power`] reads.
pub fn upload_window(gpu: &Gpu, window: &[f32]) -> Result<Texture> {
    if window.is_empty() || !window.len().is_multiple_of(4) {
        bail!("stft: a window of {} values is not whole texels", window.len());
    }
    gpu.upload_texture(window, (window.len() / 4) as u32, 1)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_fft: u32,
    hop: u32,
    stride: u32,
    frames: u32,
    ns: u32,
    sig_width: u32,
    sig_shift: u32,
    _pad: u32,
}

/// A texture for the power spectra of `frames` frames: one row per frame, `stride / 4` texels.
pub fn spectrum_texture(gpu: &Gpu, layout: &SpectrumLayout, frames: usize) -> Result<Texture> {
    let max = gpu.max_texture_side() as usize;
    if frames > max {
        bail!("stft: {frames} frames in one batch, over this adapter's texture side of {max}");
    }
    gpu.texture((layout.stride / 4) as u32, frames.max(1) as u32)
}

/// Records the power spectra of every frame of every clip into `spectra` (from
/// [`spectrum_texture`]).
/// `signal` comes from [`upload_signal`]; `clips` holds (sample offset, sample count, first
/// frame, frame count) per clip as u32; `frame_clip` the clip of each frame; `window` comes from
/// [`upload_window`]. `clips_aligned` says every clip's sample offset is a multiple of 4: with a
/// hop that is one too, frames read whole texels.
#[allow(clippy::too_many_arguments)]
pub fn power(step: &mut Step, layout: &SpectrumLayout, signal: &Texture, clips: &Tensor, clips_aligned: bool, frame_clip: &Tensor, window: &Texture, spectra: &Texture) -> Result<()> {
    let frames = frame_clip.len();
    if window.width() as usize * 4 != layout.n_fft || !clips.len().is_multiple_of(4) {
        bail!("stft: window {window:?}, clips {:?} do not match {frames} frames of {layout:?}", clips.shape());
    }
    if spectra.width() as usize * 4 != layout.stride || (spectra.height() as usize) < frames {
        bail!("stft: spectra {spectra:?} do not hold {frames} frames of {} bins", layout.stride);
    }
    if !signal.width().is_power_of_two() {
        bail!("stft: signal {signal:?} rows are not a power of two wide (use upload_signal)");
    }
    if frames == 0 {
        return Ok(());
    }
    let half = layout.n_fft / 2;
    let aligned = clips_aligned && layout.hop.is_multiple_of(4);
    let constants = [
        ("HALF", half as f64),
        ("LOG2_HALF", half.trailing_zeros() as f64),
        ("ALIGNED", aligned as u8 as f64),
    ];
    let label = format!("stft[{}]", layout.n_fft);
    let mut params = Params {
        n_fft: layout.n_fft as u32,
        hop: layout.hop as u32,
        stride: layout.stride as u32,
        frames: frames as u32,
        ns: 0,
        sig_width: signal.width(),
        sig_shift: signal.width().trailing_zeros(),
        _pad: 0,
    };
    let gpu = step.gpu();
    // Each frame's (sample offset of its clip, clip length, first sample) once, as one texel the
    // first stage fetches: cheaper than its two dependent storage loads per invocation.
    let info = gpu.texture_of(TexelFormat::Rgba32Uint, frames as u32, 1)?;
    step.dispatch_bound(&FRAME_INFO, &[], &[clips.into(), frame_clip.into(), (&info).into()], bytemuck::bytes_of(&params), [super::groups(frames, 64)?, 1, 1], format!("{label}.frames"))?;
    let (mut src, mut dst) = (gpu.texture(half as u32 / 2, frames as u32)?, gpu.texture(half as u32 / 2, frames as u32)?);
    let radix2 = half.trailing_zeros() % 2 == 1;
    let pairs = if radix2 { half / 4 } else { half / 8 };
    let grid = |items: usize| -> Result<[u32; 3]> { Ok([super::groups(items, 64)?, frames as u32, 1]) };
    step.dispatch_bound(&FIRST, &constants, &[signal.into(), window.into(), (&info).into(), (&src).into()], bytemuck::bytes_of(&params), grid(pairs)?, format!("{label}.first"))?;
    let mut ns = if radix2 { 2 } else { 4 };
    while ns < half {
        params.ns = ns as u32;
        step.dispatch_bound(&STAGE, &constants, &[(&src).into(), (&dst).into()], bytemuck::bytes_of(&params), grid(half / 8)?, format!("{label}.stage"))?;
        std::mem::swap(&mut src, &mut dst);
        ns *= 4;
    }
    step.dispatch_bound(&POWER, &constants, &[(&src).into(), spectra.into()], bytemuck::bytes_of(&params), grid(layout.stride / 4)?, format!("{label}.power"))
}

/// Float64 reference: power spectra [frames][n_bins] of one clip by direct DFT.
pub fn reference(signal: &[f32], layout: &SpectrumLayout) -> Vec<Vec<f64>> {
    let window = hann(layout.n_fft);
    let n = layout.n_fft;
    (0..layout.frames(signal.len()))
        .map(|t| {
            let start = (t * layout.hop) as i64 - (n / 2) as i64;
            let frame: Vec<f64> = (0..n)
                .map(|i| {
                    let j = start + i as i64;
                    if j >= 0 && (j as usize) < signal.len() { signal[j as usize] as f64 * window[i] } else { 0.0 }
                })
                .collect();
            (0..layout.n_bins)
                .map(|k| {
                    let (mut re, mut im) = (0.0, 0.0);
                    for (i, x) in frame.iter().enumerate() {
                        let a = -2.0 * std::f64::consts::PI * ((k * i) % n) as f64 / n as f64;
                        re += x * a.cos();
                        im += x * a.sin();
                    }
                    re * re + im * im
                })
                .collect()
        })
        .collect()
}
