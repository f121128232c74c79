// Per-column statistics and batch normalisation over the rows of [rows, cols] matrices (rows =
// batch x positions, cols = channels or features), as Keras's BatchNormalization computes it:
// batch mean and biased variance in training, moving averages updated with momentum.
//   column_sum      out[j] = sum_i x[i, j]                         (bias gradients)
//   bn_stats        mean, 1/sqrt(var + eps) per column; moving averages updated in place
//   bn_forward      y = gamma (x - mean) rstd + beta  (batch statistics, or moving ones when
//                   EVAL, where rstd is computed from the moving variance)
// The affine parameters are one interleaved [cols, 2] tensor (beta, gamma), the same layout as
// their gradient (dbeta, dgamma), so the optimiser updates them as one tensor.
//   bn_grad_stats   per column: dbeta = sum dy, dgamma = sum dy xhat
//   bn_backward     dx = gamma rstd / n (n dy - dbeta - xhat dgamma), n the rows counted
// One invocation per column for the reductions: columns are few (<= 512) and rows many.
//
// Over sequences (VALID_STEPS): the rows are [batch, steps] and only each sequence's first
// lengths[b] steps count. Statistics and gradient sums then run over those rows alone (valid_rows
// of them), the padded rows' outputs and input gradients are zero: whatever a batch carries past
// a clip changes nothing in training or inference. Otherwise steps = rows: one sequence, all valid.

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
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let j = column(wid, nwg, lid);
    if (j == 0xffffffffu) { return; }
    let sequences = p.rows / p.steps;
    var s = 0.0;
    for (var b = 0u; b < sequences; b++) {
        let first = b * p.steps;
        let end = first + valid_steps(b);
        for (var r = first; r < end; r++) { s += x[r * p.cols + j]; }
    }
    let mean = s / f32(p.valid_rows);
    // Two passes: the variance of centred values does not cancel catastrophically.
    var ss = 0.0;
    for (var b = 0u; b < sequences; b++) {
        let first = b * p.steps;
        let end = first + valid_steps(b);
        for (var r = first; r < end; r++) {
            let d = x[r * p.cols + j] - mean;
            ss += d * d;
        }
    }
    let var_ = ss / f32(p.valid_rows);
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

// Here x is the layer input and binding 3 holds dy; binding 6 receives (dbeta, dgamma) pairs.
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_stats: array<vec2<f32>>;

@compute @workgroup_size(64, 1, 1)
fn bn_grad_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let j = column(wid, nwg, lid);
    if (j == 0xffffffffu) { return; }
    let st = stats[j];
    var sum_dy = 0.0;
    var sum_dy_xhat = 0.0;
    for (var b = 0u; b < p.rows / p.steps; b++) {
        let first = b * p.steps;
        let end = first + valid_steps(b);
        for (var r = first; r < end; r++) {
            let k = r * p.cols + j;
            sum_dy += dy[k];
            sum_dy_xhat += dy[k] * (x[k] - st.x) * st.y;
        }
    }
    grad_stats[j] = vec2<f32>(sum_dy, sum_dy_xhat);
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
