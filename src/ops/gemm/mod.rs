//! General matrix multiply (shaders/gemm.wgsl) with transposed operands, batching, bias and
//! ReLU epilogues: the op dense and convolution layers lower onto.

pub mod table;

use crate::gpu::{ShaderFile, Access, KernelSpec, Step, TexelFormat, Tensor, Texture};
use anyhow::{Result, bail};

/// The cooperative-matrix kernel (gemm_coop.wgsl) on gemm.wgsl's interface.
pub const GEMM_COOP_WGSL: ShaderFile = ShaderFile {
    name: "gemm_coop.wgsl",
    source: concat!(include_str!("../../../shaders/gemm.wgsl"), include_str!("../../../shaders/gemm_coop.wgsl")),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: true,
    bounds_proven: &[],
};

/// The same kernels with half-precision operand tiles (SHADER_F16).
pub const GEMM_TILE_F16_WGSL: ShaderFile = ShaderFile {
    name: "gemm_tile_f16.wgsl",
    source: concat!("enable f16;\nalias TileScalar = f16;\n", include_str!("../../../shaders/gemm.wgsl"), include_str!("../../../shaders/gemm_tile.wgsl")),
    needs_f16: true,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &["gemm_tile4", "gemm_tile8"],
};

/// The portable buffer-operand kernels (gemm_tile.wgsl) on gemm.wgsl's interface, f32 tiles.
pub const GEMM_TILE_WGSL: ShaderFile = ShaderFile {
    name: "gemm_tile.wgsl",
    source: concat!("alias TileScalar = f32;\n", include_str!("../../../shaders/gemm.wgsl"), include_str!("../../../shaders/gemm_tile.wgsl")),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &["gemm_tile4", "gemm_tile8"],
};

/// gemm.wgsl plus the kernels that share operands across a subgroup: a file of its own, so that
/// devices without subgroups (GL here) still compile gemm.wgsl.
pub const GEMM_SUBGROUP_WGSL: ShaderFile = ShaderFile {
    name: "gemm_subgroup.wgsl",
    source: concat!(include_str!("../../../shaders/gemm.wgsl"), include_str!("../../../shaders/gemm_subgroup.wgsl")),
    needs_f16: false,
    needs_subgroups: true,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

pub const GEMM_WGSL: ShaderFile = ShaderFile {
    name: "gemm.wgsl",
    source: include_str!("../../../shaders/gemm.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &["gemm_naive", "gemm_tiled16", "gemm_reg4x4", "gemm_vec4", "gemm_vec4x8"],
};

crate::choices! {
    /// The kernel shapes in gemm.wgsl. All compute the same thing; they differ in speed by adapter.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum GemmKernel {
        /// Whatever this device's kernel table says for the shape ([`table::resolve`]).
        Auto = "auto",
        /// One output per invocation.
        Naive = "naive",
        /// 16x16 shared-memory tiles with workgroup barriers.
        Tiled16 = "tiled16",
        /// Barrier-free, 4x4 outputs per invocation in registers, scalar loads.
        Reg4x4 = "reg4x4",
        /// Barrier-free, a contiguous 4x4 block per invocation, 16-byte loads.
        Vec4 = "vec4",
        /// Barrier-free, a contiguous 8x8 block per invocation, 16-byte loads.
        Vec4x8 = "vec4x8",
        /// The 8x8 block kernel reading both operands from textures that a packing pass fills.
        Tex8 = "tex8",
        /// Tex8 with A's texels fetched once per subgroup and broadcast to its lanes; runs as Tex8
        /// on devices without subgroups or without one fixed subgroup size (dividing 64, >= 8).
        Tex8Shared = "tex8-shared",
        /// Portable family (gemm_tile.wgsl): 32x32 tiles in workgroup memory, 8x8 invocations of 4x4.
        Tile32 = "tile32",
        /// 64x64 tiles, 16x16 invocations of 4x4 outputs, 16 k per stage.
        Tile64 = "tile64",
        /// 64x64 tiles, 16x8 invocations of 8x4 outputs (fewer invocations, more registers each).
        Tile64R8 = "tile64-r8",
        /// 128x64 tiles, 16x16 invocations of 8x4 outputs, 8 k per stage.
        Tile128 = "tile128",
        /// The adapter's matrix units (gemm_coop.wgsl): 8x8 f32 cooperative matrices, 16x16 blocks
        /// per subgroup; only where the adapter reports that configuration.
        Coop8 = "coop8",
    }
}

/// One configuration of the portable tile kernels: its override constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    /// Rows of C per invocation (4 or 8: the entry point); each invocation owns 4 columns.
    pub rows: usize,
    pub wg_x: usize,
    pub wg_y: usize,
    /// k staged per barrier pair (a multiple of 4).
    pub tile_k: usize,
}

impl TileConfig {
    pub fn block_rows(&self) -> usize {
        self.rows * self.wg_y
    }

    pub fn block_cols(&self) -> usize {
        4 * self.wg_x
    }

    /// Fits the shader's workgroup arrays (BM * TILE_K <= 2048, BN * TILE_K <= 1024 values).
    fn fits(&self) -> bool {
        matches!(self.rows, 4 | 8)
            && self.tile_k.is_multiple_of(4)
            && self.block_rows() * self.tile_k <= 2048
            && self.block_cols() * self.tile_k <= 1024
            && self.wg_x * self.wg_y <= 256
    }
}

impl GemmKernel {
    pub const ALL: [GemmKernel; 12] = [
        GemmKernel::Naive,
        GemmKernel::Tiled16,
        GemmKernel::Reg4x4,
        GemmKernel::Vec4,
        GemmKernel::Vec4x8,
        GemmKernel::Tex8,
        GemmKernel::Tex8Shared,
        GemmKernel::Tile32,
        GemmKernel::Tile64,
        GemmKernel::Tile64R8,
        GemmKernel::Tile128,
        GemmKernel::Coop8,
    ];

    /// Whether this device can run the kernel (the cooperative-matrix one needs the feature;
    /// tex8-shared runs as tex8 without subgroups).
    pub fn runs_on(self, gpu: &crate::gpu::Gpu) -> bool {
        self != GemmKernel::Coop8 || gpu.has_cooperative_matrix()
    }

    /// The portable family's configuration, None for the other kernels.
    pub fn tile_config(self) -> Option<TileConfig> {
        let (rows, wg_x, wg_y, tile_k) = match self {
            GemmKernel::Tile32 => (4, 8, 8, 16),
            GemmKernel::Tile64 => (4, 16, 16, 16),
            GemmKernel::Tile64R8 => (8, 16, 8, 16),
            GemmKernel::Tile128 => (8, 16, 16, 8),
            _ => return None,
        };
        Some(TileConfig { rows, wg_x, wg_y, tile_k })
    }

    /// Whether this kernel multiplies operands of this precision.
    pub fn takes(self, precision: Precision) -> bool {
        match precision {
            _ if self == GemmKernel::Auto => true,
            Precision::F32 => true,
            Precision::Bf16 => self.is_packed(),
            Precision::F16 => self.tile_config().is_some(),
        }
    }

    /// The name on the command line and in tuning files.
    pub fn name(self) -> String {
        crate::choice::Choice::name(self).to_string()
    }

    /// Parses [`GemmKernel::name`].
    pub fn from_name(name: &str) -> Option<GemmKernel> {
        GemmKernel::ALL.into_iter().find(|k| k.name() == name)
    }

    fn spec(self) -> &'static KernelSpec {
        const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite];
        const NAIVE: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "gemm_naive", bindings: BINDINGS };
        const TILED: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "gemm_tiled16", bindings: BINDINGS };
        const REG: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "gemm_reg4x4", bindings: BINDINGS };
        const VEC4: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "gemm_vec4", bindings: BINDINGS };
        const VEC4X8: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "gemm_vec4x8", bindings: BINDINGS };
        const COOP8: KernelSpec = KernelSpec { shader: &GEMM_COOP_WGSL, entry: "gemm_coop8", bindings: BINDINGS };
        match self {
            GemmKernel::Naive => &NAIVE,
            GemmKernel::Tiled16 => &TILED,
            GemmKernel::Reg4x4 => &REG,
            GemmKernel::Vec4 => &VEC4,
            GemmKernel::Vec4x8 => &VEC4X8,
            GemmKernel::Coop8 => &COOP8,
            GemmKernel::Auto => unreachable!("gemm_at resolves Auto first"),
            GemmKernel::Tex8 | GemmKernel::Tex8Shared => unreachable!("gemm_at sends Tex8 through launch_tex8"),
            GemmKernel::Tile32 | GemmKernel::Tile64 | GemmKernel::Tile64R8 | GemmKernel::Tile128 => {
                unreachable!("gemm_at sends the tile family through launch_tile")
            }
        }
    }

    /// The kernel that runs for these dims: the vec4 shapes need 16-byte aligned rows of A and B.
    pub fn for_dims(self, d: &GemmDims, o: &GemmOptions) -> GemmKernel {
        match self {
            GemmKernel::Vec4 | GemmKernel::Vec4x8 if !d.vector_aligned(o) => GemmKernel::Reg4x4,
            k => k,
        }
    }

    /// Reads packed texture operands (gemm_packed) rather than the buffers.
    pub fn is_packed(self) -> bool {
        matches!(self, GemmKernel::Tex8 | GemmKernel::Tex8Shared)
    }

    /// Output rows and columns covered by one workgroup.
    fn tile(self) -> usize {
        match self {
            GemmKernel::Auto => unreachable!("gemm_at resolves Auto first"),
            GemmKernel::Naive => 8,
            GemmKernel::Tiled16 | GemmKernel::Coop8 => 16,
            GemmKernel::Reg4x4 | GemmKernel::Vec4 => 32,
            GemmKernel::Vec4x8 | GemmKernel::Tex8 | GemmKernel::Tex8Shared => 64,
            GemmKernel::Tile32 | GemmKernel::Tile64 | GemmKernel::Tile64R8 | GemmKernel::Tile128 => {
                unreachable!("the tile family's blocks are not square")
            }
        }
    }
}

crate::choices! {
    /// What the packed kernels round GEMM operands to before multiplying; sums are f32 either way.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Precision {
        /// f32 operands: the reference.
        #[default]
        F32 = "f32",
        /// bfloat16 operands (8 significant bits, f32's exponent range), f32 sums: half the texel
        /// fetches of F32. Only the packed kernels (tex8, tex8-shared) take it.
        Bf16 = "bf16",
        /// IEEE half operands (11 significant bits, |x| up to 65504), f32 products and sums: half
        /// the workgroup memory of F32. The tile family takes it, on adapters with SHADER_F16.
        F16 = "f16",
    }
}

impl Precision {
    /// k values per packed texel.
    fn k_per_texel(self) -> usize {
        match self {
            Precision::F32 | Precision::F16 => 4,
            Precision::Bf16 => 8,
        }
    }
}

/// Options of one multiply: C = act(alpha * op(A) op(B) + bias + beta * C).
#[derive(Clone, Copy, Debug)]
pub struct GemmOptions {
    pub trans_a: bool,
    pub trans_b: bool,
    pub relu: bool,
    pub alpha: f32,
    /// 0 overwrites C; 1 accumulates into it (gradient sums).
    pub beta: f32,
    pub kernel: GemmKernel,
    pub precision: Precision,
    /// tex8-shared's ROW_LANES (a power of two up to 64; None: [`default_row_lanes`]). Changes
    /// speed and which loop runs, never the result.
    pub row_lanes: Option<u32>,
}

impl Default for GemmOptions {
    fn default() -> Self {
        GemmOptions {
            trans_a: false,
            trans_b: false,
            relu: false,
            alpha: 1.0,
            beta: 0.0,
            kernel: GemmKernel::Auto,
            precision: Precision::F32,
            row_lanes: None,
        }
    }
}

impl GemmOptions {
    /// The same options with `Auto` replaced by the kernel this device's table gives `d`.
    fn resolved(&self, step: &Step, d: &GemmDims) -> Result<GemmOptions> {
        Ok(GemmOptions { kernel: kernel_for(step.gpu(), d, self)?, ..*self })
    }

    /// Refuses options no kernel can run (checked by every entry point).
    fn check(&self) -> Result<()> {
        if self.row_lanes.is_some_and(|w| !w.is_power_of_two() || w > 64) {
            bail!("gemm: row_lanes {:?} must be a power of two up to 64", self.row_lanes);
        }
        Ok(())
    }
}

/// The kernel a multiply with these dims and options runs: `Auto` resolved by the device's
/// kernel table, then the vec4 shapes' fallback for unaligned rows.
pub fn kernel_for(gpu: &crate::gpu::Gpu, d: &GemmDims, o: &GemmOptions) -> Result<GemmKernel> {
    let kernel = if o.kernel == GemmKernel::Auto { table::resolve(gpu, d, o)? } else { o.kernel };
    Ok(kernel.for_dims(d, o))
}

/// Sizes of one multiply, derived from tensor shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmDims {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// B is one matrix shared by every batch.
    pub broadcast_b: bool,
}

impl GemmDims {
    /// A is [batch?, M, K] ([batch?, K, M] transposed), B is [batch?, K, N] ([.., N, K]
    /// transposed), C is [batch?, M, N]. A rank-2 B is shared by all batches of A.
    pub fn infer(a: &[usize], b: &[usize], c: &[usize], o: &GemmOptions) -> Result<GemmDims> {
        let split = |s: &[usize], what: &str| -> Result<(Option<usize>, usize, usize)> {
            match *s {
                [r, c] => Ok((None, r, c)),
                [b, r, c] => Ok((Some(b), r, c)),
                _ => bail!("gemm: {what} must be rank 2 or 3, got {s:?}"),
            }
        };
        let (ba, ar, ac) = split(a, "A")?;
        let (bb, br, bc) = split(b, "B")?;
        let (bc_, cr, cc) = split(c, "C")?;
        let (m, k) = if o.trans_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if o.trans_b { (bc, br) } else { (br, bc) };
        if k != kb || cr != m || cc != n {
            bail!("gemm: shapes A{a:?} B{b:?} C{c:?} (trans_a={}, trans_b={}) do not chain", o.trans_a, o.trans_b);
        }
        let batch = ba.unwrap_or(1);
        if bc_.unwrap_or(1) != batch || bb.is_some_and(|x| x != batch) {
            bail!("gemm: batch sizes of A{a:?} B{b:?} C{c:?} differ");
        }
        Ok(GemmDims { batch, m, n, k, broadcast_b: bb.is_none() && batch > 1 })
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// Whether every row of A and B (as stored) is whole vec4s: K a multiple of 4, and M where
    /// A is transposed, N where B is not. The vec4 kernels need it (else they run as reg4x4)
    /// and the tile family then loads both operands as vectors (otherwise one or none), so a
    /// kernel's speed class depends on it.
    pub fn vector_aligned(&self, o: &GemmOptions) -> bool {
        self.k.is_multiple_of(4) && (!o.trans_a || self.m.is_multiple_of(4)) && (o.trans_b || self.n.is_multiple_of(4))
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    off_bias: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    _pad1: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    _pad2: u32,
    alpha: f32,
    beta: f32,
    _pad3: [u32; 2],
    off_a: u32,
    off_b: u32,
    off_c: u32,
    _pad4: u32,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| anyhow::anyhow!("gemm: {what} = {v} exceeds u32 indexing"))
}

/// Records C = act(alpha * op(A) op(B) + bias + beta * C), dims taken from the tensors' shapes.
/// `bias` has N elements.
pub fn gemm(step: &mut Step, a: &Tensor, b: &Tensor, bias: Option<&Tensor>, c: &Tensor, o: &GemmOptions) -> Result<GemmDims> {
    let d = GemmDims::infer(a.shape(), b.shape(), c.shape(), o)?;
    gemm_at(step, (a, 0), (b, 0), bias, (c, 0), d, o)?;
    Ok(d)
}

/// The same on sub-matrices: each operand is (tensor, element offset), laid out densely from
/// there as `d` and the transposes say. Offsets must be multiples of 4 (16-byte aligned rows for
/// the vec4 kernels); the whole extent must lie inside the tensor.
pub fn gemm_at(step: &mut Step, (a, off_a): (&Tensor, usize), (b, off_b): (&Tensor, usize), bias: Option<&Tensor>, (c, off_c): (&Tensor, usize), d: GemmDims, o: &GemmOptions) -> Result<()> {
    let b_extent = if d.broadcast_b { d.k * d.n } else { d.batch * d.k * d.n };
    for (name, t, off, extent) in [("A", a, off_a, d.batch * d.m * d.k), ("B", b, off_b, b_extent), ("C", c, off_c, d.batch * d.m * d.n)] {
        if off % 4 != 0 || off + extent > t.len() {
            bail!("gemm: {name} at offset {off} with {extent} elements does not fit {t:?} (offsets must be multiples of 4)");
        }
    }
    check_output(&[a, b], bias, c, d.n)?;
    if d.m * d.n * d.batch == 0 {
        return Ok(());
    }
    o.check()?;
    let o = &o.resolved(step, &d)?;
    let kernel = o.kernel.for_dims(&d, o);
    if !kernel.takes(o.precision) {
        bail!("gemm: kernel {} does not take {:?} operands", kernel.name(), o.precision);
    }
    if kernel.is_packed() {
        return gemm_packed(step, (a, off_a), (b, off_b), bias, (c, off_c), d, o);
    }
    let p = buffer_params(&d, o, (off_a, off_b, off_c))?;
    let mut constants = vec![
        ("TRANS_A", o.trans_a as u8 as f64),
        ("TRANS_B", o.trans_b as u8 as f64),
        ("HAS_BIAS", bias.is_some() as u8 as f64),
        ("RELU", o.relu as u8 as f64),
    ];
    if kernel == GemmKernel::Coop8 {
        // One workgroup per subgroup: the cooperative matrices are subgroup-scoped.
        constants.push(("COOP_WG", step.gpu().report().adapter.subgroup_size.1.clamp(1, 256) as f64));
    }
    if let Some(t) = kernel.tile_config() {
        return launch_tile(step, kernel, t, &d, o, &p, constants, [a, b, c], bias);
    }
    let tile = kernel.tile();
    let grid = [super::groups(d.n, tile)?, super::groups(d.m, tile)?, u32_of(d.batch, "batch")?];
    let label = buffer_label(kernel.name(), o, bias.is_some());
    let bias = bias.unwrap_or(step.gpu().placeholder()).clone();
    step.dispatch(kernel.spec(), &constants, &[a, b, &bias, c], bytemuck::bytes_of(&p), grid, label)?;
    step.count_flops(d.flops());
    Ok(())
}

fn buffer_label(kernel: String, o: &GemmOptions, has_bias: bool) -> String {
    format!(
        "gemm.{kernel}[{}{}{}{}]",
        if o.trans_a { "T" } else { "N" },
        if o.trans_b { "T" } else { "N" },
        if o.relu { ",relu" } else { "" },
        if has_bias { ",bias" } else { "" },
    )
}

/// The params of a buffer-operand kernel: dense row strides from the dims and transposes.
fn buffer_params(d: &GemmDims, o: &GemmOptions, (off_a, off_b, off_c): (usize, usize, usize)) -> Result<Params> {
    Ok(Params {
        m: u32_of(d.m, "M")?,
        n: u32_of(d.n, "N")?,
        k: u32_of(d.k, "K")?,
        lda: u32_of(if o.trans_a { d.m } else { d.k }, "lda")?,
        ldb: u32_of(if o.trans_b { d.k } else { d.n }, "ldb")?,
        ldc: u32_of(d.n, "ldc")?,
        stride_a: u32_of(d.m * d.k, "batch stride of A")?,
        stride_b: if d.broadcast_b { 0 } else { u32_of(d.k * d.n, "batch stride of B")? },
        stride_c: u32_of(d.m * d.n, "batch stride of C")?,
        alpha: o.alpha,
        beta: o.beta,
        off_a: u32_of(off_a, "offset of A")?,
        off_b: u32_of(off_b, "offset of B")?,
        off_c: u32_of(off_c, "offset of C")?,
        off_bias: 0,
        _pad1: 0,
        _pad2: 0,
        _pad3: [0; 2],
        _pad4: 0,
    })
}

/// One launch of the portable tile family. Vector loads are switched on per operand where the
/// host proves every vector whole and 16-byte aligned: the contiguous dimension (K, or M for a
/// transposed A, N for an untransposed B) a multiple of 4 (offsets already are).
#[allow(clippy::too_many_arguments)]
fn launch_tile(
    step: &mut Step,
    kernel: GemmKernel,
    t: TileConfig,
    d: &GemmDims,
    o: &GemmOptions,
    p: &Params,
    mut constants: Vec<(&'static str, f64)>,
    [a, b, c]: [&Tensor; 3],
    bias: Option<&Tensor>,
) -> Result<()> {
    const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite];
    const F32_4: KernelSpec = KernelSpec { shader: &GEMM_TILE_WGSL, entry: "gemm_tile4", bindings: BINDINGS };
    const F32_8: KernelSpec = KernelSpec { shader: &GEMM_TILE_WGSL, entry: "gemm_tile8", bindings: BINDINGS };
    const F16_4: KernelSpec = KernelSpec { shader: &GEMM_TILE_F16_WGSL, entry: "gemm_tile4", bindings: BINDINGS };
    const F16_8: KernelSpec = KernelSpec { shader: &GEMM_TILE_F16_WGSL, entry: "gemm_tile8", bindings: BINDINGS };
    if !t.fits() {
        bail!("gemm: tile configuration {t:?} does not fit gemm_tile.wgsl's workgroup arrays");
    }
    let f16 = o.precision == Precision::F16;
    if f16 && !step.gpu().has_f16() {
        bail!("gemm: f16 operands need the shader-f16 feature, which {} lacks", step.gpu().label());
    }
    let vec_a = if o.trans_a { d.m.is_multiple_of(4) } else { d.k.is_multiple_of(4) };
    let vec_b = if o.trans_b { d.k.is_multiple_of(4) } else { d.n.is_multiple_of(4) };
    constants.extend([
        ("WG_X", t.wg_x as f64),
        ("WG_Y", t.wg_y as f64),
        ("TILE_K", t.tile_k as f64),
        ("VEC_A", vec_a as u8 as f64),
        ("VEC_B", vec_b as u8 as f64),
    ]);
    let spec = match (f16, t.rows) {
        (false, 4) => &F32_4,
        (false, _) => &F32_8,
        (true, 4) => &F16_4,
        (true, _) => &F16_8,
    };
    let grid = [super::groups(d.n, t.block_cols())?, super::groups(d.m, t.block_rows())?, u32_of(d.batch, "batch")?];
    let label = buffer_label(format!("{}{}", kernel.name(), if f16 { ".f16" } else { "" }), o, bias.is_some());
    let bias = bias.unwrap_or(step.gpu().placeholder()).clone();
    step.dispatch(spec, &constants, &[a, b, &bias, c], bytemuck::bytes_of(p), grid, label)?;
    step.count_flops(d.flops());
    Ok(())
}

/// C must not be an input (the kernel would race with its own reads); the bias has N values.
fn check_output(inputs: &[&Tensor], bias: Option<&Tensor>, c: &Tensor, n: usize) -> Result<()> {
    if inputs.iter().chain(&bias).any(|t| c.shares_storage(t)) {
        bail!("gemm: C is also bound as an input (the kernel would race with its own reads)");
    }
    if let Some(bias) = bias {
        if bias.len() != n {
            bail!("gemm: bias {:?} does not match N = {n}", bias.shape());
        }
    }
    Ok(())
}

/// The largest packed operand side: the texture side, in whole 8-row blocks.
fn packed_side(step: &Step) -> usize {
    step.gpu().max_texture_side() as usize / 8 * 8
}

/// Where the rows of one packed operand come from: element (batch, row, k) of op(X) is
/// `src[offset + batch * batch_stride + row * row_stride + k * k_stride]`.
struct Operand<'t> {
    src: &'t Tensor,
    offset: usize,
    row_stride: usize,
    k_stride: usize,
    batch_stride: usize,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PackParams {
    rows: u32,
    k: u32,
    padded_rows: u32,
    width: u32,
    row_stride: u32,
    k_stride: u32,
    batch_stride: u32,
    offset: u32,
    first_row: u32,
    first_batch: u32,
    height: u32,
    _pad: u32,
}

/// Records the packing of rows `first_row..first_row + rows` of batches
/// `first_batch..first_batch + batches` of an operand into a texture gemm_tex8 reads.
fn pack(step: &mut Step, x: &Operand, k: usize, precision: Precision, (first_batch, batches): (usize, usize), (first_row, rows): (usize, usize)) -> Result<Texture> {
    const PACK: KernelSpec =
        KernelSpec { shader: &GEMM_WGSL, entry: "pack_rows", bindings: &[Access::Read, Access::TextureWrite] };
    const PACK_BF16: KernelSpec =
        KernelSpec { shader: &GEMM_WGSL, entry: "pack_rows_bf16", bindings: &[Access::Read, Access::TextureWriteUint] };
    let (spec, format) = match precision {
        Precision::F32 => (&PACK, TexelFormat::Rgba32Float),
        Precision::Bf16 => (&PACK_BF16, TexelFormat::Rgba32Uint),
        Precision::F16 => bail!("gemm: the packed kernels take f32 or bf16 operands, not f16"),
    };
    let padded_rows = rows.next_multiple_of(8);
    let width = k.div_ceil(precision.k_per_texel());
    let height = batches * padded_rows;
    let tex = step.gpu().texture_of(format, u32_of(width, "packed width")?, u32_of(height, "packed height")?)?;
    let p = PackParams {
        rows: u32_of(rows, "rows")?,
        k: u32_of(k, "K")?,
        padded_rows: u32_of(padded_rows, "rows")?,
        width: u32_of(width, "packed width")?,
        row_stride: u32_of(x.row_stride, "row stride")?,
        k_stride: u32_of(x.k_stride, "k stride")?,
        batch_stride: u32_of(x.batch_stride, "batch stride")?,
        offset: u32_of(x.offset, "offset")?,
        first_row: u32_of(first_row, "first row")?,
        first_batch: u32_of(first_batch, "first batch")?,
        height: u32_of(height, "packed height")?,
        _pad: 0,
    };
    // PACK_SPAN texels of a row per invocation (set here, read by gemm.wgsl), 8x8 invocations
    // a workgroup.
    const PACK_SPAN: usize = 4;
    let grid = [super::groups(width, 8 * PACK_SPAN)?, super::groups(height, 8)?, 1];
    step.dispatch_bound(spec, &[("PACK_SPAN", PACK_SPAN as f64)], &[x.src.into(), (&tex).into()], bytemuck::bytes_of(&p), grid, "gemm.pack")?;
    Ok(tex)
}

/// One gemm_tex8 launch: C block (rows x cols of `batches` batches, starting at element `off_c`
/// of `c`, row stride `ldc`, batch stride `stride_c`) from two packed operands. `a_rows` and
/// `b_rows` are texture rows per batch (0: one matrix for every batch); `first_col` offsets the
/// bias. Narrow blocks take the tall variant so that every SIMD lane has work.
struct Tex8Launch<'t> {
    packed_a: &'t Texture,
    a_rows: usize,
    /// Texture row where batch 0 of A starts.
    a_first_row: usize,
    packed_b: &'t Texture,
    b_rows: usize,
    rows: usize,
    cols: usize,
    batches: usize,
    k: usize,
    off_c: usize,
    ldc: usize,
    stride_c: usize,
    first_col: usize,
    precision: Precision,
}

/// Invocations that share one 8-row block in gemm_tex8_shared by default: the adapter's largest
/// subgroup size, 8 to 64, so that a subgroup of consecutive invocations lies on one row block.
/// Only speed depends on it: a subgroup that does not fit (smaller or larger than reported,
/// lanes mapped otherwise) takes the plain loop.
pub fn default_row_lanes(gpu: &crate::gpu::Gpu) -> u32 {
    gpu.report().adapter.subgroup_size.1.clamp(8, 64).next_power_of_two()
}

fn launch_tex8(step: &mut Step, l: &Tex8Launch, bias: Option<&Tensor>, c: &Tensor, o: &GemmOptions) -> Result<()> {
    const BINDINGS: &[Access] = &[Access::Texture, Access::Texture, Access::Read, Access::ReadWrite];
    const SQUARE: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "gemm_tex8", bindings: BINDINGS };
    const TALL: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "gemm_tex8_tall", bindings: BINDINGS };
    const SHARED: KernelSpec = KernelSpec { shader: &GEMM_SUBGROUP_WGSL, entry: "gemm_tex8_shared", bindings: BINDINGS };
    const BF16_BINDINGS: &[Access] = &[Access::TextureUint, Access::TextureUint, Access::Read, Access::ReadWrite];
    const BF16: KernelSpec = KernelSpec { shader: &GEMM_WGSL, entry: "gemm_bf16", bindings: BF16_BINDINGS };
    const BF16_SHARED: KernelSpec = KernelSpec { shader: &GEMM_SUBGROUP_WGSL, entry: "gemm_bf16_shared", bindings: BF16_BINDINGS };
    let bf16 = l.precision == Precision::Bf16;
    // The tall kernel has no bfloat16 twin: narrow products are cheap, the square one serves.
    let tall = l.cols <= 32 && !bf16;
    // The shared kernel needs subgroups; its tile is ROW_LANES invocations per 8-row block, a
    // speed choice only (the kernel checks per subgroup whether it may share).
    let shared = step.gpu().has_subgroups() && o.kernel == GemmKernel::Tex8Shared && !tall;
    let lanes = shared.then(|| o.row_lanes.unwrap_or_else(|| default_row_lanes(step.gpu())) as usize);
    let p = Params {
        m: u32_of(l.rows, "M")?,
        n: u32_of(l.cols, "N")?,
        k: u32_of(l.k, "K")?,
        off_bias: u32_of(l.first_col, "bias offset")?,
        lda: 0,
        ldb: 0,
        ldc: u32_of(l.ldc, "ldc")?,
        _pad1: 0,
        stride_a: u32_of(l.a_rows, "rows")?,
        stride_b: u32_of(l.b_rows, "columns")?,
        stride_c: u32_of(l.stride_c, "batch stride of C")?,
        _pad2: 0,
        alpha: o.alpha,
        beta: o.beta,
        _pad3: [0; 2],
        off_a: u32_of(l.a_first_row, "first row of A")?,
        off_b: 0,
        off_c: u32_of(l.off_c, "offset of C")?,
        _pad4: 0,
    };
    let grid = if tall {
        [super::groups(l.cols, 8)?, super::groups(l.rows, 512)?, u32_of(l.batches, "batch")?]
    } else if let Some(w) = lanes {
        // ROW_LANES = w invocations side by side cover 8 rows and 8w columns; 64 / w stack.
        [super::groups(l.cols, 8 * w)?, super::groups(l.rows, 8 * 64 / w)?, u32_of(l.batches, "batch")?]
    } else {
        [super::groups(l.cols, 64)?, super::groups(l.rows, 64)?, u32_of(l.batches, "batch")?]
    };
    let mut constants = vec![("HAS_BIAS", bias.is_some() as u8 as f64), ("RELU", o.relu as u8 as f64)];
    if let Some(w) = lanes {
        constants.push(("ROW_LANES", w as f64));
    }
    let label = format!(
        "gemm.{}{}[{}{}{}{}]",
        if bf16 { "Bf16" } else { "Tex8" },
        if tall { "Tall" } else if lanes.is_some() { "Shared" } else { "" },
        if o.trans_a { "T" } else { "N" },
        if o.trans_b { "T" } else { "N" },
        if o.relu { ",relu" } else { "" },
        if bias.is_some() { ",bias" } else { "" },
    );
    let bias = bias.unwrap_or(step.gpu().placeholder()).clone();
    step.dispatch_bound(
        match (bf16, tall, lanes.is_some()) {
            (false, true, _) => &TALL,
            (false, false, true) => &SHARED,
            (false, false, false) => &SQUARE,
            (true, _, true) => &BF16_SHARED,
            (true, _, false) => &BF16,
        },
        &constants,
        &[l.packed_a.into(), l.packed_b.into(), (&bias).into(), c.into()],
        bytemuck::bytes_of(&p),
        grid,
        label,
    )?;
    step.count_flops(2.0 * (l.batches * l.rows * l.cols * l.k) as f64);
    Ok(())
}

/// How op(A) [M, K] is read when packed by rows.
fn rows_of<'t>(a: &'t Tensor, off_a: usize, d: &GemmDims, o: &GemmOptions) -> Operand<'t> {
    Operand {
        src: a,
        offset: off_a,
        row_stride: if o.trans_a { 1 } else { d.k },
        k_stride: if o.trans_a { d.m } else { 1 },
        batch_stride: d.m * d.k,
    }
}

/// How op(B) [K, N] is read when packed by columns.
fn columns_of<'t>(b: &'t Tensor, off_b: usize, d: &GemmDims, o: &GemmOptions) -> Operand<'t> {
    Operand {
        src: b,
        offset: off_b,
        row_stride: if o.trans_b { d.k } else { 1 },
        k_stride: if o.trans_b { 1 } else { d.n },
        batch_stride: if d.broadcast_b { 0 } else { d.k * d.n },
    }
}

/// gemm_tex8: packs op(A) by rows and op(B) by columns into textures, then multiplies. Operands
/// taller than the adapter's texture side are split into row (column) chunks, and batches are
/// grouped so that each group's stacked rows fit; every chunk writes its own block of C.
fn gemm_packed(step: &mut Step, (a, off_a): (&Tensor, usize), (b, off_b): (&Tensor, usize), bias: Option<&Tensor>, (c, off_c): (&Tensor, usize), d: GemmDims, o: &GemmOptions) -> Result<()> {
    let max = packed_side(step);
    let width = d.k.div_ceil(o.precision.k_per_texel());
    if width > max {
        bail!("gemm: K = {} needs {width} texels per packed row, over this adapter's texture side of {max}", d.k);
    }
    let row_chunk = d.m.next_multiple_of(8).min(max);
    let col_chunk = d.n.next_multiple_of(8).min(max);
    let group = if d.broadcast_b { max / row_chunk } else { (max / row_chunk).min(max / col_chunk) };
    let a_rows = rows_of(a, off_a, &d, o);
    let b_cols = columns_of(b, off_b, &d, o);
    let mut shared_b: Option<Vec<(usize, usize, Texture)>> = None;
    for first_batch in (0..d.batch).step_by(group) {
        let batches = group.min(d.batch - first_batch);
        let b_packs = match &shared_b {
            Some(packs) => packs.clone(),
            None => {
                let (b_first, b_count) = if d.broadcast_b { (0, 1) } else { (first_batch, batches) };
                let packs = (0..d.n)
                    .step_by(col_chunk)
                    .map(|c0| {
                        let cols = col_chunk.min(d.n - c0);
                        pack(step, &b_cols, d.k, o.precision, (b_first, b_count), (c0, cols)).map(|t| (c0, cols, t))
                    })
                    .collect::<Result<Vec<_>>>()?;
                if d.broadcast_b {
                    shared_b = Some(packs.clone());
                }
                packs
            }
        };
        for r0 in (0..d.m).step_by(row_chunk) {
            let rows = row_chunk.min(d.m - r0);
            let packed_a = pack(step, &a_rows, d.k, o.precision, (first_batch, batches), (r0, rows))?;
            for (c0, cols, packed_b) in &b_packs {
                let launch = Tex8Launch {
                    packed_a: &packed_a,
                    a_rows: rows.next_multiple_of(8),
                    a_first_row: 0,
                    packed_b,
                    b_rows: if d.broadcast_b { 0 } else { cols.next_multiple_of(8) },
                    rows,
                    cols: *cols,
                    batches,
                    k: d.k,
                    off_c: off_c + first_batch * d.m * d.n + r0 * d.n + c0,
                    ldc: d.n,
                    stride_c: d.m * d.n,
                    first_col: *c0,
                    precision: o.precision,
                };
                launch_tex8(step, &launch, bias, c, o)?;
            }
        }
    }
    Ok(())
}

/// op(A) prepared once for many multiplies (the kernel matrix of an iterative solver, the spectra
/// every chroma filterbank reads), in the layout of the kernel chosen for its shape: packed into
/// a texture for the packed kernels (saves re-reading A from its buffer every time, which on
/// llvmpipe costs as much as a narrow multiply itself), the buffer itself for the others. Callers
/// ask for a product; which layout that needs is the GEMM's business.
#[derive(Clone)]
pub struct FixedA {
    layout: FixedLayout,
    kernel: GemmKernel,
    m: usize,
    k: usize,
    trans_a: bool,
}

#[derive(Clone)]
enum FixedLayout {
    /// Texture rows from `first_row` (a view of some rows starts past 0).
    Packed { tex: Texture, first_row: usize },
    /// Dense op(A) from element `offset` of `t` ([m, k], or [k, m] when transposed).
    Buffer { t: Tensor, offset: usize },
}

impl FixedA {
    /// The kernel for multiplying op(A) [m, k] by B operands `n` wide (f32).
    fn kernel_for(step: &Step, m: usize, k: usize, n: usize, trans_a: bool, o: &GemmOptions) -> Result<GemmKernel> {
        let o = GemmOptions { trans_a, precision: Precision::F32, ..*o };
        let d = GemmDims { batch: 1, m, n: n.max(1), k, broadcast_b: false };
        let kernel = o.resolved(step, &d)?.kernel;
        Ok(kernel.for_dims(&d, &o))
    }

    /// Prepares a rank-2 `a` (read transposed when `trans_a`) for products with B operands `n`
    /// wide; packing is recorded on `step` when the chosen kernel reads textures.
    pub fn new(step: &mut Step, a: &Tensor, trans_a: bool, n: usize, o: &GemmOptions) -> Result<FixedA> {
        let [r, c] = *a.shape() else { bail!("FixedA: A must be rank 2, got {:?}", a.shape()) };
        let (m, k) = if trans_a { (c, r) } else { (r, c) };
        let kernel = Self::kernel_for(step, m, k, n, trans_a, o)?;
        if !kernel.is_packed() {
            return Ok(FixedA { layout: FixedLayout::Buffer { t: a.clone(), offset: 0 }, kernel, m, k, trans_a });
        }
        let max = step.gpu().max_texture_side() as usize;
        if m.next_multiple_of(8) > max || k.div_ceil(4) > max {
            bail!("FixedA: op(A) is {m}x{k}, past this adapter's texture side of {max} (rows, or K / 4)");
        }
        let d = GemmDims { batch: 1, m, n: 0, k, broadcast_b: false };
        let rows = rows_of(a, 0, &d, &GemmOptions { trans_a, ..Default::default() });
        let tex = pack(step, &rows, k, Precision::F32, (0, 1), (0, m))?;
        Ok(FixedA { layout: FixedLayout::Packed { tex, first_row: 0 }, kernel, m, k, trans_a })
    }

    /// Takes A [m, k] from a texture in the packed layout (row r holds row r of A as k / 4
    /// texels; k a multiple of 4), for products with B operands `n` wide. Kept as it is for the
    /// packed kernels (they also read up to 7 rows past m, which only reach dropped outputs; reads
    /// past the texture's edge are clamped by the runtime's bounds checks); unpacked into a buffer
    /// (recorded on `step`) for the others.
    pub fn from_texture(step: &mut Step, tex: &Texture, m: usize, k: usize, n: usize, o: &GemmOptions) -> Result<FixedA> {
        const UNPACK: KernelSpec =
            KernelSpec { shader: &GEMM_WGSL, entry: "unpack_rows", bindings: &[Access::Texture, Access::ReadWrite] };
        if !k.is_multiple_of(4) || tex.width() as usize != k / 4 || (tex.height() as usize) < m {
            bail!("FixedA: {tex:?} does not hold a packed {m}x{k} matrix");
        }
        let kernel = Self::kernel_for(step, m, k, n, false, o)?;
        if kernel.is_packed() {
            return Ok(FixedA { layout: FixedLayout::Packed { tex: tex.clone(), first_row: 0 }, kernel, m, k, trans_a: false });
        }
        let t = step.gpu().empty(&[m.max(1), k], crate::gpu::DType::F32)?;
        let p = PackParams { rows: u32_of(m, "rows")?, width: u32_of(k / 4, "packed width")?, ..bytemuck::Zeroable::zeroed() };
        let grid = [super::groups(k / 4, 8)?, super::groups(m, 8)?, 1];
        step.dispatch_bound(&UNPACK, &[], &[tex.into(), (&t).into()], bytemuck::bytes_of(&p), grid, "gemm.unpack")?;
        Ok(FixedA { layout: FixedLayout::Buffer { t, offset: 0 }, kernel, m, k, trans_a: false })
    }

    /// Rows `first..first + count` of op(A), as a matrix of its own (one clip's frames, say).
    pub fn rows_view(&self, first: usize, count: usize) -> Result<FixedA> {
        if first + count > self.m {
            bail!("FixedA: rows {first}..{} of a {}-row matrix", first + count, self.m);
        }
        let layout = match &self.layout {
            FixedLayout::Packed { tex, first_row } => FixedLayout::Packed { tex: tex.clone(), first_row: first_row + first },
            FixedLayout::Buffer { t, offset } if !self.trans_a => FixedLayout::Buffer { t: t.clone(), offset: offset + first * self.k },
            FixedLayout::Buffer { .. } => bail!("FixedA: a row view of a transposed buffer operand is not dense"),
        };
        Ok(FixedA { layout, m: count, ..self.clone() })
    }

    /// The kernel its products run with.
    pub fn kernel(&self) -> GemmKernel {
        self.kernel
    }

    /// The packed texture, when the kernel reads one.
    pub fn packed_texture(&self) -> Option<&Texture> {
        match &self.layout {
            FixedLayout::Packed { tex, .. } => Some(tex),
            FixedLayout::Buffer { .. } => None,
        }
    }
}

/// C = act(alpha * op(A) op(B) + bias + beta * C) with op(A) prepared (`o.trans_a` and the kernel
/// are taken from `a`); B and C rank 2.
pub fn gemm_fixed_a(step: &mut Step, a: &FixedA, b: &Tensor, bias: Option<&Tensor>, c: &Tensor, o: &GemmOptions) -> Result<GemmDims> {
    let o = GemmOptions { trans_a: a.trans_a, ..*o };
    let a_shape = if a.trans_a { [a.k, a.m] } else { [a.m, a.k] };
    let d = GemmDims::infer(&a_shape, b.shape(), c.shape(), &o)?;
    if d.batch != 1 {
        bail!("gemm_fixed_a: B and C must be rank 2, got {:?} and {:?}", b.shape(), c.shape());
    }
    gemm_fixed_a_at(step, a, (b, 0), bias, (c, 0), d.n, &o)?;
    Ok(d)
}

/// The same on sub-matrices: op(B) [K, n] laid out densely from element `off_b` of `b` (as
/// `o.trans_b` says), C [M, n] from element `off_c` of `c`. f32 operands.
pub fn gemm_fixed_a_at(step: &mut Step, a: &FixedA, (b, off_b): (&Tensor, usize), bias: Option<&Tensor>, (c, off_c): (&Tensor, usize), n: usize, o: &GemmOptions) -> Result<()> {
    let o = GemmOptions { trans_a: a.trans_a, precision: Precision::F32, kernel: a.kernel, ..*o };
    o.check()?;
    let d = GemmDims { batch: 1, m: a.m, n, k: a.k, broadcast_b: false };
    let (tex, first_row) = match &a.layout {
        FixedLayout::Buffer { t, offset } => return gemm_at(step, (t, *offset), (b, off_b), bias, (c, off_c), d, &o),
        FixedLayout::Packed { tex, first_row } => (tex, *first_row),
    };
    if off_b + d.k * d.n > b.len() || off_c + d.m * d.n > c.len() {
        bail!("gemm: B at {off_b} or C at {off_c} does not fit {b:?} / {c:?} for {d:?}");
    }
    check_output(&[b], bias, c, d.n)?;
    let col_chunk = packed_side(step);
    let b_cols = columns_of(b, off_b, &d, &o);
    for c0 in (0..d.n).step_by(col_chunk) {
        let cols = col_chunk.min(d.n - c0);
        let packed_b = pack(step, &b_cols, d.k, o.precision, (0, 1), (c0, cols))?;
        let launch = Tex8Launch {
            packed_a: tex,
            a_rows: 0,
            a_first_row: first_row,
            packed_b: &packed_b,
            b_rows: 0,
            rows: d.m,
            cols,
            batches: 1,
            k: d.k,
            off_c: off_c + c0,
            ldc: d.n,
            stride_c: 0,
            first_col: c0,
            precision: o.precision,
        };
        launch_tex8(step, &launch, bias, c, &o)?;
    }
    Ok(())
}

/// Float64 reference of [`gemm`] on host arrays laid out as the tensors are.
pub fn reference(a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &[f32], d: &GemmDims, o: &GemmOptions) -> Vec<f64> {
    let mut out = vec![0.0; d.batch * d.m * d.n];
    for bt in 0..d.batch {
        let a = &a[bt * d.m * d.k..];
        let b = if d.broadcast_b { b } else { &b[bt * d.k * d.n..] };
        for i in 0..d.m {
            for j in 0..d.n {
                let mut acc = 0.0f64;
                for kk in 0..d.k {
                    let av = if o.trans_a { a[kk * d.m + i] } else { a[i * d.k + kk] };
                    let bv = if o.trans_b { b[j * d.k + kk] } else { b[kk * d.n + j] };
                    acc += av as f64 * bv as f64;
                }
                let idx = bt * d.m * d.n + i * d.n + j;
                let mut v = o.alpha as f64 * acc;
                if let Some(bias) = bias {
                    v += bias[j] as f64;
                }
                if o.beta != 0.0 {
                    v += o.beta as f64 * c[idx] as f64;
                }
                if o.relu {
                    v = v.max(0.0);
                }
                out[idx] = v;
            }
        }
    }
    out
}
