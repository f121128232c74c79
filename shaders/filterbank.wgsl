// Applies a banded filterbank to spectra: out[f, r] = sum over bins b in band r of w[r, b] * s[f, b].
// Mel filters are narrow bands, so only each filter's nonzero bins are visited (dense filterbanks,
// such as chroma, go through the GEMM instead).

struct Params {
    grid: vec4<u32>,
    frames: u32, rows: u32, stride: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> spectra: array<f32>;      // [frames, stride]
@group(0) @binding(2) var<storage, read> weights: array<f32>;      // [rows, stride]
@group(0) @binding(3) var<storage, read> bands: array<vec2<u32>>;  // [rows]: first bin, end bin
@group(0) @binding(4) var<storage, read_write> out: array<f32>;    // [frames, rows]

@compute @workgroup_size(64, 1, 1)
fn filterbank(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.frames * p.rows) { return; }
    let f = i / p.rows;
    let r = i % p.rows;
    let w = r * p.stride;
    let s = f * p.stride;
    let band = bands[r];
    var acc = 0.0;
    for (var b = band.x; b < band.y; b++) {
        acc = fma(weights[w + b], spectra[s + b], acc);
    }
    out[i] = acc;
}
