//! k-nearest-neighbour search on the GPU (shaders/knn.wgsl): squared distances from one GEMM of
//! dot products and the rows' squared norms, then a per-query top-k selection in WGSL, ties to
//! the lower training index. The float64 reference is a brute-force search.

use super::gemm::{self, GemmOptions};
use super::kernel::sq_norms;
use super::rows_cols;
use crate::gpu::{ShaderFile, Access, DType, Gpu, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const KNN_WGSL: ShaderFile = ShaderFile {
    name: "knn.wgsl",
    source: include_str!("../../shaders/knn.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

/// The most neighbours one query may ask for (the shader's register lists).
pub const MAX_K: usize = 16;

const SELECT: KernelSpec = KernelSpec { shader: &KNN_WGSL, entry: "knn_select", bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite] };

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    k: u32,
    _pad: u32,
}

/// Records the selection of the `k` nearest training rows for each query: `index` [rows, k] u32
/// (training row numbers, nearest first) and `dist` [rows, k] f32 (squared distances), from
/// `dots` = queries . training^T [rows, cols] and both sets' squared norms.
pub fn select(step: &mut Step, dots: &Tensor, query_norms: &Tensor, train_norms: &Tensor, k: usize, index: &Tensor, dist: &Tensor) -> Result<()> {
    let (rows, cols) = rows_cols(dots, "knn: dots")?;
    if k == 0 || k > MAX_K || k > cols {
        bail!("knn: k = {k} must be 1 to {} (and at most the {cols} training rows)", MAX_K);
    }
    if query_norms.len() != rows || train_norms.len() != cols || index.shape() != [rows, k] || dist.shape() != [rows, k] || index.dtype() != DType::U32 {
        bail!("knn: dots {:?}, norms {:?}/{:?}, outputs {:?}/{:?} do not fit k = {k}", dots.shape(), query_norms.shape(), train_norms.shape(), index.shape(), dist.shape());
    }
    let p = Params { rows: rows as u32, cols: cols as u32, k: k as u32, _pad: 0 };
    step.dispatch(&SELECT, &[], &[dots, query_norms, train_norms, index, dist], bytemuck::bytes_of(&p), [super::groups(rows, 1)?, 1, 1], "knn.select")
}

/// The `k` nearest rows of `train` [n, d] for every row of `queries` [m, d]: (indices [m, k],
/// squared distances [m, k]), nearest first.
pub fn neighbours(gpu: &Gpu, queries: &Tensor, train: &Tensor, k: usize) -> Result<(Vec<u32>, Vec<f32>)> {
    let (m, d) = rows_cols(queries, "knn: queries")?;
    let (n, dt) = rows_cols(train, "knn: training rows")?;
    if d != dt {
        bail!("knn: queries have {d} columns, training rows {dt}");
    }
    let (qn, tn) = (gpu.empty(&[m], DType::F32)?, gpu.empty(&[n], DType::F32)?);
    let dots = gpu.empty(&[m, n], DType::F32)?;
    let (index, dist) = (gpu.empty(&[m, k.max(1)], DType::U32)?, gpu.empty(&[m, k.max(1)], DType::F32)?);
    let mut step = gpu.step("knn");
    sq_norms(&mut step, queries, &qn)?;
    sq_norms(&mut step, train, &tn)?;
    gemm::gemm(&mut step, queries, train, None, &dots, &GemmOptions { trans_b: true, ..Default::default() })?;
    select(&mut step, &dots, &qn, &tn, k, &index, &dist)?;
    step.submit()?;
    Ok((gpu.read::<u32>(&index)?, gpu.read_f32(&dist)?))
}

/// Float64 brute-force reference: for each query, the k training rows with the smallest squared
/// distance, ties to the lower index: (index, squared distance), nearest first.
pub fn reference(queries: &[f32], train: &[f32], d: usize, k: usize) -> Vec<Vec<(u32, f64)>> {
    queries
        .chunks(d)
        .map(|q| {
            let mut all: Vec<(u32, f64)> = train.chunks(d).enumerate().map(|(j, t)| (j as u32, q.iter().zip(t).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum())).collect();
            all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            all.truncate(k);
            all
        })
        .collect()
}
