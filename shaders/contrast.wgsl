// Spectral contrast (librosa.feature.spectral_contrast) from power spectra: for every frame and
// octave band, the mean of the q largest and of the q smallest magnitudes in the band, where the
// band's bin range and q come from the host (librosa's band edges and quantile rounding).
// Selection is exact with ties: take the extreme values and how many times they occur, then the
// next distinct ones inward, so no sort and no scratch memory are needed. The power spectra are
// read from a texture (four bins per texel; texture reads are the cheap ones on llvmpipe).

struct Params {
    grid: vec4<u32>,
    frames: u32, bands: u32, stride: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var spectra: texture_2d<f32>;                // row f: stride / 4 texels of power
@group(0) @binding(2) var<storage, read> band_bins: array<vec4<u32>>;  // [bands]: first, end, q, 0
@group(0) @binding(3) var<storage, read_write> peak: array<f32>;  // [frames, bands]
@group(0) @binding(4) var<storage, read_write> valley: array<f32>;

const BIG: f32 = 3.40282347e38;

// The smallest value above `above` and the largest below `below` among a band's magnitudes in
// frame f, with how often each occurs. Scans go a texel (four bins) at a time.
struct Extremes { lo: f32, lo_count: u32, hi: f32, hi_count: u32 }

fn scan(f: u32, band: vec4<u32>, above: f32, below: f32) -> Extremes {
    var e = Extremes(BIG, 0u, -1.0, 0u);
    for (var t = band.x / 4u; t < (band.y + 3u) / 4u; t++) {
        let m = sqrt(textureLoad(spectra, vec2<u32>(t, f), 0));
        for (var c = 0u; c < 4u; c++) {
            let b = 4u * t + c;
            let v = m[c];
            if (b >= band.x && b < band.y) {
                if (v > above) {
                    if (v < e.lo) { e.lo = v; e.lo_count = 1u; } else if (v == e.lo) { e.lo_count++; }
                }
                if (v < below) {
                    if (v > e.hi) { e.hi = v; e.hi_count = 1u; } else if (v == e.hi) { e.hi_count++; }
                }
            }
        }
    }
    return e;
}

// One invocation per (band, frame), frames fastest: the SIMD lanes of a batch scan the same
// band (loops of equal length) of neighbouring frames.
@compute @workgroup_size(64, 1, 1)
fn spectral_contrast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.frames * p.bands) { return; }
    let f = i % p.frames;
    let band_index = i / p.frames;
    let band = band_bins[band_index];
    let q = band.z;

    // One scan finds the smallest and largest values and how often each occurs; with q = 1 (most
    // bands) or enough ties that is the whole answer. Each further scan finds the next distinct
    // value inward on whichever side still needs values. Magnitudes are >= 0 and finite, so the
    // first scan's bounds exclude nothing.
    var e = scan(f, band, -1.0, bitcast<f32>(0x7f800000u));
    var lo = e.lo;
    var lo_count = e.lo_count;
    var hi = e.hi;
    var hi_count = e.hi_count;
    var lo_taken = min(lo_count, q);
    var lo_sum = f32(lo_taken) * lo;
    var hi_taken = min(hi_count, q);
    var hi_sum = f32(hi_taken) * hi;
    // Stops early if a band has fewer bins than q (the host never asks for that).
    while ((lo_taken < q && lo_count > 0u) || (hi_taken < q && hi_count > 0u)) {
        e = scan(f, band, lo, hi);
        lo = e.lo;
        lo_count = e.lo_count;
        hi = e.hi;
        hi_count = e.hi_count;
        if (lo_taken < q) {
            let t = min(lo_count, q - lo_taken);
            lo_sum += f32(t) * lo;
            lo_taken += t;
        } else { lo_count = 0u; }
        if (hi_taken < q) {
            let t = min(hi_count, q - hi_taken);
            hi_sum += f32(t) * hi;
            hi_taken += t;
        } else { hi_count = 0u; }
    }
    let out = f * p.bands + band_index;
    valley[out] = lo_sum / f32(q);
    peak[out] = hi_sum / f32(q);
}
