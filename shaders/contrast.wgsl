// Spectral contrast (librosa.feature.spectral_contrast) from power spectra: for every frame and
// octave band, the mean of the q largest and of the q smallest magnitudes in the band, where the
// band's bin range and q come from the host (librosa's band edges and quantile rounding).
// Selection is exact with ties: repeatedly take the next distinct extreme value and how many
// times it occurs, so no sort and no scratch memory are needed.

struct Params {
    grid: vec4<u32>,
    frames: u32, bands: u32, stride: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> power: array<f32>;       // [frames, stride]
@group(0) @binding(2) var<storage, read> band_bins: array<vec4<u32>>;  // [bands]: first, end, q, 0
@group(0) @binding(3) var<storage, read_write> peak: array<f32>;  // [frames, bands]
@group(0) @binding(4) var<storage, read_write> valley: array<f32>;

const BIG: f32 = 3.40282347e38;

@compute @workgroup_size(64, 1, 1)
fn spectral_contrast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let i = g.x * 64u + lid;
    if (g.w == 0u || i >= p.frames * p.bands) { return; }
    let row = (i / p.bands) * p.stride;
    let band = band_bins[i % p.bands];
    let q = band.z;

    // Smallest q (valley): walk up through distinct values.
    var prev = -1.0;
    var taken = 0u;
    var sum = 0.0;
    while (taken < q) {
        var m = BIG;
        for (var b = band.x; b < band.y; b++) {
            let v = sqrt(power[row + b]);
            if (v > prev && v < m) { m = v; }
        }
        var count = 0u;
        for (var b = band.x; b < band.y; b++) {
            if (sqrt(power[row + b]) == m) { count++; }
        }
        if (count == 0u) { break; }  // fewer bins than q: the host never asks for that
        let t = min(count, q - taken);
        sum += f32(t) * m;
        taken += t;
        prev = m;
    }
    valley[i] = sum / f32(q);

    // Largest q (peak): walk down.
    prev = BIG;
    taken = 0u;
    sum = 0.0;
    while (taken < q) {
        var m = -1.0;
        for (var b = band.x; b < band.y; b++) {
            let v = sqrt(power[row + b]);
            if (v < prev && v > m) { m = v; }
        }
        var count = 0u;
        for (var b = band.x; b < band.y; b++) {
            if (sqrt(power[row + b]) == m) { count++; }
        }
        if (count == 0u) { break; }
        let t = min(count, q - taken);
        sum += f32(t) * m;
        taken += t;
        prev = m;
    }
    peak[i] = sum / f32(q);
}
