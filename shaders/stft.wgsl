// Short-time Fourier transform of many clips at once, to the power spectrum |X|^2.
//
// A frame of clip c, index t, covers samples t * hop - n_fft / 2 .. + n_fft of that clip, zero
// outside it (librosa's center=True with zero padding). The frame is windowed and packed as
// H = n_fft / 2 complex values z[k] = (x[2k], x[2k + 1]), transformed by a Stockham FFT, and
// unpacked into the n_fft / 2 + 1 bins of the real transform.
//
// The FFT runs one stage per dispatch, texture to texture: each frame's H complex values are one
// row of an rgba32float texture (two complex values per texel). Every stage reads its input with
// textureLoad and writes its output with textureStore, which on llvmpipe are vectorised, while
// storage-buffer and workgroup-memory accesses are a loop over the SIMD lanes (docs/results/history.md, "Feature extraction speed");
// on GPUs the passes are plain memory-bound kernels. Each invocation does two butterflies, k and
// k + 1, whose inputs and outputs share texels.
//   frame_info  the clip table -> one texel per frame (where its samples are) for fft_first
//   fft_first   signal and window textures -> the first stage (radix 4, or radix 2 when log2(H)
//               is odd)
//   fft_stage   one radix-4 stage of span ns >= 2
//   fft_power   the last texture -> |X[k]|^2 rows of `stride` floats (zero past n_fft / 2) in
//               a texture that later kernels read
// The signal texture holds all clips' samples back to back, `sig_width` texels (four samples)
// per row; each clip is described by (sample offset, sample count, first frame, frame count).
// A batch has at most as many frames as a texture has rows.

override HALF: u32 = 512u;       // H = n_fft / 2, a power of two >= 8
override LOG2_HALF: u32 = 9u;

struct Params {
    grid: vec4<u32>,
    n_fft: u32, hop: u32, stride: u32, frames: u32,
    ns: u32, sig_width: u32, sig_shift: u32, _pad1: u32,
}

const PI: f32 = 3.14159265358979;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var tex_in: texture_2d<f32>;       // signal (first), z (stage, power)
@group(0) @binding(2) var window_tex: texture_2d<f32>;   // first: n_fft / 4 texels
@group(0) @binding(3) var frame_info_tex: texture_2d<u32>;  // first: per frame, from frame_info
@group(0) @binding(4) var first_out: texture_storage_2d<rgba32float, write>;
@group(0) @binding(2) var stage_out: texture_storage_2d<rgba32float, write>;

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

fn twiddle(angle: f32) -> vec2<f32> {
    return vec2<f32>(cos(angle), sin(angle));
}

// (pair index within the frame, frame row in the chunk), or x = 0xffffffff past the grid.
fn item(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, pairs: u32) -> vec2<u32> {
    let g = logical_workgroup(wid, nwg, p.grid);
    let q = g.x * 64u + lid;
    if (g.w == 0u || q >= pairs || g.y >= p.frames) { return vec2<u32>(0xffffffffu, 0u); }
    return vec2<u32>(q, g.y);
}

// Four consecutive samples of a clip from local index i, zero outside 0..len. With ALIGNED
// (every clip starts at a multiple of 4 samples and hop is one, as the feature pipeline lays
// them out) they are one texel; otherwise two texels and a shift. No data-dependent branches:
// llvmpipe runs both sides of a divergent `if` under masks.
override ALIGNED: bool = true;

fn signal_texel(t: i32) -> vec4<f32> {
    let u = u32(max(t, 0));
    return textureLoad(tex_in, vec2<u32>(u & (p.sig_width - 1u), u >> p.sig_shift), 0);
}

fn samples4(base: u32, i: i32, len: i32) -> vec4<f32> {
    let s0 = i32(base) + i;
    var v: vec4<f32>;
    if (ALIGNED) {
        v = signal_texel(s0 / 4);
    } else {
        let t0 = select(-((3 - s0) / 4), s0 / 4, s0 >= 0);  // floor(s0 / 4)
        let off = s0 - 4 * t0;
        let lo = signal_texel(t0);
        let hi = signal_texel(t0 + 1);
        let all = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
        v = vec4<f32>(all[off], all[off + 1], all[off + 2], all[off + 3]);
    }
    let idx = vec4<i32>(i, i + 1, i + 2, i + 3);
    return select(vec4<f32>(0.0), v, idx >= vec4<i32>(0) & idx < vec4<i32>(len));
}

// Packed inputs z[2q + o], z[2q + o + 1] as one vec4, o even: windowed samples 4q + 2o ..
// + 4 of the frame. `frame` is the frame's info texel: (sample offset of its clip, clip length,
// first sample relative to the clip as i32 bits, 0).
fn packed_pair(frame: vec4<u32>, q: u32, o: u32) -> vec4<f32> {
    let first = 4u * q + 2u * o;
    let w = textureLoad(window_tex, vec2<u32>(first / 4u, 0u), 0);
    return samples4(frame.x, bitcast<i32>(frame.z) + i32(first), i32(frame.y)) * w;
}

// frame_info: one texel per frame for fft_first, from the clip table (sample offset, sample
// count, first frame, frame count per clip) and each frame's clip.
@group(0) @binding(1) var<storage, read> clips: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> frame_clip: array<u32>;
@group(0) @binding(3) var frame_info_out: texture_storage_2d<rgba32uint, write>;

@compute @workgroup_size(64, 1, 1)
fn frame_info(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let frame = flat_index(wid, nwg, p.grid, lid, 64u);
    if (frame >= p.frames) { return; }
    let clip = clips[frame_clip[frame]];
    let start = i32((frame - clip.z) * p.hop) - i32(p.n_fft / 2u);
    textureStore(frame_info_out, vec2<u32>(frame, 0u), vec4<u32>(clip.x, clip.y, bitcast<u32>(start), 0u));
}

// The 4-point DFT of (v0, v1, v2, v3).
fn radix4(v0: vec2<f32>, v1: vec2<f32>, v2: vec2<f32>, v3: vec2<f32>) -> array<vec2<f32>, 4> {
    let a0 = v0 + v2;
    let a1 = v0 - v2;
    let a2 = v1 + v3;
    let d = v1 - v3;
    let a3 = vec2<f32>(d.y, -d.x);  // (v1 - v3) * -i
    return array<vec2<f32>, 4>(a0 + a2, a1 + a3, a0 - a2, a1 - a3);
}

@compute @workgroup_size(64, 1, 1)
fn fft_first(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let radix2 = (LOG2_HALF & 1u) == 1u;
    let it = item(wid, nwg, lid, select(HALF / 8u, HALF / 4u, radix2));
    if (it.x == 0xffffffffu) { return; }
    let q = it.x;
    let frame = textureLoad(frame_info_tex, vec2<u32>(it.y, 0u), 0);
    if (radix2) {
        // Butterflies 2q and 2q + 1: z[j] +- z[j + H / 2] -> outputs 2j, 2j + 1.
        let a = packed_pair(frame, q, 0u);
        let b = packed_pair(frame, q, HALF / 2u);
        let s = a + b;
        let d = a - b;
        textureStore(first_out, vec2<u32>(2u * q, it.y), vec4<f32>(s.xy, d.xy));
        textureStore(first_out, vec2<u32>(2u * q + 1u, it.y), vec4<f32>(s.zw, d.zw));
        return;
    }
    // Butterflies 2q and 2q + 1 of span 1 (twiddles all 1): inputs z[j + r H / 4], outputs
    // 4j + r.
    let v0 = packed_pair(frame, q, 0u);
    let v1 = packed_pair(frame, q, HALF / 4u);
    let v2 = packed_pair(frame, q, HALF / 2u);
    let v3 = packed_pair(frame, q, 3u * HALF / 4u);
    let y0 = radix4(v0.xy, v1.xy, v2.xy, v3.xy);
    let y1 = radix4(v0.zw, v1.zw, v2.zw, v3.zw);
    textureStore(first_out, vec2<u32>(4u * q, it.y), vec4<f32>(y0[0], y0[1]));
    textureStore(first_out, vec2<u32>(4u * q + 1u, it.y), vec4<f32>(y0[2], y0[3]));
    textureStore(first_out, vec2<u32>(4u * q + 2u, it.y), vec4<f32>(y1[0], y1[1]));
    textureStore(first_out, vec2<u32>(4u * q + 3u, it.y), vec4<f32>(y1[2], y1[3]));
}

@compute @workgroup_size(64, 1, 1)
fn fft_stage(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let it = item(wid, nwg, lid, HALF / 8u);
    if (it.x == 0xffffffffu) { return; }
    let q = it.x;
    let ns = p.ns;
    // Butterflies j = 2q and 2q + 1: inputs z[j + r H / 4] (texels q + r H / 8), outputs
    // (j - k) 4 + k + r ns with k = j mod ns; ns >= 2, so the two outputs share a texel.
    let k = (2u * q) & (ns - 1u);
    let v0 = textureLoad(tex_in, vec2<u32>(q, it.y), 0);
    let v1 = textureLoad(tex_in, vec2<u32>(q + HALF / 8u, it.y), 0);
    let v2 = textureLoad(tex_in, vec2<u32>(q + HALF / 4u, it.y), 0);
    let v3 = textureLoad(tex_in, vec2<u32>(q + 3u * HALF / 8u, it.y), 0);
    let wa = twiddle(-0.5 * PI * f32(k) / f32(ns));
    let wb = twiddle(-0.5 * PI * f32(k + 1u) / f32(ns));
    let y0 = radix4(v0.xy, cmul(v1.xy, wa), cmul(v2.xy, cmul(wa, wa)), cmul(v3.xy, cmul(cmul(wa, wa), wa)));
    let y1 = radix4(v0.zw, cmul(v1.zw, wb), cmul(v2.zw, cmul(wb, wb)), cmul(v3.zw, cmul(cmul(wb, wb), wb)));
    let base = (2u * q - k) * 4u + k;
    for (var r = 0u; r < 4u; r++) {
        textureStore(stage_out, vec2<u32>((base + r * ns) / 2u, it.y), vec4<f32>(y0[r], y1[r]));
    }
}

// |X[k]|^2 from Z[k] and Z[H - k]: X[k] = E[k] + e^{-2 pi i k / n_fft} O[k], where E and O are
// the transforms of the even and odd samples.
fn bin_power(zk: vec2<f32>, zm: vec2<f32>, k: u32) -> f32 {
    let zc = vec2<f32>(zm.x, -zm.y);
    let even = 0.5 * (zk + zc);
    let d = zk - zc;
    let odd = vec2<f32>(0.5 * d.y, -0.5 * d.x);
    let x = even + cmul(twiddle(-2.0 * PI * f32(k) / f32(p.n_fft)), odd);
    return dot(x, x);
}

// The power spectrum goes to a texture: texel q of a frame's row = bins 4q .. 4q + 4, the packed
// layout gemm_tex8 reads.

// Bins 4q .. 4q + 4 of one frame (zeros past H): bin k pairs Z[k] with Z[H - k] (indices mod
// H). Texels 2q and 2q + 1 hold Z[4q .. 4q + 4]; the mirrors Z[H - 4q - c] lie in texels
// H/2 - 2q (first half), H/2 - 2q - 1 (both) and H/2 - 2q - 2 (second half), all mod H/2: five
// texel fetches for four bins.
@compute @workgroup_size(64, 1, 1)
fn fft_power(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let it = item(wid, nwg, lid, p.stride / 4u);
    if (it.x == 0xffffffffu) { return; }
    let q = it.x;
    let ht = HALF / 2u;
    let t0 = textureLoad(tex_in, vec2<u32>((2u * q) % ht, it.y), 0);
    let t1 = textureLoad(tex_in, vec2<u32>((2u * q + 1u) % ht, it.y), 0);
    let m0 = textureLoad(tex_in, vec2<u32>((2u * ht - 2u * q) % ht, it.y), 0);
    let m1 = textureLoad(tex_in, vec2<u32>((2u * ht - 2u * q - 1u) % ht, it.y), 0);
    let m2 = textureLoad(tex_in, vec2<u32>((2u * ht - 2u * q - 2u) % ht, it.y), 0);
    let k = 4u * q;
    let v = vec4<f32>(bin_power(t0.xy, m0.xy, k), bin_power(t0.zw, m1.zw, k + 1u),
                      bin_power(t1.xy, m1.xy, k + 2u), bin_power(t1.zw, m2.zw, k + 3u));
    let out = select(vec4<f32>(0.0), v, vec4<u32>(k, k + 1u, k + 2u, k + 3u) <= vec4<u32>(HALF));
    textureStore(stage_out, vec2<u32>(q, it.y), out);
}
