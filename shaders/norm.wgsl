// Per-column statistics and batch normalisation over the rows of [rows, cols] matrices (rows =
// batch x positions, cols = channels or features), as Keras's BatchNormalization computes it:
// batch mean and biased variance in training, moving averages updated with momentum.
// The affine parameters are one interleaved [cols, 2] tensor (beta, gamma), the same layout as
// their gradient (dbeta, dgamma), so the optimiser updates them as one tensor.
//
// The rows come in groups of `steps` (one example's positions). Every reduction runs in two
// passes: one invocation per (group, column) reduces its group's rows into a partial, then one
// invocation per column combines the groups' partials in group order. Real GPUs get groups x
// columns invocations instead of a few hundred looping over every row of the batch, no
// invocation loops longer than max(steps, groups) (llvmpipe stops loops at 65,535), and a
// group's partial does not depend on how many rows the batch carries past it.
//   column_group_sums  parts[g, j] = sum over group g's rows of x[i, j]  (bias gradients; then
//                      column_sum over the [groups, cols] partials)
//   column_sum         out[j] = sum_i x[i, j]
//   bn_stat_parts      parts[g, j] = (count, mean, M2) of group g's counted rows (two passes)
//   bn_stats           mean, 1/sqrt(var + eps) per column from the parts (Chan et al.'s
//                      pairwise combination); moving averages updated in place
//   bn_forward         y = gamma (x - mean) rstd + beta  (batch statistics, or moving ones when
//                      EVAL, where rstd is computed from the moving variance)
//   bn_grad_parts      parts[g, j] = (sum dy, sum dy xhat) over group g's counted rows
//   bn_grad_stats      per column: (dbeta, dgamma) = the sum of the parts
//   bn_backward        dx = gamma rstd / n (n dy - dbeta - xhat dgamma), n the rows counted
// Partials are written through `y` (binding 6) and read back through `x` (binding 1), as flat
// f32 arrays.
//
// Over sequences (VALID_STEPS): only each group's first lengths[g] steps count. Statistics and
// gradient sums then run over those rows alone (valid_rows of them), the padded rows' outputs
// and input gradients are zero: whatever a batch carries past a clip changes nothing in
// training or inference.

override EVAL: bool = false;
override VALID_STEPS: bool = false;

struct Params {
    grid: vec4<u32>,
    rows: u32, cols: u32, steps: u32, valid_rows: u32,
    eps: f32, momentum: f32, _pad2: f32, _pad3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> affine: array<vec2<f32>>;       // [cols]: beta, gamma
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;   // [cols]: mean, rstd
@group(0) @binding(5) var<storage, read_write> moving: array<vec2<f32>>;  // [cols]: mean, variance
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read> lengths: array<u32>;            // [rows / steps]

// Valid steps of sequence b.
fn valid_steps(b: u32) -> u32 {
    if (VALID_STEPS) { return min(lengths[b], p.steps); }
    return p.steps;
}

fn row_is_valid(r: u32) -> bool {
    return !VALID_STEPS || r % p.steps < valid_steps(r / p.steps);
}

fn column(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    let j = flat_index(wid, nwg, p.grid, lid, 64u);
    return select(0xffffffffu, j, j < p.cols);
}

// (group, column) of this invocation of a per-group pass, or x = 0xffffffff past the grid.
fn group_column(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec2<u32> {
    let i = flat_index(wid, nwg, p.grid, lid, 64u);
    if (i >= (p.rows / p.steps) * p.cols) { return vec2<u32>(0xffffffffu, 0u); }
    return vec2<u32>(i / p.cols, i % p.cols);
}

@compute @workgroup_size(64, 1, 1)
fn column_group_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let gj = group_column(wid, nwg, lid);
    if (gj.x == 0xffffffffu) { return; }
    let first = gj.x * p.steps;
    var s = 0.0;
    for (var r = first; r < first + p.steps; r++) { s += x[r * p.cols + gj.y]; }
    y[gj.x * p.cols + gj.y] = s;
}

@compute @workgroup_size(64, 1, 1)
fn column_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let j = column(wid, nwg, lid);
    if (j == 0xffffffffu) { return; }
    var s = 0.0;
    for (var i = 0u; i < p.rows; i++) { s += x[i * p.cols + j]; }
    y[j] = s;
}

@compute @workgroup_size(64, 1, 1)
fn bn_stat_parts(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let gj = group_column(wid, nwg, lid);
    if (gj.x == 0xffffffffu) { return; }
    let j = gj.y;
    let first = gj.x * p.steps;
    let n = valid_steps(gj.x);
    var s = 0.0;
    for (var r = first; r < first + n; r++) { s += x[r * p.cols + j]; }
    let mean = select(0.0, s / f32(n), n > 0u);
    // Two passes: the variance of centred values does not cancel catastrophically.
    var m2 = 0.0;
    for (var r = first; r < first + n; r++) {
        let d = x[r * p.cols + j] - mean;
        m2 += d * d;
    }
    let k = 3u * (gj.x * p.cols + j);
    y[k] = f32(n);
    y[k + 1u] = mean;
    y[k + 2u] = m2;
}

// Here binding 1 holds bn_stat_parts' partials.
@compute @workgroup_size(64, 1, 1)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let j = column(wid, nwg, lid);
    if (j == 0xffffffffu) { return; }
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var g = 0u; g < p.rows / p.steps; g++) {
        let k = 3u * (g * p.cols + j);
        let n_g = x[k];
        if (n_g == 0.0) { continue; }
        let total = n + n_g;
        let d = x[k + 1u] - mean;
        mean += d * (n_g / total);
        m2 += x[k + 2u] + d * d * (n * n_g / total);
        n = total;
    }
    let var_ = m2 / n;
    stats[j] = vec2<f32>(mean, inverseSqrt(var_ + p.eps));
    let mv = moving[j];
    moving[j] = vec2<f32>(p.momentum * mv.x + (1.0 - p.momentum) * mean, p.momentum * mv.y + (1.0 - p.momentum) * var_);
}

// The elementwise passes run one invocation per (column, block of BN_ROWS rows): the column's
// statistics and affine parameters are loaded once per block, not once per element (buffer
// loads are the costly part on llvmpipe); neighbouring invocations take neighbouring columns.
override BN_ROWS: u32 = 8u;  // set by the host (ops::norm)

// (column, first row) of this invocation's block, or x = 0xffffffff past the grid.
fn bn_block(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec2<u32> {
    let i = flat_index(wid, nwg, p.grid, lid, 256u);
    let blocks = (p.rows + BN_ROWS - 1u) / BN_ROWS;
    if (i >= blocks * p.cols) { return vec2<u32>(0xffffffffu, 0u); }
    return vec2<u32>(i % p.cols, (i / p.cols) * BN_ROWS);
}

@compute @workgroup_size(256, 1, 1)
fn bn_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let b = bn_block(wid, nwg, lid);
    if (b.x == 0xffffffffu) { return; }
    let j = b.x;
    var mean: f32;
    var rstd: f32;
    if (EVAL) {
        let mv = moving[j];
        mean = mv.x;
        rstd = inverseSqrt(mv.y + p.eps);
    } else {
        let st = stats[j];
        mean = st.x;
        rstd = st.y;
    }
    let a = affine[j];
    for (var r = b.y; r < min(b.y + BN_ROWS, p.rows); r++) {
        let i = r * p.cols + j;
        y[i] = select(0.0, a.y * (x[i] - mean) * rstd + a.x, row_is_valid(r));
    }
}

// Binding 3 holds dy; binding 6 receives (dbeta, dgamma) pairs in bn_grad_stats.
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_stats: array<vec2<f32>>;

@compute @workgroup_size(64, 1, 1)
fn bn_grad_parts(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let gj = group_column(wid, nwg, lid);
    if (gj.x == 0xffffffffu) { return; }
    let j = gj.y;
    let st = stats[j];
    let first = gj.x * p.steps;
    let end = first + valid_steps(gj.x);
    var sum_dy = 0.0;
    var sum_dy_xhat = 0.0;
    for (var r = first; r < end; r++) {
        let k = r * p.cols + j;
        sum_dy += dy[k];
        sum_dy_xhat += dy[k] * (x[k] - st.x) * st.y;
    }
    let k = 2u * (gj.x * p.cols + j);
    y[k] = sum_dy;
    y[k + 1u] = sum_dy_xhat;
}

// Here binding 1 holds bn_grad_parts' partials.
@compute @workgroup_size(64, 1, 1)
fn bn_grad_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let j = column(wid, nwg, lid);
    if (j == 0xffffffffu) { return; }
    var sums = vec2<f32>(0.0);
    for (var g = 0u; g < p.rows / p.steps; g++) {
        let k = 2u * (g * p.cols + j);
        sums += vec2<f32>(x[k], x[k + 1u]);
    }
    grad_stats[j] = sums;
}

// x is the layer input, binding 3 holds dy, moving holds (dbeta, dgamma) from bn_grad_stats, y is dx.
@compute @workgroup_size(256, 1, 1)
fn bn_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let b = bn_block(wid, nwg, lid);
    if (b.x == 0xffffffffu) { return; }
    let j = b.x;
    let st = stats[j];
    let gs = moving[j];
    let n = f32(p.valid_rows);
    let scale = affine[j].y * st.y / n;
    for (var r = b.y; r < min(b.y + BN_ROWS, p.rows); r++) {
        let i = r * p.cols + j;
        let xhat = (x[i] - st.x) * st.y;
        y[i] = select(0.0, scale * (n * dy[i] - gs.x - xhat * gs.y), row_is_valid(r));
    }
}
