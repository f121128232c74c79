// Adam (Kingma & Ba), fused into one pass over a parameter tensor, in Keras's form:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr_t m / (sqrt(v) + eps) + lr decay w
// where lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) is computed on the host for step t, and the
// optional decoupled weight decay (AdamW) uses the uncorrected rate.

struct Params {
    grid: vec4<u32>,
    n: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    lr_t: f32, b1: f32, b2: f32, eps: f32,
    decay: f32, _pad3: f32, _pad4: f32, _pad5: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 256u);
    if (i >= p.n) { return; }
    let gi = grad[i];
    let mi = p.b1 * m[i] + (1.0 - p.b1) * gi;
    let vi = p.b2 * v[i] + (1.0 - p.b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    weight[i] = weight[i] - p.lr_t * mi / (sqrt(vi) + p.eps) - p.decay * weight[i];
}
