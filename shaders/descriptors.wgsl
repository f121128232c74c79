// Frame descriptors as librosa 0.11 defines them, frame-aligned with the other features:
//   spectral_shape   from each frame's power spectrum |X|^2 (the STFT the other features use,
//                    read as magnitudes |X|): rms (librosa.feature.rms with S = |X|),
//                    spectral_centroid, spectral_bandwidth (p = 2, normalised),
//                    spectral_rolloff (roll_percent from the host) and spectral_flatness
//                    (power 2, amin from the host)
//   zero_crossings   librosa.feature.zero_crossing_rate on the signal: frames of frame_length
//                    samples centred on t * hop, padded by repeating each clip's edge samples,
//                    values within 1e-10 of zero counted as positive
//   delta            librosa.feature.delta (width 9, order 1, mode "interp") of [frames, cols]
//                    within each clip's frames
// One invocation per frame (per element for delta): every frame reads its own row, so a batch
// of clips is a wide grid; the loops over a frame's bins are the same length on every lane.

struct Params {
    grid: vec4<u32>,
    frames: u32, n_bins: u32, n_fft: u32, cols: u32,
    bin_hz: f32, roll_percent: f32, amin: f32, zero_threshold: f32,
    frame_length: u32, hop: u32, sig_width: u32, sig_shift: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- spectral_shape ----
@group(0) @binding(1) var spectra: texture_2d<f32>;                 // row f: power, four bins a texel
@group(0) @binding(2) var<storage, read_write> rms: array<f32>;     // [frames] each
@group(0) @binding(3) var<storage, read_write> centroid: array<f32>;
@group(0) @binding(4) var<storage, read_write> bandwidth: array<f32>;
@group(0) @binding(5) var<storage, read_write> rolloff: array<f32>;
@group(0) @binding(6) var<storage, read_write> flatness: array<f32>;

// float32's smallest normal value: librosa's normalize leaves a frame whose magnitudes sum
// below it unscaled (numpy's tiny).
const TINY: f32 = 1.17549435e-38;

fn bin_power(f: u32, b: u32) -> f32 {
    return textureLoad(spectra, vec2<u32>(b / 4u, f), 0)[b % 4u];
}

@compute @workgroup_size(64, 1, 1)
fn spectral_shape(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let f = flat_index(wid, nwg, p.grid, lid, 64u);
    if (f >= p.frames) { return; }
    let last = p.n_bins - 1u;
    // First pass: the sums every descriptor needs.
    var total = 0.0;        // sum of magnitudes
    var weighted = 0.0;     // sum of frequency x magnitude
    var energy = 0.0;       // rms's sum of |X|^2, DC and Nyquist halved
    var power_sum = 0.0;    // flatness: sum of max(amin, |X|^2)
    for (var b = 0u; b < p.n_bins; b++) {
        let power = bin_power(f, b);
        let m = sqrt(power);
        total += m;
        weighted += f32(b) * p.bin_hz * m;
        energy += select(power, 0.5 * power, b == 0u || (b == last && p.n_fft % 2u == 0u));
        power_sum += max(p.amin, power);
    }
    let norm = select(1.0, total, total >= TINY);
    let c = weighted / norm;
    // Second pass: the spread about the centroid; the first bin whose running sum of magnitudes
    // (summed in the order numpy's cumsum sums them) reaches the rolloff share; the logs of the
    // clamped powers relative to their mean (the geometric over the arithmetic mean is the
    // exponential of their mean: near 1 for flat spectra, where a sum of raw logs of about -23
    // each would lose four digits).
    let n = f32(p.n_bins);
    let power_mean = power_sum / n;
    var log_sum = 0.0;
    let threshold = p.roll_percent * total;
    var spread = 0.0;
    var running = 0.0;
    var roll = -1.0;
    for (var b = 0u; b < p.n_bins; b++) {
        let power = bin_power(f, b);
        let m = sqrt(power);
        log_sum += log(max(p.amin, power) / power_mean);
        let d = f32(b) * p.bin_hz - c;
        spread += m / norm * d * d;
        running += m;
        if (roll < 0.0 && running >= threshold) { roll = f32(b) * p.bin_hz; }
    }
    rms[f] = sqrt(2.0 * energy / (f32(p.n_fft) * f32(p.n_fft)));
    centroid[f] = c;
    bandwidth[f] = sqrt(spread);
    rolloff[f] = max(roll, 0.0);
    flatness[f] = exp(log_sum / n);
}

// ---- zero_crossings ----
@group(0) @binding(1) var signal: texture_2d<f32>;                  // all clips back to back
@group(0) @binding(2) var<storage, read> clips: array<vec4<u32>>;   // start, len, first frame, frames
@group(0) @binding(3) var<storage, read> frame_clip: array<u32>;
@group(0) @binding(4) var<storage, read_write> zcr: array<f32>;     // [frames]

fn sample(s: u32) -> f32 {
    let t = s / 4u;
    return textureLoad(signal, vec2<u32>(t & (p.sig_width - 1u), t >> p.sig_shift), 0)[s % 4u];
}

@compute @workgroup_size(64, 1, 1)
fn zero_crossings(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let f = flat_index(wid, nwg, p.grid, lid, 64u);
    if (f >= p.frames) { return; }
    let clip = clips[frame_clip[f]];
    let t = f - clip.z;
    // Sample k of the frame is clip sample t * hop - frame_length / 2 + k, clamped to the clip
    // (numpy's "edge" padding).
    let origin = i32(t * p.hop) - i32(p.frame_length / 2u);
    let last = i32(clip.y) - 1;
    var crossings = 0u;
    var before = sample(clip.x + u32(clamp(origin, 0, last))) < -p.zero_threshold;
    for (var k = 1; k < i32(p.frame_length); k++) {
        let negative = sample(clip.x + u32(clamp(origin + k, 0, last))) < -p.zero_threshold;
        crossings += u32(negative != before);
        before = negative;
    }
    zcr[f] = f32(crossings) / f32(p.frame_length);
}

// ---- delta ----
@group(0) @binding(1) var<storage, read> rows_clip: array<u32>;     // [frames]: the clip of each row
@group(0) @binding(2) var<storage, read> clip_table: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<f32>;             // [frames, cols]
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;      // [frames, cols]

// Interior frames: the least-squares slope over the 9 frames around them; the 4 frames at each
// end of a clip take the slope of the line through its first (last) 9 frames, which is what
// savgol_filter's "interp" mode evaluates there for a first-order fit. A clip of fewer than 9
// frames (librosa refuses it) takes the slope of the line through all of its frames.
@compute @workgroup_size(64, 1, 1)
fn delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.frames * p.cols) { return; }
    let row = i / p.cols;
    let col = i % p.cols;
    let clip = clip_table[rows_clip[row]];
    let first = clip.z;
    let n = clip.w;
    var start = 0u;
    var count = n;
    if (n >= 9u) {
        start = clamp(row - first, 4u, n - 5u) - 4u;
        count = 9u;
    }
    let mid = f32(count - 1u) / 2.0;
    var num = 0.0;
    var den = 0.0;
    for (var k = 0u; k < count; k++) {
        let w = f32(k) - mid;
        num += w * x[(first + start + k) * p.cols + col];
        den += w * w;
    }
    dx[i] = select(0.0, num / den, den > 0.0);
}
