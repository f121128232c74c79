// The frame-distribution embedding's last step: for each segment s (a run of consecutive rows of
// one clip) and feature k, out[s, k] = sum over the segment's rows r of cos(proj[r, k] + phase[k]),
// where proj = Z W comes from one GEMM of the clip-standardised frames Z and the random
// projection W (src/ops/embedding.rs). The host adds a clip's segments and divides by its frames.
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
        sum += cos(proj[r * p.width + k] + b);
    }
    out[s * p.width + k] = sum;
}
