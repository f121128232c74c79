// The frame-distribution embedding's last step: for each segment s (a run of consecutive rows of
// one clip) and feature k, out[s, k] = sum over the segment's rows r of cos(proj[r, k] + phase[k]),
// where proj = Z W comes from one GEMM of the clip-standardised frames Z and the random
// projection W (src/ops/embedding.rs). The host adds a clip's segments and divides by its frames.
//
// cos is computed here to f32 accuracy at any argument (a quadrant reduction and Taylor
// polynomials), not by the builtin: Vulkan promises the builtin only 2^-11 absolute error, and
// only on [-pi, pi], and the model's output must agree across adapters (the selftest holds the
// built-in model to 1e-3 on every one).
//
// One invocation per (segment, feature): lanes take consecutive features, so the loads of a row
// are contiguous, and a segment has at most as many rows as the host allows an invocation to
// loop (llvmpipe's loop budget).

struct Params {
    grid: vec4<u32>,
    width: u32, segments: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> proj: array<f32>;
@group(0) @binding(2) var<storage, read> phase: array<f32>;
// (first row, rows) of each segment.
@group(0) @binding(3) var<storage, read> segment: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// pi / 2 as two f32 parts (Cody-Waite), so that x - q pi / 2 loses nothing for |q| < 2^12.
const HALF_PI_HI: f32 = 1.5707963705062866;
const HALF_PI_LO: f32 = -4.371139000186243e-08;
const TWO_OVER_PI: f32 = 0.6366197723675814;

fn cos_accurate(x: f32) -> f32 {
    let q = round(x * TWO_OVER_PI);
    let r = (x - q * HALF_PI_HI) - q * HALF_PI_LO;
    let r2 = r * r;
    // |r| <= pi / 4: the next terms are below 3e-8.
    let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0))));
    let s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
    // cos(r + q pi / 2) by quadrant: cos r, -sin r, -cos r, sin r.
    let quadrant = u32(i32(q) & 3);
    let v = select(c, s, (quadrant & 1u) == 1u);
    return select(v, -v, quadrant == 1u || quadrant == 2u);
}

@compute @workgroup_size(64, 1, 1)
fn cos_row_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let k = g.x * 64u + lid;
    let s = g.y;
    if (g.w == 0u || k >= p.width || s >= p.segments) {
        return;
    }
    let rows = segment[s];
    let b = phase[k];
    var sum = 0.0;
    for (var r = rows.x; r < rows.x + rows.y; r++) {
        sum += cos_accurate(proj[r * p.width + k] + b);
    }
    out[s * p.width + k] = sum;
}
