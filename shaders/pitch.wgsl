// Pitch as librosa 0.11's yin and pyin compute it, frame-aligned with the other features:
//   cmndf       the cumulative mean normalised difference function of every frame (frames of
//               frame_length samples centred on t * hop, zero outside the clip), for periods
//               min_period..=max_period: one workgroup per frame, one lag per invocation
//   yin_select  librosa.yin's choice per frame: the first trough below the threshold (else the
//               global minimum), refined by parabolic interpolation, as f0 = sr / period
// The difference function is librosa's: d(k) = 2 (acf(0) - acf(k)) - sum_{m<k} y(m)^2, with the
// autocorrelation summed directly (librosa sums it by FFT).

struct Params {
    grid: vec4<u32>,
    frames: u32, frame_length: u32, hop: u32, min_period: u32,
    max_period: u32, sig_width: u32, sig_shift: u32, periods: u32,
    sample_rate: f32, threshold: f32, _pad0: f32, _pad1: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- cmndf ----
@group(0) @binding(1) var signal: texture_2d<f32>;                  // all clips back to back
@group(0) @binding(2) var<storage, read> clips: array<vec4<u32>>;   // start, len, first frame, frames
@group(0) @binding(3) var<storage, read> frame_clip: array<u32>;
@group(0) @binding(4) var<storage, read_write> cmndf_out: array<f32>;  // [frames, periods]

const WG: u32 = 256u;
const MAX_FRAME: u32 = 2048u;
var<workgroup> frame: array<f32, MAX_FRAME>;
var<workgroup> diff: array<f32, MAX_FRAME>;

fn sample(s: u32) -> f32 {
    let t = s / 4u;
    return textureLoad(signal, vec2<u32>(t & (p.sig_width - 1u), t >> p.sig_shift), 0)[s % 4u];
}

// numpy's float32 tiny, added to the denominator as librosa does.
const TINY: f32 = 1.17549435e-38;

@compute @workgroup_size(256, 1, 1)
fn cmndf(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    // Every invocation reaches the barriers: a workgroup past the grid computes nothing.
    let live = g.w != 0u && g.x < p.frames;
    let f = select(0u, g.x, live);
    let clip = clips[frame_clip[f]];
    let origin = i32((f - clip.z) * p.hop) - i32(p.frame_length / 2u);
    for (var m = lid; m < p.frame_length; m += WG) {
        let s = origin + i32(m);
        frame[m] = select(0.0, sample(clip.x + u32(max(s, 0))), s >= 0 && s < i32(clip.y));
    }
    workgroupBarrier();
    // d(k) for k = 1..=max_period, each lag by one invocation; the energy before lag k summed in
    // numpy's cumsum order.
    var acf0 = 0.0;
    for (var m = 0u; m < p.frame_length; m++) {
        acf0 += frame[m] * frame[m];
    }
    for (var k = lid + 1u; k <= p.max_period; k += WG) {
        var acf = 0.0;
        for (var m = 0u; m + k < p.frame_length; m++) {
            acf += frame[m] * frame[m + k];
        }
        var energy = 0.0;
        for (var m = 0u; m < k; m++) {
            energy += frame[m] * frame[m];
        }
        diff[k] = 2.0 * (acf0 - acf) - energy;
    }
    workgroupBarrier();
    if (!live) { return; }
    for (var k = p.min_period + lid; k <= p.max_period; k += WG) {
        var running = 0.0;
        for (var j = 1u; j <= k; j++) {
            running += diff[j];
        }
        cmndf_out[f * p.periods + k - p.min_period] = diff[k] / (running / f32(k) + TINY);
    }
}

// ---- yin_select ----
@group(0) @binding(1) var<storage, read> yin_frames: array<f32>;    // [frames, periods]
@group(0) @binding(2) var<storage, read_write> f0_out: array<f32>;  // [frames]

fn at(f: u32, i: u32) -> f32 {
    return yin_frames[f * p.periods + i];
}

// librosa.util.localmin along the periods, with librosa's edges: the first is a trough when
// below the second, the last when below the one before it.
fn is_trough(f: u32, i: u32) -> bool {
    let last = p.periods - 1u;
    if (i == 0u) { return at(f, 0u) < at(f, 1u); }
    if (i == last) { return at(f, last) < at(f, last - 1u); }
    return at(f, i) < at(f, i - 1u) && at(f, i) <= at(f, i + 1u);
}

// The parabola's optimum through i - 1, i, i + 1 relative to i; 0 at the ends and where it lies
// a bin or more away.
fn parabolic_shift(f: u32, i: u32) -> f32 {
    if (i == 0u || i == p.periods - 1u) { return 0.0; }
    let a = at(f, i + 1u) + at(f, i - 1u) - 2.0 * at(f, i);
    let b = (at(f, i + 1u) - at(f, i - 1u)) / 2.0;
    if (abs(b) >= abs(a)) { return 0.0; }
    return -b / a;
}

@compute @workgroup_size(64, 1, 1)
fn yin_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let f = flat_index(wid, nwg, p.grid, lid, 64u);
    if (f >= p.frames) { return; }
    var global_min = 0u;
    var chosen = 0xffffffffu;
    for (var i = 0u; i < p.periods; i++) {
        if (at(f, i) < at(f, global_min)) { global_min = i; }
        if (chosen == 0xffffffffu && at(f, i) < p.threshold && is_trough(f, i)) { chosen = i; }
    }
    if (chosen == 0xffffffffu) { chosen = global_min; }
    let period = f32(p.min_period + chosen) + parabolic_shift(f, chosen);
    f0_out[f] = p.sample_rate / period;
}
