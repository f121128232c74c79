// gemm_tex8_shared: gemm_tex8 with op(A)'s texels shared across a subgroup. Appended to
// gemm.wgsl by the runtime (it reuses its params, bindings and epilogue) and compiled only on
// devices with subgroups.
//
// The texel fetch bounds gemm_tex8 on llvmpipe (~110 cycles per 8-lane gather, docs/RESULTS.md):
// per four k an invocation fetches 8 texels of A and 8 of B for 256 multiply-adds. Every lane
// of a subgroup here works on the same 8 rows of C (and on its own 8 columns), so one fetch
// puts one row's texel in each of the first 8 lanes and `subgroupBroadcast` hands each row to
// all lanes: 1 + 8 fetches instead of 16. A subgroup of S lanes covers 8 rows and 8S columns;
// the host sizes the grid for S (it picks this kernel only when the adapter's subgroup size is
// fixed and divides 64) and the kernel takes its tile from its subgroup id, never from an
// assumed mapping of lanes to local ids. Control flow stays uniform per subgroup up to the
// broadcasts: lanes whose columns fall past N still fetch (clamped reads) and only skip the store.
@compute @workgroup_size(64, 1, 1)
fn gemm_tex8_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32,
                    @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) sgs: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u) { return; }
    let row0 = (g.y * sgs + sg) * 8u;
    if (row0 >= p.m) { return; }
    let col0 = (g.x * lanes + lane) * 8u;
    let ya = g.z * p.stride_a + p.off_a + row0 + (lane & 7u);
    let yb = g.z * p.stride_b + col0;
    var acc00 = ZERO4;
    var acc01 = ZERO4;
    var acc10 = ZERO4;
    var acc11 = ZERO4;
    let texels = (p.k + 3u) / 4u;
    for (var x = 0u; x < texels; x++) {
        let mine = textureLoad(packed_a, vec2<u32>(x, ya), 0);
        // Row i of ma0 (ma1) is row i (4 + i) of the A block: the same as gemm_tex8's transpose.
        let ma0 = transpose(mat4x4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u),
                                        subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u)));
        let ma1 = transpose(mat4x4<f32>(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u),
                                        subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u)));
        let mb0 = packed_block(packed_b, x, yb);
        let mb1 = packed_block(packed_b, x, yb + 4u);
        acc00 += ma0 * mb0;
        acc01 += ma0 * mb1;
        acc10 += ma1 * mb0;
        acc11 += ma1 * mb1;
    }
    if (col0 >= p.n) { return; }
    store_block(g.z, row0, col0, acc00);
    store_block(g.z, row0, col0 + 4u, acc01);
    store_block(g.z, row0 + 4u, col0, acc10);
    store_block(g.z, row0 + 4u, col0 + 4u, acc11);
}

// gemm_tex8_shared on bfloat16 texels (gemm_bf16's layout): one fetch of A per eight k.
@compute @workgroup_size(64, 1, 1)
fn gemm_bf16_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32,
                    @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) sgs: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u) { return; }
    let row0 = (g.y * sgs + sg) * 8u;
    if (row0 >= p.m) { return; }
    let col0 = (g.x * lanes + lane) * 8u;
    let ya = g.z * p.stride_a + p.off_a + row0 + (lane & 7u);
    let yb = g.z * p.stride_b + col0;
    var acc = Block8(ZERO4, ZERO4, ZERO4, ZERO4);
    let texels = (p.k + 7u) / 8u;
    for (var x = 0u; x < texels; x++) {
        let mine = fetch_a(x, ya);
        acc = bf16_update(acc, subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u),
                          subgroupBroadcast(mine, 3u), subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u),
                          subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u),
                          fetch_b(x, yb), fetch_b(x, yb + 1u), fetch_b(x, yb + 2u), fetch_b(x, yb + 3u),
                          fetch_b(x, yb + 4u), fetch_b(x, yb + 5u), fetch_b(x, yb + 6u), fetch_b(x, yb + 7u));
    }
    if (col0 >= p.n) { return; }
    store_block8(g.z, row0, col0, acc);
}
