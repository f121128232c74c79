// LSTM recurrence, forward and backward through time, and the masked time mean (src/ops/lstm.rs
// holds the host side and the float64 references).
//
// The input projection of every step (x W_x + b, [B*T, 4H], gate order i, f, g, o as Keras)
// is one GEMM before these kernels; only the recurrent part runs here, as a persistent kernel:
// one workgroup per sequence walks its steps, the hidden state in workgroup memory, two
// barriers a step. Steps at or past a sequence's length are never visited: its state, outputs
// and gradients there stay what the host cleared them to (zero), so padding changes nothing.
// `reverse` walks len - 1 down to 0 (the backward direction of a bidirectional layer).

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
    _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> h_sh: array<f32, 256>;
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

@compute @workgroup_size(64, 1, 1)
fn lstm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let b = g.x;
    let hu = p.units;
    let gw = 4u * hu;
    // Uniform across the workgroup (from its id and a read-only buffer): barriers below are in
    // uniform control flow.
    var len = 0u;
    if (g.w != 0u && b < p.batch) { len = min(f_len[b], p.steps); }
    var c_reg: array<f32, 4>;
    for (var q = 0u; q < PER_LANE; q++) {
        c_reg[q] = 0.0;
        let j = lid + q * WG;
        if (j < hu) { h_sh[j] = 0.0; }
    }
    workgroupBarrier();
    for (var s = 0u; s < len; s++) {
        let row = b * p.steps + time_of(s, len);
        for (var k = lid; k < gw; k += WG) {
            var acc = f_gx[row * gw + k];
            for (var j = 0u; j < hu; j++) {
                acc += h_sh[j] * f_wh[j * gw + k];
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
    if (g.w != 0u && b < p.batch) {
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

@compute @workgroup_size(64, 1, 1)
fn lstm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let b = g.x;
    let hu = p.units;
    let gw = 4u * hu;
    var len = 0u;
    if (g.w != 0u && b < p.batch) { len = min(b_len[b], p.steps); }
    // h_sh holds dL/dh flowing back from the later step; each unit's lane owns its entry.
    var dc_reg: array<f32, 4>;
    for (var q = 0u; q < PER_LANE; q++) {
        dc_reg[q] = 0.0;
        let j = lid + q * WG;
        if (j < hu && len > 0u) { h_sh[j] = b_dlast[b * p.out_stride + p.out_col + j]; }
    }
    workgroupBarrier();
    for (var r = 0u; r < len; r++) {
        let s = len - 1u - r;
        let row = b * p.steps + time_of(s, len);
        for (var q = 0u; q < PER_LANE; q++) {
            let j = lid + q * WG;
            if (j < hu) {
                let dh = h_sh[j] + b_dh[row * p.out_stride + p.out_col + j];
                let gi = b_gates[row * gw + j];
                let gf = b_gates[row * gw + hu + j];
                let gg = b_gates[row * gw + 2u * hu + j];
                let go = b_gates[row * gw + 3u * hu + j];
                let c = b_c[row * hu + j];
                var c_prev = 0.0;
                if (s > 0u) { c_prev = b_c[(b * p.steps + time_of(s - 1u, len)) * hu + j]; }
                let tc = tanh(c);
                let dc = dc_reg[q] + dh * go * (1.0 - tc * tc);
                let d_i = dc * gg * gi * (1.0 - gi);
                let d_f = dc * c_prev * gf * (1.0 - gf);
                let d_g = dc * gi * (1.0 - gg * gg);
                let d_o = dh * tc * go * (1.0 - go);
                dc_reg[q] = dc * gf;
                g_sh[j] = d_i;
                g_sh[hu + j] = d_f;
                g_sh[2u * hu + j] = d_g;
                g_sh[3u * hu + j] = d_o;
                b_dgates[row * gw + j] = d_i;
                b_dgates[row * gw + hu + j] = d_f;
                b_dgates[row * gw + 2u * hu + j] = d_g;
                b_dgates[row * gw + 3u * hu + j] = d_o;
            }
        }
        workgroupBarrier();
        // dL/dh of the step before: the pre-activation gradients through W_h.
        for (var q = 0u; q < PER_LANE; q++) {
            let j = lid + q * WG;
            if (j < hu) {
                var acc = 0.0;
                for (var k = 0u; k < gw; k++) {
                    acc += g_sh[k] * b_wh[j * gw + k];
                }
                h_sh[j] = acc;
            }
        }
        workgroupBarrier();
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
    let b = e / (mp.steps * mp.channels);
    let t = (e / mp.channels) % mp.steps;
    let ch = e % mp.channels;
    let len = min(m_len[b], mp.steps);
    m_y[e] = select(0.0, m_x[b * mp.channels + ch] / f32(len), t < len);
}
