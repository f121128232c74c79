//! Max pooling along length (shaders/pool.wgsl).

use crate::gpu::{ShaderFile, Access, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const POOL_WGSL: ShaderFile = ShaderFile {
    name: "pool.wgsl",
    source: include_str!("../../shaders/pool.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::ReadWrite];
const FORWARD: KernelSpec = KernelSpec { shader: &POOL_WGSL, entry: "maxpool", bindings: BINDINGS };
const BACKWARD: KernelSpec = KernelSpec { shader: &POOL_WGSL, entry: "maxpool_backward", bindings: BINDINGS };

/// Geometry of a max pool over [batch, l_in, channels] (Keras padding "valid").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub batch: usize,
    pub l_in: usize,
    pub channels: usize,
    pub size: usize,
    pub stride: usize,
    pub l_out: usize,
}

impl PoolShape {
    pub fn new(batch: usize, l_in: usize, channels: usize, size: usize, stride: usize) -> Result<PoolShape> {
        if size == 0 || stride == 0 || size > l_in {
            bail!("max pool of size {size}, stride {stride} does not fit length {l_in}");
        }
        Ok(PoolShape { batch, l_in, channels, size, stride, l_out: (l_in - size) / stride + 1 })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    l_in: u32,
    l_out: u32,
    channels: u32,
    size: u32,
    stride: u32,
    _pad: [u32; 2],
}

fn params(s: &PoolShape) -> Params {
    Params { batch: s.batch as u32, l_in: s.l_in as u32, l_out: s.l_out as u32, channels: s.channels as u32, size: s.size as u32, stride: s.stride as u32, _pad: [0; 2] }
}

/// y [batch, l_out, channels] and the winning input index of each output (u32).
pub fn forward(step: &mut Step, s: &PoolShape, x: &Tensor, winner: &Tensor, y: &Tensor) -> Result<()> {
    let out = s.batch * s.l_out * s.channels;
    if x.len() != s.batch * s.l_in * s.channels || y.len() != out || winner.len() != out {
        bail!("maxpool: x {:?}, y {:?}, winner {:?} do not match {s:?}", x.shape(), y.shape(), winner.shape());
    }
    step.dispatch(&FORWARD, &[], &[x, winner, y], bytemuck::bytes_of(&params(s)), [super::groups(out, 64)?, 1, 1], "pool.max")
}

/// dx [batch, l_in, channels] from dy and the forward's winners.
pub fn backward(step: &mut Step, s: &PoolShape, dy: &Tensor, winner: &Tensor, dx: &Tensor) -> Result<()> {
    if dx.len() != s.batch * s.l_in * s.channels || dy.len() != s.batch * s.l_out * s.channels {
        bail!("maxpool backward: dy {:?}, dx {:?} do not match {s:?}", dy.shape(), dx.shape());
    }
    // The winners buffer is only read here; it sits in a read-write slot shared with the forward.
    step.dispatch(&BACKWARD, &[], &[dy, winner, dx], bytemuck::bytes_of(&params(s)), [super::groups(dx.len(), 64)?, 1, 1], "pool.max_backward")
}

/// Float64 reference forward: (y, winner index).
pub fn reference(s: &PoolShape, x: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut y = Vec::new();
    let mut w = Vec::new();
    for b in 0..s.batch {
        for o in 0..s.l_out {
            for c in 0..s.channels {
                let mut best_at = (b * s.l_in + o * s.stride) * s.channels + c;
                for k in 1..s.size {
                    let at = (b * s.l_in + o * s.stride + k) * s.channels + c;
                    if x[at] > x[best_at] {
                        best_at = at;
                    }
                }
                y.push(x[best_at]);
                w.push(best_at);
            }
        }
    }
    (y, w)
}
