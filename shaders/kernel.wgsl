// RBF kernel machines: the Gaussian kernel between rows of two matrices, and the conjugate-
// gradient steps that solve kernel ridge regression, (K + diag(d)) A = Y, for C right-hand
// sides at once. Every vector of the solver is an [n, C] matrix whose columns are independent
// systems; per-column scalars ([C]) stay on the GPU, so iterations need no readback.
//   sq_norms     out[i] = sum_j x[i, j]^2                                  (one row per invocation)
//   rbf          k[i, j] = exp(-gamma max(0, xn[i] + cn[j] - 2 dots[i, j]))  in place on dots
//   col_dot      out[c] = sum_i a[i, c] b[i, c]                            (one column per invocation)
//   cg_apply     ap[i, c] += d[i] p[i, c]   (after ap = K p by GEMM: ap = (K + diag(d)) p)
//   cg_update    alpha = rr / pap; x += alpha p; r -= alpha ap            (per element)
//   cg_direction beta = rr_new / rr; p = r + beta p                       (per element)
// A column whose residual is already zero (or whose curvature vanished) takes no step instead of
// dividing by zero.

struct Params {
    grid: vec4<u32>,
    rows: u32, cols: u32, _pad0: u32, _pad1: u32,
    gamma: f32, _pad2: f32, _pad3: f32, _pad4: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// sq_norms, col_dot
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn sq_norms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.rows) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let v = a[i * p.cols + j];
        s += v * v;
    }
    out[i] = s;
}

@compute @workgroup_size(64, 1, 1)
fn col_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let c = flat_index(wid, nwg, p.grid, lid, 64u);
    if (c >= p.cols) { return; }
    var s = 0.0;
    for (var i = 0u; i < p.rows; i++) { s += a[i * p.cols + c] * b[i * p.cols + c]; }
    out[c] = s;
}

// rbf: a = row norms of x [rows], b = row norms of the centres [cols], out = dots [rows, cols].
@compute @workgroup_size(256, 1, 1)
fn rbf(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, p.grid, lid, 256u);
    if (e >= p.rows * p.cols) { return; }
    let d2 = max(a[e / p.cols] + b[e % p.cols] - 2.0 * out[e], 0.0);
    out[e] = exp(-p.gamma * d2);
}

// The solver's kernels: [C] scalars and [n, C] vectors.
@group(0) @binding(1) var<storage, read> rr: array<f32>;
@group(0) @binding(2) var<storage, read> second: array<f32>;   // pap (update), rr_new (direction)
@group(0) @binding(3) var<storage, read> v_in: array<f32>;    // d [n] (apply), p (update)
@group(0) @binding(4) var<storage, read_write> v0: array<f32>; // ap (apply), x (update), p (direction)
@group(0) @binding(5) var<storage, read_write> v1: array<f32>; // p (apply), r (update, direction)
@group(0) @binding(6) var<storage, read_write> v2: array<f32>; // ap (update; only read)

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    let e = flat_index(wid, nwg, p.grid, lid, 256u);
    return select(0xffffffffu, e, e < p.rows * p.cols);
}

@compute @workgroup_size(256, 1, 1)
fn cg_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = element(wid, nwg, lid);
    if (e == 0xffffffffu) { return; }
    v0[e] += v_in[e / p.cols] * v1[e];
}

@compute @workgroup_size(256, 1, 1)
fn cg_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = element(wid, nwg, lid);
    if (e == 0xffffffffu) { return; }
    let c = e % p.cols;
    let alpha = select(0.0, rr[c] / second[c], second[c] > 0.0 && rr[c] > 0.0);
    v0[e] += alpha * v_in[e];
    v1[e] -= alpha * v2[e];
}

@compute @workgroup_size(256, 1, 1)
fn cg_direction(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = element(wid, nwg, lid);
    if (e == 0xffffffffu) { return; }
    let c = e % p.cols;
    let beta = select(0.0, second[c] / rr[c], rr[c] > 0.0);
    v0[e] = v1[e] + beta * v0[e];
}
