// Prepended to every kernel by the runtime (src/gpu/kernel.rs).
//
// The host asks for a logical grid of workgroups (x, y, z). Adapters cap each dispatch dimension
// (65,535 on most), so the runtime may fold a large grid into a smaller 3D dispatch. Kernels recover their
// logical workgroup id here; the grid arrives as the first field of every params uniform.

// Returns (x, y, z, valid): valid is 0 for the spare workgroups a folded dispatch adds at its end.
fn logical_workgroup(wid: vec3<u32>, nwg: vec3<u32>, grid: vec4<u32>) -> vec4<u32> {
    let linear = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
    let total = grid.x * grid.y * grid.z;
    if (linear >= total) {
        return vec4<u32>(0u, 0u, 0u, 0u);
    }
    let plane = grid.x * grid.y;
    return vec4<u32>(linear % grid.x, (linear % plane) / grid.x, linear / plane, 1u);
}

// For 1-D launches of `per_group`-wide workgroups: this invocation's flat index, or 0xffffffff
// for the spare invocations a folded dispatch adds (so `if (i >= n) { return; }` drops them too).
fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, grid: vec4<u32>, lid: u32, per_group: u32) -> u32 {
    let g = logical_workgroup(wid, nwg, grid);
    return select(0xffffffffu, g.x * per_group + lid, g.w != 0u);
}

// Element e of a [batch, steps, channels] tensor -> (example, step, channel).
fn sequence_index(e: u32, steps: u32, channels: u32) -> vec3<u32> {
    return vec3<u32>(e / (steps * channels), (e / channels) % steps, e % channels);
}
