// gemm_coop8: the multiply on the adapter's matrix units (NVIDIA tensor cores, Apple SIMD-group
// matrices, Vulkan VK_KHR_cooperative_matrix) through wgpu's experimental cooperative-matrix
// extension, 8x8 f32 tiles (the one configuration wgpu 30 exposes on Vulkan and Metal). Appended
// to gemm.wgsl (Params, bindings, a_at/b_at, store). The host launches it only where the adapter
// reports an 8x8x8 f32 x f32 -> f32 configuration.
//
// One workgroup is one subgroup (COOP_WG = the adapter's subgroup size), since the matrices are
// subgroup-scoped; it computes a 16x16 block of C as 2x2 accumulator tiles. Each stage copies a
// 16x16 slice of A and of B into workgroup memory, zero past M, N and K, so the cooperative loads
// never read outside the operands whatever the shape; the block then goes through the shared
// epilogue (alpha, bias, beta, ReLU, bounds) from workgroup memory.
enable wgpu_cooperative_matrix;

override COOP_WG: u32 = 32u;

alias CoopA = coop_mat8x8<f32, A>;
alias CoopB = coop_mat8x8<f32, B>;
alias CoopC = coop_mat8x8<f32, C>;

// Row-major 16x16 slices: coop_a[r * 16 + k], coop_b[k * 16 + c], coop_c[r * 16 + c].
var<workgroup> coop_a: array<f32, 256>;
var<workgroup> coop_b: array<f32, 256>;
var<workgroup> coop_c: array<f32, 256>;

@compute @workgroup_size(COOP_WG, 1, 1)
fn gemm_coop8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    // Every invocation takes part in every cooperative operation and barrier; spare workgroups
    // of a folded dispatch compute zeros and store nothing.
    let g = logical_workgroup(wid, nwg, p.grid);
    let row0 = g.y * 16u;
    let col0 = g.x * 16u;
    let ba = p.off_a + g.z * p.stride_a;
    let bb = p.off_b + g.z * p.stride_b;
    for (var e = li; e < 256u; e += COOP_WG) {
        coop_c[e] = 0.0;
    }
    workgroupBarrier();
    var c00 = coopLoadT<CoopC>(&coop_c[0], 16u);
    var c01 = coopLoadT<CoopC>(&coop_c[8], 16u);
    var c10 = coopLoadT<CoopC>(&coop_c[128], 16u);
    var c11 = coopLoadT<CoopC>(&coop_c[136], 16u);
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        for (var e = li; e < 256u; e += COOP_WG) {
            let r = e / 16u;
            let c = e % 16u;
            var va = 0.0;
            var vb = 0.0;
            if (g.w != 0u && row0 + r < p.m && k0 + c < p.k) { va = a_at(ba, row0 + r, k0 + c); }
            if (g.w != 0u && k0 + r < p.k && col0 + c < p.n) { vb = b_at(bb, k0 + r, col0 + c); }
            coop_a[e] = va;
            coop_b[e] = vb;
        }
        workgroupBarrier();
        let a0 = coopLoadT<CoopA>(&coop_a[0], 16u);
        let a0k = coopLoadT<CoopA>(&coop_a[8], 16u);
        let a1 = coopLoadT<CoopA>(&coop_a[128], 16u);
        let a1k = coopLoadT<CoopA>(&coop_a[136], 16u);
        let b0 = coopLoadT<CoopB>(&coop_b[0], 16u);
        let b0k = coopLoadT<CoopB>(&coop_b[128], 16u);
        let b1 = coopLoadT<CoopB>(&coop_b[8], 16u);
        let b1k = coopLoadT<CoopB>(&coop_b[136], 16u);
        c00 = coopMultiplyAdd(a0k, b0k, coopMultiplyAdd(a0, b0, c00));
        c01 = coopMultiplyAdd(a0k, b1k, coopMultiplyAdd(a0, b1, c01));
        c10 = coopMultiplyAdd(a1k, b0k, coopMultiplyAdd(a1, b0, c10));
        c11 = coopMultiplyAdd(a1k, b1k, coopMultiplyAdd(a1, b1, c11));
        workgroupBarrier();
    }
    coopStoreT(c00, &coop_c[0], 16u);
    coopStoreT(c01, &coop_c[8], 16u);
    coopStoreT(c10, &coop_c[128], 16u);
    coopStoreT(c11, &coop_c[136], 16u);
    workgroupBarrier();
    if (g.w == 0u) { return; }
    for (var e = li; e < 256u; e += COOP_WG) {
        store(g.z, row0 + e / 16u, col0 + e % 16u, coop_c[e]);
    }
}
