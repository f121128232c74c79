//! im2col and its gradient (shaders/conv.wgsl): 1-D convolution as GEMM on channels-last data.

use crate::gpu::{ShaderFile, Access, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const CONV_WGSL: ShaderFile = ShaderFile {
    name: "conv.wgsl",
    source: include_str!("../../shaders/conv.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const IM2COL: KernelSpec = KernelSpec { shader: &CONV_WGSL, entry: "im2col", bindings: &[Access::Read, Access::ReadWrite] };
const COL2IM: KernelSpec = KernelSpec { shader: &CONV_WGSL, entry: "col2im", bindings: &[Access::Read, Access::ReadWrite] };

/// Geometry of a stride-1 convolution over [batch, l_in, c_in].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub l_in: usize,
    pub c_in: usize,
    pub k_size: usize,
    /// Zeros added before the input (Keras "same": (k - 1) / 2; "valid": 0).
    pub pad: usize,
    pub l_out: usize,
}

impl ConvShape {
    /// Keras padding="same" (output as long as the input) or "valid".
    pub fn new(batch: usize, l_in: usize, c_in: usize, k_size: usize, same: bool) -> Result<ConvShape> {
        if k_size == 0 || (!same && k_size > l_in) {
            bail!("conv: kernel {k_size} does not fit length {l_in} with {} padding", if same { "same" } else { "valid" });
        }
        let (pad, l_out) = if same { ((k_size - 1) / 2, l_in) } else { (0, l_in - k_size + 1) };
        Ok(ConvShape { batch, l_in, c_in, k_size, pad, l_out })
    }

    /// Columns of the im2col matrix.
    pub fn width(&self) -> usize {
        self.k_size * self.c_in
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    l_in: u32,
    l_out: u32,
    c_in: u32,
    k_size: u32,
    pad: u32,
    _pad: [u32; 2],
}

fn params(s: &ConvShape) -> Params {
    Params { batch: s.batch as u32, l_in: s.l_in as u32, l_out: s.l_out as u32, c_in: s.c_in as u32, k_size: s.k_size as u32, pad: s.pad as u32, _pad: [0; 2] }
}

/// cols [batch * l_out, k * c_in] from x [batch, l_in, c_in].
pub fn im2col(step: &mut Step, s: &ConvShape, x: &Tensor, cols: &Tensor) -> Result<()> {
    if x.len() != s.batch * s.l_in * s.c_in || cols.len() != s.batch * s.l_out * s.width() {
        bail!("im2col: x {:?} / cols {:?} do not match {s:?}", x.shape(), cols.shape());
    }
    // One invocation per input-sized element (example, output step, channel): k_size columns each.
    let grid = [super::groups(s.batch * s.l_out * s.c_in, 64)?, 1, 1];
    step.dispatch(&IM2COL, &[], &[x, cols], bytemuck::bytes_of(&params(s)), grid, "conv.im2col")
}

/// dx [batch, l_in, c_in] from dcols [batch * l_out, k * c_in].
pub fn col2im(step: &mut Step, s: &ConvShape, dcols: &Tensor, dx: &Tensor) -> Result<()> {
    if dx.len() != s.batch * s.l_in * s.c_in || dcols.len() != s.batch * s.l_out * s.width() {
        bail!("col2im: dcols {:?} / dx {:?} do not match {s:?}", dcols.shape(), dx.shape());
    }
    let grid = [super::groups(dx.len(), 64)?, 1, 1];
    step.dispatch(&COL2IM, &[], &[dcols, dx], bytemuck::bytes_of(&params(s)), grid, "conv.col2im")
}

/// Float64 reference convolution: y [batch, l_out, c_out] from x and w [k, c_in, c_out] + bias.
pub fn reference(s: &ConvShape, x: &[f64], w: &[f64], bias: &[f64], c_out: usize) -> Vec<f64> {
    let mut y = vec![0.0; s.batch * s.l_out * c_out];
    for b in 0..s.batch {
        for l in 0..s.l_out {
            for o in 0..c_out {
                let mut acc = bias[o];
                for k in 0..s.k_size {
                    let pos = (l + k) as i64 - s.pad as i64;
                    if pos < 0 || pos >= s.l_in as i64 {
                        continue;
                    }
                    for c in 0..s.c_in {
                        acc += x[(b * s.l_in + pos as usize) * s.c_in + c] * w[(k * s.c_in + c) * c_out + o];
                    }
                }
                y[(b * s.l_out + l) * c_out + o] = acc;
            }
        }
    }
    y
}
