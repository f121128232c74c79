//! Random forest classification (scikit-learn's RandomForestClassifier, grown on the GPU):
//! features binned at quantiles of the training rows, one bootstrap sample per tree, sqrt(F)
//! candidate features drawn per node, the weighted-Gini best split, trees grown until pure or
//! limited by depth / min_samples_leaf; probabilities the mean over trees of the leaves' class
//! distributions (bootstrap counts times class weights).
//!
//! Growth runs level by level for every tree at once (ops::forest): per level one pass of class
//! histograms and best splits on the GPU, a small read-back of each node's choice, the host's
//! bookkeeping of node numbers and feature draws, and one routing pass. The host never touches
//! the training rows after binning them.

use crate::dataset::Dataset;
use super::{Family, FitInput, Fitted, ModelKind, Validation, input_only};
use crate::gpu::{DType, Gpu, Tensor};
use crate::nn::checkpoint::{self, ModelMeta};
use crate::ops::forest::{self, ForestTensors, GrowShape, NONE};
use crate::rng::SplitMix64;
use crate::store::{self, Loaded, Stored};
use anyhow::{Context, Result, bail};
use safetensors::Dtype;

/// What a forest is grown with; defaults are scikit-learn's but for the trees (500, not 100:
/// better on validation) and the bins (scikit-learn
/// tries every threshold between distinct values: 64 quantile bins are within a point of it on
/// RAVDESS, docs/results/history.md, "The study's classical models against scikit-learn").
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ForestConfig {
    pub trees: usize,
    /// None: grow until pure (or min_samples_leaf stops it).
    pub max_depth: Option<usize>,
    pub min_samples_leaf: usize,
    /// Candidate features per node; None is scikit-learn's "sqrt": floor(sqrt(F)).
    pub max_features: Option<usize>,
    pub bins: usize,
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> Self {
        ForestConfig { trees: 500, max_depth: None, min_samples_leaf: 1, max_features: None, bins: 64, seed: 0 }
    }
}

/// What `--model rf` is fitted with (`ser train`'s rf flags; the names in a training record);
/// the rest of [`ForestConfig`] stays at its defaults.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// 500 rather than scikit-learn's 100: validation accuracy 0.70 against 0.67 on RAVDESS
    /// (docs/results/history.md).
    pub trees: usize,
    pub max_depth: Option<usize>,
    pub min_samples_leaf: usize,
    #[serde(rename = "rf_bins")]
    pub bins: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let fit = ForestConfig::default();
        Settings { trees: fit.trees, max_depth: fit.max_depth, min_samples_leaf: fit.min_samples_leaf, bins: fit.bins }
    }
}

/// The cut points of one feature: at most `bins - 1` values, strictly increasing, each halfway
/// between two distinct training values at (about) the k/bins quantiles. Every distinct value
/// gets its own bin when there are at most `bins` of them.
pub fn edges(values: &mut [f32], bins: usize) -> Vec<f32> {
    values.sort_by(f32::total_cmp);
    let n = values.len();
    let mut out: Vec<f32> = Vec::new();
    let mut distinct: Vec<f32> = values.to_vec();
    distinct.dedup();
    let cuts: Vec<usize> = if distinct.len() <= bins {
        (1..distinct.len()).map(|k| values.partition_point(|v| *v < distinct[k])).collect()
    } else {
        (1..bins).map(|k| k * n / bins).collect()
    };
    for t in cuts {
        if t == 0 || t >= n {
            continue;
        }
        // Between the largest value below values[t] and values[t].
        let below = values.partition_point(|v| *v < values[t]);
        if below == 0 {
            continue;
        }
        let (a, b) = (values[below - 1], values[t]);
        let mid = a + (b - a) / 2.0;
        if out.last().is_none_or(|&l| mid > l) {
            out.push(mid);
        }
    }
    out
}

/// The bin of `x` among `edges`: how many edges lie below it (so bin <= b iff x <= edges[b]).
pub fn bin_of(x: f32, edges: &[f32]) -> u32 {
    edges.partition_point(|e| *e < x) as u32
}

/// A grown forest: its nodes (every tree's, in one array; the first `trees` are the roots),
/// on the host and the GPU.
pub struct Forest {
    roots: Vec<u32>,
    feature: Vec<u32>,
    threshold: Vec<f32>,
    left: Vec<u32>,
    value: Vec<f32>,
    classes: usize,
    width: usize,
    depth: usize,
    /// What it was grown with (kept in its file).
    pub config: ForestConfig,
    gpu: [Tensor; 5],
}

/// What one growth did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ForestReport {
    pub nodes: usize,
    pub leaves: usize,
    pub depth: usize,
    pub levels: usize,
    /// Nodes that found no split among their candidates and drew others.
    pub retries: usize,
    pub seconds: f64,
}

/// Draws `k` distinct features of `f` (a partial Fisher-Yates shuffle).
fn draw<'s>(rng: &mut SplitMix64, f: usize, k: usize, scratch: &'s mut Vec<u32>) -> impl Iterator<Item = u32> + 's {
    scratch.clear();
    scratch.extend(0..f as u32);
    for i in 0..k {
        let j = i + rng.below(f - i);
        scratch.swap(i, j);
    }
    scratch[..k].iter().copied()
}

impl Forest {
    /// Grows `cfg.trees` trees on `train` with per-class weights `class_weight`.
    pub fn fit(gpu: &Gpu, train: &Dataset, classes: usize, class_weight: &[f32], cfg: &ForestConfig) -> Result<(Forest, ForestReport)> {
        let started = std::time::Instant::now();
        let (n, width) = (train.len(), train.width);
        if n == 0 || width == 0 {
            bail!("forest: no training examples");
        }
        if cfg.trees == 0 || cfg.min_samples_leaf == 0 || cfg.max_depth == Some(0) || class_weight.len() != classes {
            bail!("forest: trees {}, min_samples_leaf {}, max_depth {:?} must be at least 1, with {classes} class weights", cfg.trees, cfg.min_samples_leaf, cfg.max_depth);
        }
        if let Some(y) = train.y.iter().find(|&&y| y as usize >= classes) {
            bail!("forest: class {y} of {classes}");
        }
        let candidates = cfg.max_features.unwrap_or(((width as f64).sqrt().floor() as usize).max(1));
        if candidates == 0 || candidates > width {
            bail!("forest: {candidates} candidate features of {width}");
        }
        let shape = GrowShape { rows: n, features: width, trees: cfg.trees, candidates, bins: cfg.bins, classes, min_leaf: cfg.min_samples_leaf };
        if classes > forest::MAX_CLASSES || !(2..=forest::MAX_BINS).contains(&cfg.bins) {
            bail!("forest: {classes} classes (at most {}) and {} bins (2 to {}) are out of range", forest::MAX_CLASSES, cfg.bins, forest::MAX_BINS);
        }
        // llvmpipe ends every loop of an invocation after 65,535 iterations in all, silently: the
        // split scan (one invocation per node) and the vote (one per query and class, over the
        // trees) must stay under it there.
        let scan = candidates * cfg.bins * (2 * classes + 2) + cfg.bins * (classes + 2);
        if gpu.is_cpu() && (scan > 60_000 || cfg.trees > 60_000) {
            bail!(
                "forest: on this CPU adapter a node's split scan ({candidates} candidates x {} bins x {classes} classes = {scan} loop steps) or the vote over {} trees would pass llvmpipe's 65,535 loop iterations per invocation; use fewer --rf-bins, trees or input columns",
                cfg.bins, cfg.trees
            );
        }
        if (cfg.trees * n) as u64 >= NONE as u64 {
            bail!("forest: {} trees x {n} rows is too many for one growth", cfg.trees);
        }
        // Bins of every training value, feature by feature.
        let mut cut: Vec<Vec<f32>> = Vec::with_capacity(width);
        let mut bins = vec![0u32; n * width];
        let mut column = vec![0f32; n];
        for f in 0..width {
            for (i, v) in column.iter_mut().enumerate() {
                *v = train.x[i * width + f];
            }
            if let Some(v) = column.iter().find(|v| !v.is_finite()) {
                bail!("forest: feature {f} holds {v}");
            }
            let e = edges(&mut column, cfg.bins);
            for i in 0..n {
                bins[i * width + f] = bin_of(train.x[i * width + f], &e);
            }
            cut.push(e);
        }
        // Bootstrap counts: n draws with replacement per tree, each tree its own stream.
        let mut boot = vec![0u32; cfg.trees * n];
        for t in 0..cfg.trees {
            let mut rng = SplitMix64::new(cfg.seed ^ (0xB007 + t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for _ in 0..n {
                boot[t * n + rng.below(n)] += 1;
            }
        }
        let node: Vec<u32> = (0..cfg.trees * n).map(|e| if boot[e] > 0 { (e / n) as u32 } else { NONE }).collect();
        let bins_t = gpu.upload(&bins, &[n, width], DType::U32)?;
        let labels_t = gpu.upload(&train.y, &[n], DType::U32)?;
        let boot_t = gpu.upload(&boot, &[cfg.trees, n], DType::U32)?;
        let node_t = gpu.upload(&node, &[cfg.trees, n], DType::U32)?;
        let weight_t = gpu.upload_f32(class_weight, &[classes])?;
        // The histogram holds as many nodes as fit in 256 MiB (or the adapter's binding): each
        // chunk of nodes is one pass over every (tree, row), so fewer chunks, fewer passes.
        let budget = (gpu.max_storage_binding() as usize).min(256 << 20) / 4;
        let chunk = (budget / shape.per_node()).max(1);
        if chunk * shape.per_node() > budget {
            bail!("forest: one node's histogram ({} values) is over this adapter's storage binding", shape.per_node());
        }
        let hist_t = gpu.empty(&[chunk * shape.per_node()], DType::U32)?;

        let (mut feature, mut threshold, mut left, mut value) = (vec![NONE; cfg.trees], vec![0f32; cfg.trees], vec![0u32; cfg.trees], vec![0f32; cfg.trees * classes]);
        // The nodes of this level: node number, depth, and the features already tried when the
        // node found no split among its candidates and retries others (scikit-learn keeps drawing
        // features until one splits; a node whose candidates all hold one bin would otherwise
        // become an impure leaf).
        let mut level: Vec<(u32, usize, Vec<u32>)> = (0..cfg.trees as u32).map(|t| (t, 0, Vec::new())).collect();
        let (mut depth, mut levels, mut retries) = (0usize, 0usize, 0usize);
        let mut rng = SplitMix64::new(cfg.seed ^ 0xF0E5_7000);
        let mut scratch = Vec::new();
        let ch = classes + 1;
        while !level.is_empty() {
            let l = level.len();
            let mut cand: Vec<u32> = Vec::with_capacity(l * candidates);
            for (_, _, tried) in &level {
                if tried.is_empty() {
                    cand.extend(draw(&mut rng, width, candidates, &mut scratch));
                } else {
                    // Untried features only; fewer than `candidates` left: the first repeats.
                    let untried: Vec<u32> = (0..width as u32).filter(|f| !tried.contains(f)).collect();
                    let k = candidates.min(untried.len());
                    let drawn: Vec<u32> = draw(&mut rng, untried.len(), k, &mut scratch).map(|i| untried[i as usize]).collect();
                    cand.extend((0..candidates).map(|i| drawn[i.min(k - 1)]));
                }
            }
            let cand_t = gpu.upload(&cand, &[l, candidates], DType::U32)?;
            let (best_t, totals_t) = (gpu.empty(&[l, 3], DType::U32)?, gpu.empty(&[l, ch], DType::U32)?);
            let mut step = gpu.step("forest.level");
            for lo in (0..l).step_by(chunk) {
                let hi = (lo + chunk).min(l);
                forest::histogram(&mut step, &shape, &bins_t, &labels_t, &boot_t, &node_t, &cand_t, &hist_t, lo, hi)?;
                forest::split(&mut step, &shape, &weight_t, &hist_t, &best_t, &totals_t, lo, hi)?;
            }
            step.submit()?;
            let (best, totals) = (gpu.read::<u32>(&best_t)?, gpu.read::<u32>(&totals_t)?);
            let mut splits = vec![NONE; l * 3];
            let mut next = Vec::new();
            for (g, (v, d, tried)) in level.iter().enumerate() {
                let v = *v as usize;
                let t = &totals[g * ch..(g + 1) * ch];
                let w: Vec<f64> = (0..classes).map(|c| class_weight[c] as f64 * t[c] as f64).collect();
                let sum: f64 = w.iter().sum();
                for c in 0..classes {
                    value[v * classes + c] = if sum > 0.0 { (w[c] / sum) as f32 } else { 1.0 / classes as f32 };
                }
                if cfg.max_depth.is_some_and(|m| *d >= m) || !forest::may_split(t, class_weight, cfg.min_samples_leaf) {
                    continue;
                }
                let here = &cand[g * candidates..(g + 1) * candidates];
                if best[g * 3] == NONE {
                    let mut tried = tried.clone();
                    tried.extend(here.iter().filter(|f| !tried.contains(f)).collect::<Vec<_>>());
                    if tried.len() < width {
                        splits[g * 3..g * 3 + 3].copy_from_slice(&[forest::STAY, 0, next.len() as u32]);
                        next.push((v as u32, *d, tried));
                        retries += 1;
                    }
                    continue;
                }
                let f = here[best[g * 3] as usize];
                let (b, next_bin) = (best[g * 3 + 1], best[g * 3 + 2]);
                let child = feature.len() as u32;
                feature[v] = f;
                // Halfway along the cuts that split the rows alike (bins b to next - 1): rows on
                // the left are <= cut[b], rows on the right > cut[next - 1].
                let edges = &cut[f as usize];
                let upper = if next_bin == NONE || next_bin == 0 { b } else { next_bin - 1 };
                threshold[v] = edges[b as usize] + (edges[(upper as usize).max(b as usize)] - edges[b as usize]) / 2.0;
                left[v] = child;
                splits[g * 3..g * 3 + 3].copy_from_slice(&[f, b, next.len() as u32]);
                for _ in 0..2 {
                    next.push((feature.len() as u32, d + 1, Vec::new()));
                    feature.push(NONE);
                    threshold.push(0.0);
                    left.push(0);
                    value.extend(std::iter::repeat_n(0.0, classes));
                }
                depth = depth.max(d + 1);
            }
            levels += 1;
            if next.is_empty() {
                break;
            }
            let splits_t = gpu.upload(&splits, &[l, 3], DType::U32)?;
            let mut step = gpu.step("forest.route");
            forest::route(&mut step, &shape, &bins_t, &splits_t, &node_t)?;
            step.submit()?;
            level = next;
        }
        let roots = (0..cfg.trees as u32).collect();
        let leaves = feature.iter().filter(|&&f| f == NONE).count();
        let report = ForestReport { nodes: feature.len(), leaves, depth, levels, retries, seconds: 0.0 };
        let forest = Forest::assemble(gpu, roots, feature, threshold, left, value, classes, width, *cfg)?;
        Ok((forest, ForestReport { seconds: started.elapsed().as_secs_f64(), ..report }))
    }

    /// Checks a forest's structure (every child after its parent, in range; features in range;
    /// each leaf a class distribution) and puts it on the GPU.
    #[allow(clippy::too_many_arguments)]
    fn assemble(gpu: &Gpu, roots: Vec<u32>, feature: Vec<u32>, threshold: Vec<f32>, left: Vec<u32>, value: Vec<f32>, classes: usize, width: usize, config: ForestConfig) -> Result<Forest> {
        let nodes = feature.len();
        if roots.is_empty() || threshold.len() != nodes || left.len() != nodes || value.len() != nodes * classes {
            bail!("forest: {} roots, {nodes} nodes with {} thresholds, {} children, {} values for {classes} classes", roots.len(), threshold.len(), left.len(), value.len());
        }
        if let Some(r) = roots.iter().find(|&&r| r as usize >= nodes) {
            bail!("forest: root {r} of {nodes} nodes");
        }
        // Depth of every node from its parent's (children always come after their parent, so
        // walks end and one pass in order finds each depth).
        let mut depth_of = vec![0usize; nodes];
        for v in 0..nodes {
            if feature[v] == NONE {
                continue;
            }
            let c = left[v] as usize;
            if feature[v] as usize >= width || c <= v || c + 1 >= nodes || !threshold[v].is_finite() {
                bail!("forest: node {v} splits on feature {} at {} into {c}, {} (of {nodes} nodes, {width} features)", feature[v], threshold[v], c + 1);
            }
            depth_of[c] = depth_of[v] + 1;
            depth_of[c + 1] = depth_of[v] + 1;
        }
        // Each leaf holds a class distribution: the vote averages them into probabilities.
        for (v, dist) in value.chunks(classes.max(1)).enumerate() {
            let sum: f32 = dist.iter().sum();
            if feature[v] == NONE && (dist.iter().any(|p| !p.is_finite() || *p < 0.0) || (sum - 1.0).abs() > 1e-3) {
                bail!("forest: leaf {v} holds {dist:?}, not a class distribution");
            }
        }
        let depth = depth_of.iter().copied().max().unwrap_or(0);
        let t = [
            gpu.upload(&roots, &[roots.len()], DType::U32)?,
            gpu.upload(&feature, &[nodes], DType::U32)?,
            gpu.upload_f32(&threshold, &[nodes])?,
            gpu.upload(&left, &[nodes], DType::U32)?,
            gpu.upload_f32(&value, &[nodes, classes])?,
        ];
        Ok(Forest { roots, feature, threshold, left, value, classes, width, depth, config, gpu: t })
    }

    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Class probabilities [len][classes] of every example of `x` (every tree evaluated for
    /// every example on the GPU).
    pub fn predict_proba(&self, gpu: &Gpu, x: &Dataset) -> Result<Vec<Vec<f32>>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        if x.width != self.width {
            bail!("forest: examples have {} values, the forest reads {}", x.width, self.width);
        }
        let [roots, feature, threshold, left, value] = &self.gpu;
        let f = ForestTensors { roots, feature, threshold, left, value, classes: self.classes, depth: self.depth };
        let per_block = ((gpu.max_storage_binding() / 4) as usize / self.trees().max(self.width)).clamp(1, 1 << 16);
        let mut out = Vec::with_capacity(x.len());
        for block in x.x.chunks(per_block * self.width) {
            let m = block.len() / self.width;
            let q = gpu.upload_f32(block, &[m, self.width])?;
            let (leaf, proba) = (gpu.empty(&[m, self.trees()], DType::U32)?, gpu.empty(&[m, self.classes], DType::F32)?);
            let mut step = gpu.step("forest.predict");
            forest::evaluate(&mut step, &f, &q, &leaf, &proba)?;
            step.submit()?;
            out.extend(gpu.read_f32(&proba)?.chunks(self.classes).map(|r| r.to_vec()));
        }
        Ok(out)
    }

    /// CPU reference of [`Forest::predict_proba`] in float64.
    pub fn predict_proba_reference(&self, x: &Dataset) -> Vec<Vec<f64>> {
        x.x.chunks(self.width)
            .map(|row| {
                let mut p = vec![0f64; self.classes];
                for &r in &self.roots {
                    let v = forest::walk_reference(row, r, &self.feature, &self.threshold, &self.left) as usize;
                    for (c, pc) in p.iter_mut().enumerate() {
                        *pc += self.value[v * self.classes + c] as f64 / self.roots.len() as f64;
                    }
                }
                p
            })
            .collect()
    }

    /// The model file's bytes (kind "forest"): tensors `forest.roots` [trees], `forest.feature`,
    /// `forest.left` [nodes] u32 (feature 0xffffffff marks a leaf; right child = left + 1),
    /// `forest.threshold` [nodes] f32 (x <= threshold goes left), `forest.value` [nodes,
    /// classes] f32 (class probabilities), metadata `forest` = the config it was grown with.
    pub fn to_bytes(&self, meta: &ModelMeta) -> Result<Vec<u8>> {
        let u32s = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (roots, feature, left) = (u32s(&self.roots), u32s(&self.feature), u32s(&self.left));
        let nodes = self.feature.len();
        let stored = [
            Stored { name: "forest.roots", dtype: Dtype::U32, shape: vec![self.roots.len()], bytes: &roots },
            Stored { name: "forest.feature", dtype: Dtype::U32, shape: vec![nodes], bytes: &feature },
            Stored { name: "forest.left", dtype: Dtype::U32, shape: vec![nodes], bytes: &left },
            Stored { name: "forest.threshold", dtype: Dtype::F32, shape: vec![nodes], bytes: bytemuck::cast_slice(&self.threshold) },
            Stored { name: "forest.value", dtype: Dtype::F32, shape: vec![nodes, self.classes], bytes: bytemuck::cast_slice(&self.value) },
        ];
        let mut metadata = checkpoint::meta_entries(meta)?;
        metadata.insert(checkpoint::KIND.to_string(), "forest".to_string());
        metadata.insert("forest".to_string(), serde_json::to_string(&self.config)?);
        store::to_safetensors(&stored, metadata)
    }

    /// Reads a model written by [`Forest::to_bytes`], checking its structure.
    pub fn load(gpu: &Gpu, f: &Loaded) -> Result<(Forest, ModelMeta)> {
        let meta = checkpoint::parse_meta(f)?;
        let config: ForestConfig = serde_json::from_str(&f.meta("forest")?).with_context(|| format!("{}: bad forest settings", f.path))?;
        // The model's input as the dataset lays it out (frames flattened for --input frames).
        let width = meta.architecture.input.0 * meta.architecture.input.1;
        let (roots, _) = f.tensor::<u32>("forest.roots", Dtype::U32)?;
        let (feature, _) = f.tensor::<u32>("forest.feature", Dtype::U32)?;
        let (left, _) = f.tensor::<u32>("forest.left", Dtype::U32)?;
        let (threshold, _) = f.tensor::<f32>("forest.threshold", Dtype::F32)?;
        let (value, _) = f.tensor::<f32>("forest.value", Dtype::F32)?;
        let forest = Forest::assemble(gpu, roots, feature, threshold, left, value, meta.data.classes.len(), width, config).with_context(|| format!("{}: the forest is damaged", f.path))?;
        Ok((forest, meta))
    }
}

pub static FAMILY: Family = Family { kind: "forest", models: &[ModelKind::Rf], validation: Validation::Unused, load, fit: Some(fit) };

/// One forest grown on every training clip.
fn fit(p: &FitInput) -> Result<Fitted> {
    let m = p.settings.forest;
    let cfg = ForestConfig { trees: m.trees, max_depth: m.max_depth, min_samples_leaf: m.min_samples_leaf, bins: m.bins, seed: p.seed, ..Default::default() };
    let (model, report) = Forest::fit(p.gpu, p.train, p.classes, &(p.class_weights)(p.train), &cfg)?;
    (p.log)(&format!("rf ({} trees) on {} clips: {} nodes, depth {}, {:.2} s", cfg.trees, p.train.len(), report.nodes, report.depth, report.seconds));
    let record = serde_json::json!({"forest": {"config": cfg, "fits": [report]}, "fit_seconds": report.seconds});
    Ok((Box::new(model), input_only(p.input_shape), record))
}

super::fitted_in_one_go!(Forest);
