// Per-clip tuning estimation, as librosa.estimate_tuning does it from a power spectrogram S:
//   frame_max  ref[f] = threshold * max_k S[f, k]
//   piptrack   at every local maximum of S * (S > ref) between fmin and fmax: a pitch from
//              parabolic interpolation and its magnitude S + 0.5 * gradient * shift, appended to
//              the clip's candidate list (order does not matter to what follows)
//   tuning     per clip: the median candidate magnitude (exact, by radix selection on the float
//              bits), then a 100-bin histogram of the pitch residuals (in fractions of a chroma
//              bin) of candidates at or above it; the fullest bin's left edge is the tuning (the
//              host maps the bin index to librosa's float64 edge).
// Arithmetic follows librosa's float32 steps; histogram edges arrive as the smallest float32 at or
// above each float64 edge, so comparisons match numpy's exactly.

struct Params {
    grid: vec4<u32>,
    frames: u32, stride: u32, k_lo: u32, k_hi: u32,
    n_bins: u32, clips: u32, _pad0: u32, _pad1: u32,
    threshold: f32, hz_per_bin: f32, _pad2: f32, _pad3: f32,
}

// Bindings 2 and 4 hold different things in different entry points (see the host side).
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var spectra: texture_2d<f32>;                        // row f: stride / 4 texels
@group(0) @binding(2) var<storage, read> frame_clip: array<u32>;           // [frames]
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;          // per clip: first candidate, capacity
@group(0) @binding(4) var<storage, read_write> ref_value: array<f32>;      // [frames]
@group(0) @binding(5) var<storage, read_write> counts: array<atomic<u32>>; // [clips]
@group(0) @binding(6) var<storage, read_write> cand: array<vec2<f32>>;     // (pitch, magnitude)

// S[f, k] from the spectra texture (four bins per texel).
fn power(f: u32, k: u32) -> f32 {
    return textureLoad(spectra, vec2<u32>(k / 4u, f), 0)[k & 3u];
}

@compute @workgroup_size(64, 1, 1)
fn frame_max(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let f = flat_index(wid, nwg, p.grid, lid, 64u);
    if (f >= p.frames) { return; }
    // Whole texels: bins past n_bins are zeros, which do not move a maximum of powers.
    var m4 = vec4<f32>(0.0);
    for (var t = 0u; t < (p.n_bins + 3u) / 4u; t++) { m4 = max(m4, textureLoad(spectra, vec2<u32>(t, f), 0)); }
    let m = max(max(m4.x, m4.y), max(m4.z, m4.w));
    ref_value[f] = p.threshold * m;
}

// S * (S > ref) at bin k of a row.
fn masked(f: u32, k: u32, r: f32) -> f32 {
    let s = power(f, k);
    return select(0.0, s, s > r);
}

// One invocation per (frame, bin in [k_lo, k_hi)).
@compute @workgroup_size(64, 1, 1)
fn piptrack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let i = g.x * 64u + lid;
    let span = p.k_hi - p.k_lo;
    if (g.w == 0u || i >= p.frames * span) { return; }
    let f = i / span;
    let k = p.k_lo + i % span;
    let r = ref_value[f];
    let last = p.n_bins - 1u;
    // librosa.util.localmax: x[k] > x[k-1] and x[k] >= x[k+1]; never at bin 0; at the last bin,
    // x[last] > x[last - 1].
    let x = masked(f, k, r);
    var peak = false;
    if (k == last) {
        peak = x > masked(f, k - 1u, r);
    } else if (k > 0u) {
        peak = x > masked(f, k - 1u, r) && x >= masked(f, k + 1u, r);
    }
    if (!peak) { return; }
    // Parabolic shift and gradient (np.gradient: central inside, one-sided at the ends).
    let s = power(f, k);
    var shift = 0.0;
    var avg = 0.0;
    if (k > 0u && k < last) {
        let lo = power(f, k - 1u);
        let hi = power(f, k + 1u);
        let a = hi + lo - 2.0 * s;
        let b = (hi - lo) / 2.0;
        if (abs(b) < abs(a)) { shift = -b / a; }
        avg = (hi - lo) / 2.0;
    } else if (k == last) {
        avg = s - power(f, k - 1u);
    }
    let pitch = (f32(k) + shift) * p.hz_per_bin;
    let mag = s + 0.5 * avg * shift;
    let c = frame_clip[f];
    let slot = atomicAdd(&counts[c], 1u);
    if (slot < slots[c].y) { cand[slots[c].x + slot] = vec2<f32>(pitch, mag); }
}

// ---- per clip: median magnitude, histogram of residuals ----

@group(0) @binding(2) var<storage, read> edges: array<f32>;            // 101 histogram edges
@group(0) @binding(4) var<storage, read_write> tuning_out: array<f32>;  // [clips]: fullest bin, or -1

const WG: u32 = 64u;
var<workgroup> part: array<u32, WG>;
var<workgroup> hist: array<atomic<u32>, 100>;

// Order-preserving map from float bits to unsigned integers.
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn unkey(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// Sum of a per-invocation count over the workgroup.
fn workgroup_sum(v: u32, lid: u32) -> u32 {
    part[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h /= 2u) {
        if (lid < h) { part[lid] += part[lid + h]; }
        workgroupBarrier();
    }
    // A uniform value, so callers may branch on it around barriers.
    let total = workgroupUniformLoad(&part[0]);
    workgroupBarrier();
    return total;
}

// The k-th smallest candidate magnitude (0-based) among candidates with a positive pitch.
fn select_kth(first: u32, n: u32, k_in: u32, lid: u32) -> f32 {
    var prefix = 0u;
    var k = k_in;
    for (var bit = 31i; bit >= 0i; bit--) {
        let hi_mask = select(0u, 0xffffffffu << u32(bit + 1), bit < 31i);
        var zeros = 0u;
        for (var i = lid; i < n; i += WG) {
            let c = cand[first + i];
            let kk = key(c.y);
            if (c.x > 0.0 && (kk & hi_mask) == prefix && ((kk >> u32(bit)) & 1u) == 0u) { zeros++; }
        }
        let total = workgroup_sum(zeros, lid);
        if (k >= total) {
            k -= total;
            prefix |= 1u << u32(bit);
        }
    }
    return unkey(prefix);
}

// One workgroup per clip.
@compute @workgroup_size(64, 1, 1)
fn tuning(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    if (g.w == 0u) { return; }
    let c = g.x;
    let first = slots[c].x;
    let n = min(atomicLoad(&counts[c]), slots[c].y);
    var positive = 0u;
    for (var i = lid; i < n; i += WG) {
        if (cand[first + i].x > 0.0) { positive++; }
    }
    let m = workgroup_sum(positive, lid);
    if (m == 0u) {
        if (lid == 0u) { tuning_out[c] = -1.0; }
        return;
    }
    // np.median: the middle value, or the mean of the two middle values.
    var threshold = select_kth(first, n, m / 2u, lid);
    if ((m & 1u) == 0u) {
        threshold = (select_kth(first, n, m / 2u - 1u, lid) + threshold) / 2.0;
    }
    for (var b = lid; b < 100u; b += WG) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    for (var i = lid; i < n; i += WG) {
        let cd = cand[first + i];
        if (cd.x > 0.0 && cd.y >= threshold) {
            // 12 * hz_to_octs(f) = 12 * log2(f / 27.5), modulo 1, folded into [-0.5, 0.5).
            let octs = 12.0 * log2(cd.x / 27.5);
            var r = octs - floor(octs);
            if (r >= 0.5) { r -= 1.0; }
            // numpy.histogram on uniform bins: estimate, then correct against the exact edges.
            var b = u32(clamp(i32(floor((r + 0.5) * 100.0)), 0, 99));
            if (r < edges[b]) { b = max(b, 1u) - 1u; }
            if (b < 99u && r >= edges[b + 1u]) { b++; }
            if (r >= edges[0] && r <= edges[100]) { atomicAdd(&hist[b], 1u); }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        var best = 0u;
        var best_count = 0u;
        for (var b = 0u; b < 100u; b++) {
            let v = atomicLoad(&hist[b]);
            if (v > best_count) { best_count = v; best = b; }
        }
        tuning_out[c] = f32(best);
    }
}
