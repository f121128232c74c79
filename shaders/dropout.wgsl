// Inverted dropout with a counter-based random generator, so the mask never leaves the GPU and
// never needs storing: element i of step `seed` is kept when hash(seed, i) >= rate * 2^32, and
// kept values are scaled by 1 / (1 - rate). The backward pass is the same call on dy with the
// same seed. The hash is the PCG output permutation applied twice (good avalanche, no state).

struct Params {
    grid: vec4<u32>,
    n: u32, seed_lo: u32, seed_hi: u32, threshold: u32,
    scale: f32, _pad0: f32, _pad1: f32, _pad2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn keep_hash(i: u32) -> u32 {
    return pcg(pcg(i ^ p.seed_lo) + p.seed_hi);
}

@compute @workgroup_size(256, 1, 1)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 256u);
    if (i >= p.n) { return; }
    dst[i] = select(0.0, src[i] * p.scale, keep_hash(i) >= p.threshold);
}
