//! What `GemmKernel::Auto` runs on one device: the kernel table.
//!
//! Each device ([`Gpu`]) holds one table ([`Gpu::local`]): how it is tuned (a mode and a pinned
//! kernel), the choice made for each shape bucket with its evidence, and every kernel this
//! device ran. A multiply resolves its kernel here ([`resolve`]) as a pure function of the
//! table, the device and its bucket; the table never measures. Filling it is the tuner's work
//! (`ops::autotune`, above this module): it loads stored choices before work starts and installs
//! itself as the table's [`Tuner`], which the table asks only for a bucket it has no choice for.
//! So gemm never imports the tuner, and a device that was never configured runs each adapter
//! class's default kernel, as tuning mode off does.

use super::{GemmDims, GemmKernel, GemmOptions, Precision};
use crate::gpu::Gpu;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

crate::choices! {
    /// How much the tuner measures.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum AutotuneMode {
        /// Nothing timed: the adapter class's default kernel (see [`default_kernel`]).
        Off = "off",
        /// A shortlist of candidates, four timed runs each; a candidate whose warm-up already ran
        /// `GIVE_UP_FACTOR` times slower than the best so far is not timed further, and a shape
        /// the adapter runs slowly is timed on fewer rows (`autotune::timing_dims`).
        Fast = "fast",
        /// Every kernel, eight timed runs each, on the whole shape.
        Full = "full",
    }
}

/// One candidate as measured: milliseconds per multiply, or why it was not timed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub kernel: String,
    pub ms: Option<f64>,
    pub error: Option<String>,
    /// `ms` is the warm-up's execution alone: it ran `GIVE_UP_FACTOR` times slower than the
    /// best candidate before it, so it was not timed further.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm_up_only: bool,
}

/// The tuner's decision for one shape bucket, with the evidence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Choice {
    pub kernel: String,
    /// The multiply it was timed on: [batch, M, N, K] (rows cut where the adapter is slow on
    /// the whole shape: `autotune::timing_dims`).
    pub timed_on: [usize; 4],
    pub mode: AutotuneMode,
    pub candidates: Vec<Candidate>,
}

/// Fills a bucket the table has no choice for: times the candidates, records its choice in the
/// table (and wherever the tuner keeps choices) and returns it. Installed by `ops::autotune`.
pub type Tuner = fn(&Gpu, &mut TableState, &GemmDims, &GemmOptions) -> Result<Choice>;

/// One device's kernel table (held by the device: [`table`]).
#[derive(Default)]
pub struct KernelTable(Mutex<TableState>);

/// What the table holds. The tuner reads and writes its fields; everything else reads it
/// through [`resolve`], [`choice`] and [`used`].
pub struct TableState {
    pub mode: AutotuneMode,
    pub pin: Option<GemmKernel>,
    /// Where the tuner keeps choices between runs (None: in memory only).
    pub file: Option<PathBuf>,
    /// bucket -> the choice made for it (tuned in this process or loaded).
    pub choices: BTreeMap<String, Choice>,
    /// Correctness of (kernel, precision, trans_a, trans_b) on this device, checked once.
    pub verified: HashMap<(GemmKernel, Precision, bool, bool), Result<(), String>>,
    /// bucket -> kernel, for every multiply this device ran: what a checkpoint records.
    pub used: BTreeMap<String, String>,
    /// Asked for a bucket with no choice, unless the mode is off or a kernel is pinned.
    pub tuner: Option<Tuner>,
}

impl Default for TableState {
    /// An unconfigured device: each adapter class's default kernel, nothing timed.
    fn default() -> TableState {
        TableState { mode: AutotuneMode::Off, pin: None, file: None, choices: BTreeMap::new(), verified: HashMap::new(), used: BTreeMap::new(), tuner: None }
    }
}

/// This device's kernel table.
pub fn table(gpu: &Gpu) -> Arc<KernelTable> {
    gpu.local::<KernelTable>()
}

impl KernelTable {
    /// The table's state. The tuner runs multiplies with explicit kernels only, so holding the
    /// lock while it measures never deadlocks.
    pub fn lock(&self) -> MutexGuard<'_, TableState> {
        // A panic while tuning leaves choices that were complete when inserted.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The kernel used untuned: on software rasterisers (lavapipe, llvmpipe: device type Cpu)
/// the packed-texture kernels, shaped for them (a texel fetch is a vector gather there, a
/// storage load a loop over lanes); on GPUs the portable tile family.
pub fn default_kernel(gpu: &Gpu, precision: Precision) -> GemmKernel {
    let software = gpu.report().adapter.device_type == "Cpu";
    // tex8-shared runs as tex8 without subgroups: name the kernel that runs.
    let packed = if gpu.has_subgroups() { GemmKernel::Tex8Shared } else { GemmKernel::Tex8 };
    match precision {
        Precision::Bf16 => packed,
        Precision::F16 => GemmKernel::Tile64,
        Precision::F32 if software => packed,
        Precision::F32 => GemmKernel::Tile64,
    }
}

/// The shape bucket of a multiply: what a tuned choice applies to. Its rows (M) are not part
/// of it: a clip's result must not depend on how many clips share its batch, chunk or shard,
/// and kernels sum K in different orders, so one (N, K) bucket keeps one kernel whatever M is
/// (before, `predict --shard I/3` differed from the whole run by up to 1e-5 on 19 of 208 clips).
/// Vector alignment is part of it: a bucket tuned on an aligned shape chose vec4x8 for a
/// convolution's K = 320, and the first layer's K = 295 then ran as reg4x4 at a fifth of the
/// speed (session 10). Alignment reads M only for a transposed A (weight gradients in training).
pub fn bucket(d: &GemmDims, o: &GemmOptions) -> String {
    let log2 = |x: usize| x.max(1).next_power_of_two().trailing_zeros();
    let batch = if d.batch == 1 { "" } else if d.broadcast_b { " batch-shared-b" } else { " batch" };
    let aligned = if d.vector_aligned(o) { "" } else { " unaligned" };
    format!(
        "{:?} {}{} n2^{} k2^{}{batch}{aligned}",
        o.precision,
        if o.trans_a { "T" } else { "N" },
        if o.trans_b { "T" } else { "N" },
        log2(d.n),
        log2(d.k)
    )
    .to_lowercase()
}

/// The kernel for this multiply: the pin, else the default when tuning is off, else the choice
/// for its bucket, asking the tuner for one if the table has none (a device without a tuner
/// runs the default).
pub fn resolve(gpu: &Gpu, d: &GemmDims, o: &GemmOptions) -> Result<GemmKernel> {
    if o.precision == Precision::F16 && !gpu.has_f16() {
        bail!("f16 GEMM operands need the shader-f16 feature, which {} lacks (use f32 or bf16)", gpu.label());
    }
    let handle = table(gpu);
    let mut t = handle.lock();
    let key = bucket(d, o);
    // Off ignores stored choices too: its results must not depend on what a tuned run wrote.
    let kernel = if let Some(pin) = t.pin {
        pin
    } else if t.mode == AutotuneMode::Off {
        default_kernel(gpu, o.precision)
    } else if let Some(k) = t.choices.get(&key).and_then(|c| GemmKernel::from_name(&c.kernel)).filter(|k| k.takes(o.precision) && k.runs_on(gpu)) {
        k
    } else if let Some(tuner) = t.tuner {
        let choice = tuner(gpu, &mut t, d, o)?;
        GemmKernel::from_name(&choice.kernel).context("the tuner chose an unknown kernel")?
    } else {
        default_kernel(gpu, o.precision)
    };
    t.used.insert(key, kernel.name());
    Ok(kernel)
}

/// Whether a bucket this device has no choice for would be tuned (a tuner is installed, the
/// mode is not off and no kernel is pinned): what makes tuning ahead of work worth doing.
pub fn will_tune(gpu: &Gpu) -> bool {
    let handle = table(gpu);
    let t = handle.lock();
    t.tuner.is_some() && t.mode != AutotuneMode::Off && t.pin.is_none()
}

/// The tuner's decision (with every candidate's time) for the bucket of this multiply, if this
/// device's table has one.
pub fn choice(gpu: &Gpu, d: &GemmDims, o: &GemmOptions) -> Option<Choice> {
    table(gpu).lock().choices.get(&bucket(d, o)).cloned()
}

/// Every (bucket, kernel) this device ran: what a checkpoint records.
pub fn used(gpu: &Gpu) -> BTreeMap<String, String> {
    table(gpu).lock().used.clone()
}
