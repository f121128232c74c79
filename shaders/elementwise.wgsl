// Elementwise maps over flat f32 tensors. The operation is an override constant, so each op is
// its own specialised pipeline with no runtime switch.
//   unary:  y[i] = f(x[i])            (OP: see UnaryOp in src/ops/elementwise.rs)
//   binary: z[i] = f(x[i], y[i])      (OP: see BinaryOp)
//   fill:   y[i] = alpha
//   transpose: y [cols, rows] = x [rows, cols]^T (n = rows * cols)
// Each invocation handles ITEMS elements strided by the workgroup size, so neighbouring
// invocations touch neighbouring addresses.

override OP: u32 = 0u;

struct Params {
    grid: vec4<u32>,
    n: u32, alpha: f32, beta: f32, cols: u32,
}

const WG: u32 = 256u;
const ITEMS: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn unary_op(v: f32) -> f32 {
    switch OP {
        case 0u: { return max(v, 0.0); }
        case 1u: { return -v; }
        case 2u: { return exp(v); }
        case 3u: { return log(v); }
        case 4u: { return sqrt(v); }
        case 5u: { return v * v; }
        case 6u: { return abs(v); }
        case 7u: { return p.alpha * v + p.beta; }
        case 8u: { return 1.0 / (1.0 + exp(-v)); }
        case 9u: { return tanh(v); }
        case 10u: { return p.alpha * cos(v); }
        case 11u: { return select(0.0, 1.0, v > 0.0); }
        default: { return v; }
    }
}

fn first_index(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let g = logical_workgroup(wid, nwg, p.grid);
    return vec2<u32>(g.x * WG * ITEMS, g.w);
}

@compute @workgroup_size(256, 1, 1)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wid, nwg);
    if (first.y == 0u) { return; }
    for (var it = 0u; it < ITEMS; it++) {
        let i = first.x + it * WG + lid.x;
        if (i < p.n) { y[i] = unary_op(x[i]); }
    }
}

@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn binary_op(u: f32, v: f32) -> f32 {
    switch OP {
        case 0u: { return u + v; }
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return max(u, v); }
        case 5u: { return min(u, v); }
        // ReLU backward: u is the forward input, v the incoming gradient.
        case 6u: { return select(0.0, v, u > 0.0); }
        case 7u: { return p.alpha * u + p.beta * v; }
        default: { return u; }
    }
}

@compute @workgroup_size(256, 1, 1)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wid, nwg);
    if (first.y == 0u) { return; }
    for (var it = 0u; it < ITEMS; it++) {
        let i = first.x + it * WG + lid.x;
        if (i < p.n) { out[i] = binary_op(lhs[i], rhs[i]); }
    }
}

@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wid, nwg);
    if (first.y == 0u) { return; }
    for (var it = 0u; it < ITEMS; it++) {
        let i = first.x + it * WG + lid.x;
        if (i < p.n) { dst[i] = p.alpha; }
    }
}

@compute @workgroup_size(256, 1, 1)
fn transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = first_index(wid, nwg);
    if (first.y == 0u || p.cols == 0u) { return; }
    let rows = p.n / p.cols;
    for (var it = 0u; it < ITEMS; it++) {
        let i = first.x + it * WG + lid.x;
        if (i < p.n) { y[i] = x[(i % rows) * p.cols + i / rows]; }
    }
}
