// 1-D convolution lowered onto GEMM. Activations are channels-last: x [batch, length, channels].
//   im2col  cols[b * l_out + l, k * c_in + c] = x[b, l + k - pad, c] (zero outside the input),
//           so that y = cols . W with W [k_size * c_in, c_out] is the convolution (cross-correlation,
//           as Keras and PyTorch define it).
//   col2im  the gradient of im2col: dx[b, l, c] = sum over k of dcols[b * l_out + l - k + pad, k * c_in + c]
//           over the output positions that read x[b, l]; a gather, so no atomics are needed.

struct Params {
    grid: vec4<u32>,
    batch: u32, l_in: u32, l_out: u32, c_in: u32,
    k_size: u32, pad: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One invocation per (example, output step, input channel), writing that channel's k_size
// columns: the index decomposition (integer divisions, which CPU adapters run lane by lane) is
// paid once per k_size elements instead of per element, and neighbouring invocations still read
// and write neighbouring channels.
@compute @workgroup_size(64, 1, 1)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.batch * p.l_out * p.c_in) { return; }
    let blc = sequence_index(i, p.l_out, p.c_in);
    let b = blc.x;
    let l = blc.y;
    let c = blc.z;
    let row = b * p.l_out + l;
    let out = row * p.k_size * p.c_in + c;
    for (var k = 0u; k < p.k_size; k++) {
        let pos = i32(l + k) - i32(p.pad);
        var v = 0.0;
        if (pos >= 0 && pos < i32(p.l_in)) { v = src[(b * p.l_in + u32(pos)) * p.c_in + c]; }
        dst[out + k * p.c_in] = v;
    }
}

@compute @workgroup_size(64, 1, 1)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.batch * p.l_in * p.c_in) { return; }
    let c = i % p.c_in;
    let l = (i / p.c_in) % p.l_in;
    let b = i / (p.c_in * p.l_in);
    let width = p.k_size * p.c_in;
    var acc = 0.0;
    for (var k = 0u; k < p.k_size; k++) {
        let out = i32(l + p.pad) - i32(k);
        if (out >= 0 && out < i32(p.l_out)) {
            acc += src[(b * p.l_out + u32(out)) * width + k * p.c_in + c];
        }
    }
    dst[i] = acc;
}
