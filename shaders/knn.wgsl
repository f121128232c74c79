// k-nearest-neighbour selection: for each query row i, the k training rows j with the smallest
// squared Euclidean distance d[i, j] = max(0, xn[i] + cn[j] - 2 dots[i, j]), where dots = X C^T
// comes from one GEMM and xn, cn are the rows' squared norms (kernel.wgsl's sq_norms). Ties go
// to the lower training index, so the order is deterministic: (d, j) ascending.
//
// One workgroup of 64 invocations per query: each scans every 64th training row keeping its own
// sorted top k (k <= MAX_K) in registers, the 64 lists meet in workgroup memory, and invocation 0
// merges their heads k times. One barrier per query, so lavapipe's slow barriers do not matter.

const MAX_K: u32 = 16u;

struct Params {
    grid: vec4<u32>,
    rows: u32, cols: u32, k: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dots: array<f32>;
@group(0) @binding(2) var<storage, read> xn: array<f32>;
@group(0) @binding(3) var<storage, read> cn: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_index: array<u32>;
@group(0) @binding(5) var<storage, read_write> out_dist: array<f32>;

var<workgroup> list_d: array<f32, 1024>;
var<workgroup> list_i: array<u32, 1024>;

const NONE: u32 = 0xffffffffu;

// (d, i) before (e, j)?
fn before(d: f32, i: u32, e: f32, j: u32) -> bool {
    return d < e || (d == e && i < j);
}

@compute @workgroup_size(64, 1, 1)
fn knn_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let g = logical_workgroup(wid, nwg, p.grid);
    let row = g.x;
    let live = g.w != 0u && row < p.rows;
    var best_d: array<f32, 16>;
    var best_i: array<u32, 16>;
    for (var t = 0u; t < MAX_K; t++) {
        best_d[t] = 3.4e38;
        best_i[t] = NONE;
    }
    if (live) {
        let x2 = xn[row];
        for (var j = lid; j < p.cols; j += 64u) {
            let d = max(0.0, x2 + cn[j] - 2.0 * dots[row * p.cols + j]);
            // Insertion into the sorted list of the k best so far.
            if (before(d, j, best_d[p.k - 1u], best_i[p.k - 1u])) {
                var t = p.k - 1u;
                while (t > 0u && before(d, j, best_d[t - 1u], best_i[t - 1u])) {
                    best_d[t] = best_d[t - 1u];
                    best_i[t] = best_i[t - 1u];
                    t -= 1u;
                }
                best_d[t] = d;
                best_i[t] = j;
            }
        }
    }
    for (var t = 0u; t < MAX_K; t++) {
        list_d[lid * MAX_K + t] = best_d[t];
        list_i[lid * MAX_K + t] = best_i[t];
    }
    workgroupBarrier();
    if (lid != 0u || !live) { return; }
    // Merge: each of the 64 lists is sorted; take the smallest head k times.
    var head: array<u32, 64>;
    for (var l = 0u; l < 64u; l++) { head[l] = 0u; }
    for (var t = 0u; t < p.k; t++) {
        var bl = 0u;
        var bd = 3.4e38;
        var bi = NONE;
        for (var l = 0u; l < 64u; l++) {
            if (head[l] < p.k) {
                let d = list_d[l * MAX_K + head[l]];
                let i = list_i[l * MAX_K + head[l]];
                if (i != NONE && before(d, i, bd, bi)) {
                    bd = d;
                    bi = i;
                    bl = l;
                }
            }
        }
        if (bi != NONE) { head[bl] += 1u; }
        out_index[row * p.k + t] = bi;
        out_dist[row * p.k + t] = bd;
    }
}
