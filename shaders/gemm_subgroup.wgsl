// gemm_tex8_shared: gemm_tex8 with op(A)'s texels shared across a subgroup. Appended to
// gemm.wgsl by the runtime (it reuses its params, bindings and epilogue) and compiled only on
// devices with subgroups.
//
// The texel fetch bounds gemm_tex8 on llvmpipe (~110 cycles per 8-lane gather, docs/results/history.md, "GEMM ceiling"):
// per four k an invocation fetches 8 texels of A and 8 of B for 256 multiply-adds. When every
// lane of a subgroup works on the same 8 rows of C (each on its own 8 columns), one fetch puts
// one row's texel in each of lanes 0-7 and `subgroupBroadcast` hands each row to all lanes:
// 1 + 8 fetches instead of 16.
//
// Nothing here depends on the subgroup size, on how lanes map to local invocations, or on what
// the adapter or the `subgroup_size` builtin claim (lavapipe at 1024 and 2048 bits reports 32 and
// 64 lanes and runs compute in subgroups of 16, docs/results/history.md, "GEMM ceiling"). The tile comes from the local
// invocation index alone: ROW_LANES invocations side by side share one 8-row block, 64 /
// ROW_LANES blocks stacked, so the workgroup covers (512 / ROW_LANES) rows x (8 * ROW_LANES)
// columns whatever the subgroups are. Each subgroup then checks, at the top where all its lanes
// are live, whether it may share: all of its lanes on one row block and lanes 0-7 present. If
// so it takes the broadcast loop, otherwise the plain gemm_tex8 loop; both give the same bits.
// The host picks ROW_LANES (a speed choice only: at least the adapter's subgroup size lets a
// subgroup of consecutive invocations share). Control flow stays uniform per subgroup up to the
// broadcasts: lanes whose columns fall past N still fetch (clamped reads) and only skip the store.

override ROW_LANES: u32 = 8u;

// This invocation's 8x8 block: (row0, col0, batch, live); live is 0 when its rows are past M
// or the workgroup is a spare one of a folded dispatch.
fn shared_block(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> vec4<u32> {
    let g = logical_workgroup(wid, nwg, p.grid);
    let row0 = (g.y * (64u / ROW_LANES) + li / ROW_LANES) * 8u;
    let col0 = (g.x * ROW_LANES + li % ROW_LANES) * 8u;
    return vec4<u32>(row0, col0, g.z, select(0u, 1u, g.w != 0u && row0 < p.m));
}

// Whether this subgroup may broadcast A: every live lane on the same row block (a spare
// workgroup's lanes count as row block 0 of batch 0, so a whole spare subgroup agrees too) and
// lanes 0-7, which fetch the rows, all live. Uniform across the subgroup.
fn may_share(t: vec4<u32>) -> bool {
    let key = vec3<u32>(t.x, t.z, t.w);
    let first = subgroupBroadcastFirst(key);
    let together = subgroupAll(all(key == first));
    return together && (subgroupBallot(true).x & 0xffu) == 0xffu;
}

@compute @workgroup_size(64, 1, 1)
fn gemm_tex8_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let t = shared_block(wid, nwg, li);
    let sharing = may_share(t);
    if (t.w == 0u) { return; }
    if (!sharing) {
        if (t.y < p.n) { tex8_block(t.z, t.x, t.y); }
        return;
    }
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
                    @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let t = shared_block(wid, nwg, li);
    let sharing = may_share(t);
    if (t.w == 0u) { return; }
    if (!sharing) {
        if (t.y < p.n) { bf16_block(t.z, t.x, t.y); }
        return;
    }
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
