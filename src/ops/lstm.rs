//! LSTM through time (shaders/lstm.wgsl): the input projection of every step as one GEMM, the
//! recurrence as a persistent kernel per sequence (forward and backward), and the mean over
//! each sequence's valid steps. Sequences carry their lengths: steps past a length are never
//! visited, so they change no output, loss or gradient. Gate order i, f, g, o (Keras's).
//! The float64 reference below is what the tests differentiate numerically.

use super::gemm::{self, GemmOptions, Precision};
use super::elementwise;
use super::norm;
use crate::gpu::{ShaderFile, Access, DType, Gpu, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const LSTM_WGSL: ShaderFile = ShaderFile {
    name: "lstm.wgsl",
    source: include_str!("../../shaders/lstm.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

/// Units one direction may have (the kernel's workgroup arrays).
pub const MAX_UNITS: usize = 256;

const FORWARD: KernelSpec = KernelSpec {
    shader: &LSTM_WGSL,
    entry: "lstm_forward",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite],
};
const BACKWARD: KernelSpec = KernelSpec {
    shader: &LSTM_WGSL,
    entry: "lstm_backward",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
};
const FORWARD_LANE: KernelSpec = KernelSpec {
    shader: &LSTM_WGSL,
    entry: "lstm_forward_lane",
    bindings: &[Access::Read, Access::Uniform, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite, Access::ReadWrite],
};
const BACKWARD_LANE: KernelSpec = KernelSpec {
    shader: &LSTM_WGSL,
    entry: "lstm_backward_lane",
    bindings: &[Access::Read, Access::Read, Access::Uniform, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
};
const INTERLEAVE: KernelSpec = KernelSpec { shader: &LSTM_WGSL, entry: "lstm_interleave", bindings: &[Access::Read, Access::ReadWrite] };

/// Units the lane kernels take: their gate-interleaved recurrent kernel, H * H vec4, is one
/// uniform binding of 64 KiB.
pub const LANE_MAX_UNITS: usize = 64;
const LANE_WEIGHT_BYTES: u64 = (LANE_MAX_UNITS * LANE_MAX_UNITS * 16) as u64;

/// Which recurrent kernels run: a workgroup per sequence with the state in workgroup memory
/// (for GPUs), or an invocation per sequence with no barrier, reading the recurrent kernel as
/// a broadcast uniform (for CPU adapters, where a barrier costs more than a step's arithmetic
/// and a per-lane storage load more than a uniform one: measured in docs/results/history.md, "The study's sequence models, session 9"; up to
/// [`LANE_MAX_UNITS`] units). Both compute the same sums (in different orders: their results
/// differ by rounding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LstmKernel {
    Workgroup,
    Lane,
}

impl LstmKernel {
    pub const ALL: [LstmKernel; 2] = [LstmKernel::Workgroup, LstmKernel::Lane];

    /// The adapter's choice for `units` per direction, or the device's setting
    /// (`GpuSettings::lstm_kernel`: lane where it can take the units, [`LstmKernel::supports`]).
    pub fn for_adapter(gpu: &Gpu, units: usize) -> LstmKernel {
        let lane_fits = LstmKernel::Lane.supports(gpu, units);
        match gpu.settings().lstm_kernel.as_deref() {
            Some("workgroup") => LstmKernel::Workgroup,
            Some("lane") if lane_fits => LstmKernel::Lane,
            _ if gpu.is_cpu() && lane_fits => LstmKernel::Lane,
            _ => LstmKernel::Workgroup,
        }
    }

    /// Whether this kernel runs `units` per direction on this device.
    pub fn supports(self, gpu: &Gpu, units: usize) -> bool {
        match self {
            LstmKernel::Workgroup => (1..=MAX_UNITS).contains(&units),
            LstmKernel::Lane => (1..=LANE_MAX_UNITS).contains(&units) && gpu.uniform_binding_bytes() >= LANE_WEIGHT_BYTES,
        }
    }
}

const MEAN: KernelSpec = KernelSpec { shader: &LSTM_WGSL, entry: "time_mean", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const MEAN_BACKWARD: KernelSpec = KernelSpec { shader: &LSTM_WGSL, entry: "time_mean_backward", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const ATTENTION: KernelSpec = KernelSpec {
    shader: &LSTM_WGSL,
    entry: "attention_pool",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
};
const ATTENTION_BACKWARD: KernelSpec = KernelSpec {
    shader: &LSTM_WGSL,
    entry: "attention_pool_backward",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    steps: u32,
    units: u32,
    reverse: u32,
    out_stride: u32,
    out_col: u32,
    first_step: u32,
    last_step: u32,
}

/// The time poolings' shapes (time_mean, attention_pool and their backwards).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TimePoolParams {
    batch: u32,
    steps: u32,
    channels: u32,
    _pad: u32,
}

impl TimePoolParams {
    fn new(batch: usize, steps: usize, channels: usize) -> TimePoolParams {
        TimePoolParams { batch: batch as u32, steps: steps as u32, channels: channels as u32, _pad: 0 }
    }
}

/// One direction of one LSTM layer on a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmShape {
    pub batch: usize,
    pub steps: usize,
    pub input: usize,
    pub units: usize,
    /// Walks each sequence from its last valid step to its first.
    pub reverse: bool,
    /// Columns of the output rows (units, or 2 units for a bidirectional layer) and this
    /// direction's first one.
    pub out_stride: usize,
    pub out_col: usize,
    pub kernel: LstmKernel,
    /// Processing steps per dispatch; None: the adapter's (all, or what llvmpipe's loop limit
    /// allows). Results do not depend on it.
    pub steps_per_dispatch: Option<usize>,
    /// Operand precision of the GEMMs around the recurrence (input projection, weight and
    /// input gradients); the recurrence itself is f32.
    pub precision: Precision,
}

impl LstmShape {
    fn check(&self, gpu: &Gpu) -> Result<()> {
        if !self.kernel.supports(gpu, self.units) {
            bail!("lstm: the {:?} kernel does not take {} units on this device (lane: at most {LANE_MAX_UNITS}, with a 64 KiB uniform binding)", self.kernel, self.units);
        }
        if self.batch == 0 || self.steps == 0 || self.input == 0 || self.units == 0 || self.units > MAX_UNITS || self.out_col + self.units > self.out_stride {
            bail!("lstm: {self:?} is out of range (1 to {MAX_UNITS} units, the output columns inside the row)");
        }
        Ok(())
    }

    fn params(&self) -> Params {
        Params {
            batch: self.batch as u32,
            steps: self.steps as u32,
            units: self.units as u32,
            reverse: self.reverse as u32,
            out_stride: self.out_stride as u32,
            out_col: self.out_col as u32,
            first_step: 0,
            last_step: 0,
        }
    }

    /// Loop iterations one invocation spends per step (inner loops go 4 at a time).
    fn iterations_per_step(&self, forward: bool) -> usize {
        let (h, g4) = (self.units, 4 * self.units);
        match (self.kernel, forward) {
            (LstmKernel::Workgroup, true) => g4.div_ceil(64) * (h.div_ceil(4) + 1) + 8,
            (LstmKernel::Workgroup, false) => h.div_ceil(64) * (g4 / 4 + 1) + 8,
            (LstmKernel::Lane, true) => h * (h.div_ceil(4) + 1) + h + 1,
            (LstmKernel::Lane, false) => h * (h.div_ceil(4) + 1) + 2 * h + 1,
        }
    }

    /// The processing steps of each dispatch: all of them in one, except on CPU adapters, where
    /// llvmpipe ends every loop of an invocation after 65,535 iterations in all: there each
    /// dispatch takes as many steps as stay well under that.
    fn step_ranges(&self, gpu: &Gpu, forward: bool) -> Vec<(u32, u32)> {
        let per = match self.steps_per_dispatch {
            Some(n) => n.max(1),
            None if gpu.is_cpu() => (50_000 / self.iterations_per_step(forward)).max(1),
            None => self.steps,
        };
        (0..self.steps).step_by(per).map(|a| (a as u32, (a + per).min(self.steps) as u32)).collect()
    }
}

/// One direction's weights: input kernel [input, 4 units], recurrent kernel [units, 4 units],
/// bias [4 units].
pub struct LstmWeights<'a> {
    pub wx: &'a Tensor,
    pub wh: &'a Tensor,
    pub b: &'a Tensor,
}

/// What one direction's forward keeps for its backward: the gates (activated), the state
/// entering each step and the cell after it, [batch * steps, ...], and the recurrent kernel in
/// the layout the chosen recurrent kernel reads (gate-interleaved for the lane kernels, so the
/// backward does not lay it out again).
pub struct LstmSaved {
    pub gates: Tensor,
    pub h_prev: Tensor,
    pub c: Tensor,
    recurrent: Tensor,
}

fn expect(t: &Tensor, len: usize, what: &str) -> Result<()> {
    if t.len() != len {
        bail!("lstm: {what} is {:?}, expected {len} values", t.shape());
    }
    Ok(())
}

/// Records one direction: `x` [batch * steps, input], `lengths` [batch] u32; writes this
/// direction's columns of `h_seq` [batch * steps, out_stride] (zero past each length) and
/// `h_last` [batch, out_stride] (the state after the last valid step). Both must have been
/// zeroed where the direction does not write (the caller clears them once for all directions).
pub fn forward(step: &mut Step, s: &LstmShape, x: &Tensor, w: &LstmWeights, lengths: &Tensor, h_seq: &Tensor, h_last: &Tensor) -> Result<LstmSaved> {
    s.check(step.gpu())?;
    let (rows, g4) = (s.batch * s.steps, 4 * s.units);
    expect(x, rows * s.input, "x")?;
    expect(w.wx, s.input * g4, "the input kernel")?;
    expect(w.wh, s.units * g4, "the recurrent kernel")?;
    expect(w.b, g4, "the bias")?;
    expect(h_seq, rows * s.out_stride, "the output sequence")?;
    expect(h_last, s.batch * s.out_stride, "the final state")?;
    if lengths.len() != s.batch || lengths.dtype() != DType::U32 {
        bail!("lstm: lengths {:?} must be [{}] u32", lengths.shape(), s.batch);
    }
    let gpu = step.gpu();
    let gx = gpu.empty(&[rows, g4], DType::F32)?;
    gemm::gemm(step, &x.reshape(&[rows, s.input]), &w.wx.reshape(&[s.input, g4]), Some(w.b), &gx, &GemmOptions { precision: s.precision, ..Default::default() })?;
    let (spec, grid, recurrent) = match s.kernel {
        LstmKernel::Workgroup => (&FORWARD, super::groups(s.batch, 1)?, w.wh.clone()),
        LstmKernel::Lane => (&FORWARD_LANE, super::groups(s.batch, 8)?, interleave(step, s, w.wh)?),
    };
    let saved = LstmSaved { gates: gpu.empty(&[rows, g4], DType::F32)?, h_prev: gpu.empty(&[rows, s.units], DType::F32)?, c: gpu.empty(&[rows, s.units], DType::F32)?, recurrent };
    // Steps past a length are never written: they must read zero (and stay out of the weight
    // gradients, which sum over every row).
    step.zero(&saved.gates);
    step.zero(&saved.h_prev);
    step.zero(&saved.c);
    for (first_step, last_step) in s.step_ranges(gpu, true) {
        let p = Params { first_step, last_step, ..s.params() };
        step.dispatch(spec, &[], &[&gx, &saved.recurrent, lengths, h_seq, &saved.h_prev, &saved.c, &saved.gates, h_last], bytemuck::bytes_of(&p), [grid, 1, 1], "lstm.forward")?;
    }
    Ok(saved)
}

/// The recurrent kernel [H, 4H] gate-interleaved for the lane kernels: a 64 KiB buffer (their
/// uniform binding's size) whose vec4 m * H + j is row m's gates i, f, g, o of unit j.
fn interleave(step: &mut Step, s: &LstmShape, wh: &Tensor) -> Result<Tensor> {
    let packed = step.gpu().empty(&[LANE_MAX_UNITS * LANE_MAX_UNITS * 4], DType::F32)?;
    let p = s.params();
    step.dispatch(&INTERLEAVE, &[], &[wh, &packed], bytemuck::bytes_of(&p), [super::groups(s.units * s.units, 64)?, 1, 1], "lstm.interleave")?;
    Ok(packed)
}

/// Gradients of one direction from those of its outputs (`dh_seq` [batch * steps, out_stride],
/// `dh_last` [batch, out_stride]): accumulates dL/dx into `dx` [batch * steps, input] when
/// given (`accumulate`: add to what is there), returns (dW_x, dW_h, db).
#[allow(clippy::too_many_arguments)]
pub fn backward(step: &mut Step, s: &LstmShape, x: &Tensor, w: &LstmWeights, lengths: &Tensor, saved: &LstmSaved, dh_seq: &Tensor, dh_last: &Tensor, dx: Option<(&Tensor, bool)>) -> Result<[Tensor; 3]> {
    s.check(step.gpu())?;
    let (rows, g4) = (s.batch * s.steps, 4 * s.units);
    expect(dh_seq, rows * s.out_stride, "the output gradient")?;
    expect(dh_last, s.batch * s.out_stride, "the final state's gradient")?;
    let gpu = step.gpu();
    let dgates = gpu.empty(&[rows, g4], DType::F32)?;
    step.zero(&dgates);
    let carry = gpu.empty(&[s.batch, 2 * s.units], DType::F32)?;
    let (spec, grid) = match s.kernel {
        LstmKernel::Workgroup => (&BACKWARD, super::groups(s.batch, 1)?),
        LstmKernel::Lane => (&BACKWARD_LANE, super::groups(s.batch, 8)?),
    };
    for (first_step, last_step) in s.step_ranges(gpu, false) {
        let p = Params { first_step, last_step, ..s.params() };
        step.dispatch(spec, &[], &[&saved.gates, &saved.c, &saved.recurrent, lengths, dh_seq, dh_last, &dgates, &carry], bytemuck::bytes_of(&p), [grid, 1, 1], "lstm.backward")?;
    }
    let (dwx, dwh, db) = (gpu.empty(&[s.input, g4], DType::F32)?, gpu.empty(&[s.units, g4], DType::F32)?, gpu.empty(&[g4], DType::F32)?);
    weight_gradients(step, s, &x.reshape(&[rows, s.input]), &saved.h_prev, &dgates, &dwx, &dwh)?;
    // Summed per sequence first: a sequence's sum does not depend on the batch's padding.
    norm::column_sum(step, &dgates, g4, rows / s.batch, &db)?;
    if let Some((dx, accumulate)) = dx {
        expect(dx, rows * s.input, "dx")?;
        let o = GemmOptions { trans_b: true, beta: if accumulate { 1.0 } else { 0.0 }, precision: s.precision, ..Default::default() };
        gemm::gemm(step, &dgates, &w.wx.reshape(&[s.input, g4]), None, &dx.reshape(&[rows, s.input]), &o)?;
    }
    Ok([dwx, dwh, db])
}

/// dW_x = X^T dG and dW_h = H_prev^T dG over every row. Where the GEMM for these shapes packs
/// its operands (the packed kernels of CPU adapters), dG is packed once, transposed, for both
/// products (dW^T = dG^T X, then transposed back: [4H, D] is small), instead of once for each:
/// packing the tall dG was a quarter of an LSTM epoch on lavapipe (docs/results/history.md, "The study's sequence models, session 9"). Other
/// kernels, bf16 operands, or a dG too tall for one texture take the two direct products.
/// Returns whether dG was shared.
pub fn weight_gradients(step: &mut Step, s: &LstmShape, x: &Tensor, h_prev: &Tensor, dgates: &Tensor, dwx: &Tensor, dwh: &Tensor) -> Result<bool> {
    let (rows, g4) = (s.batch * s.steps, 4 * s.units);
    let direct = GemmOptions { trans_a: true, precision: s.precision, ..Default::default() };
    let shared = match s.precision {
        Precision::F32 => gemm::FixedA::new(step, dgates, true, s.input.max(s.units), &GemmOptions::default()).ok().filter(|a| a.kernel().is_packed()),
        _ => None,
    };
    let Some(dgt) = shared else {
        gemm::gemm(step, x, dgates, None, dwx, &direct)?;
        gemm::gemm(step, h_prev, dgates, None, dwh, &direct)?;
        return Ok(false);
    };
    let gpu = step.gpu();
    for (rows_of, out, width) in [(x, dwx, s.input), (h_prev, dwh, s.units)] {
        let transposed = gpu.empty(&[g4, width], DType::F32)?;
        gemm::gemm_fixed_a(step, &dgt, &rows_of.reshape(&[rows, width]), None, &transposed, &GemmOptions::default())?;
        elementwise::transpose(step, &transposed, out)?;
    }
    Ok(true)
}

/// The mean over each sequence's valid steps: `x` [batch * steps, channels] -> `y` [batch,
/// channels] (zero for an empty sequence).
pub fn time_mean(step: &mut Step, batch: usize, steps: usize, channels: usize, x: &Tensor, lengths: &Tensor, y: &Tensor) -> Result<()> {
    expect(x, batch * steps * channels, "the sequence")?;
    expect(y, batch * channels, "the mean")?;
    let p = TimePoolParams::new(batch, steps, channels);
    step.dispatch(&MEAN, &[], &[x, lengths, y], bytemuck::bytes_of(&p), [super::groups(batch * channels, 64)?, 1, 1], "lstm.time_mean")
}

/// Its gradient: `dy` [batch, channels] spread evenly over the valid steps of `dx` [batch *
/// steps, channels], zero past each length.
pub fn time_mean_backward(step: &mut Step, batch: usize, steps: usize, channels: usize, dy: &Tensor, lengths: &Tensor, dx: &Tensor) -> Result<()> {
    expect(dy, batch * channels, "the mean's gradient")?;
    expect(dx, batch * steps * channels, "the sequence's gradient")?;
    let p = TimePoolParams::new(batch, steps, channels);
    step.dispatch(&MEAN_BACKWARD, &[], &[dy, lengths, dx], bytemuck::bytes_of(&p), [super::groups(batch * steps * channels, 64)?, 1, 1], "lstm.time_mean_backward")
}

/// The loop iterations one invocation of the attention kernels runs: scores over its steps
/// (C each), then the channel sums over every step (or the gradient's rows).
fn attention_iterations(steps: usize, channels: usize) -> usize {
    steps.div_ceil(64) * channels + channels.div_ceil(64) * steps + 2 * steps.div_ceil(64) + 64
}

/// Checks the shapes of attention pooling, and on CPU adapters that no invocation would pass
/// llvmpipe's loop limit.
fn check_attention(step: &Step, batch: usize, steps: usize, channels: usize) -> Result<TimePoolParams> {
    let what = format!("attention pooling over {steps} steps of {channels} channels (one workgroup per clip; --time-pooling mean has no such bound)");
    super::check_loop_budget(step.gpu(), attention_iterations(steps, channels), &what)?;
    if batch == 0 {
        bail!("attention pooling: an empty batch");
    }
    Ok(TimePoolParams::new(batch, steps, channels))
}

/// Attention pooling (Mirsamadi et al. 2017): scores s_t = w . x_t over each sequence's valid
/// steps, alpha = their softmax, y = sum_t alpha_t x_t. `x` [batch * steps, channels], `w`
/// [channels]; writes `y` [batch, channels] (zero for an empty sequence) and `alpha` [batch,
/// steps] (zero past each length), which the backward reads.
#[allow(clippy::too_many_arguments)]
pub fn attention_pool(step: &mut Step, batch: usize, steps: usize, channels: usize, x: &Tensor, w: &Tensor, lengths: &Tensor, y: &Tensor, alpha: &Tensor) -> Result<()> {
    let p = check_attention(step, batch, steps, channels)?;
    expect(x, batch * steps * channels, "the sequence")?;
    expect(w, channels, "the attention vector")?;
    expect(y, batch * channels, "the pooled output")?;
    expect(alpha, batch * steps, "the attention weights")?;
    step.dispatch(&ATTENTION, &[], &[x, w, lengths, y, alpha], bytemuck::bytes_of(&p), [batch as u32, 1, 1], "lstm.attention_pool")
}

/// Its gradients: `dx` [batch * steps, channels] (zero past each length) and the scores'
/// `dscore` [batch, steps], from which the caller makes dw = dscore^T x (a GEMM).
#[allow(clippy::too_many_arguments)]
pub fn attention_pool_backward(step: &mut Step, batch: usize, steps: usize, channels: usize, x: &Tensor, w: &Tensor, lengths: &Tensor, alpha: &Tensor, dy: &Tensor, dx: &Tensor, dscore: &Tensor) -> Result<()> {
    let p = check_attention(step, batch, steps, channels)?;
    expect(x, batch * steps * channels, "the sequence")?;
    expect(w, channels, "the attention vector")?;
    expect(alpha, batch * steps, "the attention weights")?;
    expect(dy, batch * channels, "the pooled output's gradient")?;
    expect(dx, batch * steps * channels, "the sequence's gradient")?;
    expect(dscore, batch * steps, "the scores' gradient")?;
    step.dispatch(&ATTENTION_BACKWARD, &[], &[x, w, lengths, alpha, dy, dx, dscore], bytemuck::bytes_of(&p), [batch as u32, 1, 1], "lstm.attention_pool_backward")
}

/// Float64 reference of attention pooling: (y [batch, channels], alpha [batch, steps]).
pub fn attention_reference(x: &[f64], w: &[f64], lengths: &[u32], steps: usize) -> (Vec<f64>, Vec<f64>) {
    let (batch, ch) = (lengths.len(), w.len());
    let (mut y, mut alpha) = (vec![0.0; batch * ch], vec![0.0; batch * steps]);
    for b in 0..batch {
        let len = (lengths[b] as usize).min(steps);
        let scores: Vec<f64> = (0..len).map(|t| (0..ch).map(|c| w[c] * x[(b * steps + t) * ch + c]).sum()).collect();
        let top = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = scores.iter().map(|s| (s - top).exp()).sum();
        for t in 0..len {
            let a = (scores[t] - top).exp() / total;
            alpha[b * steps + t] = a;
            for c in 0..ch {
                y[b * ch + c] += a * x[(b * steps + t) * ch + c];
            }
        }
    }
    (y, alpha)
}

/// Float64 reference of one direction: (h_seq [batch * steps, units], zero past each length;
/// h_last [batch, units]) from x [batch * steps, input], wx [input, 4 units], wh [units, 4
/// units], b [4 units].
#[allow(clippy::too_many_arguments)]
pub fn reference(x: &[f64], wx: &[f64], wh: &[f64], b: &[f64], lengths: &[u32], steps: usize, units: usize, reverse: bool) -> (Vec<f64>, Vec<f64>) {
    let batch = lengths.len();
    let input = x.len() / (batch * steps);
    let g4 = 4 * units;
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut h_seq = vec![0f64; batch * steps * units];
    let mut h_last = vec![0f64; batch * units];
    for bi in 0..batch {
        let len = (lengths[bi] as usize).min(steps);
        let (mut h, mut c) = (vec![0f64; units], vec![0f64; units]);
        for s in 0..len {
            let t = if reverse { len - 1 - s } else { s };
            let row = bi * steps + t;
            let mut gates = b.to_vec();
            for (k, gk) in gates.iter_mut().enumerate() {
                *gk += (0..input).map(|d| x[row * input + d] * wx[d * g4 + k]).sum::<f64>();
                *gk += (0..units).map(|j| h[j] * wh[j * g4 + k]).sum::<f64>();
            }
            for j in 0..units {
                let (i, f, g, o) = (sig(gates[j]), sig(gates[units + j]), gates[2 * units + j].tanh(), sig(gates[3 * units + j]));
                c[j] = f * c[j] + i * g;
                h[j] = o * c[j].tanh();
                h_seq[row * units + j] = h[j];
            }
        }
        h_last[bi * units..(bi + 1) * units].copy_from_slice(&h);
    }
    (h_seq, h_last)
}

/// Orthogonal [n, m] matrix (rows orthonormal when n <= m, columns when n > m) from a seeded
/// normal draw by Gram-Schmidt: Keras's orthogonal initialiser for recurrent kernels.
pub fn orthogonal(n: usize, m: usize, normal: &mut impl FnMut() -> f64) -> Vec<f32> {
    // Orthonormalise the shorter side's vectors.
    let (count, dim) = if n <= m { (n, m) } else { (m, n) };
    let mut v: Vec<Vec<f64>> = Vec::with_capacity(count);
    while v.len() < count {
        let mut a: Vec<f64> = (0..dim).map(|_| normal()).collect();
        for u in &v {
            let d: f64 = a.iter().zip(u).map(|(x, y)| x * y).sum();
            a.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
        }
        let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-8 {
            v.push(a.into_iter().map(|x| x / norm).collect());
        }
    }
    let mut out = vec![0f32; n * m];
    for (r, u) in v.iter().enumerate() {
        for (k, &val) in u.iter().enumerate() {
            if n <= m { out[r * m + k] = val as f32 } else { out[k * m + r] = val as f32 }
        }
    }
    out
}

/// Uploads helper for tests and checks: lengths as a u32 tensor.
pub fn lengths_tensor(gpu: &Gpu, lengths: &[u32]) -> Result<Tensor> {
    gpu.upload(lengths, &[lengths.len()], DType::U32)
}
