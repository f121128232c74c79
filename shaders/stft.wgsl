// Short-time Fourier transform of many clips at once, to the power spectrum |X|^2.
//
// One workgroup per frame. A frame of clip c, index t, covers samples t * hop - n_fft / 2 ..
// + n_fft of that clip, zero outside it (librosa's center=True with zero padding). The frame is
// windowed, packed as n_fft / 2 complex values (even samples real, odd imaginary), transformed by
// a Stockham FFT (radix 4, one radix-2 stage for odd powers) in workgroup memory, and unpacked
// into the n_fft / 2 + 1 bins of the real transform. Rows of the output are `stride` floats
// apart; bins past n_fft / 2 are zeroed so the rows can feed vec4 GEMMs.
//
// Each clip is described by (sample offset, sample count, first frame, frame count).

override HALF: u32 = 512u;       // n_fft / 2, a power of two
override LOG2_HALF: u32 = 9u;

struct Params {
    grid: vec4<u32>,
    n_fft: u32, hop: u32, stride: u32, frames: u32,
}

const WG: u32 = 256u;
const PI: f32 = 3.14159265358979;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> signal: array<f32>;
@group(0) @binding(2) var<storage, read> clips: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> frame_clip: array<u32>;
@group(0) @binding(4) var<storage, read> window: array<f32>;
@group(0) @binding(5) var<storage, read_write> power: array<f32>;

// Two halves: the FFT ping-pongs between them, stage by stage.
var<workgroup> buf: array<vec2<f32>, 2 * HALF>;

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

fn twiddle(angle: f32) -> vec2<f32> {
    return vec2<f32>(cos(angle), sin(angle));
}

// |X[k]|^2 from Z[k] and Z[HALF - k]: X[k] = E[k] + e^{-2 pi i k / n_fft} O[k], where E and O are
// the transforms of the even and odd samples.
fn bin_power(zk: vec2<f32>, zm: vec2<f32>, k: u32) -> f32 {
    let zc = vec2<f32>(zm.x, -zm.y);
    let even = 0.5 * (zk + zc);
    let d = zk - zc;
    let odd = vec2<f32>(0.5 * d.y, -0.5 * d.x);
    let x = even + cmul(twiddle(-2.0 * PI * f32(k) / f32(p.n_fft)), odd);
    return dot(x, x);
}

// Packed complex input k: windowed samples 2k and 2k + 1 of the frame, zero outside the clip.
fn packed(clip: vec4<u32>, start: i32, len: i32, k: u32) -> vec2<f32> {
    let i0 = start + 2 * i32(k);
    var v = vec2<f32>(0.0);
    if (i0 >= 0 && i0 < len) { v.x = signal[clip.x + u32(i0)] * window[2u * k]; }
    if (i0 + 1 >= 0 && i0 + 1 < len) { v.y = signal[clip.x + u32(i0 + 1)] * window[2u * k + 1u]; }
    return v;
}

// A 4-point DFT of (v0..v3), written to buf[out + r * ns].
fn radix4(out: u32, ns: u32, v0: vec2<f32>, v1: vec2<f32>, v2: vec2<f32>, v3: vec2<f32>) {
    let a0 = v0 + v2;
    let a1 = v0 - v2;
    let a2 = v1 + v3;
    let d = v1 - v3;
    let a3 = vec2<f32>(d.y, -d.x);  // (v1 - v3) * -i
    buf[out] = a0 + a2;
    buf[out + ns] = a1 + a3;
    buf[out + 2u * ns] = a0 - a2;
    buf[out + 3u * ns] = a1 - a3;
}

@compute @workgroup_size(256, 1, 1)
fn stft_power(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    // The whole workgroup shares one frame, so this exit is uniform and barriers stay valid.
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u || g.x >= p.frames) { return; }
    let frame = g.x;
    let clip = clips[frame_clip[frame]];
    let start = i32((frame - clip.z) * p.hop) - i32(p.n_fft / 2u);
    let len = i32(clip.y);

    // The first FFT stage reads the windowed samples straight from the signal (its twiddles are
    // all 1), saving a pass through workgroup memory.
    var ns = 1u;
    var stage = 1u;
    if ((LOG2_HALF & 1u) == 1u) {
        for (var j = lid; j < HALF / 2u; j += WG) {
            let a = packed(clip, start, len, j);
            let b = packed(clip, start, len, j + HALF / 2u);
            buf[HALF + 2u * j] = a + b;
            buf[HALF + 2u * j + 1u] = a - b;
        }
        ns = 2u;
    } else {
        for (var j = lid; j < HALF / 4u; j += WG) {
            let v0 = packed(clip, start, len, j);
            let v1 = packed(clip, start, len, j + HALF / 4u);
            let v2 = packed(clip, start, len, j + HALF / 2u);
            let v3 = packed(clip, start, len, j + 3u * HALF / 4u);
            radix4(HALF + 4u * j, 1u, v0, v1, v2, v3);
        }
        ns = 4u;
    }
    workgroupBarrier();

    // Stockham FFT: each stage reads one half of `buf` and writes the other, in natural order at
    // the end. Radix-4 stages (after one radix-2 stage when log2(HALF) is odd) halve the number of
    // passes over workgroup memory, which is what costs on lavapipe.
    for (; ns < HALF; ns *= 4u) {
        let src = (stage & 1u) * HALF;
        let dst = HALF - src;
        for (var j = lid; j < HALF / 4u; j += WG) {
            let k = j & (ns - 1u);
            let w1 = twiddle(-0.5 * PI * f32(k) / f32(ns));
            let w2 = cmul(w1, w1);
            let w3 = cmul(w2, w1);
            radix4(dst + (j - k) * 4u + k, ns, buf[src + j], cmul(buf[src + j + HALF / 4u], w1),
                   cmul(buf[src + j + HALF / 2u], w2), cmul(buf[src + j + 3u * HALF / 4u], w3));
        }
        workgroupBarrier();
        stage++;
    }

    // X[k] and X[HALF - k] come from the same two values Z[k] and Z[HALF - k].
    let z = (stage & 1u) * HALF;
    let row = frame * p.stride;
    for (var k = lid; k <= HALF / 2u; k += WG) {
        let zk = buf[z + (k & (HALF - 1u))];
        let zm = buf[z + ((HALF - k) & (HALF - 1u))];
        power[row + k] = bin_power(zk, zm, k);
        if (k != HALF - k) { power[row + HALF - k] = bin_power(zm, zk, HALF - k); }
    }
    for (var k = HALF + 1u + lid; k < p.stride; k += WG) {
        power[row + k] = 0.0;
    }
}
