// Pitch as librosa 0.11's yin and pyin compute it, frame-aligned with the other features:
//   cmndf       the cumulative mean normalised difference function of every frame (frames of
//               frame_length samples centred on t * hop, zero outside the clip), for periods
//               min_period..=max_period: one workgroup per frame, sixteen lags an invocation
//   yin_select  librosa.yin's choice per frame: the first trough below the threshold (else the
//               global minimum), refined by parabolic interpolation, as f0 = sr / period
//   pyin_observe  librosa.pyin's observation probabilities and voiced probability per frame
//   pyin_viterbi, pyin_backtrack  pyin's decoding, one workgroup per clip (below)
// On lavapipe, where these kernels are tuned second (GPUs first), every load at an index that
// differs between lanes is a gather done lane by lane: the kernels read four values a load where
// the data lie four to an element.
// The difference function is librosa's, d(k) = 2 (acf(0) - acf(k)) - sum_{m<k} y(m)^2 (but for
// k = 1, where librosa's in-place update subtracts 0 rather than y(0)^2), summed as
// the equal sum_{m<n-k} (y(m) - y(m+k))^2 + sum_{m>=n-k} y(m)^2: terms that are never negative,
// so float32 keeps its relative precision where acf(k) is close to acf(0) (short lags of frames
// whose energy lies low in frequency, where the difference of the two sums lost the digits that
// decide between troughs; librosa sums in float64).

struct Params {
    grid: vec4<u32>,
    frames: u32, frame_length: u32, hop: u32, min_period: u32,
    max_period: u32, sig_width: u32, sig_shift: u32, periods: u32,
    sample_rate: f32, threshold: f32, fmin: f32, no_trough_prob: f32,
    pitch_bins: u32, width: u32, chunk_start: u32, chunk_frames: u32,
    clips_n: u32, log_tiny: f32, log_init: f32, _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- cmndf ----
@group(0) @binding(1) var signal: texture_2d<f32>;                  // all clips back to back
@group(0) @binding(2) var<storage, read> clips: array<vec4<u32>>;   // start, len, first frame, frames
@group(0) @binding(3) var<storage, read> frame_clip: array<u32>;
@group(0) @binding(4) var<storage, read_write> cmndf_out: array<f32>;  // [frames, periods]

// Invocations of the cmndf and pyin_observe workgroups: 64 on GPUs, 16 on CPU adapters, where a
// workgroup's start costs in proportion to its lanes and the lanes run in turn anyway
// (src/ops/pitch.rs chooses; at most MAX_WG).
override WG: u32 = 64u;
const MAX_WG: u32 = 64u;
const MAX_FRAME: u32 = 2048u;
const MAX_LAGS: u32 = 1024u;   // max_period + 1
var<workgroup> frame: array<vec4<f32>, MAX_FRAME / 4u>;   // the frame, four samples an element

fn sq(v: f32) -> f32 {
    return v * v;
}

fn frame_at(m: u32) -> f32 {
    return frame[m >> 2u][m & 3u];
}
var<workgroup> diff: array<vec4<f32>, MAX_LAGS / 4u>;   // per lag, four an element

fn diff_at(k: u32) -> f32 {
    return diff[k >> 2u][k & 3u];
}

fn sample(s: u32) -> f32 {
    let t = s / 4u;
    return textureLoad(signal, vec2<u32>(t & (p.sig_width - 1u), t >> p.sig_shift), 0)[s % 4u];
}

// numpy's float32 tiny, added to the denominator as librosa does.
const TINY: f32 = 1.17549435e-38;

// One workgroup per frame. Each invocation sums the autocorrelation of sixteen consecutive lags
// at once (16i + 1 ..= 16i + 16, then 16 x WG further), the lagged frame sliding
// through registers four samples a step, so that each step's two loads of workgroup memory
// (four samples at m, four lagged ones) serve sixty-four products. On lavapipe every load of
// workgroup memory is a gather, lane by lane, and the loads are the cost: against this, one
// sample a step took 1.6x as long, eight lags an invocation 2.1x, one lag 6x. The energy
// before each lag and the running sum of d are prefix sums that one invocation walks in order
// (as numpy's cumsum does), O(max_period) against the O(frame length x max_period / 64) of
// the products.
@compute @workgroup_size(WG, 1, 1)
fn cmndf(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    // Every invocation reaches the barriers: a workgroup past the grid computes nothing.
    let live = g.w != 0u && g.x < p.frames;
    let f = select(0u, g.x, live);
    let clip = clips[frame_clip[f]];
    let origin = i32((f - clip.z) * p.hop) - i32(p.frame_length / 2u);
    let n = p.frame_length;
    // The frame's samples.
    for (var m = lid; m < n; m += WG) {
        let s = origin + i32(m);
        frame[m >> 2u][m & 3u] = select(0.0, sample(clip.x + u32(max(s, 0))), s >= 0 && s < i32(clip.y));
    }
    workgroupBarrier();
    // The energy of the frame's last k samples, sum_{m>=n-k} y(m)^2, into diff[k] for now: one
    // invocation, from the end, four lags a step where the frame is whole elements (one load of
    // four samples and one store).
    if (lid == 0u) {
        var running = 0.0;
        if ((n & 3u) == 0u) {
            for (var k4 = 0u; k4 <= p.max_period; k4 += 4u) {
                let y = frame[(n - 4u - k4) >> 2u];
                var last: vec4<f32>;
                last.x = running;
                running += y.w * y.w;
                last.y = running;
                running += y.z * y.z;
                last.z = running;
                running += y.y * y.y;
                last.w = running;
                running += y.x * y.x;
                diff[k4 >> 2u] = last;
            }
        } else {
            for (var k = 0u; k <= p.max_period; k++) {
                diff[k >> 2u][k & 3u] = running;
                running += sq(frame_at(n - 1u - k));
            }
        }
    }
    workgroupBarrier();
    for (var k0 = 16u * lid + 1u; k0 <= p.max_period; k0 += 16u * WG) {
        var a0 = 0.0; var a1 = 0.0; var a2 = 0.0; var a3 = 0.0;
        var a4 = 0.0; var a5 = 0.0; var a6 = 0.0; var a7 = 0.0;
        var a8 = 0.0; var a9 = 0.0; var a10 = 0.0; var a11 = 0.0;
        var a12 = 0.0; var a13 = 0.0; var a14 = 0.0; var a15 = 0.0;
        var w0 = frame_at(min(k0, n - 1u));
        var w1 = frame_at(min(k0 + 1u, n - 1u));
        var w2 = frame_at(min(k0 + 2u, n - 1u));
        var w3 = frame_at(min(k0 + 3u, n - 1u));
        var w4 = frame_at(min(k0 + 4u, n - 1u));
        var w5 = frame_at(min(k0 + 5u, n - 1u));
        var w6 = frame_at(min(k0 + 6u, n - 1u));
        var w7 = frame_at(min(k0 + 7u, n - 1u));
        var w8 = frame_at(min(k0 + 8u, n - 1u));
        var w9 = frame_at(min(k0 + 9u, n - 1u));
        var w10 = frame_at(min(k0 + 10u, n - 1u));
        var w11 = frame_at(min(k0 + 11u, n - 1u));
        var w12 = frame_at(min(k0 + 12u, n - 1u));
        var w13 = frame_at(min(k0 + 13u, n - 1u));
        var w14 = frame_at(min(k0 + 14u, n - 1u));
        // Four samples a step: x = frame[m..m + 4], and the four lagged samples that enter the
        // window, frame[m + k0 + 15..m + k0 + 19] (k0 + 15 is a multiple of 16: one aligned
        // element). The products of every lag in order of m, as one sample a step would.
        var m = 0u;
        for (; m + k0 + 18u < n; m += 4u) {
            let x = frame[m >> 2u];
            let ahead = frame[min((m + k0 + 15u) >> 2u, MAX_FRAME / 4u - 1u)];
            let w15 = ahead.x; let w16 = ahead.y; let w17 = ahead.z; let w18 = ahead.w;
            a0 += sq(x.x - w0);
            a1 += sq(x.x - w1);
            a2 += sq(x.x - w2);
            a3 += sq(x.x - w3);
            a4 += sq(x.x - w4);
            a5 += sq(x.x - w5);
            a6 += sq(x.x - w6);
            a7 += sq(x.x - w7);
            a8 += sq(x.x - w8);
            a9 += sq(x.x - w9);
            a10 += sq(x.x - w10);
            a11 += sq(x.x - w11);
            a12 += sq(x.x - w12);
            a13 += sq(x.x - w13);
            a14 += sq(x.x - w14);
            a15 += sq(x.x - w15);
            a0 += sq(x.y - w1);
            a1 += sq(x.y - w2);
            a2 += sq(x.y - w3);
            a3 += sq(x.y - w4);
            a4 += sq(x.y - w5);
            a5 += sq(x.y - w6);
            a6 += sq(x.y - w7);
            a7 += sq(x.y - w8);
            a8 += sq(x.y - w9);
            a9 += sq(x.y - w10);
            a10 += sq(x.y - w11);
            a11 += sq(x.y - w12);
            a12 += sq(x.y - w13);
            a13 += sq(x.y - w14);
            a14 += sq(x.y - w15);
            a15 += sq(x.y - w16);
            a0 += sq(x.z - w2);
            a1 += sq(x.z - w3);
            a2 += sq(x.z - w4);
            a3 += sq(x.z - w5);
            a4 += sq(x.z - w6);
            a5 += sq(x.z - w7);
            a6 += sq(x.z - w8);
            a7 += sq(x.z - w9);
            a8 += sq(x.z - w10);
            a9 += sq(x.z - w11);
            a10 += sq(x.z - w12);
            a11 += sq(x.z - w13);
            a12 += sq(x.z - w14);
            a13 += sq(x.z - w15);
            a14 += sq(x.z - w16);
            a15 += sq(x.z - w17);
            a0 += sq(x.w - w3);
            a1 += sq(x.w - w4);
            a2 += sq(x.w - w5);
            a3 += sq(x.w - w6);
            a4 += sq(x.w - w7);
            a5 += sq(x.w - w8);
            a6 += sq(x.w - w9);
            a7 += sq(x.w - w10);
            a8 += sq(x.w - w11);
            a9 += sq(x.w - w12);
            a10 += sq(x.w - w13);
            a11 += sq(x.w - w14);
            a12 += sq(x.w - w15);
            a13 += sq(x.w - w16);
            a14 += sq(x.w - w17);
            a15 += sq(x.w - w18);
            w0 = w4; w1 = w5; w2 = w6; w3 = w7; w4 = w8; w5 = w9; w6 = w10; w7 = w11; w8 = w12; w9 = w13; w10 = w14; w11 = w15; w12 = w16; w13 = w17; w14 = w18;
        }
        for (; m + k0 < n; m += 4u) {
            let x = frame[m >> 2u];
            let ahead = frame[min((m + k0 + 15u) >> 2u, MAX_FRAME / 4u - 1u)];
            let w15 = ahead.x; let w16 = ahead.y; let w17 = ahead.z; let w18 = ahead.w;
            let r = i32(n) - i32(m + k0);   // lag k0 + i takes sample m + j while i + j < r
            a0 += sq(x.x - w0);
            a1 += select(0.0, sq(x.x - w1), 1 < r);
            a2 += select(0.0, sq(x.x - w2), 2 < r);
            a3 += select(0.0, sq(x.x - w3), 3 < r);
            a4 += select(0.0, sq(x.x - w4), 4 < r);
            a5 += select(0.0, sq(x.x - w5), 5 < r);
            a6 += select(0.0, sq(x.x - w6), 6 < r);
            a7 += select(0.0, sq(x.x - w7), 7 < r);
            a8 += select(0.0, sq(x.x - w8), 8 < r);
            a9 += select(0.0, sq(x.x - w9), 9 < r);
            a10 += select(0.0, sq(x.x - w10), 10 < r);
            a11 += select(0.0, sq(x.x - w11), 11 < r);
            a12 += select(0.0, sq(x.x - w12), 12 < r);
            a13 += select(0.0, sq(x.x - w13), 13 < r);
            a14 += select(0.0, sq(x.x - w14), 14 < r);
            a15 += select(0.0, sq(x.x - w15), 15 < r);
            a0 += select(0.0, sq(x.y - w1), 1 < r);
            a1 += select(0.0, sq(x.y - w2), 2 < r);
            a2 += select(0.0, sq(x.y - w3), 3 < r);
            a3 += select(0.0, sq(x.y - w4), 4 < r);
            a4 += select(0.0, sq(x.y - w5), 5 < r);
            a5 += select(0.0, sq(x.y - w6), 6 < r);
            a6 += select(0.0, sq(x.y - w7), 7 < r);
            a7 += select(0.0, sq(x.y - w8), 8 < r);
            a8 += select(0.0, sq(x.y - w9), 9 < r);
            a9 += select(0.0, sq(x.y - w10), 10 < r);
            a10 += select(0.0, sq(x.y - w11), 11 < r);
            a11 += select(0.0, sq(x.y - w12), 12 < r);
            a12 += select(0.0, sq(x.y - w13), 13 < r);
            a13 += select(0.0, sq(x.y - w14), 14 < r);
            a14 += select(0.0, sq(x.y - w15), 15 < r);
            a15 += select(0.0, sq(x.y - w16), 16 < r);
            a0 += select(0.0, sq(x.z - w2), 2 < r);
            a1 += select(0.0, sq(x.z - w3), 3 < r);
            a2 += select(0.0, sq(x.z - w4), 4 < r);
            a3 += select(0.0, sq(x.z - w5), 5 < r);
            a4 += select(0.0, sq(x.z - w6), 6 < r);
            a5 += select(0.0, sq(x.z - w7), 7 < r);
            a6 += select(0.0, sq(x.z - w8), 8 < r);
            a7 += select(0.0, sq(x.z - w9), 9 < r);
            a8 += select(0.0, sq(x.z - w10), 10 < r);
            a9 += select(0.0, sq(x.z - w11), 11 < r);
            a10 += select(0.0, sq(x.z - w12), 12 < r);
            a11 += select(0.0, sq(x.z - w13), 13 < r);
            a12 += select(0.0, sq(x.z - w14), 14 < r);
            a13 += select(0.0, sq(x.z - w15), 15 < r);
            a14 += select(0.0, sq(x.z - w16), 16 < r);
            a15 += select(0.0, sq(x.z - w17), 17 < r);
            a0 += select(0.0, sq(x.w - w3), 3 < r);
            a1 += select(0.0, sq(x.w - w4), 4 < r);
            a2 += select(0.0, sq(x.w - w5), 5 < r);
            a3 += select(0.0, sq(x.w - w6), 6 < r);
            a4 += select(0.0, sq(x.w - w7), 7 < r);
            a5 += select(0.0, sq(x.w - w8), 8 < r);
            a6 += select(0.0, sq(x.w - w9), 9 < r);
            a7 += select(0.0, sq(x.w - w10), 10 < r);
            a8 += select(0.0, sq(x.w - w11), 11 < r);
            a9 += select(0.0, sq(x.w - w12), 12 < r);
            a10 += select(0.0, sq(x.w - w13), 13 < r);
            a11 += select(0.0, sq(x.w - w14), 14 < r);
            a12 += select(0.0, sq(x.w - w15), 15 < r);
            a13 += select(0.0, sq(x.w - w16), 16 < r);
            a14 += select(0.0, sq(x.w - w17), 17 < r);
            a15 += select(0.0, sq(x.w - w18), 18 < r);
            w0 = w4; w1 = w5; w2 = w6; w3 = w7; w4 = w8; w5 = w9; w6 = w10; w7 = w11; w8 = w12; w9 = w13; w10 = w14; w11 = w15; w12 = w16; w13 = w17; w14 = w18;
        }
        let squares = array<f32, 16>(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
        // d(k) over the energy of the last k samples, in place: no other invocation reads these
        // lags. librosa's d(1) carries y(0)^2 more (it zeroes the first row of its running
        // energy before it subtracts that row for lag 1), which moves every cumulative mean: on
        // quiet frames whose energy lies low, enough to change the global minimum.
        for (var i = 0u; i < 16u; i++) {
            let k = k0 + i;
            if (k <= p.max_period) { diff[k >> 2u][k & 3u] = squares[i] + diff_at(k) + select(0.0, sq(frame_at(0u)), k == 1u); }
        }
    }
    workgroupBarrier();
    // The running mean of d(1..=k), walked once in order by one invocation, four lags a step;
    // each lag's cmndf back into diff; then every invocation writes its share.
    if (lid == 0u) {
        var running = 0.0;
        for (var k4 = 0u; k4 <= p.max_period; k4 += 4u) {
            let d4 = diff[k4 >> 2u];
            var out = d4;
            if (k4 >= 1u) {
                running += d4.x;
                out.x = d4.x / (running / f32(k4) + TINY);
            }
            running += d4.y;
            out.y = d4.y / (running / f32(k4 + 1u) + TINY);
            running += d4.z;
            out.z = d4.z / (running / f32(k4 + 2u) + TINY);
            running += d4.w;
            out.w = d4.w / (running / f32(k4 + 3u) + TINY);
            diff[k4 >> 2u] = out;
        }
    }
    workgroupBarrier();
    for (var k = p.min_period + lid; k <= p.max_period && live; k += WG) {
        cmndf_out[f * p.periods + k - p.min_period] = diff_at(k);
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

// ---- pyin_observe ----
// librosa.pyin's observation probabilities of one frame (its __pyin_helper): the troughs of the
// difference function; for each of 100 thresholds, the troughs below it weighted by a
// Boltzmann prior on their rank (lambda 2) and by the beta(2, 18) prior of the threshold; the
// global minimum trough given no_trough_prob of the thresholds no trough is below; each
// candidate's period refined by parabolic interpolation and its f0 binned at 10 bins per
// semitone from fmin (a later trough overwrites an earlier one in the same bin, as numpy's
// assignment does). One workgroup per frame.
@group(0) @binding(2) var<storage, read> priors: array<f32>;            // thresholds[100] (rounded up to f32), beta[100], beta prefix sums[101]
@group(0) @binding(3) var<storage, read_write> observed: array<f32>;    // [frames, pitch_bins]
@group(0) @binding(4) var<storage, read_write> voiced_prob: array<f32>; // [frames]

const MAX_TROUGHS: u32 = 512u;
const THRESHOLDS: u32 = 100u;
const MAX_BINS: u32 = 1024u;
var<workgroup> trough_at: array<u32, MAX_TROUGHS>;
var<workgroup> trough_j0: array<u32, MAX_TROUGHS>;
var<workgroup> trough_prob: array<f32, MAX_TROUGHS>;
var<workgroup> at_threshold: array<atomic<u32>, 101>;  // troughs whose first threshold above them is j
const RUNS: u32 = 16u;
var<workgroup> run_count: array<u32, RUNS>;
var<workgroup> run_lowest: array<f32, RUNS>;
var<workgroup> run_lowest_ordinal: array<u32, RUNS>;
var<workgroup> run_low_count: array<u32, RUNS>;
var<workgroup> low_troughs: array<u32, MAX_TROUGHS>;
var<workgroup> trough_bin: array<u32, MAX_TROUGHS>;   // a candidate's bin (NO_BIN: not one)
const NO_BIN: u32 = 0xffffffffu;
var<workgroup> n_low: u32;
var<workgroup> bin_owner: array<atomic<u32>, MAX_BINS>;
var<workgroup> n_troughs: u32;
var<workgroup> min_trough: u32;

// Whether librosa's float64 probability of trough t is nonzero: it is below a threshold whose
// beta mass is nonzero (the masses past 0.9 are exactly 0 in float64: the distribution
// function has reached 1.0 there), or it is the global minimum and not below every threshold.
// Its float32 probability may underflow to 0 and it still takes its bin.
fn is_candidate(t: u32) -> bool {
    let j0 = trough_j0[t];
    for (var j = j0; j < THRESHOLDS; j++) {
        if (priors[THRESHOLDS + j] > 0.0) { return true; }
    }
    return t == min_trough && j0 > 0u;
}

// The first threshold a height is below (100: none), by bisection of the sorted thresholds.
fn first_threshold_above(h: f32) -> u32 {
    var lo = 0u;
    var hi = THRESHOLDS;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (h < priors[mid]) { hi = mid; } else { lo = mid + 1u; }
    }
    return lo;
}

@compute @workgroup_size(WG, 1, 1)
fn pyin_observe(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let live = g.w != 0u && g.x < p.frames;
    let f = select(0u, g.x, live);
    let bins = p.pitch_bins;
    for (var b = lid; b <= bins; b += WG) { atomicStore(&bin_owner[b], 0u); }
    for (var j = lid; j <= THRESHOLDS; j += WG) { atomicStore(&at_threshold[j], 0u); }
    // The troughs are listed in order in parallel: each of RUNS invocations counts those of its
    // own run of periods and the first lowest among them; then each writes its own at the
    // count of the runs before it. (More runs cost more than they save on lavapipe, where each
    // invocation's sum over the runs before it is a loop of gathers.)
    let run = (p.periods + RUNS - 1u) / RUNS;
    let first = min(lid * run, p.periods);
    let last = select(first, min(first + run, p.periods), lid < RUNS);
    // (Troughs below some threshold are also listed apart: only they take a share of the
    // thresholds' mass, and a list of them alone keeps the lanes that weigh them together.)
    var count = 0u;
    var low_count = 0u;
    var lowest = 0.0;
    var lowest_ordinal = 0u;
    for (var i = first; i < last; i++) {
        if (is_trough(f, i)) {
            if (count == 0u || at(f, i) < lowest) {
                lowest = at(f, i);
                lowest_ordinal = count;
            }
            count++;
            // Below the last threshold: first_threshold_above() < THRESHOLDS, as the
            // placement below tests it (the thresholds are sorted).
            if (at(f, i) < priors[THRESHOLDS - 1u]) { low_count++; }
        }
    }
    if (lid < RUNS) {
        run_count[lid] = count;
        run_low_count[lid] = low_count;
        run_lowest[lid] = lowest;
        run_lowest_ordinal[lid] = lowest_ordinal;
    }
    workgroupBarrier();
    var offset = 0u;
    var low_offset = 0u;
    for (var r = 0u; r < min(lid, RUNS); r++) {
        offset += run_count[r];
        low_offset += run_low_count[r];
    }
    for (var i = first; i < last; i++) {
        if (is_trough(f, i)) {
            if (offset < MAX_TROUGHS) {
                let j0 = first_threshold_above(at(f, i));
                trough_at[offset] = i;
                trough_j0[offset] = j0;
                trough_prob[offset] = 0.0;
                atomicAdd(&at_threshold[j0], 1u);
                if (j0 < THRESHOLDS) {
                    low_troughs[low_offset] = offset;
                    low_offset++;
                }
            }
            offset++;
        }
    }
    if (lid == RUNS - 1u) {
        n_troughs = min(offset, MAX_TROUGHS);
        n_low = low_offset;
    }
    if (lid == 0u) {
        // The global minimum among the troughs, the first of equal heights: the runs' lowest
        // in order.
        var before = 0u;
        var best = 0u;
        var best_v = 0.0;
        var found = false;
        for (var r = 0u; r < RUNS; r++) {
            if (run_count[r] > 0u && (!found || run_lowest[r] < best_v)) {
                best_v = run_lowest[r];
                best = before + run_lowest_ordinal[r];
                found = true;
            }
            before += run_count[r];
        }
        min_trough = best;
    }
    workgroupBarrier();
    let n = n_troughs;
    let lambda = 2.0;
    let scale = 1.0 - exp(-lambda);
    for (var a = lid; a < n_low; a += WG) {
        let t = low_troughs[a];
        let j0 = trough_j0[t];
        // rank at threshold j: the earlier troughs below it (all of them low ones); below: all
        // troughs below it.
        var earlier: array<u32, 101>;
        for (var j = 0u; j <= THRESHOLDS; j++) { earlier[j] = 0u; }
        for (var b = 0u; b < a; b++) { earlier[trough_j0[low_troughs[b]]] += 1u; }
        var rank = 0u;
        var below = 0u;
        var prob = 0.0;
        for (var j = 0u; j < THRESHOLDS; j++) {
            rank += earlier[j];
            below += atomicLoad(&at_threshold[j]);
            if (j >= j0) {
                let prior = scale * exp(-lambda * f32(rank)) / (1.0 - exp(-lambda * f32(below)));
                prob += prior * priors[THRESHOLDS + j];
            }
        }
        if (t == min_trough) {
            // no_trough_prob times the beta mass of the thresholds it is not below.
            prob += p.no_trough_prob * priors[2u * THRESHOLDS + j0];
        }
        trough_prob[t] = prob;
    }
    // The global minimum not below any threshold: no_trough_prob times their whole mass.
    if (lid == 0u && n > 0u && trough_j0[min_trough] >= THRESHOLDS) {
        trough_prob[min_trough] = p.no_trough_prob * priors[2u * THRESHOLDS + THRESHOLDS];
    }
    workgroupBarrier();
    // Candidates: troughs with a nonzero probability in float64 (low ones, and the global
    // minimum), binned by their refined f0; a bin keeps its last candidate.
    for (var a = lid; a < n_low; a += WG) {
        let t = low_troughs[a];
        let b = select(NO_BIN, pitch_bin(f, trough_at[t]), is_candidate(t));
        trough_bin[t] = b;
        if (b != NO_BIN) { atomicMax(&bin_owner[b], t + 1u); }
    }
    let far_min = n > 0u && trough_j0[min_trough] >= THRESHOLDS;
    if (lid == 0u && far_min) {
        let b = pitch_bin(f, trough_at[min_trough]);
        trough_bin[min_trough] = b;
        atomicMax(&bin_owner[b], min_trough + 1u);
    }
    workgroupBarrier();
    if (!live) { return; }
    for (var b = lid; b < bins; b += WG) {
        let owner = atomicLoad(&bin_owner[b]);
        observed[f * bins + b] = select(0.0, trough_prob[max(owner, 1u) - 1u], owner > 0u);
    }
    if (lid == 0u) {
        // The sum of the row in order of bins, as numpy sums it, over the bins' owners alone
        // (the other bins add zeros): a later trough has a longer period, so a bin no higher,
        // and the owners in order of bins are the candidates from the last trough back.
        var total = 0.0;
        var far_pending = far_min;
        for (var a = n_low; a > 0u; a--) {
            let t = low_troughs[a - 1u];
            if (far_pending && min_trough > t) {
                total += owned_prob(min_trough, bins);
                far_pending = false;
            }
            total += owned_prob(t, bins);
        }
        if (far_pending) { total += owned_prob(min_trough, bins); }
        voiced_prob[f] = clamp(total, 0.0, 1.0);
    }
}

// Trough t's probability if it owns a bin below `bins`, else 0.
fn owned_prob(t: u32, bins: u32) -> f32 {
    let b = trough_bin[t];
    return select(0.0, trough_prob[t], b < bins && atomicLoad(&bin_owner[b]) == t + 1u);
}

// The pitch bin of the candidate at period index i: its refined f0 at 10 bins per semitone
// above fmin, rounded half to even as numpy rounds, clipped to 0..=pitch_bins (an f0 above the
// last bin lands on pitch_bins, which is not a voiced state).
fn pitch_bin(f: u32, i: u32) -> u32 {
    let period = f32(p.min_period + i) + parabolic_shift(f, i);
    return u32(clamp(round(120.0 * log2(p.sample_rate / period / p.fmin)), 0.0, f32(p.pitch_bins)));
}


// ---- pyin_viterbi, pyin_backtrack ----
// librosa.pyin's decoding: Viterbi over 2 x pitch_bins states (voiced bins, then unvoiced), the
// transitions a triangular band of `width` bins within a voicing (x 0.99) and across it
// (x 0.01), every other transition log(tiny) (float64's tiny, as librosa adds it), the initial
// distribution uniform. One workgroup per clip walks `chunk_frames` frames per dispatch
// (llvmpipe ends an invocation's loops after 65,535 iterations), keeping the state values
// between dispatches; each frame's values are shifted by the previous frame's maximum (the
// argmax is unchanged), so that float32 keeps near the best paths the precision float64 keeps
// for librosa. A band transition from source s is log(p w(d) / rowsum(s)) (p 0.99 within a
// voicing, 0.01 across; w the triangle; tiny is far below it), so each frame first combines,
// for every source bin and each target voicing, the better of its two states with its row's
// normalisation and p added once; a state then weighs combined sources plus the triangle's log
// weight, only those between the best sources of its two neighbours decoded before it (the
// triangle's logarithm is concave, so the best source moves monotonically with the target).
// Out of the band only each half's maximum can win (a band candidate of
// the same or a larger value beats it by about 700), so at most two more candidates; ties go
// to the lower state, as numpy's argmax does. pyin_backtrack walks the pointers back, one
// invocation per clip.
@group(0) @binding(1) var<storage, read> v_observed: array<f32>;      // [frames, bins]
@group(0) @binding(2) var<storage, read> v_voiced: array<f32>;        // [frames]
@group(0) @binding(3) var<storage, read> v_band: array<f32>;          // log w [width], log rowsum [bins], log 0.99, log 0.01, the shifted copies
@group(0) @binding(4) var<storage, read> v_clips: array<vec4<u32>>;   // start, len, first frame, frames
@group(0) @binding(5) var<storage, read_write> v_values: array<f32>;  // [clips, 2 x bins]
@group(0) @binding(6) var<storage, read_write> v_pointers: array<u32>; // [frames, bins]: two 16-bit pointers each
// The band again (the same buffer), read four weights a load from band_table(): the triangle's
// logarithms with four of padding before, in four copies shifted by 0..3, so that the four
// weights of any four consecutive sources are one aligned element (src/ops/pitch.rs).
@group(0) @binding(7) var<storage, read> v_band4: array<vec4<f32>>;

// Where state j's value lies in prev and comb_state: the upper half starts on an element.
fn half_stride() -> u32 {
    return (p.pitch_bins + 3u) & ~3u;
}

fn slot(j: u32) -> u32 {
    return select(j, j - p.pitch_bins + half_stride(), j >= p.pitch_bins);
}

fn prev_at(i: u32) -> f32 {
    return prev[i >> 2u][i & 3u];
}

// The shifted copies' first element in v_band4, and each copy's length in elements.
fn band_table() -> u32 {
    return (p.width + p.pitch_bins + 2u + 3u) / 4u;
}

fn band_blocks() -> u32 {
    return ((p.width + 3u) >> 2u) + 1u;
}

// Invocations of the workgroup: 256 on GPUs; 64 on CPU adapters, where every barrier walks each
// group of lanes in turn (src/ops/pitch.rs chooses).
override V_WG: u32 = 256u;
const MAX_STATES: u32 = 1216u;
// The most targets one invocation decodes in a frame, over every level (src/ops/pitch.rs
// counts them for the chosen width and refuses more).
const MAX_PER_LANE: u32 = 32u;
// The states' values and their combined sources' states, four an element, each half starting
// on an element of its own (slot()): the band search reads four sources a load.
var<workgroup> prev: array<vec4<f32>, MAX_STATES / 4u>;
var<workgroup> comb_state: array<vec4<u32>, MAX_STATES / 4u>;
// Each target's leftmost best band source while a frame is decoded; the reduction's scratch
// (values as bits, then states) before, and the chosen states after, to pack the pointers.
var<workgroup> shared_u32: array<u32, MAX_STATES>;
var<workgroup> half_max: array<f32, 2>;
var<workgroup> half_arg: array<u32, 2>;

// librosa's log(prob + tiny) in float32: log(tiny) where prob is 0.
fn log_or_tiny(prob: f32) -> f32 {
    return select(p.log_tiny, log(prob), prob > 0.0);
}

// The unvoiced states' observation at frame t, the same for all of them.
fn unvoiced_observation(t: u32) -> f32 {
    return (1.0 - v_voiced[t]) / f32(p.pitch_bins);
}

// log P(observation | state) at frame t.
fn log_observation(t: u32, j: u32) -> f32 {
    let bins = p.pitch_bins;
    return log_or_tiny(select(unvoiced_observation(t), v_observed[t * bins + min(j, bins - 1u)], j < bins));
}

// The Viterbi's levels: the coarse one holds every bin q with q + 1 a multiple of COARSE (their
// neighbours are further apart than the band is wide, so each searches its whole band and none
// waits for another: one barrier where strides 512..32 took five); level `stride` below it
// holds the bins with q + 1 an odd multiple of the stride. Targets of one half a level, and the
// m-th of them.
const COARSE: u32 = 32u;

fn level_targets(stride: u32, bins: u32) -> u32 {
    return select((bins / stride + 1u) / 2u, bins / COARSE, stride == COARSE);
}

fn level_target(stride: u32, m: u32) -> u32 {
    return select(stride * (2u * m + 1u) - 1u, COARSE * (m + 1u) - 1u, stride == COARSE);
}

// The larger of two (value, state) pairs; the lower state on ties.
fn better(v: f32, k: u32, bv: f32, bk: u32) -> bool {
    return v > bv || (v == bv && k < bk);
}

// Source s of value v (band weight added) and combined state k, if it lies in lo..=hi: the
// leftmost source of the best value, and the best (value, state).
fn weigh_source(v: f32, k: u32, s: u32, lo: i32, hi: i32, leftmost: ptr<function, f32>, leftmost_s: ptr<function, u32>,
                bv: ptr<function, f32>, bk: ptr<function, u32>) {
    let inside = i32(s) >= lo && i32(s) <= hi;
    if (inside && v > *leftmost) { *leftmost = v; *leftmost_s = s; }
    if (inside && better(v, k, *bv, *bk)) { *bv = v; *bk = k; }
}

@compute @workgroup_size(V_WG, 1, 1)
fn pyin_viterbi(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let live = g.w != 0u && g.x < p.clips_n;
    let c = select(0u, g.x, live);
    let clip = v_clips[c];
    let bins = p.pitch_bins;
    let states = 2u * bins;
    let half_w = p.width / 2u;
    // Frames of this clip in this chunk; a clip that has ended (or a workgroup past the grid)
    // still walks the barriers.
    let end = min(p.chunk_start + p.chunk_frames, select(0u, clip.w, live));
    for (var j = lid; j < states; j += V_WG) {
        let i = slot(j);
        if (p.chunk_start == 0u) {
            prev[i >> 2u][i & 3u] = select(0.0, log_observation(clip.z, j) + p.log_init, live && clip.w > 0u);
        } else {
            prev[i >> 2u][i & 3u] = v_values[c * states + j];
        }
    }
    workgroupBarrier();
    for (var t = max(p.chunk_start, 1u); t < p.chunk_start + p.chunk_frames; t++) {
        // Each invocation's partial maximum of each half and its first state (scratch: half
        // h's values as bits at 2h x V_WG, its states V_WG after).
        for (var h = 0u; h < 2u; h++) {
            var bv = -3.40282347e38;
            var bk = 0xffffffffu;
            for (var q = lid; q < bins; q += V_WG) {
                let v = prev_at(h * half_stride() + q);
                if (better(v, h * bins + q, bv, bk)) { bv = v; bk = h * bins + q; }
            }
            shared_u32[2u * h * V_WG + lid] = bitcast<u32>(bv);
            shared_u32[(2u * h + 1u) * V_WG + lid] = bk;
        }
        // Each invocation combines the states it has just read (its own bins): the same barrier
        // serves both.
        let walking = t < end;
        // prev[slot(h x bins + s)] becomes the best way into target voicing h through source
        // bin s.
        let log_within = v_band[p.width + bins];
        let log_across = v_band[p.width + bins + 1u];
        // (Not for a clip that has ended: its values must stay as they were.)
        for (var s = lid; s < bins && walking; s += V_WG) {
            let norm = v_band[p.width + s];
            let up = half_stride() + s;
            let low = prev_at(s) - norm;
            let high = prev_at(up) - norm;
            // Into the lower (voiced) half: from s (within) or bins + s (across); the lower
            // state first. Into the upper half: from s (across) or bins + s (within).
            let across_low = high + log_across > low + log_within;
            let within_high = high + log_within > low + log_across;
            prev[s >> 2u][s & 3u] = select(low + log_within, high + log_across, across_low);
            comb_state[s >> 2u][s & 3u] = select(s, bins + s, across_low);
            prev[up >> 2u][up & 3u] = select(low + log_across, high + log_within, within_high);
            comb_state[up >> 2u][up & 3u] = select(s, bins + s, within_high);
        }
        workgroupBarrier();
        // Two invocations, one a half, walk the partials: one barrier where a tree takes eight
        // (on lavapipe a barrier costs more than the 256 comparisons).
        if (lid < 2u) {
            let base = 2u * lid * V_WG;
            var bv = bitcast<f32>(shared_u32[base]);
            var bk = shared_u32[base + V_WG];
            for (var i = 1u; i < V_WG; i++) {
                if (better(bitcast<f32>(shared_u32[base + i]), shared_u32[base + V_WG + i], bv, bk)) {
                    bv = bitcast<f32>(shared_u32[base + i]);
                    bk = shared_u32[base + V_WG + i];
                }
            }
            half_max[lid] = bv;
            half_arg[lid] = bk;
        }
        workgroupBarrier();
        let shift = max(half_max[0], half_max[1]);
        // Read once a frame (on lavapipe every read of memory is a gather, lane by lane): the
        // half maxima, and the unvoiced states' observation, the same for all of them.
        let far_v = array<f32, 2>(half_max[0] + p.log_tiny, half_max[1] + p.log_tiny);
        let far_k = array<u32, 2>(half_arg[0], half_arg[1]);
        let log_unvoiced = log_or_tiny(unvoiced_observation(clip.z + min(t, max(clip.w, 1u) - 1u)));
        // Each target's best band source. The log triangle is concave, so a target's leftmost
        // best source never lies left of a lower target's nor right of a higher one's: targets
        // are decoded coarse to fine (strides 16, 8, .., 1 after the coarse level), each
        // searching only between the best sources of its two decoded neighbours, about
        // log2(width) sources a target instead of width. Ties among those go to the lower state,
        // as numpy's argmax does.
        var next: array<f32, MAX_PER_LANE>;
        var chosen: array<u32, MAX_PER_LANE>;
        var count = 0u;
        for (var stride = COARSE; stride > 0u; stride /= 2u) {
            let per_half = level_targets(stride, bins);
            for (var i = lid; i < 2u * per_half; i += V_WG) {
                let h = i / per_half;
                let q = level_target(stride, i % per_half);
                let j = h * bins + q;
                var bv = -3.40282347e38;
                var bk = 0xffffffffu;
                if (walking) {
                    var lo = max(i32(q) - i32(half_w), 0);
                    var hi = min(i32(q) + i32(half_w), i32(bins) - 1);
                    let bounded = stride < COARSE;
                    let left = select(lo, i32(shared_u32[j - stride]), bounded && q >= stride);
                    let right = select(hi, i32(shared_u32[j + stride]), bounded && q + stride < bins);
                    // (Float rounding could in principle cross the bounds: then the whole band.)
                    if (max(lo, left) <= min(hi, right)) {
                        lo = max(lo, left);
                        hi = min(hi, right);
                    }
                    var leftmost = -3.40282347e38;
                    var leftmost_s = u32(lo);
                    // Four sources a step from their aligned element, each only inside lo..=hi,
                    // in order; source s's weight is the band's at s + half_w - q, 4 further in
                    // the padded copies.
                    var s4 = u32(lo) & ~3u;
                    let padded = s4 + half_w + 4u - q;
                    var block = band_table() + (padded & 3u) * band_blocks() + (padded >> 2u);
                    let base = h * half_stride();
                    for (; i32(s4) <= hi; s4 += 4u) {
                        let values = prev[(base + s4) >> 2u] + v_band4[block];
                        let states_of = comb_state[(base + s4) >> 2u];
                        block++;
                        weigh_source(values.x, states_of.x, s4, lo, hi, &leftmost, &leftmost_s, &bv, &bk);
                        weigh_source(values.y, states_of.y, s4 + 1u, lo, hi, &leftmost, &leftmost_s, &bv, &bk);
                        weigh_source(values.z, states_of.z, s4 + 2u, lo, hi, &leftmost, &leftmost_s, &bv, &bk);
                        weigh_source(values.w, states_of.w, s4 + 3u, lo, hi, &leftmost, &leftmost_s, &bv, &bk);
                    }
                    shared_u32[j] = leftmost_s;
                    let m0 = far_k[0] % bins;
                    if ((m0 + half_w < q || m0 > q + half_w) && better(far_v[0], far_k[0], bv, bk)) { bv = far_v[0]; bk = far_k[0]; }
                    let m1 = far_k[1] % bins;
                    if ((m1 + half_w < q || m1 > q + half_w) && better(far_v[1], far_k[1], bv, bk)) { bv = far_v[1]; bk = far_k[1]; }
                    let log_voiced = log_or_tiny(v_observed[(clip.z + t) * bins + q]);
                    bv = bv - shift + select(log_unvoiced, log_voiced, h == 0u);
                }
                if (count < MAX_PER_LANE) {
                    next[count] = bv;
                    chosen[count] = bk;
                }
                count++;
            }
            workgroupBarrier();
        }
        // The same walk again: each invocation writes back what it decoded.
        count = 0u;
        for (var stride = COARSE; stride > 0u; stride /= 2u) {
            let per_half = level_targets(stride, bins);
            for (var i = lid; i < 2u * per_half; i += V_WG) {
                let j = (i / per_half) * bins + level_target(stride, i % per_half);
                if (walking && count < MAX_PER_LANE) {
                    let i = slot(j);
                    prev[i >> 2u][i & 3u] = next[count];
                    shared_u32[j] = chosen[count];
                }
                count++;
            }
        }
        workgroupBarrier();
        // Two 16-bit pointers a word: states 2i and 2i + 1.
        for (var pair = lid; pair < bins && walking; pair += V_WG) {
            v_pointers[(clip.z + t) * bins + pair] = (shared_u32[2u * pair] & 0xffffu) | ((shared_u32[2u * pair + 1u] & 0xffffu) << 16u);
        }
        workgroupBarrier();
    }
    if (!live) { return; }
    for (var j = lid; j < states; j += V_WG) {
        v_values[c * states + j] = prev_at(slot(j));
    }
}

@group(0) @binding(1) var<storage, read> b_values: array<f32>;       // [clips, 2 x bins]
@group(0) @binding(2) var<storage, read> b_pointers: array<u32>;     // [frames, bins]
@group(0) @binding(3) var<storage, read> b_clips: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> b_f0: array<f32>;     // [frames]: Hz, 0 where unvoiced

@compute @workgroup_size(64, 1, 1)
fn pyin_backtrack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let c = flat_index(wid, nwg, p.grid, lid, 64u);
    if (c >= p.clips_n) { return; }
    let clip = b_clips[c];
    if (clip.w == 0u) { return; }
    let bins = p.pitch_bins;
    let states = 2u * bins;
    var state = 0u;
    for (var j = 1u; j < states; j++) {
        if (b_values[c * states + j] > b_values[c * states + state]) { state = j; }
    }
    for (var t = clip.w; t > 0u; t--) {
        let f = clip.z + t - 1u;
        b_f0[f] = select(0.0, p.fmin * exp2(f32(state) / 120.0), state < bins);
        if (t > 1u) {
            let word = b_pointers[f * bins + state / 2u];
            state = (word >> (16u * (state % 2u))) & 0xffffu;
        }
    }
}
