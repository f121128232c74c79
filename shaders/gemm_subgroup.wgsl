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

// This lane's 8x8 block: (row0, col0, batch, live); live is 0 for the whole subgroup when its
// rows are past M (or the workgroup is a spare one of a folded dispatch), so that the early
// return keeps control flow uniform within the subgroup.
fn shared_block(wid: vec3<u32>, nwg: vec3<u32>, lane: u32, lanes: u32, sg: u32, sgs: u32) -> vec4<u32> {
    let g = logical_workgroup(wid, nwg, p.grid);
    let row0 = (g.y * sgs + sg) * 8u;
    return vec4<u32>(row0, (g.x * lanes + lane) * 8u, g.z, select(0u, 1u, g.w != 0u && row0 < p.m));
}

@compute @workgroup_size(64, 1, 1)
fn gemm_tex8_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32,
                    @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) sgs: u32) {
    let t = shared_block(wid, nwg, lane, lanes, sg, sgs);
    if (t.w == 0u) { return; }
    let ya = t.z * p.stride_a + p.off_a + t.x + (lane & 7u);
    let yb = t.z * p.stride_b + t.y;
    var acc00 = ZERO4;
    var acc01 = ZERO4;
    var acc10 = ZERO4;
    var acc11 = ZERO4;
    let texels = (p.k + 3u) / 4u;
    for (var x = 0u; x < texels; x++) {
        let mine = textureLoad(packed_a, vec2<u32>(x, ya), 0);
        // Row i of the A block comes from lane i: the same matrices as gemm_tex8's transposes.
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
    if (t.y >= p.n) { return; }
    store_block8(t.z, t.x, t.y, Block8(acc00, acc01, acc10, acc11));
}

// gemm_tex8_shared on bfloat16 texels (gemm_bf16's layout): one fetch of A per eight k.
@compute @workgroup_size(64, 1, 1)
fn gemm_bf16_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32,
                    @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) sgs: u32) {
    let t = shared_block(wid, nwg, lane, lanes, sg, sgs);
    if (t.w == 0u) { return; }
    let ya = t.z * p.stride_a + p.off_a + t.x + (lane & 7u);
    let yb = t.z * p.stride_b + t.y;
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
    if (t.y >= p.n) { return; }
    store_block8(t.z, t.x, t.y, acc);
}
