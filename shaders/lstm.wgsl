// LSTM recurrence, forward and backward through time, and the masked time mean (src/ops/lstm.rs
// holds the host side and the float64 references).
//
// The input projection of every step (x W_x + b, [B*T, 4H], gate order i, f, g, o as Keras)
// is one GEMM before these kernels; only the recurrent part runs here, as a persistent kernel:
// one workgroup per sequence walks its steps, the hidden state in workgroup memory, two
// barriers a step. Steps at or past a sequence's length are never visited: its state, outputs
// and gradients there stay what the host cleared them to (zero), so padding changes nothing.
// `reverse` walks len - 1 down to 0 (the backward direction of a bidirectional layer).
//
// A dispatch covers processing steps first_step .. last_step of every sequence; the host
// splits the walk over several dispatches where an adapter bounds an invocation's loop
// iterations (llvmpipe stops every loop of an invocation, silently, after 65,535 back-edges
// in all). The forward resumes from the state it stored at the step before; the backward
// carries dL/dh and dL/dc between its dispatches in a [B, 2H] buffer.

const WG: u32 = 64u;
const MAX_UNITS: u32 = 256u;
// Units per invocation: MAX_UNITS / WG.
const PER_LANE: u32 = 4u;

struct Params {
    grid: vec4<u32>,
    batch: u32,
    steps: u32,       // T: rows per sequence in every [B*T, ...] tensor
    units: u32,       // H
    reverse: u32,
    out_stride: u32,  // columns of h_seq / h_last rows (H, or 2H for two directions)
    out_col: u32,     // this direction's first column there
    first_step: u32,  // processing steps first_step .. last_step (backward: counted from the end)
    last_step: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// The state (forward) or its gradient (backward), with 4 zeros past the last unit for loops
// that go four units at a time.
var<workgroup> h_sh: array<f32, 260>;
var<workgroup> g_sh: array<f32, 1024>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// Processing step s of a sequence of length len -> its time index.
fn time_of(s: u32, len: u32) -> u32 {
    return select(s, len - 1u - s, p.reverse != 0u);
}

// ---- lstm_forward ----
@group(0) @binding(1) var<storage, read> f_gx: array<f32>;             // [B*T, 4H] input projection
@group(0) @binding(2) var<storage, read> f_wh: array<f32>;             // [H, 4H]
@group(0) @binding(3) var<storage, read> f_len: array<u32>;            // [B]
@group(0) @binding(4) var<storage, read_write> f_h: array<f32>;        // [B*T, out_stride] outputs
@group(0) @binding(5) var<storage, read_write> f_hprev: array<f32>;    // [B*T, H] state entering each step
@group(0) @binding(6) var<storage, read_write> f_c: array<f32>;        // [B*T, H] cell after each step
@group(0) @binding(7) var<storage, read_write> f_gates: array<f32>;    // [B*T, 4H] activated gates
@group(0) @binding(8) var<storage, read_write> f_last: array<f32>;     // [B, out_stride] final state

// The state after processing step s - 1 (zero before the first): unit j's h and c.
fn resume_h(b: u32, s: u32, len: u32, j: u32) -> f32 {
    if (s == 0u) { return 0.0; }
    return f_h[(b * p.steps + time_of(s - 1u, len)) * p.out_stride + p.out_col + j];
}

fn resume_c(b: u32, s: u32, len: u32, j: u32) -> f32 {
    if (s == 0u) { return 0.0; }
    return f_c[(b * p.steps + time_of(s - 1u, len)) * p.units + j];
}

@compute @workgroup_size(64, 1, 1)
fn lstm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let b = g.x;
    let hu = p.units;
    let gw = 4u * hu;
    // Uniform across the workgroup (from its id and read-only buffers): the barriers below are
    // in uniform control flow.
    var len = 0u;
    if (g.w != 0u && b < p.batch) { len = min(f_len[b], p.steps); }
    let s0 = min(p.first_step, len);
    let s1 = min(p.last_step, len);
    var c_reg: array<f32, 4>;
    if (lid < 4u) { h_sh[hu + lid] = 0.0; }
    for (var q = 0u; q < PER_LANE; q++) {
        let j = lid + q * WG;
        c_reg[q] = 0.0;
        if (j < hu && s0 < s1) {
            h_sh[j] = resume_h(b, s0, len, j);
            c_reg[q] = resume_c(b, s0, len, j);
        }
    }
    workgroupBarrier();
    for (var s = s0; s < s1; s++) {
        let row = b * p.steps + time_of(s, len);
        for (var k = lid; k < gw; k += WG) {
            var acc = f_gx[row * gw + k];
            // Four units at a time: h_sh is zero past the last unit, whose row index is clamped.
            for (var j = 0u; j < hu; j += 4u) {
                acc += h_sh[j] * f_wh[j * gw + k] + h_sh[j + 1u] * f_wh[min(j + 1u, hu - 1u) * gw + k]
                     + h_sh[j + 2u] * f_wh[min(j + 2u, hu - 1u) * gw + k] + h_sh[j + 3u] * f_wh[min(j + 3u, hu - 1u) * gw + k];
            }
            let is_cell = k >= 2u * hu && k < 3u * hu;
            let act = select(sigmoid(acc), tanh(acc), is_cell);
            g_sh[k] = act;
            f_gates[row * gw + k] = act;
        }
        for (var q = 0u; q < PER_LANE; q++) {
            let j = lid + q * WG;
            if (j < hu) { f_hprev[row * hu + j] = h_sh[j]; }
        }
        workgroupBarrier();
        for (var q = 0u; q < PER_LANE; q++) {
            let j = lid + q * WG;
            if (j < hu) {
                let c = g_sh[hu + j] * c_reg[q] + g_sh[j] * g_sh[2u * hu + j];
                c_reg[q] = c;
                f_c[row * hu + j] = c;
                let h = g_sh[3u * hu + j] * tanh(c);
                f_h[row * p.out_stride + p.out_col + j] = h;
                h_sh[j] = h;
            }
        }
        workgroupBarrier();
    }
    // The final state, from the dispatch that processed the last step.
    if (s0 < s1 && s1 == len) {
        for (var q = 0u; q < PER_LANE; q++) {
            let j = lid + q * WG;
            if (j < hu) { f_last[b * p.out_stride + p.out_col + j] = h_sh[j]; }
        }
    }
}

// ---- lstm_backward ----
@group(0) @binding(1) var<storage, read> b_gates: array<f32>;          // [B*T, 4H] from the forward
@group(0) @binding(2) var<storage, read> b_c: array<f32>;              // [B*T, H]
@group(0) @binding(3) var<storage, read> b_wh: array<f32>;             // [H, 4H]
@group(0) @binding(4) var<storage, read> b_len: array<u32>;            // [B]
@group(0) @binding(5) var<storage, read> b_dh: array<f32>;             // [B*T, out_stride] dL/d outputs
@group(0) @binding(6) var<storage, read> b_dlast: array<f32>;          // [B, out_stride] dL/d final state
@group(0) @binding(7) var<storage, read_write> b_dgates: array<f32>;   // [B*T, 4H] dL/d pre-activations
@group(0) @binding(8) var<storage, read_write> b_carry: array<f32>;    // [B, 2H] dL/dh, dL/dc between dispatches

struct Back {
    // dL/d pre-activations of gates i, f, g, o.
    d: vec4<f32>,
    // dL/dc carried to the step before.
    dc_prev: f32,
}

// Unit j's gradients for the processing step s, given dL/dh arriving from step s + 1 and the
// carried dL/dc: writes the four pre-activation gradients to dgates and returns them.
fn step_back(b: u32, s: u32, len: u32, j: u32, dh_next: f32, dc_next: f32) -> Back {
    let hu = p.units;
    let gw = 4u * hu;
    let row = b * p.steps + time_of(s, len);
    let dh = dh_next + b_dh[row * p.out_stride + p.out_col + j];
    let gi = b_gates[row * gw + j];
    let gf = b_gates[row * gw + hu + j];
    let gg = b_gates[row * gw + 2u * hu + j];
    let go = b_gates[row * gw + 3u * hu + j];
    let c = b_c[row * hu + j];
    var c_prev = 0.0;
    if (s > 0u) { c_prev = b_c[(b * p.steps + time_of(s - 1u, len)) * hu + j]; }
    let tc = tanh(c);
    let dc = dc_next + dh * go * (1.0 - tc * tc);
    let d = vec4<f32>(dc * gg * gi * (1.0 - gi), dc * c_prev * gf * (1.0 - gf), dc * gi * (1.0 - gg * gg), dh * tc * go * (1.0 - go));
    b_dgates[row * gw + j] = d.x;
    b_dgates[row * gw + hu + j] = d.y;
    b_dgates[row * gw + 2u * hu + j] = d.z;
    b_dgates[row * gw + 3u * hu + j] = d.w;
    return Back(d, dc * gf);
}

@compute @workgroup_size(64, 1, 1)
fn lstm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let b = g.x;
    let hu = p.units;
    let gw = 4u * hu;
    var len = 0u;
    if (g.w != 0u && b < p.batch) { len = min(b_len[b], p.steps); }
    // Reverse processing indices r0 .. r1 (r = len - 1 - s).
    let r0 = min(p.first_step, len);
    let r1 = min(p.last_step, len);
    // h_sh holds dL/dh flowing back from the later step; each unit's lane owns its entry.
    var dc_reg: array<f32, 4>;
    for (var q = 0u; q < PER_LANE; q++) {
        let j = lid + q * WG;
        dc_reg[q] = 0.0;
        if (j < hu && r0 < r1) {
            if (r0 == 0u) {
                h_sh[j] = b_dlast[b * p.out_stride + p.out_col + j];
            } else {
                h_sh[j] = b_carry[b * 2u * hu + j];
                dc_reg[q] = b_carry[b * 2u * hu + hu + j];
            }
        }
    }
    workgroupBarrier();
    for (var r = r0; r < r1; r++) {
        let s = len - 1u - r;
        for (var q = 0u; q < PER_LANE; q++) {
            let j = lid + q * WG;
            if (j < hu) {
                let back = step_back(b, s, len, j, h_sh[j], dc_reg[q]);
                let d = back.d;
                dc_reg[q] = back.dc_prev;
                g_sh[j] = d.x;
                g_sh[hu + j] = d.y;
                g_sh[2u * hu + j] = d.z;
                g_sh[3u * hu + j] = d.w;
            }
        }
        workgroupBarrier();
        // dL/dh of the step before: the pre-activation gradients through W_h.
        for (var q = 0u; q < PER_LANE; q++) {
            let j = lid + q * WG;
            if (j < hu) {
                var acc = 0.0;
                for (var k = 0u; k < gw; k += 4u) {
                    acc += g_sh[k] * b_wh[j * gw + k] + g_sh[k + 1u] * b_wh[j * gw + k + 1u]
                         + g_sh[k + 2u] * b_wh[j * gw + k + 2u] + g_sh[k + 3u] * b_wh[j * gw + k + 3u];
                }
                h_sh[j] = acc;
            }
        }
        workgroupBarrier();
    }
    if (r0 < r1 && r1 < len) {
        for (var q = 0u; q < PER_LANE; q++) {
            let j = lid + q * WG;
            if (j < hu) {
                b_carry[b * 2u * hu + j] = h_sh[j];
                b_carry[b * 2u * hu + hu + j] = dc_reg[q];
            }
        }
    }
}

// ---- lstm_forward_lane, lstm_backward_lane: one invocation per sequence ----
// The same recurrence with no workgroup memory and no barrier: each invocation keeps its
// sequence's state in private arrays and walks the units itself. The recurrent kernel comes
// gate-interleaved (lstm_interleave: entry m * H + j holds row m's four gate columns of unit
// j) in a uniform buffer: every invocation reads the same address, which CPU adapters load
// once for all lanes (llvmpipe loads a storage buffer lane by lane), and one vec4 carries a
// unit's four gates. Chosen on CPU adapters, where barriers cost more than the arithmetic they
// separate (lavapipe runs a workgroup's invocations as SIMD lanes of one thread), for up to
// LANE_MAX_UNITS units (the 64 KiB uniform binding WebGPU guarantees); correct everywhere, and
// checked on every adapter beside the workgroup kernels. Inner loops go 4 at a time (the state
// and gradient arrays have zeros past the last unit, and indices past it are clamped) to spend
// fewer of llvmpipe's loop iterations.
const LANE_WG: u32 = 8u;
const LANE_MAX_UNITS: u32 = 64u;

@group(0) @binding(2) var<uniform> lf_wh: array<vec4<f32>, 4096>;      // [H * H] gate-interleaved
@group(0) @binding(3) var<uniform> lb_wh: array<vec4<f32>, 4096>;

@compute @workgroup_size(8, 1, 1)
fn lstm_forward_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let b = flat_index(wid, nwg, p.grid, lid, LANE_WG);
    if (b >= p.batch) { return; }
    let hu = min(p.units, LANE_MAX_UNITS);
    let gw = 4u * hu;
    let len = min(f_len[b], p.steps);
    let s0 = min(p.first_step, len);
    let s1 = min(p.last_step, len);
    if (s0 >= s1) { return; }
    var h: array<f32, 68>;
    var h_next: array<f32, 64>;
    var c: array<f32, 64>;
    for (var j = 0u; j < hu; j++) {
        h[j] = resume_h(b, s0, len, j);
        c[j] = resume_c(b, s0, len, j);
    }
    // Zeros past the last unit, read by the 4-wide loop below.
    h[hu] = 0.0;
    h[hu + 1u] = 0.0;
    h[hu + 2u] = 0.0;
    for (var s = s0; s < s1; s++) {
        let row = b * p.steps + time_of(s, len);
        for (var j = 0u; j < hu; j++) {
            f_hprev[row * hu + j] = h[j];
            var a = vec4<f32>(f_gx[row * gw + j], f_gx[row * gw + hu + j], f_gx[row * gw + 2u * hu + j], f_gx[row * gw + 3u * hu + j]);
            for (var m = 0u; m < hu; m += 4u) {
                // Rows past the last unit multiply a zero state entry; their index is clamped.
                a += h[m] * lf_wh[m * hu + j]
                   + h[m + 1u] * lf_wh[min(m + 1u, hu - 1u) * hu + j]
                   + h[m + 2u] * lf_wh[min(m + 2u, hu - 1u) * hu + j]
                   + h[m + 3u] * lf_wh[min(m + 3u, hu - 1u) * hu + j];
            }
            let gi = sigmoid(a.x);
            let gf = sigmoid(a.y);
            let gg = tanh(a.z);
            let go = sigmoid(a.w);
            f_gates[row * gw + j] = gi;
            f_gates[row * gw + hu + j] = gf;
            f_gates[row * gw + 2u * hu + j] = gg;
            f_gates[row * gw + 3u * hu + j] = go;
            let cj = gf * c[j] + gi * gg;
            c[j] = cj;
            f_c[row * hu + j] = cj;
            let hj = go * tanh(cj);
            h_next[j] = hj;
            f_h[row * p.out_stride + p.out_col + j] = hj;
        }
        for (var j = 0u; j < hu; j++) {
            h[j] = h_next[j];
        }
    }
    if (s1 == len) {
        for (var j = 0u; j < hu; j++) {
            f_last[b * p.out_stride + p.out_col + j] = h[j];
        }
    }
}

@compute @workgroup_size(8, 1, 1)
fn lstm_backward_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let b = flat_index(wid, nwg, p.grid, lid, LANE_WG);
    if (b >= p.batch) { return; }
    let hu = min(p.units, LANE_MAX_UNITS);
    let len = min(b_len[b], p.steps);
    let r0 = min(p.first_step, len);
    let r1 = min(p.last_step, len);
    if (r0 >= r1) { return; }
    var dh: array<f32, 64>;
    var dc: array<f32, 64>;
    // Unit j's four pre-activation gradients, zeros past the last unit for the 4-wide loop.
    var dg: array<vec4<f32>, 68>;
    dg[hu] = vec4<f32>(0.0);
    dg[hu + 1u] = vec4<f32>(0.0);
    dg[hu + 2u] = vec4<f32>(0.0);
    for (var j = 0u; j < hu; j++) {
        if (r0 == 0u) {
            dh[j] = b_dlast[b * p.out_stride + p.out_col + j];
            dc[j] = 0.0;
        } else {
            dh[j] = b_carry[b * 2u * hu + j];
            dc[j] = b_carry[b * 2u * hu + hu + j];
        }
    }
    for (var r = r0; r < r1; r++) {
        let s = len - 1u - r;
        for (var j = 0u; j < hu; j++) {
            let back = step_back(b, s, len, j, dh[j], dc[j]);
            dc[j] = back.dc_prev;
            dg[j] = back.d;
        }
        // dL/dh of the step before: row m of W_h against every unit's four gate gradients.
        for (var m = 0u; m < hu; m++) {
            var acc = vec4<f32>(0.0);
            for (var j = 0u; j < hu; j += 4u) {
                // Units past the last one have zero gradients; their index is clamped.
                acc += dg[j] * lb_wh[m * hu + j] + dg[j + 1u] * lb_wh[m * hu + min(j + 1u, hu - 1u)]
                     + dg[j + 2u] * lb_wh[m * hu + min(j + 2u, hu - 1u)] + dg[j + 3u] * lb_wh[m * hu + min(j + 3u, hu - 1u)];
            }
            dh[m] = acc.x + acc.y + acc.z + acc.w;
        }
    }
    if (r1 < len) {
        for (var j = 0u; j < hu; j++) {
            b_carry[b * 2u * hu + j] = dh[j];
            b_carry[b * 2u * hu + hu + j] = dc[j];
        }
    }
}

// ---- lstm_interleave: the recurrent kernel [H, 4H] -> [H * H] vec4 (gates i, f, g, o of
// unit j from row m at m * H + j), for the lane kernels ----
@group(0) @binding(1) var<storage, read> i_wh: array<f32>;
@group(0) @binding(2) var<storage, read_write> i_out: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn lstm_interleave(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, p.grid, lid, 64u);
    let hu = p.units;
    if (e >= hu * hu) { return; }
    let m = e / hu;
    let j = e % hu;
    for (var q = 0u; q < 4u; q++) {
        i_out[e * 4u + q] = i_wh[m * 4u * hu + q * hu + j];
    }
}

// ---- time_mean, time_mean_backward: the mean over each sequence's valid steps ----
struct MeanParams {
    grid: vec4<u32>,
    batch: u32,
    steps: u32,
    channels: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> mp: MeanParams;
@group(0) @binding(1) var<storage, read> m_x: array<f32>;              // [B*T, C] (backward: dy [B, C])
@group(0) @binding(2) var<storage, read> m_len: array<u32>;            // [B]
@group(0) @binding(3) var<storage, read_write> m_y: array<f32>;        // [B, C] (backward: dx [B*T, C])

@compute @workgroup_size(64, 1, 1)
fn time_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, mp.grid, lid, 64u);
    if (e >= mp.batch * mp.channels) { return; }
    let b = e / mp.channels;
    let ch = e % mp.channels;
    let len = min(m_len[b], mp.steps);
    var sum = 0.0;
    for (var t = 0u; t < len; t++) {
        sum += m_x[(b * mp.steps + t) * mp.channels + ch];
    }
    m_y[e] = select(0.0, sum / f32(len), len > 0u);
}

@compute @workgroup_size(64, 1, 1)
fn time_mean_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, mp.grid, lid, 64u);
    if (e >= mp.batch * mp.steps * mp.channels) { return; }
    let btc = sequence_index(e, mp.steps, mp.channels);
    let len = min(m_len[btc.x], mp.steps);
    m_y[e] = select(0.0, m_x[btc.x * mp.channels + btc.z] / f32(len), btc.y < len);
}

// ---- attention_pool, attention_pool_backward: a learned weighting of each sequence's valid
// steps (Mirsamadi et al. 2017's attention pooling for emotion recognition):
//   s_t = w . x_t, alpha = softmax(s) over t < len, y = sum_t alpha_t x_t (zero when len = 0).
// One workgroup per example; lanes take steps for the scores and channels for the sums, so
// every loop stays far under llvmpipe's 65,535 iterations per invocation (T x C / 16 at most;
// the host checks). Backward, with g_t = dy . x_t and gbar = sum_t alpha_t g_t:
//   dscore_t = alpha_t (g_t - gbar), dx_t = alpha_t dy + dscore_t w (zero past len),
//   and dw = sum over examples and steps of dscore_t x_t (one GEMM on the host side).
struct AttnParams {
    grid: vec4<u32>,
    batch: u32,
    steps: u32,
    channels: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> atp: AttnParams;
@group(0) @binding(1) var<storage, read> at_x: array<f32>;             // [B*T, C]
@group(0) @binding(2) var<storage, read> at_w: array<f32>;             // [C]
@group(0) @binding(3) var<storage, read> at_len: array<u32>;           // [B]
@group(0) @binding(4) var<storage, read_write> at_y: array<f32>;       // [B, C]
@group(0) @binding(5) var<storage, read_write> at_alpha: array<f32>;   // [B, T]
// The backward's own (bindings 4 and 5 read there):
@group(0) @binding(4) var<storage, read> atb_alpha: array<f32>;        // [B, T]
@group(0) @binding(5) var<storage, read> atb_dy: array<f32>;           // [B, C]
@group(0) @binding(6) var<storage, read_write> atb_dx: array<f32>;     // [B*T, C]
@group(0) @binding(7) var<storage, read_write> atb_dscore: array<f32>; // [B, T]

var<workgroup> at_red: array<f32, 64>;
var<workgroup> at_bcast: f32;

// This workgroup's example: (b, valid steps, live). A spare workgroup of a folded dispatch has
// live = 0 and no steps and writes nothing; it still reaches every barrier.
fn attn_example(wid: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let g = logical_workgroup(wid, nwg, atp.grid);
    let live = g.w != 0u && g.x < atp.batch;
    let b = min(g.x, atp.batch - 1u);
    return vec3<u32>(b, select(0u, min(at_len[b], atp.steps), live), u32(live));
}

// Lane 0 folds the 64 lanes' values (max or sum); every lane gets the result.
fn attn_reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    at_red[lid] = v;
    workgroupBarrier();
    if (lid == 0u) {
        var r = at_red[0];
        for (var i = 1u; i < 64u; i++) { r = select(r + at_red[i], max(r, at_red[i]), is_max); }
        at_bcast = r;
    }
    workgroupBarrier();
    let r = at_bcast;
    // No lane may start the next reduction (overwrite at_red, at_bcast) before all have read.
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64, 1, 1)
fn attention_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let ex = attn_example(wid, nwg);
    let b = ex.x;
    let len = ex.y;
    let steps = atp.steps;
    let ch = atp.channels;
    var top = -3.0e38;
    for (var t = lid; t < len; t += 64u) {
        var s = 0.0;
        let row = (b * steps + t) * ch;
        for (var c = 0u; c < ch; c++) { s += at_w[c] * at_x[row + c]; }
        at_alpha[b * steps + t] = s;
        top = max(top, s);
    }
    let m = attn_reduce(lid, top, true);
    var sum = 0.0;
    for (var t = lid; t < len; t += 64u) {
        let e = exp(at_alpha[b * steps + t] - m);
        at_alpha[b * steps + t] = e;
        sum += e;
    }
    // The sum is at least exp(0) = 1 where there are steps.
    let inv = 1.0 / max(attn_reduce(lid, sum, false), 1.0);
    for (var t = lid; t < len; t += 64u) { at_alpha[b * steps + t] *= inv; }
    let rows = select(0u, steps, ex.z != 0u);
    for (var t = len + lid; t < rows; t += 64u) { at_alpha[b * steps + t] = 0.0; }
    // The sums below read weights other lanes wrote.
    storageBarrier();
    for (var c = lid; c < select(0u, ch, ex.z != 0u); c += 64u) {
        var acc = 0.0;
        for (var t = 0u; t < len; t++) { acc += at_alpha[b * steps + t] * at_x[(b * steps + t) * ch + c]; }
        at_y[b * ch + c] = acc;
    }
}

@compute @workgroup_size(64, 1, 1)
fn attention_pool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let ex = attn_example(wid, nwg);
    let b = ex.x;
    let len = ex.y;
    let steps = atp.steps;
    let ch = atp.channels;
    // g_t into dscore first, and each lane's share of gbar.
    var part = 0.0;
    for (var t = lid; t < len; t += 64u) {
        var g = 0.0;
        let row = (b * steps + t) * ch;
        for (var c = 0u; c < ch; c++) { g += atb_dy[b * ch + c] * at_x[row + c]; }
        atb_dscore[b * steps + t] = g;
        part += atb_alpha[b * steps + t] * g;
    }
    let gbar = attn_reduce(lid, part, false);
    for (var t = lid; t < len; t += 64u) {
        atb_dscore[b * steps + t] = atb_alpha[b * steps + t] * (atb_dscore[b * steps + t] - gbar);
    }
    let rows = select(0u, steps, ex.z != 0u);
    for (var t = len + lid; t < rows; t += 64u) { atb_dscore[b * steps + t] = 0.0; }
    storageBarrier();
    // dx: lanes over channels (neighbouring lanes, neighbouring values), one step at a time.
    for (var t = 0u; t < rows; t++) {
        let a = atb_alpha[b * steps + t];
        let d = atb_dscore[b * steps + t];
        let valid = t < len;
        for (var c = lid; c < ch; c += 64u) {
            atb_dx[(b * steps + t) * ch + c] = select(0.0, a * atb_dy[b * ch + c] + d * at_w[c], valid);
        }
    }
}
