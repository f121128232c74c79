// Applies a filterbank to spectra: out[f, r] = sum over bins b in band r of w[set, r, b] * s[f, b].
// Mel filters are narrow bands, so only each filter's nonzero bins are visited; chroma filters
// span every bin. With PER_CLIP, every clip has its own weights (chroma with per-clip tuning),
// chosen through the clip of each frame.

override PER_CLIP: bool = false;

struct Params {
    grid: vec4<u32>,
    frames: u32, rows: u32, stride: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> spectra: array<f32>;      // [frames, stride]
@group(0) @binding(2) var<storage, read> weights: array<f32>;      // [sets, rows, stride]
@group(0) @binding(3) var<storage, read> bands: array<vec2<u32>>;  // [rows]: first bin, end bin
@group(0) @binding(4) var<storage, read> frame_clip: array<u32>;   // [frames]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;    // [frames, rows]

@compute @workgroup_size(64, 1, 1)
fn filterbank(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let i = g.x * 64u + lid;
    if (g.w == 0u || i >= p.frames * p.rows) { return; }
    let f = i / p.rows;
    let r = i % p.rows;
    var weight_set = 0u;
    if (PER_CLIP) { weight_set = frame_clip[f]; }
    let w = (weight_set * p.rows + r) * p.stride;
    let s = f * p.stride;
    let band = bands[r];
    var acc = 0.0;
    for (var b = band.x; b < band.y; b++) {
        acc = fma(weights[w + b], spectra[s + b], acc);
    }
    out[i] = acc;
}
