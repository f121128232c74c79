// Max pooling along the length of channels-last activations x [batch, l_in, channels] (Keras
// MaxPooling1D, padding "valid": l_out = (l_in - size) / stride + 1).
//   maxpool           y[b, o, c] = max over the window; the winning input index is kept
//   maxpool_backward  dx[b, l, c] = sum of dy over the windows whose winner is l (a gather: each
//                     input looks at the few windows that contain it, so no atomics)
// Ties go to the first element of the window, as in TensorFlow.

struct Params {
    grid: vec4<u32>,
    batch: u32, l_in: u32, l_out: u32, channels: u32,
    size: u32, stride: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> winner: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn maxpool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.batch * p.l_out * p.channels) { return; }
    let c = i % p.channels;
    let o = (i / p.channels) % p.l_out;
    let b = i / (p.channels * p.l_out);
    var best_at = (b * p.l_in + o * p.stride) * p.channels + c;
    var best = src[best_at];
    for (var k = 1u; k < p.size; k++) {
        let at = (b * p.l_in + o * p.stride + k) * p.channels + c;
        let v = src[at];
        if (v > best) { best = v; best_at = at; }
    }
    dst[i] = best;
    winner[i] = best_at;
}

// Here src is dy [batch, l_out, channels] and winner is read; dst is dx [batch, l_in, channels].
@compute @workgroup_size(64, 1, 1)
fn maxpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.batch * p.l_in * p.channels) { return; }
    let c = i % p.channels;
    let l = (i / p.channels) % p.l_in;
    let b = i / (p.channels * p.l_in);
    // Windows o with o * stride <= l < o * stride + size.
    var first = 0u;
    if (l + 1u > p.size) { first = (l + 1u - p.size + p.stride - 1u) / p.stride; }
    let last = min(l / p.stride, p.l_out - 1u);
    var acc = 0.0;
    for (var o = first; o <= last && o < p.l_out; o++) {
        let at = (b * p.l_out + o) * p.channels + c;
        if (winner[at] == i) { acc += src[at]; }
    }
    dst[i] = acc;
}
