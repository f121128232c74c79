// Random forest growth and evaluation (src/ops/forest.rs holds the host side and the float64
// references). Trees grow level by level, every tree of the forest at once:
//
//   forest_histogram  per (tree, training row): the row's bootstrap count added to the class
//                     histogram of its node, for each of the node's candidate features at the
//                     row's bin of that feature; one more channel counts distinct rows (for
//                     min_samples_leaf). u32 atomics: bootstrap counts are integers, and the class
//                     weights (which depend only on the class) are applied when splitting.
//   forest_split      per node: the (candidate, bin) split with the lowest weighted Gini impurity
//                     of its two sides (the largest sum over sides of sum_c w_c^2 / w), among those
//                     leaving at least min_leaf distinct rows on each side; also the node's class
//                     totals. A pure node, or one with fewer than 2 min_leaf rows, is a leaf
//                     whatever its candidates: it stops after the totals (half the nodes of
//                     fully grown trees). The host clears the histogram between chunks.
//   forest_route      per (tree, training row): the row moves to the left (bin <= split bin) or
//                     right child of its node, stays (the node retries other candidates) or leaves
//                     the level when its node became a leaf.
//   forest_leaves     per (query, tree): the leaf the query reaches (x <= threshold goes left).
//   forest_vote       per (query, class): the mean over trees of the leaves' class probabilities.

const NONE: u32 = 0xffffffffu;
// A node that found no split among its candidates and tries others at the next level.
const STAY: u32 = 0xfffffffeu;
const MAX_CLASSES: u32 = 16u;

struct GrowParams {
    grid: vec4<u32>,
    rows: u32,       // training rows n
    features: u32,   // F
    trees: u32,      // T
    candidates: u32, // features tried per node
    bins: u32,       // B
    classes: u32,    // C (the histogram has C + 1 channels)
    node_lo: u32,    // this chunk's nodes: level indices node_lo .. node_hi
    node_hi: u32,
    min_leaf: u32,
    _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> gp: GrowParams;

// ---- forest_histogram ----
@group(0) @binding(1) var<storage, read> h_bins: array<u32>;        // [n, F] bin of every value
@group(0) @binding(2) var<storage, read> h_labels: array<u32>;      // [n]
@group(0) @binding(3) var<storage, read> h_boot: array<u32>;        // [T, n] bootstrap counts
@group(0) @binding(4) var<storage, read> h_node: array<u32>;        // [T, n] level index or NONE
@group(0) @binding(5) var<storage, read> h_cand: array<u32>;        // [L, candidates] features
@group(0) @binding(6) var<storage, read_write> h_hist: array<atomic<u32>>; // [chunk, cand, B, C + 1]

@compute @workgroup_size(64, 1, 1)
fn forest_histogram(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, gp.grid, lid, 64u);
    if (e >= gp.trees * gp.rows) { return; }
    let g = h_node[e];
    if (g == NONE || g < gp.node_lo || g >= gp.node_hi) { return; }
    let count = h_boot[e];
    if (count == 0u) { return; }
    let i = e % gp.rows;
    let y = h_labels[i];
    let channels = gp.classes + 1u;
    for (var s = 0u; s < gp.candidates; s++) {
        let f = h_cand[g * gp.candidates + s];
        let b = h_bins[i * gp.features + f];
        let base = (((g - gp.node_lo) * gp.candidates + s) * gp.bins + b) * channels;
        atomicAdd(&h_hist[base + y], count);
        atomicAdd(&h_hist[base + gp.classes], 1u);
    }
}

// ---- forest_split ----
@group(0) @binding(1) var<storage, read> s_weight: array<f32>;                // [C] class weights
@group(0) @binding(2) var<storage, read> s_hist: array<u32>;                  // as h_hist
@group(0) @binding(3) var<storage, read_write> s_best: array<u32>;            // [L, 3] candidate, bin (NONE: no split), next non-empty bin
@group(0) @binding(4) var<storage, read_write> s_totals: array<u32>;          // [L, C + 1]

@compute @workgroup_size(64, 1, 1)
fn forest_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, gp.grid, lid, 64u);
    if (e >= gp.node_hi - gp.node_lo) { return; }
    let g = gp.node_lo + e;
    let channels = gp.classes + 1u;
    let node_base = e * gp.candidates * gp.bins * channels;
    // The node's totals, from its first candidate's histogram (each candidate's sums to them).
    var total: array<u32, 17>;
    for (var c = 0u; c <= MAX_CLASSES; c++) { total[c] = 0u; }
    // Empty bins (most of them in the small nodes deep in a tree) are skipped after one load
    // of their row count: a cut after an empty bin is the cut after the bin before it.
    for (var b = 0u; b < gp.bins; b++) {
        let at = node_base + b * channels;
        if (s_hist[at + gp.classes] == 0u) { continue; }
        for (var c = 0u; c < channels; c++) {
            total[c] += s_hist[at + c];
        }
    }
    var w_total = 0.0;
    var classes_present = 0u;
    for (var c = 0u; c < gp.classes; c++) {
        w_total += s_weight[c] * f32(total[c]);
        classes_present += select(0u, 1u, total[c] > 0u && s_weight[c] > 0.0);
    }
    for (var c = 0u; c < channels; c++) { s_totals[g * channels + c] = total[c]; }
    var best_score = -1.0;
    var best_s = NONE;
    var best_b = NONE;
    // The first non-empty bin after the best cut: every cut between the two splits the node's
    // rows alike, and the host puts the threshold halfway (as scikit-learn takes the midpoint
    // between the two values either side) rather than hard against the left side's values.
    var best_next = NONE;
    let can_split = classes_present > 1u && total[gp.classes] >= 2u * gp.min_leaf && total[gp.classes] >= 2u;
    for (var s = 0u; s < select(0u, gp.candidates, can_split); s++) {
        var left: array<u32, 17>;
        for (var c = 0u; c <= MAX_CLASSES; c++) { left[c] = 0u; }
        for (var b = 0u; b < gp.bins; b++) {
            let at = node_base + (s * gp.bins + b) * channels;
            if (s_hist[at + gp.classes] == 0u) { continue; }
            if (best_s == s && best_next == NONE) { best_next = b; }
            for (var c = 0u; c < channels; c++) {
                left[c] += s_hist[at + c];
            }
            let rows_l = left[gp.classes];
            let rows_r = total[gp.classes] - rows_l;
            if (b + 1u == gp.bins || rows_l < gp.min_leaf || rows_r < gp.min_leaf) { continue; }
            var wl = 0.0;
            var sl = 0.0;
            var sr = 0.0;
            for (var c = 0u; c < gp.classes; c++) {
                let l = s_weight[c] * f32(left[c]);
                let r = s_weight[c] * f32(total[c] - left[c]);
                wl += l;
                sl += l * l;
                sr += r * r;
            }
            let wr = w_total - wl;
            if (wl <= 0.0 || wr <= 0.0) { continue; }
            let score = sl / wl + sr / wr;
            if (score > best_score) {
                best_score = score;
                best_s = s;
                best_b = b;
                best_next = NONE;
            }
        }
    }
    s_best[g * 3u] = best_s;
    s_best[g * 3u + 1u] = best_b;
    s_best[g * 3u + 2u] = best_next;
}

// ---- forest_route ----
@group(0) @binding(1) var<storage, read> r_bins: array<u32>;          // [n, F]
@group(0) @binding(2) var<storage, read> r_split: array<u32>;         // [L, 3] feature (NONE: leaf; STAY: retry), bin, left child's (or its own) next level index
@group(0) @binding(3) var<storage, read_write> r_node: array<u32>;    // [T, n]

@compute @workgroup_size(64, 1, 1)
fn forest_route(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, gp.grid, lid, 64u);
    if (e >= gp.trees * gp.rows) { return; }
    let g = r_node[e];
    if (g == NONE) { return; }
    let f = r_split[g * 3u];
    if (f == NONE) {
        r_node[e] = NONE;
        return;
    }
    if (f == STAY) {
        r_node[e] = r_split[g * 3u + 2u];
        return;
    }
    let i = e % gp.rows;
    let right = r_bins[i * gp.features + f] > r_split[g * 3u + 1u];
    r_node[e] = r_split[g * 3u + 2u] + select(0u, 1u, right);
}

// ---- forest_leaves, forest_vote ----
struct EvalParams {
    grid: vec4<u32>,
    queries: u32,
    features: u32,
    trees: u32,
    classes: u32,
    max_depth: u32,   // no walk takes more steps than the deepest leaf
    _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> ep: EvalParams;
@group(0) @binding(1) var<storage, read> l_x: array<f32>;              // [m, F]
@group(0) @binding(2) var<storage, read> l_roots: array<u32>;          // [T]
@group(0) @binding(3) var<storage, read> l_feature: array<u32>;        // [nodes] NONE for a leaf
@group(0) @binding(4) var<storage, read> l_threshold: array<f32>;      // [nodes]
@group(0) @binding(5) var<storage, read> l_left: array<u32>;           // [nodes] right = left + 1
@group(0) @binding(6) var<storage, read_write> l_leaf: array<u32>;     // [m, T]

@compute @workgroup_size(64, 1, 1)
fn forest_leaves(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, ep.grid, lid, 64u);
    if (e >= ep.queries * ep.trees) { return; }
    let q = e / ep.trees;
    var v = l_roots[e % ep.trees];
    for (var step = 0u; step < ep.max_depth; step++) {
        let f = l_feature[v];
        if (f == NONE) { break; }
        v = l_left[v] + select(1u, 0u, l_x[q * ep.features + f] <= l_threshold[v]);
    }
    l_leaf[e] = v;
}

@group(0) @binding(1) var<storage, read> v_leaf: array<u32>;           // [m, T]
@group(0) @binding(2) var<storage, read> v_value: array<f32>;          // [nodes, C]
@group(0) @binding(3) var<storage, read_write> v_proba: array<f32>;    // [m, C]

@compute @workgroup_size(64, 1, 1)
fn forest_vote(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, ep.grid, lid, 64u);
    if (e >= ep.queries * ep.classes) { return; }
    let q = e / ep.classes;
    let c = e % ep.classes;
    var sum = 0.0;
    for (var t = 0u; t < ep.trees; t++) {
        sum += v_value[v_leaf[q * ep.trees + t] * ep.classes + c];
    }
    v_proba[e] = sum / f32(ep.trees);
}
