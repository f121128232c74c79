// Per-clip operations on row-major [frames, cols] matrices whose rows are grouped by clip
// (clip c owns rows clips[c].z .. clips[c].z + clips[c].w):
//   segment_max   the largest value of each clip (power_to_db's top_db is relative to it)
//   power_to_db   librosa.power_to_db with ref, amin and top_db against the clip's maximum
//   assemble      copies columns into a zero-padded [clips, t_max, width] tensor at a column offset
//   segment_mean  the mean over each clip's own frames, into [clips, width] at a column offset
//   segment_std   the standard deviation over each clip's own frames, likewise
//   (both over the frames whose value is not zero alone when `nonzero_only`: pyin's f0 over
//   voiced frames)

struct Params {
    grid: vec4<u32>,
    rows: u32, cols: u32, t_max: u32, width: u32,
    col_offset: u32, clips: u32, nonzero_only: u32, _pad1: u32,
    amin: f32, ref_db: f32, top_db: f32, _pad2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> clips: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

// One workgroup per clip.
@compute @workgroup_size(256, 1, 1)
fn segment_max(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u) { return; }
    let clip = clips[g.x];
    let first = clip.z * p.cols;
    let end = (clip.z + clip.w) * p.cols;
    var m = -3.40282347e38;
    for (var i = first + lid; i < end; i += WG) {
        m = max(m, src[i]);
    }
    partial[lid] = m;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) { partial[lid] = max(partial[lid], partial[lid + half]); }
        workgroupBarrier();
    }
    if (lid == 0u) { dst[g.x] = partial[0]; }
}

// 10 log10(x), by way of log2 (WGSL has no log10).
fn db(x: f32) -> f32 {
    return 3.0102999566398120 * log2(max(p.amin, x)) - p.ref_db;
}

// src is the per-clip maximum from segment_max; dst is transformed in place. Needs the clip of
// each row, found by a binary search of the clip table (rows are grouped by clip).
@group(0) @binding(2) var<storage, read> clip_max: array<f32>;
@group(0) @binding(3) var<storage, read_write> values: array<f32>;

fn clip_of_row(row: u32) -> u32 {
    var lo = 0u;
    var hi = p.clips;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (clips[mid].z <= row) { lo = mid; } else { hi = mid; }
    }
    return lo;
}

// One invocation per row: the clip search and its floor are done once for the row's columns
// (per element they were most of the kernel's buffer loads).
@compute @workgroup_size(64, 1, 1)
fn power_to_db(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let r = flat_index(wid, nwg, p.grid, lid, 64u);
    if (r >= p.rows) { return; }
    let floored = p.top_db >= 0.0;
    var floor_db = 0.0;
    if (floored) { floor_db = db(clip_max[clip_of_row(r)]) - p.top_db; }
    for (var j = 0u; j < p.cols; j++) {
        let i = r * p.cols + j;
        let v = db(values[i]);
        values[i] = select(v, max(v, floor_db), floored);
    }
}

// One invocation per (clip, t), looping over the columns: the clip's entry is loaded once per
// row, not once per element; grid covers clips * t_max.
@compute @workgroup_size(64, 1, 1)
fn assemble(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.clips * p.t_max) { return; }
    let t = i % p.t_max;
    let c = i / p.t_max;
    let clip = clips[c];
    let out = (c * p.t_max + t) * p.width + p.col_offset;
    if (t < clip.w) {
        let row = (clip.z + t) * p.cols;
        for (var j = 0u; j < p.cols; j++) { dst[out + j] = src[row + j]; }
    } else {
        for (var j = 0u; j < p.cols; j++) { dst[out + j] = 0.0; }
    }
}

// Compensated (Kahan) sum over one clip's frames of column j's (x - centre), squared when
// `square`: exact to float32 for long clips. With `nonzero_only`, frames whose value is zero
// are skipped. Returns the sum and the frames it took.
fn clip_column_sum(clip: vec4<u32>, j: u32, centre: f32, square: bool) -> vec2<f32> {
    var sum = 0.0;
    var carry = 0.0;
    var taken = 0u;
    for (var t = 0u; t < clip.w; t++) {
        let x = src[(clip.z + t) * p.cols + j];
        if (p.nonzero_only != 0u && x == 0.0) { continue; }
        taken++;
        let d = x - centre;
        let y = select(d, d * d, square) - carry;
        let s = sum + y;
        carry = (s - sum) - y;
        sum = s;
    }
    return vec2<f32>(sum, f32(taken));
}

// One invocation per (clip, column). A clip with no frame to take gets 0.
@compute @workgroup_size(64, 1, 1)
fn segment_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.clips * p.cols) { return; }
    let j = i % p.cols;
    let clip = clips[i / p.cols];
    let sum = clip_column_sum(clip, j, 0.0, false);
    dst[(i / p.cols) * p.width + p.col_offset + j] = sum.x / max(sum.y, 1.0);
}

// The population standard deviation (numpy's std, ddof 0) over each clip's own frames, in two
// passes (mean, then squared deviations) so that large offsets do not cancel.
@compute @workgroup_size(64, 1, 1)
fn segment_std(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.clips * p.cols) { return; }
    let j = i % p.cols;
    let clip = clips[i / p.cols];
    let sum = clip_column_sum(clip, j, 0.0, false);
    let n = max(sum.y, 1.0);
    dst[(i / p.cols) * p.width + p.col_offset + j] = sqrt(clip_column_sum(clip, j, sum.x / n, true).x / n);
}

// librosa.util.normalize(norm=inf) along each row of dst [rows, cols], in place: divide by the
// row's largest magnitude, leaving rows whose maximum is below the smallest normal float alone.
@compute @workgroup_size(64, 1, 1)
fn normalize_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = flat_index(wid, nwg, p.grid, lid, 64u);
    if (r >= p.rows) { return; }
    var m = 0.0;
    for (var j = 0u; j < p.cols; j++) { m = max(m, abs(dst[r * p.cols + j])); }
    if (m >= 1.17549435e-38) {
        for (var j = 0u; j < p.cols; j++) { dst[r * p.cols + j] /= m; }
    }
}
