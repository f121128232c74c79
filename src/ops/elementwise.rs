//! Elementwise maps (shaders/elementwise.wgsl): unary functions, binary arithmetic, fill, and
//! the transpose of a matrix.

use crate::gpu::{ShaderFile, Access, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const ELEMENTWISE_WGSL: ShaderFile = ShaderFile {
    name: "elementwise.wgsl",
    source: include_str!("../../shaders/elementwise.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

const UNARY: KernelSpec =
    KernelSpec { shader: &ELEMENTWISE_WGSL, entry: "unary", bindings: &[Access::Read, Access::ReadWrite] };
const BINARY: KernelSpec = KernelSpec {
    shader: &ELEMENTWISE_WGSL,
    entry: "binary",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};
const FILL: KernelSpec = KernelSpec { shader: &ELEMENTWISE_WGSL, entry: "fill", bindings: &[Access::ReadWrite] };
const TRANSPOSE: KernelSpec = KernelSpec { shader: &ELEMENTWISE_WGSL, entry: "transpose", bindings: &[Access::Read, Access::ReadWrite] };

/// Elements per workgroup: 256 invocations x 4 items (WG x ITEMS in the shader).
const PER_GROUP: usize = 1024;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    /// Columns of the matrix `transpose` reads.
    cols: u32,
}

/// The shader's unary OP codes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Relu,
    Neg,
    Exp,
    Log,
    Sqrt,
    Square,
    Abs,
    /// alpha * x + beta
    Affine(f32, f32),
    Sigmoid,
    Tanh,
    /// alpha * cos(x): random Fourier features.
    ScaledCos(f32),
    /// 1 where x > 0, else 0 (pyin's voicing from its f0).
    Positive,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 12] = [
        UnaryOp::Relu,
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Square,
        UnaryOp::Abs,
        UnaryOp::Affine(-1.5, 0.25),
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::ScaledCos(0.7),
        UnaryOp::Positive,
    ];

    fn code(self) -> (u32, f32, f32) {
        match self {
            UnaryOp::Relu => (0, 0.0, 0.0),
            UnaryOp::Neg => (1, 0.0, 0.0),
            UnaryOp::Exp => (2, 0.0, 0.0),
            UnaryOp::Log => (3, 0.0, 0.0),
            UnaryOp::Sqrt => (4, 0.0, 0.0),
            UnaryOp::Square => (5, 0.0, 0.0),
            UnaryOp::Abs => (6, 0.0, 0.0),
            UnaryOp::Affine(a, b) => (7, a, b),
            UnaryOp::Sigmoid => (8, 0.0, 0.0),
            UnaryOp::Tanh => (9, 0.0, 0.0),
            UnaryOp::ScaledCos(a) => (10, a, 0.0),
            UnaryOp::Positive => (11, 0.0, 0.0),
        }
    }

    /// Float64 reference.
    pub fn reference(self, v: f64) -> f64 {
        match self {
            UnaryOp::Relu => v.max(0.0),
            UnaryOp::Neg => -v,
            UnaryOp::Exp => v.exp(),
            UnaryOp::Log => v.ln(),
            UnaryOp::Sqrt => v.sqrt(),
            UnaryOp::Square => v * v,
            UnaryOp::Abs => v.abs(),
            UnaryOp::Affine(a, b) => a as f64 * v + b as f64,
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            UnaryOp::Tanh => v.tanh(),
            UnaryOp::ScaledCos(a) => a as f64 * v.cos(),
            UnaryOp::Positive => (v > 0.0) as u8 as f64,
        }
    }
}

/// The shader's binary OP codes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// x is the forward input of a ReLU, y the gradient arriving at its output.
    ReluBackward,
    /// alpha * x + beta * y
    Axpby(f32, f32),
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 8] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::ReluBackward,
        BinaryOp::Axpby(0.75, -2.0),
    ];

    fn code(self) -> (u32, f32, f32) {
        match self {
            BinaryOp::Add => (0, 0.0, 0.0),
            BinaryOp::Sub => (1, 0.0, 0.0),
            BinaryOp::Mul => (2, 0.0, 0.0),
            BinaryOp::Div => (3, 0.0, 0.0),
            BinaryOp::Max => (4, 0.0, 0.0),
            BinaryOp::Min => (5, 0.0, 0.0),
            BinaryOp::ReluBackward => (6, 0.0, 0.0),
            BinaryOp::Axpby(a, b) => (7, a, b),
        }
    }

    /// Float64 reference.
    pub fn reference(self, x: f64, y: f64) -> f64 {
        match self {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Max => x.max(y),
            BinaryOp::Min => x.min(y),
            BinaryOp::ReluBackward => {
                if x > 0.0 {
                    y
                } else {
                    0.0
                }
            }
            BinaryOp::Axpby(a, b) => a as f64 * x + b as f64 * y,
        }
    }
}

fn params(n: usize, alpha: f32, beta: f32) -> Result<Vec<u8>> {
    let n = u32::try_from(n).map_err(|_| anyhow::anyhow!("{n} elements exceed u32 indexing"))?;
    Ok(bytemuck::bytes_of(&Params { n, alpha, beta, cols: 0 }).to_vec())
}

/// y = op(x), elementwise; x and y have the same element count.
pub fn unary(step: &mut Step, op: UnaryOp, x: &Tensor, y: &Tensor) -> Result<()> {
    if x.len() != y.len() {
        bail!("unary {op:?}: input {:?} and output {:?} differ in size", x.shape(), y.shape());
    }
    let (code, alpha, beta) = op.code();
    let grid = [super::groups(x.len(), PER_GROUP)?, 1, 1];
    step.dispatch(&UNARY, &[("OP", code as f64)], &[x, y], &params(x.len(), alpha, beta)?, grid, format!("unary.{op:?}"))
}

/// z = op(x, y), elementwise over tensors of equal element count.
pub fn binary(step: &mut Step, op: BinaryOp, x: &Tensor, y: &Tensor, z: &Tensor) -> Result<()> {
    if x.len() != y.len() || x.len() != z.len() {
        bail!("binary {op:?}: sizes {:?}, {:?} -> {:?} differ", x.shape(), y.shape(), z.shape());
    }
    let (code, alpha, beta) = op.code();
    let grid = [super::groups(x.len(), PER_GROUP)?, 1, 1];
    step.dispatch(&BINARY, &[("OP", code as f64)], &[x, y, z], &params(x.len(), alpha, beta)?, grid, format!("binary.{op:?}"))
}

/// Sets every element of `y` to `value`.
pub fn fill(step: &mut Step, y: &Tensor, value: f32) -> Result<()> {
    let grid = [super::groups(y.len(), PER_GROUP)?, 1, 1];
    step.dispatch(&FILL, &[], &[y], &params(y.len(), value, 0.0)?, grid, "fill")
}

/// y [cols, rows] = x [rows, cols] transposed.
pub fn transpose(step: &mut Step, x: &Tensor, y: &Tensor) -> Result<()> {
    let (rows, cols) = super::rows_cols(x, "transpose: x")?;
    if y.shape() != [cols, rows] {
        bail!("transpose: {:?} into {:?}; the output must be [{cols}, {rows}]", x.shape(), y.shape());
    }
    let n = u32::try_from(x.len()).map_err(|_| anyhow::anyhow!("transpose: {} elements exceed u32 indexing", x.len()))?;
    let p = Params { n, alpha: 0.0, beta: 0.0, cols: cols as u32 };
    let grid = [super::groups(x.len(), PER_GROUP)?, 1, 1];
    step.dispatch(&TRANSPOSE, &[], &[x, y], bytemuck::bytes_of(&p), grid, "transpose")
}
