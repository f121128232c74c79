// Softmax cross-entropy with per-class weights, fused with its gradient. One invocation per row
// of logits [batch, classes]:
//   p = softmax(z),  loss[i] = -w[y_i] * log p[y_i],  dz[i, j] = w[y_i] * (p[i, j] - [j == y_i]) / batch
// which is the gradient of mean_i loss[i] (Keras's class_weight convention: weighted sum over the
// batch divided by the batch size). log p is computed as z - max - log(sum exp(z - max)).

struct Params {
    grid: vec4<u32>,
    batch: u32, classes: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> class_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;    // [batch]
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>; // [batch, classes]

@compute @workgroup_size(64, 1, 1)
fn softmax_cross_entropy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= p.batch) { return; }
    let row = i * p.classes;
    var m = -3.40282347e38;
    for (var j = 0u; j < p.classes; j++) { m = max(m, logits[row + j]); }
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) { sum += exp(logits[row + j] - m); }
    let log_sum = log(sum);
    let y = labels[i];
    let w = class_weight[y];
    loss[i] = -w * (logits[row + y] - m - log_sum);
    let scale = w / f32(p.batch);
    for (var j = 0u; j < p.classes; j++) {
        let prob = exp(logits[row + j] - m - log_sum);
        dlogits[row + j] = scale * (prob - select(0.0, 1.0, j == y));
    }
}
