//! Kernel families. Each module sits beside its WGSL file in `shaders/`, records launches on a
//! [`Step`](crate::gpu::Step), and carries a float64 CPU reference that the tests hold it to.

pub mod autotune;
pub mod elementwise;
pub mod embedding;
pub mod contrast;
pub mod descriptors;
pub mod conv;
pub mod dropout;
pub mod filterbank;
pub mod forest;
pub mod gemm;
pub mod kernel;
pub mod knn;
pub mod loss;
pub mod lstm;
pub mod norm;
pub mod optim;
pub mod pitch;
pub mod pool;
pub mod segment;
pub mod stft;
pub mod tuning;

/// Every shader in `shaders/` except the prelude (validated as part of each of these), each
/// registered beside the op that runs it.
pub const SHADERS: &[&crate::gpu::ShaderFile] = &[
    &gemm::GEMM_WGSL,
    &gemm::GEMM_SUBGROUP_WGSL,
    &gemm::GEMM_TILE_WGSL,
    &gemm::GEMM_TILE_F16_WGSL,
    &gemm::GEMM_COOP_WGSL,
    &elementwise::ELEMENTWISE_WGSL,
    &stft::STFT_WGSL,
    &filterbank::FILTERBANK_WGSL,
    &segment::SEGMENT_WGSL,
    &contrast::CONTRAST_WGSL,
    &descriptors::DESCRIPTORS_WGSL,
    &pitch::PITCH_WGSL,
    &tuning::TUNING_WGSL,
    &conv::CONV_WGSL,
    &norm::NORM_WGSL,
    &pool::POOL_WGSL,
    &dropout::DROPOUT_WGSL,
    &loss::LOSS_WGSL,
    &optim::OPTIM_WGSL,
    &kernel::KERNEL_WGSL,
    &knn::KNN_WGSL,
    &embedding::EMBEDDING_WGSL,
    &forest::FOREST_WGSL,
    &lstm::LSTM_WGSL,
];

/// Workgroups needed to cover `n` items, `per_group` at a time, as a u32 grid dimension.
pub(crate) fn groups(n: usize, per_group: usize) -> anyhow::Result<u32> {
    u32::try_from(n.div_ceil(per_group))
        .map_err(|_| anyhow::anyhow!("{n} items need more than 2^32 workgroups"))
}

/// Loop iterations one invocation may spend on a CPU adapter: llvmpipe ends every loop of an
/// invocation after 65,535 iterations in all (one counter for all its loops), silently, so a
/// kernel that would pass it there gets an error naming `what` instead of a wrong result.
pub(crate) const CPU_LOOP_BUDGET: usize = 60_000;

pub(crate) fn check_loop_budget(gpu: &crate::gpu::Gpu, iterations: usize, what: &str) -> anyhow::Result<()> {
    if gpu.is_cpu() && iterations > CPU_LOOP_BUDGET {
        anyhow::bail!(
            "{what}: one invocation would loop {iterations} times, past the 65,535 loop iterations this CPU adapter (llvmpipe) runs before it stops an invocation silently; use a smaller batch (--batch-size) or input"
        );
    }
    Ok(())
}

/// (rows, cols) of a rank-2 tensor, or an error naming `what` (e.g. "sq_norms: x").
pub(crate) fn rows_cols(t: &crate::gpu::Tensor, what: &str) -> anyhow::Result<(usize, usize)> {
    match t.shape() {
        [r, c] => Ok((*r, *c)),
        s => anyhow::bail!("{what} must be [rows, cols], got {s:?}"),
    }
}
