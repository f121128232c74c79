// gemm_tile4 / gemm_tile8: the portable kernel family for real GPUs, on buffer operands (no
// packing pass). Appended to gemm.wgsl (Params, bindings, a_at/b_at, store) after a line that
// defines `TileScalar`: f32, or f16 (operands rounded to half precision in workgroup memory,
// products and sums in f32, so a result is the f32 sum of exactly rounded f16 products).
//
// The shape published WGSL matrix multiplies reach 35-67% of f32 peak with on Apple, NVIDIA, AMD
// and Intel adapters: a workgroup of WG_X x WG_Y invocations stages a BM x TILE_K slice of A and a
// TILE_K x BN slice of B in workgroup memory (two barriers per stage), then every invocation
// multiplies a ROWS x 4 block of C held in named vec4 accumulators (an indexed private array
// spills to memory on several compilers), reading 16-byte vectors from the tiles. BM = ROWS * WG_Y,
// BN = 4 * WG_X. No single configuration is fastest everywhere (up to 2x apart from one vendor to
// the next), so the tile shape is a set of override constants the host (and its autotuner) picks.
//
// VEC_A / VEC_B: the host has proven that the operand's contiguous dimension is a multiple of 4
// (so are its offsets), and the tile loads read it as vec4. Otherwise scalar loads.

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
override TILE_K: u32 = 16u;
override VEC_A: bool = false;
override VEC_B: bool = false;

// Sized for the largest configuration the host allows (BM * TILE_K <= 2048, BN * TILE_K <= 1024):
// 12 KiB in f32, within every adapter's 16 KiB. Layout: k-major, four consecutive rows of A (four
// consecutive columns of B) per vector, so the inner loop reads one vector of each per k.
var<workgroup> tile_a4: array<vec4<TileScalar>, 512>;
var<workgroup> tile_b4: array<vec4<TileScalar>, 256>;

// Scalar reads through the vec4 view: an entry point may bind each buffer under one type only,
// and buffers are whole 16-byte units, so every element has its vector.
fn a_scalar(base: u32, row: u32, col: u32) -> f32 {
    var i = base + row * p.lda + col;
    if (TRANS_A) { i = base + col * p.lda + row; }
    return a4[i / 4u][i % 4u];
}

fn b_scalar(base: u32, row: u32, col: u32) -> f32 {
    var i = base + row * p.ldb + col;
    if (TRANS_B) { i = base + col * p.ldb + row; }
    return b4[i / 4u][i % 4u];
}

fn put_a(kk: u32, r: u32, bm4: u32, v: f32) {
    tile_a4[kk * bm4 + r / 4u][r % 4u] = TileScalar(v);
}

fn put_b(kk: u32, c: u32, v: f32) {
    tile_b4[kk * WG_X + c / 4u][c % 4u] = TileScalar(v);
}

// Stages A[row0.., k0..] (BM x TILE_K, zero past M and K). Consecutive invocations read
// consecutive addresses in either storage order.
fn load_a_tile(ba: u32, row0: u32, k0: u32, bm: u32, li: u32) {
    let threads = WG_X * WG_Y;
    let bm4 = bm / 4u;
    if (VEC_A && TRANS_A) {
        // A is stored [K, M]: a vector is four rows at one k; M % 4 == 0 so it is all in or out.
        for (var e = li; e < TILE_K * bm4; e += threads) {
            let kk = e / bm4;
            let r4 = e % bm4;
            var v = vec4<f32>(0.0);
            if (row0 + r4 * 4u < p.m && k0 + kk < p.k) {
                v = a4[(ba + (k0 + kk) * p.lda + row0 + r4 * 4u) / 4u];
            }
            tile_a4[kk * bm4 + r4] = vec4<TileScalar>(v);
        }
    } else if (VEC_A) {
        // A is stored [M, K]: a vector is four k of one row; K % 4 == 0.
        let kq = TILE_K / 4u;
        for (var e = li; e < bm * kq; e += threads) {
            let r = e / kq;
            let kk = (e % kq) * 4u;
            var v = vec4<f32>(0.0);
            if (row0 + r < p.m && k0 + kk < p.k) {
                v = a4[(ba + (row0 + r) * p.lda + k0 + kk) / 4u];
            }
            put_a(kk, r, bm4, v.x);
            put_a(kk + 1u, r, bm4, v.y);
            put_a(kk + 2u, r, bm4, v.z);
            put_a(kk + 3u, r, bm4, v.w);
        }
    } else {
        for (var e = li; e < bm * TILE_K; e += threads) {
            var r = e / TILE_K;
            var kk = e % TILE_K;
            if (TRANS_A) {
                r = e % bm;
                kk = e / bm;
            }
            var v = 0.0;
            if (row0 + r < p.m && k0 + kk < p.k) { v = a_scalar(ba, row0 + r, k0 + kk); }
            put_a(kk, r, bm4, v);
        }
    }
}

// Stages B[k0.., col0..] (TILE_K x BN, zero past K and N).
fn load_b_tile(bb: u32, col0: u32, k0: u32, li: u32) {
    let threads = WG_X * WG_Y;
    let bn = WG_X * 4u;
    if (VEC_B && !TRANS_B) {
        // B is stored [K, N]: a vector is four columns at one k; N % 4 == 0.
        for (var e = li; e < TILE_K * WG_X; e += threads) {
            let kk = e / WG_X;
            let c4 = e % WG_X;
            var v = vec4<f32>(0.0);
            if (col0 + c4 * 4u < p.n && k0 + kk < p.k) {
                v = b4[(bb + (k0 + kk) * p.ldb + col0 + c4 * 4u) / 4u];
            }
            tile_b4[kk * WG_X + c4] = vec4<TileScalar>(v);
        }
    } else if (VEC_B) {
        // B is stored [N, K]: a vector is four k of one column; K % 4 == 0.
        let kq = TILE_K / 4u;
        for (var e = li; e < bn * kq; e += threads) {
            let c = e / kq;
            let kk = (e % kq) * 4u;
            var v = vec4<f32>(0.0);
            if (col0 + c < p.n && k0 + kk < p.k) {
                v = b4[(bb + (col0 + c) * p.ldb + k0 + kk) / 4u];
            }
            put_b(kk, c, v.x);
            put_b(kk + 1u, c, v.y);
            put_b(kk + 2u, c, v.z);
            put_b(kk + 3u, c, v.w);
        }
    } else {
        for (var e = li; e < bn * TILE_K; e += threads) {
            var kk = e / bn;
            var c = e % bn;
            if (TRANS_B) {
                kk = e % TILE_K;
                c = e / TILE_K;
            }
            var v = 0.0;
            if (col0 + c < p.n && k0 + kk < p.k) { v = b_scalar(bb, k0 + kk, col0 + c); }
            put_b(kk, c, v);
        }
    }
}

// Four columns of one row through the shared epilogue (which drops what lies past C).
fn store_row4(z: u32, row: u32, col0: u32, v: vec4<f32>) {
    store(z, row, col0, v.x);
    store(z, row, col0 + 1u, v.y);
    store(z, row, col0 + 2u, v.z);
    store(z, row, col0 + 3u, v.w);
}

// A vector of A's tile and one of B's as f32, whatever TileScalar is.
fn tile_a_at(i: u32) -> vec4<f32> { return vec4<f32>(tile_a4[i]); }
fn tile_b_at(i: u32) -> vec4<f32> { return vec4<f32>(tile_b4[i]); }

@compute @workgroup_size(WG_X, WG_Y, 1)
fn gemm_tile4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // Every invocation reaches every barrier: spare workgroups of a folded dispatch and blocks
    // past C load zeros and store nothing.
    let g = logical_workgroup(wid, nwg, p.grid);
    let bm = WG_Y * 4u;
    let row0 = g.y * bm;
    let col0 = g.x * WG_X * 4u;
    let ba = p.off_a + g.z * p.stride_a;
    let bb = p.off_b + g.z * p.stride_b;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        load_a_tile(ba, row0, k0, bm, li);
        load_b_tile(bb, col0, k0, li);
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let av = tile_a_at(kk * WG_Y + lid.y);
            let bv = tile_b_at(kk * WG_X + lid.x);
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }
    if (g.w == 0u) { return; }
    let r = row0 + lid.y * 4u;
    let c = col0 + lid.x * 4u;
    store_row4(g.z, r, c, acc0);
    store_row4(g.z, r + 1u, c, acc1);
    store_row4(g.z, r + 2u, c, acc2);
    store_row4(g.z, r + 3u, c, acc3);
}

// Eight rows per invocation: two row vectors, lid.y and lid.y + WG_Y of the tile's quads, so that
// neighbouring invocations read neighbouring vectors of A's tile.
@compute @workgroup_size(WG_X, WG_Y, 1)
fn gemm_tile8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let bm = WG_Y * 8u;
    let bm4 = WG_Y * 2u;
    let row0 = g.y * bm;
    let col0 = g.x * WG_X * 4u;
    let ba = p.off_a + g.z * p.stride_a;
    let bb = p.off_b + g.z * p.stride_b;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        load_a_tile(ba, row0, k0, bm, li);
        load_b_tile(bb, col0, k0, li);
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let av0 = tile_a_at(kk * bm4 + lid.y);
            let av1 = tile_a_at(kk * bm4 + lid.y + WG_Y);
            let bv = tile_b_at(kk * WG_X + lid.x);
            acc0 = fma(vec4<f32>(av0.x), bv, acc0);
            acc1 = fma(vec4<f32>(av0.y), bv, acc1);
            acc2 = fma(vec4<f32>(av0.z), bv, acc2);
            acc3 = fma(vec4<f32>(av0.w), bv, acc3);
            acc4 = fma(vec4<f32>(av1.x), bv, acc4);
            acc5 = fma(vec4<f32>(av1.y), bv, acc5);
            acc6 = fma(vec4<f32>(av1.z), bv, acc6);
            acc7 = fma(vec4<f32>(av1.w), bv, acc7);
        }
        workgroupBarrier();
    }
    if (g.w == 0u) { return; }
    let c = col0 + lid.x * 4u;
    let r0 = row0 + lid.y * 4u;
    let r1 = row0 + (lid.y + WG_Y) * 4u;
    store_row4(g.z, r0, c, acc0);
    store_row4(g.z, r0 + 1u, c, acc1);
    store_row4(g.z, r0 + 2u, c, acc2);
    store_row4(g.z, r0 + 3u, c, acc3);
    store_row4(g.z, r1, c, acc4);
    store_row4(g.z, r1 + 1u, c, acc5);
    store_row4(g.z, r1 + 2u, c, acc6);
    store_row4(g.z, r1 + 3u, c, acc7);
}
