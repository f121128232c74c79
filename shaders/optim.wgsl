// Adam (Kingma & Ba), fused into one pass over a parameter tensor, in Keras's form:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr_t m / (sqrt(v) + eps) + lr decay w
// where lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) is computed on the host for step t, and the
// optional decoupled weight decay (AdamW) uses the uncorrected rate.
// With clipping by global norm (clip > 0; Keras's global_clipnorm, tf.clip_by_global_norm),
// g is first scaled by clip / max(norm, clip), norm = sqrt of the sum of `norm_parts`: every
// gradient tensor's sum of squares (grad_sq_sum), read on the GPU so that no step waits for
// the host.

struct Params {
    grid: vec4<u32>,
    n: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    lr_t: f32, b1: f32, b2: f32, eps: f32,
    decay: f32, clip: f32, parts: u32, _pad5: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> norm_parts: array<f32>;

// The factor every gradient is scaled by: 1 without clipping.
fn clip_scale() -> f32 {
    if (p.clip <= 0.0) { return 1.0; }
    var sq = 0.0;
    for (var i = 0u; i < p.parts; i++) { sq += norm_parts[i]; }
    return p.clip / max(sqrt(sq), p.clip);
}

@compute @workgroup_size(256, 1, 1)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 256u);
    if (i >= p.n) { return; }
    let gi = grad[i] * clip_scale();
    let mi = p.b1 * m[i] + (1.0 - p.b1) * gi;
    let vi = p.b2 * v[i] + (1.0 - p.b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    weight[i] = weight[i] - p.lr_t * mi / (sqrt(vi) + p.eps) - p.decay * weight[i];
}

// ---- grad_sq_sum: one tensor's sum of squares into sq_out[p.slot], by one workgroup ----
struct SqParams {
    grid: vec4<u32>,
    n: u32, slot: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> sp: SqParams;
@group(0) @binding(1) var<storage, read> sq_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_out: array<f32>;

var<workgroup> sq_sh: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn grad_sq_sum(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < sp.n; i += 256u) {
        let g = sq_in[i];
        acc += g * g;
    }
    sq_sh[lid] = acc;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (lid < half) { sq_sh[lid] += sq_sh[lid + half]; }
        workgroupBarrier();
    }
    if (lid == 0u) { sq_out[sp.slot] = sq_sh[0]; }
}
