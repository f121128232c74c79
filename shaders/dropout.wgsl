// Inverted dropout with a counter-based random generator, so the mask never leaves the GPU and
// never needs storing: element i of step `seed` is kept when hash(seed, i) >= rate * 2^32, and
// kept values are scaled by 1 / (1 - rate). The backward pass is the same call on dy with the
// same seed. The hash is the PCG output permutation applied twice (good avalanche, no state).
// Over a batch of sequences shorter than the model's input (cut after its longest clip), i is
// the element's index in the batch at full length (row_full elements per example where this
// batch has row): an element gets the same draw however long its batch is, and padding changes
// no clip's mask. Elsewhere row = row_full, and i is the index itself.
// `augment` draws training-time input augmentation from the same kind of hash: per example a
// time mask and a feature mask (SpecAugment), per element Gaussian noise.

struct Params {
    grid: vec4<u32>,
    n: u32, seed_lo: u32, seed_hi: u32, threshold: u32,
    scale: f32, row: u32, row_full: u32, _pad2: f32,
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
    var k = i;
    if (p.row != p.row_full) { k = (i / p.row) * p.row_full + i % p.row; }
    dst[i] = select(0.0, src[i] * p.scale, keep_hash(k) >= p.threshold);
}

// ---- augment: x [B, T, C] -> y, each example's valid steps masked and noised ----
struct AugParams {
    grid: vec4<u32>,
    batch: u32, steps: u32, channels: u32, seed_lo: u32,
    seed_hi: u32, time_mask: u32, feature_mask: u32, noise: f32,
    // The model's input length: noise is drawn by (example, step, channel) at that length, so
    // a clip's draws do not depend on how far its batch is padded.
    full_steps: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> ap: AugParams;
@group(0) @binding(1) var<storage, read> a_src: array<f32>;
@group(0) @binding(2) var<storage, read> a_len: array<u32>;
@group(0) @binding(3) var<storage, read_write> a_dst: array<f32>;

// Draw k of example b (k: 0 time-mask width, 1 its start, 2 feature-mask width, 3 its start).
fn example_hash(b: u32, k: u32) -> u32 {
    return pcg(pcg((b * 4u + k) ^ ap.seed_hi) + ap.seed_lo + 0x9e3779b9u);
}

fn element_hash(i: u32) -> u32 {
    return pcg(pcg(i ^ ap.seed_lo) + ap.seed_hi);
}

@compute @workgroup_size(256, 1, 1)
fn augment(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, ap.grid, lid, 256u);
    if (e >= ap.batch * ap.steps * ap.channels) { return; }
    let btc = sequence_index(e, ap.steps, ap.channels);
    let b = btc.x;
    let t = btc.y;
    let c = btc.z;
    let len = min(a_len[b], ap.steps);
    // Padding stays as it is (zero): masking never reads it.
    if (t >= len) {
        a_dst[e] = a_src[e];
        return;
    }
    let tw = example_hash(b, 0u) % (ap.time_mask + 1u);
    let t0 = example_hash(b, 1u) % len;
    let fw = example_hash(b, 2u) % (ap.feature_mask + 1u);
    let f0 = example_hash(b, 3u) % ap.channels;
    let masked = (t >= t0 && t - t0 < tw) || (c >= f0 && c - f0 < fw);
    // Box-Muller from two draws of this element: u1 in (0, 1], u2 in [0, 1).
    let ef = (b * ap.full_steps + t) * ap.channels + c;
    let u1 = (f32(element_hash(2u * ef) >> 8u) + 1.0) / 16777216.0;
    let u2 = f32(element_hash(2u * ef + 1u) >> 8u) / 16777216.0;
    let z = sqrt(-2.0 * log(u1)) * cos(6.2831853 * u2);
    a_dst[e] = select(a_src[e] + ap.noise * z, 0.0, masked);
}

// ---- mask_padding: x [B, T, C] -> y, every step past each example's length zeroed ----
// (the same bindings and parameters as augment; only batch, steps and channels are read). The
// backward pass is the same call on dy.
@compute @workgroup_size(256, 1, 1)
fn mask_padding(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, ap.grid, lid, 256u);
    if (e >= ap.batch * ap.steps * ap.channels) { return; }
    let btc = sequence_index(e, ap.steps, ap.channels);
    a_dst[e] = select(0.0, a_src[e], btc.y < a_len[btc.x]);
}
