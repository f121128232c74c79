// General matrix multiply, the kernel dense and convolution layers lower onto:
//   C[b] = act(alpha * op(A[b]) * op(B[b]) + bias + beta * C[b])
// op(X) is X or its transpose (TRANS_A, TRANS_B), bias is a row vector of N added to every row,
// act is ReLU or identity. Batches run along the grid's z; a batch stride of 0 broadcasts.
//
// Three kernel shapes share one interface so the runtime can keep the fastest per adapter:
//   gemm_naive    one output per invocation, 8x8 workgroups (the baseline)
//   gemm_tiled16  16x16 shared-memory tiles, two barriers per tile step (the textbook GPU kernel)
//   gemm_reg4x4   barrier-free: 8x8 invocations each own a 4x4 block of a 32x32 tile, strided by 8
//                 so neighbouring invocations read neighbouring columns of B
//   gemm_vec4, gemm_vec4x8, gemm_tex8: below, with their reasons

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override RELU: bool = false;

struct Params {
    grid: vec4<u32>,
    // off_bias: element offset of the bias (a column chunk of a split multiply starts past 0).
    m: u32, n: u32, k: u32, off_bias: u32,
    // Row strides (elements) of A, B, C as stored.
    lda: u32, ldb: u32, ldc: u32, _pad1: u32,
    // Batch strides (elements); 0 broadcasts one matrix to every batch. gemm_tex8 reads
    // stride_a and stride_b as texture rows per batch instead, and off_a as the texture row
    // where A starts.
    stride_a: u32, stride_b: u32, stride_c: u32, _pad2: u32,
    alpha: f32, beta: f32, _pad3: u32, _pad4: u32,
    // Element offsets of A, B and C in their buffers (multiples of 4 for the vec4 kernels).
    off_a: u32, off_b: u32, off_c: u32, _pad5: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn a_at(base: u32, row: u32, col: u32) -> f32 {
    if (TRANS_A) { return a[base + col * p.lda + row]; }
    return a[base + row * p.lda + col];
}

fn b_at(base: u32, row: u32, col: u32) -> f32 {
    if (TRANS_B) { return b[base + col * p.ldb + row]; }
    return b[base + row * p.ldb + col];
}

// The epilogue shared by every shape: scale, bias, accumulate into C, activation, store.
fn store(batch: u32, row: u32, col: u32, acc: f32) {
    if (row >= p.m || col >= p.n) { return; }
    let idx = p.off_c + batch * p.stride_c + row * p.ldc + col;
    var v = p.alpha * acc;
    if (HAS_BIAS) { v += bias[p.off_bias + col]; }
    // beta == 0 must not read C: its old contents may be NaN.
    if (p.beta != 0.0) { v += p.beta * c[idx]; }
    if (RELU) { v = max(v, 0.0); }
    c[idx] = v;
}

@compute @workgroup_size(8, 8, 1)
fn gemm_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u) { return; }
    let row = g.y * 8u + lid.y;
    let col = g.x * 8u + lid.x;
    if (row >= p.m || col >= p.n) { return; }
    let ba = p.off_a + g.z * p.stride_a;
    let bb = p.off_b + g.z * p.stride_b;
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        acc = fma(a_at(ba, row, kk), b_at(bb, kk, col), acc);
    }
    store(g.z, row, col, acc);
}

var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn gemm_tiled16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    // Every invocation must reach every barrier, so out-of-range ones load zeros instead of leaving.
    let g = logical_workgroup(wid, nwg, p.grid);
    let row = g.y * 16u + lid.y;
    let col = g.x * 16u + lid.x;
    let ba = p.off_a + g.z * p.stride_a;
    let bb = p.off_b + g.z * p.stride_b;
    var acc = 0.0;
    let steps = (p.k + 15u) / 16u;
    for (var t = 0u; t < steps; t++) {
        let ka = t * 16u + lid.x;
        let kb = t * 16u + lid.y;
        var va = 0.0;
        var vb = 0.0;
        if (g.w != 0u && row < p.m && ka < p.k) { va = a_at(ba, row, ka); }
        if (g.w != 0u && col < p.n && kb < p.k) { vb = b_at(bb, kb, col); }
        tile_a[lid.y][lid.x] = va;
        tile_b[lid.y][lid.x] = vb;
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            acc = fma(tile_a[lid.y][kk], tile_b[kk][lid.x], acc);
        }
        workgroupBarrier();
    }
    if (g.w != 0u) { store(g.z, row, col, acc); }
}

@compute @workgroup_size(8, 8, 1)
fn gemm_reg4x4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u) { return; }
    let row0 = g.y * 32u + lid.y;
    let col0 = g.x * 32u + lid.x;
    let ba = p.off_a + g.z * p.stride_a;
    let bb = p.off_b + g.z * p.stride_b;
    // Rows and columns past the edge are clamped for loading (no branches in the loop) and
    // dropped when storing.
    let last_r = p.m - 1u;
    let last_c = p.n - 1u;
    let r = vec4<u32>(min(row0, last_r), min(row0 + 8u, last_r), min(row0 + 16u, last_r), min(row0 + 24u, last_r));
    let cl = vec4<u32>(min(col0, last_c), min(col0 + 8u, last_c), min(col0 + 16u, last_c), min(col0 + 24u, last_c));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let bv = vec4<f32>(b_at(bb, kk, cl.x), b_at(bb, kk, cl.y), b_at(bb, kk, cl.z), b_at(bb, kk, cl.w));
        acc0 = fma(vec4<f32>(a_at(ba, r.x, kk)), bv, acc0);
        acc1 = fma(vec4<f32>(a_at(ba, r.y, kk)), bv, acc1);
        acc2 = fma(vec4<f32>(a_at(ba, r.z, kk)), bv, acc2);
        acc3 = fma(vec4<f32>(a_at(ba, r.w, kk)), bv, acc3);
    }
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store(g.z, row0 + 8u * i, col0 + 8u * j, accs[i][j]);
        }
    }
}

// gemm_vec4 / gemm_vec4x8: barrier-free like gemm_reg4x4, but each invocation owns contiguous
// 4x4 blocks (one, or a 2x2 grid of them: 8x8 outputs, a 64x64 workgroup tile) and steps K four
// at a time with 16-byte loads. On lavapipe every storage load costs tens of cycles per lane, so
// FMAs per loaded element set the speed: 4 here, 8 for vec4x8 (docs/results/history.md, "GEMM ceiling"). Blocks are
// mat4x4, so either storage order of A and B is one transpose away. The accumulators are named
// variables, not an array: an array indexed in a loop measured 15-20% slower on lavapipe.
// Needs K % 4 == 0, M % 4 == 0 when A is transposed, N % 4 == 0 when B is not (the host checks,
// and falls back to gemm_reg4x4).
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;

// Column kk of the result holds A[r0..r0+4, k+kk]. Rows past M are clamped (results dropped).
fn a_block(base: u32, k: u32, r0: u32) -> mat4x4<f32> {
    let ld = p.lda / 4u;
    if (TRANS_A) {
        let i = base + k * ld + min(r0, p.m - 4u) / 4u;
        return mat4x4<f32>(a4[i], a4[i + ld], a4[i + 2u * ld], a4[i + 3u * ld]);
    }
    let i = base + k / 4u;
    let last = p.m - 1u;
    return transpose(mat4x4<f32>(a4[i + min(r0, last) * ld], a4[i + min(r0 + 1u, last) * ld],
                                 a4[i + min(r0 + 2u, last) * ld], a4[i + min(r0 + 3u, last) * ld]));
}

// Column j of the result holds B[k..k+4, c0+j]. Columns past N are clamped (results dropped).
fn b_block(base: u32, k: u32, c0: u32) -> mat4x4<f32> {
    let ld = p.ldb / 4u;
    if (TRANS_B) {
        let i = base + k / 4u;
        let last = p.n - 1u;
        return mat4x4<f32>(b4[i + min(c0, last) * ld], b4[i + min(c0 + 1u, last) * ld],
                           b4[i + min(c0 + 2u, last) * ld], b4[i + min(c0 + 3u, last) * ld]);
    }
    let i = base + k * ld + min(c0, p.n - 4u) / 4u;
    return transpose(mat4x4<f32>(b4[i], b4[i + ld], b4[i + 2u * ld], b4[i + 3u * ld]));
}

const ZERO4 = mat4x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));

// Stores a 4x4 block: acc[j][i] = C[row0 + i, col0 + j].
fn store_block(batch: u32, row0: u32, col0: u32, acc: mat4x4<f32>) {
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store(batch, row0 + i, col0 + j, acc[j][i]);
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn gemm_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u) { return; }
    let row0 = (g.y * 8u + lid.y) * 4u;
    let col0 = (g.x * 8u + lid.x) * 4u;
    if (row0 >= p.m || col0 >= p.n) { return; }
    let ba = (p.off_a + g.z * p.stride_a) / 4u;
    let bb = (p.off_b + g.z * p.stride_b) / 4u;
    var acc = ZERO4;
    for (var k = 0u; k < p.k; k += 4u) {
        acc += a_block(ba, k, row0) * b_block(bb, k, col0);
    }
    store_block(g.z, row0, col0, acc);
}

// The 8x8 block of C an invocation of an (8, 8) workgroup owns in the 64x64-tile kernels:
// (row0, col0, batch, live), live = 0 past C or in a spare workgroup of a folded dispatch.
fn square_block(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> vec4<u32> {
    let g = logical_workgroup(wid, nwg, p.grid);
    let row0 = (g.y * 8u + lid.y) * 8u;
    let col0 = (g.x * 8u + lid.x) * 8u;
    return vec4<u32>(row0, col0, g.z, select(0u, 1u, g.w != 0u && row0 < p.m && col0 < p.n));
}

@compute @workgroup_size(8, 8, 1)
fn gemm_vec4x8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = square_block(wid, nwg, lid);
    if (b.w == 0u) { return; }
    let row0 = b.x;
    let col0 = b.y;
    let ba = (p.off_a + b.z * p.stride_a) / 4u;
    let bb = (p.off_b + b.z * p.stride_b) / 4u;
    var acc00 = ZERO4;
    var acc01 = ZERO4;
    var acc10 = ZERO4;
    var acc11 = ZERO4;
    for (var k = 0u; k < p.k; k += 4u) {
        let ma0 = a_block(ba, k, row0);
        let ma1 = a_block(ba, k, row0 + 4u);
        let mb0 = b_block(bb, k, col0);
        let mb1 = b_block(bb, k, col0 + 4u);
        acc00 += ma0 * mb0;
        acc01 += ma0 * mb1;
        acc10 += ma1 * mb0;
        acc11 += ma1 * mb1;
    }
    store_block8(b.z, row0, col0, Block8(acc00, acc01, acc10, acc11));
}

// gemm_tex8: the 8x8-block kernel with both operands read from textures. On llvmpipe a
// `textureLoad` is a vectorised gather while a storage-buffer load is a loop over the SIMD lanes
// with a branch per lane, so this runs 7-9x faster than gemm_vec4x8 there (docs/results/history.md, "GEMM ceiling"); on
// GPUs texture reads go through the texture cache. `pack_rows` (below) writes the operands:
// row r of packed_a holds row r of op(A), row c of packed_b holds column c of op(B), each as
// ceil(K / 4) texels of four consecutive k, zero past K; rows are padded to a multiple of 8 so
// the kernel never reads past a texture. Batches are stacked: batch z starts at texture row
// z * stride_a (stride_b; 0 for a matrix shared by every batch).
@group(0) @binding(1) var packed_a: texture_2d<f32>;
@group(0) @binding(2) var packed_b: texture_2d<f32>;

// Four consecutive rows of a packed operand at texel column x: column i of the result is row y + i.
fn packed_block(t: texture_2d<f32>, x: u32, y: u32) -> mat4x4<f32> {
    return mat4x4<f32>(textureLoad(t, vec2<u32>(x, y), 0), textureLoad(t, vec2<u32>(x, y + 1u), 0),
                       textureLoad(t, vec2<u32>(x, y + 2u), 0), textureLoad(t, vec2<u32>(x, y + 3u), 0));
}

// An 8x8 block of C being summed: c_ij is the 4x4 quarter (i, j), c_ij[j'][i'] = C[4i + i', 4j + j'].
struct Block8 { c00: mat4x4<f32>, c01: mat4x4<f32>, c10: mat4x4<f32>, c11: mat4x4<f32> }

// Adds the products over four k: row i of ma0 (ma1) is row i (4 + i) of A's block, column j of
// mb0 (mb1) is column j (4 + j) of B's block.
fn block_update(acc: Block8, ma0: mat4x4<f32>, ma1: mat4x4<f32>, mb0: mat4x4<f32>, mb1: mat4x4<f32>) -> Block8 {
    return Block8(acc.c00 + ma0 * mb0, acc.c01 + ma0 * mb1, acc.c10 + ma1 * mb0, acc.c11 + ma1 * mb1);
}

fn store_block8(z: u32, row0: u32, col0: u32, acc: Block8) {
    store_block(z, row0, col0, acc.c00);
    store_block(z, row0, col0 + 4u, acc.c01);
    store_block(z, row0 + 4u, col0, acc.c10);
    store_block(z, row0 + 4u, col0 + 4u, acc.c11);
}

// One invocation's 8x8 block of C at (row0, col0) of batch z. The f32 kernels keep their four
// named accumulators rather than `block_update`: written that way llvmpipe fuses the
// multiply-adds differently (results move by an ulp), and the shipped model's numbers were made
// with this form.
fn tex8_block(z: u32, row0: u32, col0: u32) {
    let ya = z * p.stride_a + p.off_a + row0;
    let yb = z * p.stride_b + col0;
    var acc00 = ZERO4;
    var acc01 = ZERO4;
    var acc10 = ZERO4;
    var acc11 = ZERO4;
    let texels = (p.k + 3u) / 4u;
    for (var x = 0u; x < texels; x++) {
        // Transposed, the A blocks have row i = A[row0 + i, 4x..4x+4]; the B blocks have column
        // j = B[4x..4x+4, col0 + j]; their product is the 4x4 block's partial sum over those k.
        let ma0 = transpose(packed_block(packed_a, x, ya));
        let ma1 = transpose(packed_block(packed_a, x, ya + 4u));
        let mb0 = packed_block(packed_b, x, yb);
        let mb1 = packed_block(packed_b, x, yb + 4u);
        acc00 += ma0 * mb0;
        acc01 += ma0 * mb1;
        acc10 += ma1 * mb0;
        acc11 += ma1 * mb1;
    }
    store_block8(z, row0, col0, Block8(acc00, acc01, acc10, acc11));
}

// 8x8 invocations cover a 64x64 tile.
@compute @workgroup_size(8, 8, 1)
fn gemm_tex8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = square_block(wid, nwg, lid);
    if (b.w == 0u) { return; }
    tex8_block(b.z, b.x, b.y);
}

// For narrow C (N <= 32): 64 invocations stacked down the rows cover a 512x8 tile, so that the
// SIMD lanes all have work; in the 8x8 layout N = 8 leaves 7 of 8 idle. The rows run along the
// workgroup's x: llvmpipe forms its SIMD lanes from consecutive x, and a (1, 64) workgroup ran
// 7x slower there, one live lane in eight.
@compute @workgroup_size(64, 1, 1)
fn gemm_tex8_tall(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u) { return; }
    let row0 = (g.y * 64u + lid.x) * 8u;
    let col0 = g.x * 8u;
    if (row0 >= p.m || col0 >= p.n) { return; }
    tex8_block(g.z, row0, col0);
}

// pack_rows: copies a strided matrix (or a batch of them) from a buffer into the packed texture
// layout gemm_tex8 reads. Element (batch, row, k) of the source is
//   src[offset + (first_batch + batch) * batch_stride + (first_row + row) * row_stride + k * k_stride]
// so a transposed operand is the same copy with the two strides swapped. Texel (x, y) holds
// k = 4x..4x+4 of row y % padded_rows of batch y / padded_rows; rows past `rows` and k past K
// are zeros.
struct PackParams {
    grid: vec4<u32>,
    rows: u32, k: u32, padded_rows: u32, width: u32,
    row_stride: u32, k_stride: u32, batch_stride: u32, offset: u32,
    first_row: u32, first_batch: u32, height: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> pp: PackParams;
@group(0) @binding(1) var<storage, read> pack_src: array<f32>;
@group(0) @binding(2) var pack_dst: texture_storage_2d<rgba32float, write>;

// Where row y of the packed layout starts in the source, or NO_ROW for padding rows.
const NO_ROW = 0xffffffffu;
fn pack_row_base(y: u32) -> u32 {
    let batch = y / pp.padded_rows;
    let row = y % pp.padded_rows;
    if (row >= pp.rows) { return NO_ROW; }
    return pp.offset + (pp.first_batch + batch) * pp.batch_stride + (pp.first_row + row) * pp.row_stride;
}

// Element kk of the row starting at `base`, zero past K and in padding rows.
fn pack_load(base: u32, kk: u32) -> f32 {
    if (base == NO_ROW || kk >= pp.k) { return 0.0; }
    return pack_src[base + kk * pp.k_stride];
}

// Texels per invocation along a packed row: the row's index decomposition (integer divisions,
// which CPU adapters run lane by lane) is paid once for PACK_SPAN texels. A workgroup of 8x8
// invocations covers 8 * PACK_SPAN texels of 8 rows; neighbouring invocations still write
// neighbouring texels.
override PACK_SPAN: u32 = 4u;

// The packed row y this invocation fills (its texels x0 + 8j, j < PACK_SPAN), y = NO_ROW past
// the texture.
fn pack_origin(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> vec2<u32> {
    let g = logical_workgroup(wid, nwg, pp.grid);
    let y = g.y * 8u + lid.y;
    if (g.w == 0u || y >= pp.height) { return vec2<u32>(0u, NO_ROW); }
    return vec2<u32>(g.x * 8u * PACK_SPAN + lid.x, y);
}

@compute @workgroup_size(8, 8, 1)
fn pack_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = pack_origin(wid, nwg, lid);
    if (o.y == NO_ROW) { return; }
    let base = pack_row_base(o.y);
    for (var j = 0u; j < PACK_SPAN; j++) {
        let x = o.x + 8u * j;
        if (x >= pp.width) { return; }
        var v = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i++) { v[i] = pack_load(base, 4u * x + i); }
        textureStore(pack_dst, vec2<u32>(x, o.y), v);
    }
}

// ---- bfloat16 operands (mixed precision: bfloat16 products, f32 sums) ----
// The texel fetch bounds the texture kernels on llvmpipe; texels of eight bfloat16 k instead of
// four f32 ones halve the fetches per multiply-add. bfloat16 keeps f32's exponent range (no
// underflow of small gradients, unlike f16) and 8 significant bits: each product is within
// 2^-7 relative of the exact one, and sums stay f32.
//
// pack_rows_bf16: pack_rows with eight k per texel. Component c of texel x holds k = 8x + 2c in
// its low half and k = 8x + 2c + 1 in its high half. The kernels multiply low halves with low
// halves and high with high: a dot product does not care in which order its k come.
@group(0) @binding(2) var pack_dst_bf16: texture_storage_2d<rgba32uint, write>;

// The top half of an f32, rounded to nearest even (infinities stay infinite, NaNs NaN).
fn to_bf16(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

@compute @workgroup_size(8, 8, 1)
fn pack_rows_bf16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = pack_origin(wid, nwg, lid);
    if (o.y == NO_ROW) { return; }
    let base = pack_row_base(o.y);
    for (var j = 0u; j < PACK_SPAN; j++) {
        let x = o.x + 8u * j;
        if (x >= pp.width) { return; }
        var v = vec4<u32>(0u);
        for (var c = 0u; c < 4u; c++) {
            v[c] = to_bf16(pack_load(base, 8u * x + 2u * c)) | (to_bf16(pack_load(base, 8u * x + 2u * c + 1u)) << 16u);
        }
        textureStore(pack_dst_bf16, vec2<u32>(x, o.y), v);
    }
}

@group(0) @binding(1) var packed_a_bf16: texture_2d<u32>;
@group(0) @binding(2) var packed_b_bf16: texture_2d<u32>;

// The four low-half (even k) and high-half (odd k) values of four packed rows, as matrix columns.
fn bf16_lo(a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, d: vec4<u32>) -> mat4x4<f32> {
    let s = vec4<u32>(16u);
    return mat4x4<f32>(bitcast<vec4<f32>>(a << s), bitcast<vec4<f32>>(b << s), bitcast<vec4<f32>>(c << s), bitcast<vec4<f32>>(d << s));
}
fn bf16_hi(a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, d: vec4<u32>) -> mat4x4<f32> {
    let m = vec4<u32>(0xffff0000u);
    return mat4x4<f32>(bitcast<vec4<f32>>(a & m), bitcast<vec4<f32>>(b & m), bitcast<vec4<f32>>(c & m), bitcast<vec4<f32>>(d & m));
}

// Adds the products over eight k of rows a0..a7 of A and columns b0..b7 of B (bfloat16 texels):
// the even k (low halves), then the odd ones.
fn bf16_update(acc: Block8, a0: vec4<u32>, a1: vec4<u32>, a2: vec4<u32>, a3: vec4<u32>,
               a4: vec4<u32>, a5: vec4<u32>, a6: vec4<u32>, a7: vec4<u32>,
               b0: vec4<u32>, b1: vec4<u32>, b2: vec4<u32>, b3: vec4<u32>,
               b4: vec4<u32>, b5: vec4<u32>, b6: vec4<u32>, b7: vec4<u32>) -> Block8 {
    let even = block_update(acc, transpose(bf16_lo(a0, a1, a2, a3)), transpose(bf16_lo(a4, a5, a6, a7)),
                            bf16_lo(b0, b1, b2, b3), bf16_lo(b4, b5, b6, b7));
    return block_update(even, transpose(bf16_hi(a0, a1, a2, a3)), transpose(bf16_hi(a4, a5, a6, a7)),
                        bf16_hi(b0, b1, b2, b3), bf16_hi(b4, b5, b6, b7));
}

fn fetch_a(x: u32, y: u32) -> vec4<u32> {
    return textureLoad(packed_a_bf16, vec2<u32>(x, y), 0);
}
fn fetch_b(x: u32, y: u32) -> vec4<u32> {
    return textureLoad(packed_b_bf16, vec2<u32>(x, y), 0);
}

// gemm_tex8 on bfloat16 texels, same grid and layout rules (K rounded up to 8 instead of 4).
@compute @workgroup_size(8, 8, 1)
fn gemm_bf16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = square_block(wid, nwg, lid);
    if (b.w == 0u) { return; }
    bf16_block(b.z, b.x, b.y);
}

// One invocation's 8x8 block of C at (row0, col0) of batch z from bfloat16 texels.
fn bf16_block(z: u32, row0: u32, col0: u32) {
    let ya = z * p.stride_a + p.off_a + row0;
    let yb = z * p.stride_b + col0;
    var acc = Block8(ZERO4, ZERO4, ZERO4, ZERO4);
    let texels = (p.k + 7u) / 8u;
    for (var x = 0u; x < texels; x++) {
        acc = bf16_update(acc, fetch_a(x, ya), fetch_a(x, ya + 1u), fetch_a(x, ya + 2u), fetch_a(x, ya + 3u),
                          fetch_a(x, ya + 4u), fetch_a(x, ya + 5u), fetch_a(x, ya + 6u), fetch_a(x, ya + 7u),
                          fetch_b(x, yb), fetch_b(x, yb + 1u), fetch_b(x, yb + 2u), fetch_b(x, yb + 3u),
                          fetch_b(x, yb + 4u), fetch_b(x, yb + 5u), fetch_b(x, yb + 6u), fetch_b(x, yb + 7u));
    }
    store_block8(z, row0, col0, acc);
}

// unpack_rows: the inverse of pack_rows for one f32 matrix: texel (x, y) of a packed texture
// (rows first_row.., `rows` of them, `width` texels each) becomes elements 4x..4x+4 of row y of
// a dense [rows, 4 * width] buffer. For operands that arrive packed (the spectra the STFT writes)
// when the kernel chosen for their multiply reads buffers.
@group(0) @binding(1) var unpack_src: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> unpack_dst: array<vec4<f32>>;

@compute @workgroup_size(8, 8, 1)
fn unpack_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = logical_workgroup(wid, nwg, pp.grid);
    let x = g.x * 8u + lid.x;
    let y = g.y * 8u + lid.y;
    if (g.w == 0u || x >= pp.width || y >= pp.rows) { return; }
    unpack_dst[y * pp.width + x] = textureLoad(unpack_src, vec2<u32>(x, pp.first_row + y), 0);
}
