//! Filterbank application to spectra (shaders/filterbank.wgsl): each band visits only its
//! nonzero bins (mel filters are narrow; dense filterbanks go through GEMM instead).

use crate::gpu::{ShaderFile, Access, DType, Gpu, KernelSpec, Step, Tensor, Texture};
use anyhow::{Result, bail};

pub const FILTERBANK_WGSL: ShaderFile = ShaderFile {
    name: "filterbank.wgsl",
    source: include_str!("../../shaders/filterbank.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const FILTERBANK: KernelSpec =
    KernelSpec { shader: &FILTERBANK_WGSL, entry: "filterbank", bindings: &[Access::Texture, Access::Texture, Access::Read, Access::ReadWrite] };

/// A filterbank on the GPU: weights [rows, stride] (a texture, four bins per texel) and each
/// row's nonzero bin range.
pub struct Filterbank {
    pub weights: Texture,
    pub bands: Tensor,
    pub rows: usize,
    pub stride: usize,
}

impl Filterbank {
    /// Uploads weights [rows][bins] (bins <= stride) with the tightest band covering each row's
    /// nonzero weights. `stride` is a multiple of 4.
    pub fn upload(gpu: &Gpu, weights: &[Vec<f64>], stride: usize) -> Result<Filterbank> {
        let rows = weights.len();
        if rows == 0 || !stride.is_multiple_of(4) || weights.iter().any(|r| r.len() > stride) {
            bail!("filterbank: weights must have rows that fit the spectrum stride {stride} (a multiple of 4)");
        }
        let mut flat = vec![0f32; rows * stride];
        let mut bands = vec![[u32::MAX, 0u32]; rows];
        for (r, row) in weights.iter().enumerate() {
            for (b, &w) in row.iter().enumerate() {
                let w32 = w as f32;
                flat[r * stride + b] = w32;
                if w32 != 0.0 {
                    bands[r][0] = bands[r][0].min(b as u32);
                    bands[r][1] = bands[r][1].max(b as u32 + 1);
                }
            }
        }
        let bands: Vec<u32> = bands.iter().flat_map(|&[lo, hi]| if lo > hi { [0, 0] } else { [lo, hi] }).collect();
        Ok(Filterbank {
            weights: gpu.upload_texture(&flat, (stride / 4) as u32, rows as u32)?,
            bands: gpu.upload(&bands, &[rows, 2], DType::U32)?,
            rows,
            stride,
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

/// out [frames, rows] = the first `frames` rows of spectra (a texture of stride / 4 texels per
/// row) through the filterbank.
pub fn apply(step: &mut Step, fb: &Filterbank, spectra: &Texture, frames: usize, out: &Tensor, label: &str) -> Result<()> {
    if spectra.width() as usize * 4 != fb.stride || (spectra.height() as usize) < frames || out.len() != frames * fb.rows {
        bail!("filterbank: spectra {spectra:?} / out {:?} do not match {frames} frames x {} rows", out.shape(), fb.rows);
    }
    let p = Params { frames: frames as u32, rows: fb.rows as u32, stride: fb.stride as u32, _pad: 0 };
    let grid = [super::groups(frames * fb.rows, 64)?, 1, 1];
    step.dispatch_bound(&FILTERBANK, &[], &[spectra.into(), (&fb.weights).into(), (&fb.bands).into(), out.into()], bytemuck::bytes_of(&p), grid, label.to_string())
}

/// Float64 reference: one frame through the weights.
pub fn reference(spectrum: &[f64], weights: &[Vec<f64>]) -> Vec<f64> {
    weights.iter().map(|row| row.iter().zip(spectrum).map(|(w, s)| w * s).sum()).collect()
}
