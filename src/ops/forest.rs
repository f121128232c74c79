//! Random-forest kernels (shaders/forest.wgsl): class histograms per node from binned features,
//! the best Gini split per node, routing rows to children, and evaluating every tree for every
//! query. The float64 references below are what the tests and `ser selftest` hold them to.

use super::groups;
use crate::gpu::{ShaderFile, Access, DType, KernelSpec, Step, Tensor};
use anyhow::{Result, bail};

pub const FOREST_WGSL: ShaderFile = ShaderFile {
    name: "forest.wgsl",
    source: include_str!("../../shaders/forest.wgsl"),
    needs_f16: false,
    needs_subgroups: false,
    needs_cooperative_matrix: false,
    bounds_proven: &[],
};

/// Classes the split kernel keeps in registers.
pub const MAX_CLASSES: usize = 16;
/// Bins per feature (bins are u32, but more than this buys nothing on a few thousand rows).
pub const MAX_BINS: usize = 256;
/// A leaf (feature), no split (candidate), or a row out of the level (node).
pub const NONE: u32 = u32::MAX;
/// In a routing entry's feature: the node found no split and tries other candidates at the
/// next level, its rows going to the entry's third value.
pub const STAY: u32 = u32::MAX - 1;

const HISTOGRAM: KernelSpec = KernelSpec {
    shader: &FOREST_WGSL,
    entry: "forest_histogram",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};
const SPLIT: KernelSpec = KernelSpec { shader: &FOREST_WGSL, entry: "forest_split", bindings: &[Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite] };
const ROUTE: KernelSpec = KernelSpec { shader: &FOREST_WGSL, entry: "forest_route", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
const LEAVES: KernelSpec = KernelSpec {
    shader: &FOREST_WGSL,
    entry: "forest_leaves",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};
const VOTE: KernelSpec = KernelSpec { shader: &FOREST_WGSL, entry: "forest_vote", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };

/// The sizes one growth pass works with.
#[derive(Clone, Copy, Debug)]
pub struct GrowShape {
    pub rows: usize,
    pub features: usize,
    pub trees: usize,
    pub candidates: usize,
    pub bins: usize,
    pub classes: usize,
    pub min_leaf: usize,
}

impl GrowShape {
    /// u32 entries of one node's histogram: candidates x bins x (classes + 1).
    pub fn per_node(&self) -> usize {
        self.candidates * self.bins * (self.classes + 1)
    }

    fn check(&self) -> Result<()> {
        if self.classes == 0 || self.classes > MAX_CLASSES || self.bins < 2 || self.bins > MAX_BINS || self.candidates == 0 || self.candidates > self.features || self.min_leaf == 0 {
            bail!("forest: {self:?} is out of range (1-{MAX_CLASSES} classes, 2-{MAX_BINS} bins, 1 to features candidates, min leaf >= 1)");
        }
        Ok(())
    }

    fn params(&self, node_lo: usize, node_hi: usize) -> GrowParams {
        GrowParams {
            rows: self.rows as u32,
            features: self.features as u32,
            trees: self.trees as u32,
            candidates: self.candidates as u32,
            bins: self.bins as u32,
            classes: self.classes as u32,
            node_lo: node_lo as u32,
            node_hi: node_hi as u32,
            min_leaf: self.min_leaf as u32,
            _pad: [0; 3],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct GrowParams {
    rows: u32,
    features: u32,
    trees: u32,
    candidates: u32,
    bins: u32,
    classes: u32,
    node_lo: u32,
    node_hi: u32,
    min_leaf: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct EvalParams {
    queries: u32,
    features: u32,
    trees: u32,
    classes: u32,
    max_depth: u32,
    _pad: [u32; 3],
}

fn expect(t: &Tensor, len: usize, dtype: DType, what: &str) -> Result<()> {
    if t.len() != len || t.dtype() != dtype {
        bail!("forest: {what} is {:?} {:?}, expected {len} {dtype:?} values", t.shape(), t.dtype());
    }
    Ok(())
}

/// Clears the part of `hist` that nodes `node_lo..node_hi` use, then adds their rows to it:
/// `hist` [(hi - lo), candidates, bins, classes + 1]. `bins` [rows, features] u32,
/// `labels` [rows], `boot` and `node` [trees, rows], `cand` [level nodes, candidates].
#[allow(clippy::too_many_arguments)]
pub fn histogram(step: &mut Step, s: &GrowShape, bins: &Tensor, labels: &Tensor, boot: &Tensor, node: &Tensor, cand: &Tensor, hist: &Tensor, node_lo: usize, node_hi: usize) -> Result<()> {
    s.check()?;
    expect(bins, s.rows * s.features, DType::U32, "bins")?;
    expect(labels, s.rows, DType::U32, "labels")?;
    expect(boot, s.trees * s.rows, DType::U32, "bootstrap counts")?;
    expect(node, s.trees * s.rows, DType::U32, "row nodes")?;
    if cand.len() < node_hi * s.candidates || hist.len() < (node_hi - node_lo) * s.per_node() || node_lo >= node_hi {
        bail!("forest: nodes {node_lo}..{node_hi} do not fit candidates {:?} and histogram {:?}", cand.shape(), hist.shape());
    }
    let p = s.params(node_lo, node_hi);
    step.zero_prefix(hist, (node_hi - node_lo) * s.per_node());
    step.dispatch(&HISTOGRAM, &[], &[bins, labels, boot, node, cand, hist], bytemuck::bytes_of(&p), [groups(s.trees * s.rows, 64)?, 1, 1], "forest.histogram")
}

/// The best split of each node `node_lo..node_hi` from `hist`: `best` [level nodes, 3]
/// (candidate slot and bin, NONE when the node is pure, has fewer than 2 min_leaf rows, or no
/// candidate split leaves min_leaf rows each side; then the next non-empty bin of that
/// candidate, the other end of the cuts that split the rows alike) and `totals` [level nodes, classes + 1]
/// (bootstrap-weighted class counts, distinct rows).
#[allow(clippy::too_many_arguments)]
pub fn split(step: &mut Step, s: &GrowShape, class_weight: &Tensor, hist: &Tensor, best: &Tensor, totals: &Tensor, node_lo: usize, node_hi: usize) -> Result<()> {
    s.check()?;
    expect(class_weight, s.classes, DType::F32, "class weights")?;
    if best.len() < 3 * node_hi || totals.len() < (s.classes + 1) * node_hi || hist.len() < (node_hi - node_lo) * s.per_node() || node_lo >= node_hi {
        bail!("forest: nodes {node_lo}..{node_hi} do not fit outputs {:?}/{:?} and histogram {:?}", best.shape(), totals.shape(), hist.shape());
    }
    let p = s.params(node_lo, node_hi);
    step.dispatch(&SPLIT, &[], &[class_weight, hist, best, totals], bytemuck::bytes_of(&p), [groups(node_hi - node_lo, 64)?, 1, 1], "forest.split")
}

/// Moves every row of `node` [trees, rows] to its node's child (`splits` [level nodes, 3]:
/// feature, bin, the left child's index in the next level), keeps it in its node at the index
/// given (feature STAY), or takes it out (feature NONE: a leaf).
pub fn route(step: &mut Step, s: &GrowShape, bins: &Tensor, splits: &Tensor, node: &Tensor) -> Result<()> {
    expect(bins, s.rows * s.features, DType::U32, "bins")?;
    expect(node, s.trees * s.rows, DType::U32, "row nodes")?;
    if !splits.len().is_multiple_of(3) || splits.dtype() != DType::U32 {
        bail!("forest: splits {:?} must be [level nodes, 3] u32", splits.shape());
    }
    let p = s.params(0, 0);
    step.dispatch(&ROUTE, &[], &[bins, splits, node], bytemuck::bytes_of(&p), [groups(s.trees * s.rows, 64)?, 1, 1], "forest.route")
}

/// A grown forest on the GPU, ready to evaluate: nodes of every tree in one array.
pub struct ForestTensors<'a> {
    pub roots: &'a Tensor,
    pub feature: &'a Tensor,
    pub threshold: &'a Tensor,
    pub left: &'a Tensor,
    pub value: &'a Tensor,
    pub classes: usize,
    /// Edges on the longest root-to-leaf path (bounds each walk).
    pub depth: usize,
}

/// Class probabilities `proba` [queries, classes]: the mean over trees of the leaf each query
/// reaches; `leaf` [queries, trees] is scratch.
pub fn evaluate(step: &mut Step, f: &ForestTensors, x: &Tensor, leaf: &Tensor, proba: &Tensor) -> Result<()> {
    let (m, width) = super::rows_cols(x, "forest: queries")?;
    let (trees, nodes) = (f.roots.len(), f.feature.len());
    expect(f.threshold, nodes, DType::F32, "thresholds")?;
    expect(f.left, nodes, DType::U32, "children")?;
    expect(f.value, nodes * f.classes, DType::F32, "leaf values")?;
    expect(leaf, m * trees, DType::U32, "leaf scratch")?;
    expect(proba, m * f.classes, DType::F32, "probabilities")?;
    let p = EvalParams { queries: m as u32, features: width as u32, trees: trees as u32, classes: f.classes as u32, max_depth: (f.depth + 1) as u32, _pad: [0; 3] };
    step.dispatch(&LEAVES, &[], &[x, f.roots, f.feature, f.threshold, f.left, leaf], bytemuck::bytes_of(&p), [groups(m * trees, 64)?, 1, 1], "forest.leaves")?;
    step.dispatch(&VOTE, &[], &[leaf, f.value, proba], bytemuck::bytes_of(&p), [groups(m * f.classes, 64)?, 1, 1], "forest.vote")
}

/// Reference histogram: what [`histogram`] adds for nodes `node_lo..node_hi`.
#[allow(clippy::too_many_arguments)]
pub fn histogram_reference(s: &GrowShape, bins: &[u32], labels: &[u32], boot: &[u32], node: &[u32], cand: &[u32], node_lo: usize, node_hi: usize) -> Vec<u32> {
    let mut h = vec![0u32; (node_hi - node_lo) * s.per_node()];
    let ch = s.classes + 1;
    for e in 0..s.trees * s.rows {
        let g = node[e] as usize;
        if node[e] == NONE || g < node_lo || g >= node_hi || boot[e] == 0 {
            continue;
        }
        let i = e % s.rows;
        for c in 0..s.candidates {
            let f = cand[g * s.candidates + c] as usize;
            let base = (((g - node_lo) * s.candidates + c) * s.bins + bins[i * s.features + f] as usize) * ch;
            h[base + labels[i] as usize] += boot[e];
            h[base + s.classes] += 1;
        }
    }
    h
}

/// The split score in float64 (larger is better: sum over the two sides of sum_c w_c^2 / w,
/// which orders splits as their weighted Gini impurity does, reversed) of cutting one node's
/// candidate histogram `h` [bins, classes + 1] after bin `b`, or None when a side has fewer
/// than `min_leaf` rows or no weight.
pub fn split_score(h: &[u32], classes: usize, weight: &[f32], b: usize, min_leaf: usize) -> Option<f64> {
    let ch = classes + 1;
    let bins = h.len() / ch;
    if b + 1 >= bins {
        return None;
    }
    let (mut left, mut total) = (vec![0f64; ch], vec![0f64; ch]);
    for (k, row) in h.chunks(ch).enumerate() {
        for c in 0..ch {
            total[c] += row[c] as f64;
            if k <= b {
                left[c] += row[c] as f64;
            }
        }
    }
    if left[classes] < min_leaf as f64 || total[classes] - left[classes] < min_leaf as f64 {
        return None;
    }
    let (mut wl, mut wr, mut sl, mut sr) = (0.0, 0.0, 0.0, 0.0);
    for c in 0..classes {
        let (l, r) = (weight[c] as f64 * left[c], weight[c] as f64 * (total[c] - left[c]));
        (wl, wr, sl, sr) = (wl + l, wr + r, sl + l * l, sr + r * r);
    }
    (wl > 0.0 && wr > 0.0).then(|| sl / wl + sr / wr)
}

/// Whether a node with `total` [classes + 1] (class counts, distinct rows) may be split at all:
/// at least two classes with weight, and 2 min_leaf (and 2) rows.
pub fn may_split(total: &[u32], weight: &[f32], min_leaf: usize) -> bool {
    let classes = total.len() - 1;
    let present = (0..classes).filter(|&c| total[c] > 0 && weight[c] > 0.0).count();
    present > 1 && total[classes] as usize >= (2 * min_leaf).max(2)
}

/// Reference walk: the leaf of tree `root` that `x` reaches.
pub fn walk_reference(x: &[f32], root: u32, feature: &[u32], threshold: &[f32], left: &[u32]) -> u32 {
    let mut v = root as usize;
    while feature[v] != NONE {
        v = left[v] as usize + if x[feature[v] as usize] <= threshold[v] { 0 } else { 1 };
    }
    v as u32
}
