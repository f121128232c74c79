//! The frame-distribution embedding (the `distribution` input's second part): a clip's frames,
//! each standardised by the clip's own per-column mean and standard deviation, mapped through
//! random Fourier features cos(z W + b) and averaged over the clip. The average approximates
//! the clip's mean embedding under a Gaussian kernel on frames (Rahimi and Recht 2007), so two
//! clips are near when their frames are distributed alike: the shape of each column's spread and
//! how the columns move together, which the means and standard deviations do not carry.
//!
//! The projection is a pure function of (columns, width, gamma, seed) with integer-exact draws,
//! so every platform rebuilds the same one from a model's input name. The GPU does the work: one
//! GEMM of a block of standardised rows by W, then shaders/embedding.wgsl sums cos(p + b) over
//! each clip's rows. The host standardises (one pass over the frames) and adds the blocks. The
//! float64 reference computes the same from the frames.

use super::gemm::{self, GemmOptions};
use crate::gpu::{Access, DType, Gpu, KernelSpec, ShaderFile};
use crate::rng::SplitMix64;
use anyhow::{Result, bail};

pub const EMBEDDING_WGSL: ShaderFile = ShaderFile {
    name: "embedding.wgsl",
    source: include_str!("../../shaders/embedding.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const COS_ROW_SUMS: KernelSpec = KernelSpec { shader: &EMBEDDING_WGSL, entry: "cos_row_sums", bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite] };

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    width: u32,
    segments: u32,
    _pad: [u32; 2],
}

/// The random projection: `weight` [columns, width] with entries of variance 2 gamma (gamma in
/// absolute units), `phase` [width] uniform in [0, 2 pi).
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    pub columns: usize,
    pub width: usize,
    pub weight: Vec<f32>,
    pub phase: Vec<f32>,
}

impl Projection {
    /// The projection for `columns` frame columns, `width` features and a Gaussian kernel of
    /// width `gamma_scale / columns` on standardised frames. Normal draws are Irwin-Hall sums of
    /// twelve 24-bit uniforms (integer sums, one rounding), phases one 24-bit uniform each: no
    /// transcendental function, so the values are the same on every platform.
    pub fn new(columns: usize, width: usize, gamma_scale: f64, seed: u64) -> Projection {
        let mut rng = SplitMix64::new(seed);
        let mut draw24 = move || rng.next_u64() >> 40;
        let sd = (2.0 * gamma_scale / columns.max(1) as f64).sqrt();
        let weight = (0..columns * width)
            .map(|_| {
                let sum: u64 = (0..12).map(|_| draw24()).sum();
                ((sum as f64 / (1u64 << 24) as f64 - 6.0) * sd) as f32
            })
            .collect();
        let phase = (0..width).map(|_| (draw24() as f64 / (1u64 << 24) as f64 * std::f64::consts::TAU) as f32).collect();
        Projection { columns, width, weight, phase }
    }
}

/// A clip's frames [frames, columns] standardised by its own per-column mean and standard
/// deviation (float64); a column constant within the clip (deviation within 1e-5 of its size)
/// becomes 0, not amplified rounding.
pub fn standardised(frames: &[f32], columns: usize) -> Vec<f32> {
    let n = frames.len() / columns.max(1);
    let mut out = vec![0f32; n * columns];
    for j in 0..columns {
        let column = || frames.iter().skip(j).step_by(columns).map(|&v| v as f64);
        let mean = column().sum::<f64>() / n.max(1) as f64;
        let sd = (column().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n.max(1) as f64).sqrt();
        if sd > 1e-5 * (1.0 + mean.abs()) {
            for (t, v) in column().enumerate() {
                out[t * columns + j] = ((v - mean) / sd) as f32;
            }
        }
    }
    out
}

/// Rows a block holds at most: its projections within the adapter's storage binding (64 MiB at
/// most). [`embed_in_blocks`] also keeps it within llvmpipe's loop budget.
fn block_rows(gpu: &Gpu, columns: usize, width: usize) -> usize {
    (gpu.max_storage_binding().min(1 << 26) as usize / (4 * width.max(columns).max(1))).max(1)
}

/// The embedding [clips, width] of clips given as frame tables ([frames, columns] each, any
/// number of frames; a clip without frames embeds to zeros).
pub fn embed(gpu: &Gpu, clips: &[&[f32]], projection: &Projection) -> Result<Vec<f32>> {
    embed_in_blocks(gpu, clips, projection, block_rows(gpu, projection.columns, projection.width))
}

/// [`embed`] with blocks of at most `limit` rows (the selftest splits clips across blocks).
pub fn embed_in_blocks(gpu: &Gpu, clips: &[&[f32]], projection: &Projection, limit: usize) -> Result<Vec<f32>> {
    let (columns, width) = (projection.columns, projection.width);
    // One invocation sums a segment's rows: at most a block's.
    let limit = limit.clamp(1, super::CPU_LOOP_BUDGET / 2);
    if columns == 0 || width == 0 || projection.weight.len() != columns * width || projection.phase.len() != width {
        bail!("embedding: a projection of {} weights and {} phases does not fit {columns} columns and {width} features", projection.weight.len(), projection.phase.len());
    }
    if let Some(c) = clips.iter().position(|f| f.len() % columns != 0) {
        bail!("embedding: clip {c} has {} values, not whole frames of {columns} columns", clips[c].len());
    }
    let weight = gpu.upload_f32(&projection.weight, &[columns, width])?;
    let phase = gpu.upload_f32(&projection.phase, &[width])?;
    let mut sums = vec![0f64; clips.len() * width];
    // Blocks of whole or partial clips: (clip, rows of it) segments, at most `limit` rows a block.
    let mut block: Vec<f32> = Vec::new();
    let mut segments: Vec<(usize, u32, u32)> = Vec::new();
    let mut flush = |block: &mut Vec<f32>, segments: &mut Vec<(usize, u32, u32)>| -> Result<()> {
        if segments.is_empty() {
            return Ok(());
        }
        let rows = block.len() / columns;
        let z = gpu.upload_f32(block, &[rows, columns])?;
        let proj = gpu.empty(&[rows, width], DType::F32)?;
        let table: Vec<u32> = segments.iter().flat_map(|&(_, first, n)| [first, n]).collect();
        let table = gpu.upload(&table, &[segments.len(), 2], DType::U32)?;
        let out = gpu.empty(&[segments.len(), width], DType::F32)?;
        let p = Params { width: width as u32, segments: segments.len() as u32, _pad: [0; 2] };
        let mut step = gpu.step("embedding");
        gemm::gemm(&mut step, &z, &weight, None, &proj, &GemmOptions::default())?;
        step.dispatch(&COS_ROW_SUMS, &[], &[&proj, &phase, &table, &out], bytemuck::bytes_of(&p), [super::groups(width, 64)?, segments.len() as u32, 1], "embedding.cos_row_sums")?;
        step.submit()?;
        let partial = gpu.read_f32(&out)?;
        for (s, &(clip, _, _)) in segments.iter().enumerate() {
            for k in 0..width {
                sums[clip * width + k] += partial[s * width + k] as f64;
            }
        }
        block.clear();
        segments.clear();
        Ok(())
    };
    for (c, frames) in clips.iter().enumerate() {
        let z = standardised(frames, columns);
        let mut rest = &z[..];
        while !rest.is_empty() {
            let room = limit - block.len() / columns;
            let take = room.min(rest.len() / columns);
            segments.push((c, (block.len() / columns) as u32, take as u32));
            block.extend_from_slice(&rest[..take * columns]);
            rest = &rest[take * columns..];
            if block.len() / columns == limit {
                flush(&mut block, &mut segments)?;
            }
        }
    }
    flush(&mut block, &mut segments)?;
    Ok(clips
        .iter()
        .enumerate()
        .flat_map(|(c, f)| {
            let n = (f.len() / columns).max(1) as f64;
            sums[c * width..(c + 1) * width].iter().map(move |s| (s / n) as f32).collect::<Vec<_>>()
        })
        .collect())
}

/// Float64 reference of [`embed`] for one clip's frames [frames, columns].
pub fn reference(frames: &[f32], projection: &Projection) -> Vec<f64> {
    let (columns, width) = (projection.columns, projection.width);
    let z = standardised(frames, columns);
    let n = z.len() / columns;
    (0..width)
        .map(|k| {
            let sum: f64 = (0..n)
                .map(|t| {
                    let dot: f64 = (0..columns).map(|j| z[t * columns + j] as f64 * projection.weight[j * width + k] as f64).sum();
                    (dot + projection.phase[k] as f64).cos()
                })
                .sum();
            if n == 0 { 0.0 } else { sum / n as f64 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draws have the moments asked for, and the same arguments give the same projection.
    #[test]
    fn the_projection_is_a_pure_function_with_the_asked_spread() {
        let p = Projection::new(50, 400, 1.0, 7);
        assert_eq!(p, Projection::new(50, 400, 1.0, 7));
        assert_ne!(p.weight, Projection::new(50, 400, 1.0, 8).weight);
        let n = p.weight.len() as f64;
        let mean = p.weight.iter().map(|&w| w as f64).sum::<f64>() / n;
        let var = p.weight.iter().map(|&w| (w as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01 && (var / (2.0 / 50.0) - 1.0).abs() < 0.03, "mean {mean}, variance {var}");
        assert!(p.phase.iter().all(|&b| (0.0..std::f32::consts::TAU).contains(&b)));
        let phase_mean = p.phase.iter().map(|&b| b as f64).sum::<f64>() / 400.0;
        assert!((phase_mean - std::f64::consts::PI).abs() < 0.3, "{phase_mean}");
    }

    /// Each column ends with mean 0 and deviation 1; a constant column is all zeros.
    #[test]
    fn standardising_a_clip_centres_and_scales_each_column_and_zeroes_constant_ones() {
        let frames: Vec<f32> = (0..30).flat_map(|t| [t as f32 * 3.0 - 7.0, 250.0, ((t * 7) % 5) as f32]).collect();
        let z = standardised(&frames, 3);
        for j in [0, 2] {
            let col: Vec<f64> = z.iter().skip(j).step_by(3).map(|&v| v as f64).collect();
            let mean = col.iter().sum::<f64>() / 30.0;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 30.0;
            assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "column {j}: {mean} {var}");
        }
        assert!(z.iter().skip(1).step_by(3).all(|&v| v == 0.0));
    }
}
