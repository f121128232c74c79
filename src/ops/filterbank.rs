//! Filterbank application to spectra (shaders/filterbank.wgsl): mel bands visit only their
//! nonzero bins; chroma may carry one weight set per clip.

use crate::gpu::{Access, DType, FILTERBANK_WGSL, Gpu, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

const FILTERBANK: KernelSpec = KernelSpec {
    shader: &FILTERBANK_WGSL,
    entry: "filterbank",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

/// A filterbank on the GPU: weights [sets, rows, stride] and each row's nonzero bin range.
pub struct Filterbank {
    pub weights: Tensor,
    pub bands: Tensor,
    pub rows: usize,
    pub stride: usize,
    pub sets: usize,
}

impl Filterbank {
    /// Uploads weight sets (each [rows][bins], bins <= stride) with the tightest band per row
    /// that covers every nonzero weight of every set.
    pub fn upload(gpu: &Gpu, sets: &[Vec<Vec<f64>>], stride: usize) -> Result<Filterbank> {
        let rows = sets.first().map_or(0, |s| s.len());
        if rows == 0 || sets.iter().any(|s| s.len() != rows || s.iter().any(|r| r.len() > stride)) {
            bail!("filterbank: weight sets must share a row count and fit the spectrum stride {stride}");
        }
        let mut flat = vec![0f32; sets.len() * rows * stride];
        let mut bands = vec![[u32::MAX, 0u32]; rows];
        for (s, set) in sets.iter().enumerate() {
            for (r, row) in set.iter().enumerate() {
                for (b, &w) in row.iter().enumerate() {
                    let w32 = w as f32;
                    flat[(s * rows + r) * stride + b] = w32;
                    if w32 != 0.0 {
                        bands[r][0] = bands[r][0].min(b as u32);
                        bands[r][1] = bands[r][1].max(b as u32 + 1);
                    }
                }
            }
        }
        let bands: Vec<u32> = bands.iter().flat_map(|&[lo, hi]| if lo > hi { [0, 0] } else { [lo, hi] }).collect();
        Ok(Filterbank {
            weights: gpu.upload_f32(&flat, &[sets.len(), rows, stride])?,
            bands: gpu.upload(&bands, &[rows, 2], DType::U32)?,
            rows,
            stride,
            sets: sets.len(),
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    frames: u32,
    rows: u32,
    stride: u32,
    _pad: u32,
}

/// out [frames, rows] = spectra [frames, stride] through the filterbank. With several weight
/// sets, `frame_clip` picks the set of each frame.
pub fn apply(step: &mut Step, fb: &Filterbank, spectra: &Tensor, frame_clip: &Tensor, out: &Tensor, label: &str) -> Result<()> {
    let frames = frame_clip.len();
    if spectra.len() != frames * fb.stride || out.len() != frames * fb.rows {
        bail!("filterbank: spectra {:?} / out {:?} do not match {frames} frames x {} rows", spectra.shape(), out.shape(), fb.rows);
    }
    let p = Params { frames: frames as u32, rows: fb.rows as u32, stride: fb.stride as u32, _pad: 0 };
    let grid = [super::groups(frames * fb.rows, 64)?, 1, 1];
    let per_clip = [("PER_CLIP", (fb.sets > 1) as u8 as f64)];
    step.dispatch(&FILTERBANK, &per_clip, &[spectra, &fb.weights, &fb.bands, frame_clip, out], bytemuck::bytes_of(&p), grid, label.to_string())
}

/// Float64 reference: one frame through one weight set.
pub fn reference(spectrum: &[f64], weights: &[Vec<f64>]) -> Vec<f64> {
    weights.iter().map(|row| row.iter().zip(spectrum).map(|(w, s)| w * s).sum()).collect()
}
