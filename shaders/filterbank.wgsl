// Applies a banded filterbank to spectra: out[f, r] = sum over bins b in band r of w[r, b] * s[f, b].
// Mel filters are narrow bands, so only each filter's nonzero bins are visited (dense filterbanks,
// such as chroma, go through the GEMM instead). Spectra and weights are textures with four bins
// per texel (texture reads are the cheap ones on llvmpipe); weights are zero outside each band,
// so whole texels can be summed.

struct Params {
    grid: vec4<u32>,
    frames: u32, rows: u32, stride: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var spectra: texture_2d<f32>;                // row f: stride / 4 texels
@group(0) @binding(2) var weights: texture_2d<f32>;                // row r: stride / 4 texels
@group(0) @binding(3) var<storage, read> bands: array<vec2<u32>>;  // [rows]: first bin, end bin
@group(0) @binding(4) var<storage, read_write> out: array<f32>;    // [frames, rows]

@compute @workgroup_size(64, 1, 1)
fn filterbank(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.frames * p.rows) { return; }
    let f = i / p.rows;
    let r = i % p.rows;
    let band = bands[r];
    var acc = 0.0;
    for (var t = band.x / 4u; t < (band.y + 3u) / 4u; t++) {
        acc += dot(textureLoad(weights, vec2<u32>(t, r), 0), textureLoad(spectra, vec2<u32>(t, f), 0));
    }
    out[i] = acc;
}
