//! Per-clip operations on frame-major matrices (shaders/segment.wgsl): the clip maximum,
//! librosa's power_to_db against it, assembling padded [clips, t_max, width] tensors, and
//! per-clip means and standard deviations (of every frame, of the nonzero ones, or of a
//! flag's two sides: [`split_moments`]).

use crate::gpu::{ShaderFile, Access, DType, Gpu, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const SEGMENT_WGSL: ShaderFile = ShaderFile {
    name: "segment.wgsl",
    source: include_str!("../../shaders/segment.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const MAX: KernelSpec =
    KernelSpec { shader: &SEGMENT_WGSL, entry: "segment_max", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const DB: KernelSpec =
    KernelSpec { shader: &SEGMENT_WGSL, entry: "power_to_db", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const ASSEMBLE: KernelSpec =
    KernelSpec { shader: &SEGMENT_WGSL, entry: "assemble", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const NORMALIZE: KernelSpec =
    KernelSpec { shader: &SEGMENT_WGSL, entry: "normalize_rows", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const MEAN: KernelSpec =
    KernelSpec { shader: &SEGMENT_WGSL, entry: "segment_mean", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const STD: KernelSpec =
    KernelSpec { shader: &SEGMENT_WGSL, entry: "segment_std", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    t_max: u32,
    width: u32,
    col_offset: u32,
    clips: u32,
    nonzero_only: u32,
    _pad0: u32,
    amin: f32,
    ref_db: f32,
    top_db: f32,
    _pad1: f32,
}

/// librosa.power_to_db's options.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DbOptions {
    pub reference: f32,
    pub amin: f32,
    /// None disables the floor.
    pub top_db: Option<f32>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { reference: 1.0, amin: 1e-10, top_db: Some(80.0) }
    }
}

fn clip_count(clips: &Tensor) -> Result<usize> {
    if !clips.len().is_multiple_of(4) || clips.is_empty() {
        bail!("clip table {:?} is not [clips, 4]", clips.shape());
    }
    Ok(clips.len() / 4)
}

/// `values` [rows, cols] in place: 10 log10(max(amin, x)) - 10 log10(max(amin, ref)), floored at
/// the clip's maximum minus top_db. `scratch` holds one float per clip.
pub fn power_to_db(step: &mut Step, clips: &Tensor, values: &Tensor, scratch: &Tensor, o: &DbOptions) -> Result<()> {
    let n = clip_count(clips)?;
    let (rows, cols) = super::rows_cols(values, "power_to_db: values")?;
    if scratch.len() < n {
        bail!("power_to_db: scratch needs {n} floats");
    }
    let p = Params {
        rows: rows as u32,
        cols: cols as u32,
        clips: n as u32,
        amin: o.amin,
        ref_db: 10.0 * o.reference.abs().max(o.amin).log10(),
        top_db: o.top_db.unwrap_or(-1.0),
        ..Default::default()
    };
    if o.top_db.is_some_and(|t| t < 0.0) {
        bail!("top_db must be non-negative");
    }
    if o.top_db.is_some() {
        step.dispatch(&MAX, &[], &[clips, values, scratch], bytemuck::bytes_of(&p), [n as u32, 1, 1], "segment.max")?;
    }
    let grid = [super::groups(rows, 64)?, 1, 1];
    step.dispatch(&DB, &[], &[clips, scratch, values], bytemuck::bytes_of(&p), grid, "segment.power_to_db")
}

/// Copies `src` [rows, cols] into columns col_offset.. of `dst` [clips, t_max, width], zero past
/// each clip's frame count.
pub fn assemble(step: &mut Step, clips: &Tensor, src: &Tensor, dst: &Tensor, col_offset: usize) -> Result<()> {
    let n = clip_count(clips)?;
    let (cols, t_max, width) = match (src.shape(), dst.shape()) {
        ([_, c], [d0, t, w]) if *d0 == n && col_offset + c <= *w => (*c, *t, *w),
        _ => bail!("assemble: src {:?} into dst {:?} at column {col_offset} for {n} clips", src.shape(), dst.shape()),
    };
    let p = Params { cols: cols as u32, t_max: t_max as u32, width: width as u32, col_offset: col_offset as u32, clips: n as u32, ..Default::default() };
    let grid = [super::groups(n * t_max, 64)?, 1, 1];
    step.dispatch(&ASSEMBLE, &[], &[clips, src, dst], bytemuck::bytes_of(&p), grid, "segment.assemble")
}

/// Which of a clip's frames its moments take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frames {
    All,
    /// Only frames whose value is not zero (pyin's f0: the voiced frames); a clip with none
    /// gets 0.
    Nonzero,
}

/// Means over each clip's frames of `src` [rows, cols] into columns col_offset.. of `dst` [clips, width].
pub fn mean(step: &mut Step, clips: &Tensor, src: &Tensor, dst: &Tensor, col_offset: usize, frames: Frames) -> Result<()> {
    per_clip_column(step, &MEAN, clips, src, dst, col_offset, frames)
}

/// Standard deviations (ddof 0) over each clip's frames, laid out as [`mean`]'s.
pub fn std(step: &mut Step, clips: &Tensor, src: &Tensor, dst: &Tensor, col_offset: usize, frames: Frames) -> Result<()> {
    per_clip_column(step, &STD, clips, src, dst, col_offset, frames)
}

fn per_clip_column(step: &mut Step, kernel: &KernelSpec, clips: &Tensor, src: &Tensor, dst: &Tensor, col_offset: usize, frames: Frames) -> Result<()> {
    let n = clip_count(clips)?;
    let (cols, width) = match (src.shape(), dst.shape()) {
        ([_, c], [d0, w]) if *d0 == n && col_offset + c <= *w => (*c, *w),
        _ => bail!("{}: src {:?} into dst {:?} at column {col_offset} for {n} clips", kernel.entry, src.shape(), dst.shape()),
    };
    let nonzero_only = (frames == Frames::Nonzero) as u32;
    let p = Params { cols: cols as u32, width: width as u32, col_offset: col_offset as u32, clips: n as u32, nonzero_only, ..Default::default() };
    let grid = [super::groups(n * cols, 64)?, 1, 1];
    step.dispatch(kernel, &[], &[clips, src, dst], bytemuck::bytes_of(&p), grid, kernel.entry)
}

/// Float64 mean and population standard deviation of each column of one clip's rows [t, cols],
/// over the frames `frames` takes (0 for a column with none).
pub fn reference_moments(rows: &[f64], cols: usize, frames: Frames) -> (Vec<f64>, Vec<f64>) {
    let column = |j: usize| -> Vec<f64> { rows.iter().skip(j).step_by(cols.max(1)).copied().filter(|&v| frames == Frames::All || v != 0.0).collect() };
    let moments = |v: Vec<f64>| {
        let t = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / t;
        (mean, (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / t).sqrt())
    };
    (0..cols).map(|j| moments(column(j))).unzip()
}

/// Each clip's `take` columns' mean and standard deviation over its frames whose column `flag`
/// is above one half (pyin's voiced frames), then over its other frames: [clips, 4 x take.len()]
/// laid out as (flagged means, flagged deviations, other means, other deviations). A side with no
/// frame gets zeros. `clips` are frame tables [frames, columns]. The host sorts each clip's rows
/// into its two sides; the GPU takes the moments of each side (`segment_mean`, `segment_std`),
/// in blocks within the adapter's storage binding.
pub fn split_moments(gpu: &Gpu, clips: &[&[f32]], columns: usize, take: &[usize], flag: usize) -> Result<Vec<f32>> {
    let limit = gpu.max_storage_binding().min(1 << 26) as usize / (4 * take.len().max(1));
    split_moments_in_blocks(gpu, clips, columns, take, flag, limit)
}

/// [`split_moments`] with blocks of about `limit` rows (whole clips; a longer clip is a block of
/// its own): the selftest makes clips share and split blocks.
pub fn split_moments_in_blocks(gpu: &Gpu, clips: &[&[f32]], columns: usize, take: &[usize], flag: usize, limit: usize) -> Result<Vec<f32>> {
    let k = take.len();
    if k == 0 || flag >= columns || take.iter().any(|&j| j >= columns) {
        bail!("split_moments: columns {take:?} and flag {flag} of frames with {columns} columns");
    }
    if let Some(c) = clips.iter().position(|f| f.len() % columns != 0) {
        bail!("split_moments: clip {c} has {} values, not whole frames of {columns} columns", clips[c].len());
    }
    // segment_std walks a side's rows twice in one invocation.
    super::check_loop_budget(gpu, 2 * clips.iter().map(|f| f.len() / columns).max().unwrap_or(0), "voicing moments")?;
    let mut out = Vec::with_capacity(clips.len() * 4 * k);
    // A block's rows [rows, k] and its sides' table (two a clip: first row and count in z, w).
    let (mut rows, mut table) = (Vec::<f32>::new(), Vec::<u32>::new());
    let flush = |rows: &mut Vec<f32>, table: &mut Vec<u32>, out: &mut Vec<f32>| -> Result<()> {
        if rows.is_empty() {
            // Clips without frames: one zero row keeps the upload whole; no side reads it.
            rows.resize(k, 0.0);
        }
        let sides = table.len() / 4;
        let src = gpu.upload_f32(rows, &[rows.len() / k, k])?;
        let segments = gpu.upload(table, &[sides, 4], DType::U32)?;
        let dst = gpu.empty(&[sides, 2 * k], DType::F32)?;
        let mut step = gpu.step("split_moments");
        mean(&mut step, &segments, &src, &dst, 0, Frames::All)?;
        std(&mut step, &segments, &src, &dst, k, Frames::All)?;
        step.submit()?;
        out.extend(gpu.read_f32(&dst)?);
        rows.clear();
        table.clear();
        Ok(())
    };
    for frames in clips {
        let n = frames.len() / columns;
        if !table.is_empty() && rows.len() / k + n > limit {
            flush(&mut rows, &mut table, &mut out)?;
        }
        for side in [true, false] {
            let start = rows.len() / k;
            for t in (0..n).filter(|&t| (frames[t * columns + flag] > 0.5) == side) {
                rows.extend(take.iter().map(|&j| frames[t * columns + j]));
            }
            table.extend_from_slice(&[0, 0, start as u32, (rows.len() / k - start) as u32]);
        }
    }
    if !table.is_empty() {
        flush(&mut rows, &mut table, &mut out)?;
    }
    Ok(out)
}

/// Float64 reference of [`split_moments`] for one clip's frames [frames, columns].
pub fn reference_split_moments(frames: &[f32], columns: usize, take: &[usize], flag: usize) -> Vec<f64> {
    let n = frames.len() / columns;
    let mut out = Vec::with_capacity(4 * take.len());
    for side in [true, false] {
        let rows: Vec<f64> = (0..n).filter(|&t| (frames[t * columns + flag] > 0.5) == side).flat_map(|t| take.iter().map(move |&j| frames[t * columns + j] as f64)).collect();
        let (m, sd) = reference_moments(&rows, take.len(), Frames::All);
        out.extend(m);
        out.extend(sd);
    }
    out
}

/// Divides each row of `values` [rows, cols] by its largest magnitude (librosa's norm=inf),
/// leaving all-zero rows alone.
pub fn normalize_rows(step: &mut Step, values: &Tensor) -> Result<()> {
    let (rows, cols) = super::rows_cols(values, "normalize_rows: values")?;
    let p = Params { rows: rows as u32, cols: cols as u32, ..Default::default() };
    let grid = [super::groups(rows, 64)?, 1, 1];
    // The kernel reads only binding 3; the shared read-only slots get the output's placeholder.
    let unused = step.gpu().placeholder().clone();
    step.dispatch(&NORMALIZE, &[], &[&unused, &unused, values], bytemuck::bytes_of(&p), grid, "segment.normalize_rows")
}

/// Float64 reference of power_to_db over one clip's values.
pub fn reference_db(values: &[f64], o: &DbOptions) -> Vec<f64> {
    let amin = o.amin as f64;
    let ref_db = 10.0 * (o.reference.abs() as f64).max(amin).log10();
    let db: Vec<f64> = values.iter().map(|&x| 10.0 * x.max(amin).log10() - ref_db).collect();
    match o.top_db {
        Some(t) => {
            let top = db.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            db.iter().map(|&v| v.max(top - t as f64)).collect()
        }
        None => db,
    }
}
