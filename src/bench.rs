//! Throughput benchmarks: GEMM GFLOP/s per kernel shape, size and adapter (the ceiling the
//! feature and training kernels are judged against), and feature extraction per kernel and
//! adapter on synthetic clips (no dataset needed).

use crate::features::FeatureConfig;
use crate::features::corpus;
use crate::features::set::ClipInfo;
use crate::gpu::{AdapterSelector, Gpu, KernelStat, ProfileReport, Tensor};
use crate::ops::autotune;
use crate::ops::gemm::{self, GemmDims, GemmKernel, GemmOptions, Precision};
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;

/// One GEMM problem: name and M x N x K.
#[derive(Clone, Debug, Serialize)]
pub struct GemmShape {
    pub name: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl GemmShape {
    fn new(name: &str, m: usize, n: usize, k: usize) -> Self {
        GemmShape { name: name.to_string(), m, n, k }
    }

    /// Squares, plus shapes the refined CNN produces (conv lowered onto GEMM, dense layers).
    pub fn defaults(quick: bool) -> Vec<GemmShape> {
        let mut v = vec![
            GemmShape::new("square", 128, 128, 128),
            GemmShape::new("square", 256, 256, 256),
            GemmShape::new("square", 512, 512, 512),
        ];
        if !quick {
            v.push(GemmShape::new("square", 1024, 1024, 1024));
            // Conv1D(256, k5) over 128 channels, batch 32 x 59 positions, as im2col GEMM.
            v.push(GemmShape::new("conv-im2col", 32 * 59, 256, 128 * 5));
            // Dense(256) after Flatten of 512 x 7, batch 64.
            v.push(GemmShape::new("dense", 64, 256, 512 * 7));
        }
        v
    }

    /// Parses "MxNxK" or "S" (a square).
    pub fn parse(text: &str) -> Result<GemmShape> {
        let parts: Vec<usize> = text
            .split('x')
            .map(|p| p.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("size {text:?} is not MxNxK or a single number"))?;
        match parts[..] {
            [s] => Ok(GemmShape::new("square", s, s, s)),
            [m, n, k] => Ok(GemmShape::new("custom", m, n, k)),
            _ => anyhow::bail!("size {text:?} is not MxNxK or a single number"),
        }
    }
}

/// One measured cell of the table.
#[derive(Clone, Debug, Serialize)]
pub struct GemmResult {
    pub adapter: String,
    /// The kernel asked for (`Auto`: the tuner's choice).
    pub kernel: GemmKernel,
    /// The kernel that ran (Auto resolved; vec4 shapes fall back on unaligned rows).
    pub ran: GemmKernel,
    /// For `Auto`: the tuner's decision for this shape's bucket, every candidate's time.
    pub tuning: Option<crate::ops::autotune::Choice>,
    pub precision: Precision,
    pub shape: GemmShape,
    pub clock: &'static str,
    pub repeats: usize,
    pub median_ms: f64,
    pub gflops: f64,
    /// Share of the median repeat spent packing operands into textures (Tex8), else 0.
    pub pack_share: f64,
    /// Max relative error against the float64 reference on a check problem (see `check_kernel`).
    pub max_rel_error: f64,
}

pub struct GemmBenchConfig {
    pub shapes: Vec<GemmShape>,
    pub kernels: Vec<GemmKernel>,
    /// Operand precisions to try; bfloat16 only on the packed kernels.
    pub precisions: Vec<Precision>,
    pub warmup: usize,
    pub repeats: usize,
    /// Stop repeating a cell after this many seconds (at least 3 repeats are always taken).
    pub budget_s: f64,
}

fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::SplitMix64::new(seed);
    (0..n).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0).collect()
}

/// Runs a kernel once on an awkward problem and returns its max error relative to the largest
/// reference magnitude, so that a fast but wrong kernel is never the one kept.
pub fn check_kernel(gpu: &Gpu, kernel: GemmKernel, precision: Precision) -> Result<f64> {
    // Multiples of 4 (so the vec4 kernels run rather than fall back) that are not multiples of
    // any tile, so edge clamping is exercised.
    let (m, n, k) = (68, 44, 36);
    let a = pseudo_random(m * k, 1);
    let b = pseudo_random(k * n, 2);
    let ta = gpu.upload_f32(&a, &[m, k])?;
    let tb = gpu.upload_f32(&b, &[k, n])?;
    let tc = gpu.upload_f32(&vec![f32::NAN; m * n], &[m, n])?;
    let o = GemmOptions { kernel, precision, ..Default::default() };
    let mut step = gpu.step("bench.check");
    let d = gemm::gemm(&mut step, &ta, &tb, None, &tc, &o)?;
    step.submit()?;
    let got = gpu.read_f32(&tc)?;
    let want = gemm::reference(&a, &b, None, &[], &d, &o);
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    Ok(got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs() / scale).fold(0.0, |m, e| if e.is_nan() { f64::INFINITY } else { m.max(e) }))
}

/// One timed multiply: (total ms, ms of packing passes).
fn time_one(gpu: &Gpu, a: &Tensor, b: &Tensor, c: &Tensor, o: &GemmOptions) -> Result<(f64, f64)> {
    gpu.reset_profile();
    let mut step = gpu.step("bench.gemm");
    gemm::gemm(&mut step, a, b, None, c, o)?;
    let start = Instant::now();
    step.submit()?;
    gpu.wait()?;
    let host_ms = start.elapsed().as_secs_f64() * 1e3;
    let prof = gpu.profile();
    let pack_ms = prof.kernels.iter().filter(|k| k.kernel == "gemm.pack").map(|k| k.total_ms).sum();
    Ok(if prof.kernels.is_empty() { (host_ms, 0.0) } else { (prof.total_ms(), pack_ms) })
}

/// Measures every (kernel, shape) on one adapter.
pub fn gemm_on(gpu: &Gpu, cfg: &GemmBenchConfig, mut progress: impl FnMut(&GemmResult)) -> Result<Vec<GemmResult>> {
    let mut out = Vec::new();
    gpu.set_profiling(true);
    let cells = cfg.kernels.iter().flat_map(|&k| cfg.precisions.iter().map(move |&p| (k, p)));
    for (kernel, precision) in cells.filter(|&(k, p)| k.takes(p) && k.runs_on(gpu) && (p != Precision::F16 || gpu.has_f16())) {
        let err = check_kernel(gpu, kernel, precision)?;
        for shape in &cfg.shapes {
            let dims = GemmDims { batch: 1, m: shape.m, n: shape.n, k: shape.k, broadcast_b: false };
            let o = GemmOptions { kernel, precision, ..Default::default() };
            let ran = gemm::kernel_for(gpu, &dims, &o)?;
            let tuning = (kernel == GemmKernel::Auto).then(|| autotune::choice(gpu, &dims, &o)).flatten();
            let a = gpu.upload_f32(&pseudo_random(shape.m * shape.k, 3), &[shape.m, shape.k])?;
            let b = gpu.upload_f32(&pseudo_random(shape.k * shape.n, 4), &[shape.k, shape.n])?;
            let c = gpu.empty(&[shape.m, shape.n], crate::gpu::DType::F32)?;
            for _ in 0..cfg.warmup {
                time_one(gpu, &a, &b, &c, &o)?;
            }
            let mut times = Vec::new();
            let start = Instant::now();
            while times.len() < cfg.repeats
                && (times.len() < 3 || start.elapsed().as_secs_f64() < cfg.budget_s)
            {
                times.push(time_one(gpu, &a, &b, &c, &o)?);
            }
            times.sort_by(|x, y| x.0.total_cmp(&y.0));
            let (median, pack_ms) = times[times.len() / 2];
            let flops = dims.flops();
            let r = GemmResult {
                adapter: gpu.label(),
                kernel,
                ran,
                tuning,
                precision,
                shape: shape.clone(),
                clock: gpu.profile().clock,
                repeats: times.len(),
                median_ms: median,
                gflops: flops / (median * 1e-3) / 1e9,
                pack_share: pack_ms / median,
                max_rel_error: err,
            };
            progress(&r);
            out.push(r);
        }
    }
    gpu.set_profiling(false);
    Ok(out)
}

/// Runs the GEMM benchmark on the selected adapter, or on every adapter present.
pub fn gemm_all(selectors: &[AdapterSelector], settings: &crate::runtime::Settings, cfg: &GemmBenchConfig, progress: impl FnMut(&GemmResult) + Copy) -> Result<Vec<GemmResult>> {
    each_adapter(selectors, settings, |gpu| gemm_on(gpu, cfg, progress))
}

/// Opens each selected adapter in turn (with `settings`) and gathers what `run` measures on it.
fn each_adapter<R>(selectors: &[AdapterSelector], settings: &crate::runtime::Settings, mut run: impl FnMut(&Gpu) -> Result<Vec<R>>) -> Result<Vec<R>> {
    let mut all = Vec::new();
    for sel in selectors {
        all.extend(run(&crate::runtime::open(sel, settings)?)?);
    }
    Ok(all)
}

/// Times `run` the way the pipeline benchmarks do: one untimed run (shaders compile), the
/// median wall time of `repeats` unprofiled runs (each ends with the device idle), then one run
/// with every dispatch timed on its own. Returns (median seconds, that run's profile).
fn median_and_profile(gpu: &Gpu, repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<(f64, ProfileReport)> {
    let mut timed = || -> Result<f64> {
        let start = Instant::now();
        run()?;
        gpu.wait()?;
        Ok(start.elapsed().as_secs_f64())
    };
    gpu.set_profiling(false);
    timed()?;
    let mut times = (0..repeats.max(1)).map(|_| timed()).collect::<Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    gpu.reset_profile();
    gpu.set_profiling(true);
    let profiled = timed();
    gpu.set_profiling(false);
    profiled?;
    Ok((times[times.len() / 2], gpu.profile()))
}

/// A summary row of a comparison table: its name and how a result fills its cell.
type SummaryRow<'a, R> = (&'a str, &'a dyn Fn(&R) -> String);

/// A Markdown table with one column per result: the `summary` rows, then one row per timed
/// item (`timings` gives each result's items, slowest first, as (name, cell)), in the order
/// they first appear; "-" where a result has no such item.
fn comparison_table<R>(results: &[R], head: impl Fn(&R) -> String, summary: &[SummaryRow<R>], timings: impl Fn(&R) -> Vec<(String, String)>) -> String {
    let heads: Vec<String> = results.iter().map(&head).collect();
    let mut s = format!("| | {} |\n|---|{}\n", heads.join(" | "), "---:|".repeat(results.len()));
    let row = |name: &str, cells: Vec<String>| format!("| {name} | {} |\n", cells.join(" | "));
    for (name, cell) in summary {
        s += &row(name, results.iter().map(cell).collect());
    }
    let items: Vec<Vec<(String, String)>> = results.iter().map(timings).collect();
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in items.iter().flatten() {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    for name in names {
        let cells = items.iter().map(|its| its.iter().find(|(n, _)| n == name).map_or("-".to_string(), |(_, c)| c.clone())).collect();
        s += &row(&format!("`{name}` ms"), cells);
    }
    s
}

/// Correct (error under 1e-4 of the output scale) results only.
pub const CORRECT: f64 = 1e-4;

/// Markdown table plus, per adapter, the fastest correct f32 kernel over all shapes.
pub fn gemm_table(results: &[GemmResult]) -> String {
    let mut s = String::from("| adapter | kernel | operands | shape | M x N x K | clock | median ms | GFLOP/s | packing | max rel err |\n|---|---|---|---|---|---|---:|---:|---:|---:|\n");
    for r in results {
        let kernel = if r.kernel == r.ran { r.ran.name() } else { format!("{} -> {}", r.kernel.name(), r.ran.name()) };
        s += &format!(
            "| {} | {} | {:?} | {} | {}x{}x{} | {} | {:.3} | {:.2} | {} | {:.1e} |\n",
            r.adapter,
            kernel,
            r.precision,
            r.shape.name,
            r.shape.m,
            r.shape.n,
            r.shape.k,
            r.clock,
            r.median_ms,
            r.gflops,
            if r.ran.is_packed() { format!("{:.0}%", 100.0 * r.pack_share) } else { "-".into() },
            r.max_rel_error
        );
    }
    let mut adapters: Vec<&str> = results.iter().map(|r| r.adapter.as_str()).collect();
    adapters.dedup();
    s += "\nFastest correct kernel per adapter (mean GFLOP/s over all shapes):\n\n";
    for ad in adapters {
        let mut best: Option<(GemmKernel, f64)> = None;
        for k in GemmKernel::ALL {
            let cells: Vec<&GemmResult> =
                results.iter().filter(|r| r.adapter == ad && r.kernel == k && r.precision == Precision::F32).collect();
            if cells.is_empty() || cells.iter().any(|r| r.max_rel_error > CORRECT) {
                continue;
            }
            let mean = cells.iter().map(|r| r.gflops).sum::<f64>() / cells.len() as f64;
            if best.is_none_or(|(_, b)| mean > b) {
                best = Some((k, mean));
            }
        }
        if let Some((k, g)) = best {
            s += &format!("- {ad}: {} ({g:.2} GFLOP/s)\n", k.name());
        }
    }
    let tuned: Vec<&GemmResult> = results.iter().filter(|r| r.tuning.is_some()).collect();
    if !tuned.is_empty() {
        s += "\nAutotuner (`auto` rows): every candidate it timed on the shape's bucket, winner first:\n\n";
    }
    for r in tuned {
        let c = r.tuning.as_ref().unwrap();
        let mut cands: Vec<String> = c.candidates.iter().map(|k| match (k.ms, &k.error) {
            (Some(ms), _) => format!("{} {ms:.3} ms", k.kernel),
            (None, e) => format!("{} failed ({})", k.kernel, e.clone().unwrap_or_default()),
        }).collect();
        cands.sort_by_key(|x| !x.starts_with(&format!("{} ", c.kernel)));
        s += &format!("- {} {:?} {}x{}x{} (timed on {:?}, {:?}): **{}**; {}\n", r.adapter, r.precision, r.shape.m, r.shape.n, r.shape.k, c.timed_on, c.mode, c.kernel, cands.join(", "));
    }
    s
}

pub struct FeatureBenchConfig {
    pub features: FeatureConfig,
    /// Synthetic clips per run.
    pub clips: usize,
    /// Mean clip length (lengths vary from 0.8 to 1.2 times it).
    pub seconds: f64,
    /// Timed runs (median reported), after one untimed run.
    pub repeats: usize,
}

/// Feature extraction on one adapter.
#[derive(Clone, Debug, Serialize)]
pub struct FeatureBenchResult {
    pub adapter: String,
    pub clips: usize,
    pub audio_seconds: f64,
    /// Median wall time of a run (features of every clip read back), without profiling.
    pub median_s: f64,
    pub clips_per_s: f64,
    pub times_real_time: f64,
    /// One more run with each dispatch timed on its own ("clock" says how).
    pub clock: &'static str,
    pub kernels: Vec<KernelStat>,
}

/// Clips of tones, a chirp and noise, lengths spread around `seconds`: deterministic, so every
/// adapter extracts the same audio.
pub fn synthetic_clips(clips: usize, seconds: f64, rate: u32) -> Vec<Vec<f32>> {
    (0..clips)
        .map(|i| {
            let len = (seconds * rate as f64 * (0.8 + 0.4 * ((i as f64 * 0.618_034) % 1.0))) as usize;
            let noise = pseudo_random(len, 100 + i as u64);
            let f0 = 110.0 * (1.0 + i as f64 % 7.0);
            (0..len)
                .map(|n| {
                    let t = n as f64 / rate as f64;
                    let chirp = (2.0 * std::f64::consts::PI * (f0 * t + 200.0 * t * t)).sin();
                    (0.3 * (2.0 * std::f64::consts::PI * f0 * t).sin() + 0.2 * chirp) as f32 + 0.05 * noise[n]
                })
                .collect()
        })
        .collect()
}

/// Extracts features of synthetic clips on one adapter: wall time without profiling, then one
/// profiled run for the per-kernel times.
pub fn features_on(gpu: &Gpu, cfg: &FeatureBenchConfig) -> Result<FeatureBenchResult> {
    let signals = synthetic_clips(cfg.clips, cfg.seconds, cfg.features.sample_rate);
    let slices: Vec<&[f32]> = signals.iter().map(Vec::as_slice).collect();
    let clips = || (0..cfg.clips).map(|i| ClipInfo::unlabelled(format!("synthetic-{i}"))).collect();
    let (median_s, profile) = median_and_profile(gpu, cfg.repeats, || corpus::extract_all(gpu, &cfg.features, clips(), &slices, false, &Default::default()).map(drop))?;
    let audio_seconds = signals.iter().map(Vec::len).sum::<usize>() as f64 / cfg.features.sample_rate as f64;
    Ok(FeatureBenchResult {
        adapter: gpu.label(),
        clips: cfg.clips,
        audio_seconds,
        median_s,
        clips_per_s: cfg.clips as f64 / median_s,
        times_real_time: audio_seconds / median_s,
        clock: profile.clock,
        kernels: profile.kernels,
    })
}

/// The features benchmark on each selected adapter.
pub fn features_all(selectors: &[AdapterSelector], settings: &crate::runtime::Settings, cfg: &FeatureBenchConfig, mut progress: impl FnMut(&FeatureBenchResult)) -> Result<Vec<FeatureBenchResult>> {
    each_adapter(selectors, settings, |gpu| {
        let r = features_on(gpu, cfg)?;
        progress(&r);
        Ok(vec![r])
    })
}

/// Markdown: throughput per adapter, then every kernel's time (ms per run) per adapter, slowest
/// on the first adapter first.
pub fn features_table(results: &[FeatureBenchResult]) -> String {
    comparison_table(
        results,
        |r| format!("{} ({} clock)", r.adapter, r.clock),
        &[
            ("clips, audio seconds", &|r| format!("{}, {:.0} s", r.clips, r.audio_seconds)),
            ("wall time (median)", &|r| format!("{:.2} s", r.median_s)),
            ("clips/s", &|r| format!("{:.1}", r.clips_per_s)),
            ("times real time", &|r| format!("{:.0}x", r.times_real_time)),
        ],
        |r| r.kernels.iter().map(|k| (k.kernel.clone(), format!("{:.1}", k.total_ms))).collect(),
    )
}

crate::choices! {
    /// Which network `ser bench train` trains.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum TrainBenchModel {
        /// The reference study's refined CNN on time-averaged vectors [59, 1] (issue 4's benchmark).
        Cnn = "cnn",
        /// MLP 512-256 with batch norm on mean + std statistics [118].
        Mlp = "mlp",
        /// The bidirectional LSTM (64 units per direction) on frame sequences [399, 59] with
        /// lengths of 200 to 399 frames (RAVDESS clips at 16 kHz give 2xx-399).
        Lstm = "lstm",
        /// The CNN+LSTM on the same frame sequences.
        CnnLstm = "cnn-lstm",
        /// The refined CNN over the same frame sequences (`ser train --model cnn --input frames`).
        CnnFrames = "cnn-frames",
    }
}

pub struct TrainBenchConfig {
    pub model: TrainBenchModel,
    /// Synthetic examples per epoch (1486: the training part of a RAVDESS random split).
    pub samples: usize,
    pub batch_size: usize,
    pub precisions: Vec<Precision>,
    /// Timed epochs (median reported), after one untimed epoch; then one profiled epoch.
    pub epochs: usize,
}

/// One layer's share of a profiled epoch.
#[derive(Clone, Debug, Serialize)]
pub struct LayerTime {
    pub layer: String,
    pub ms: f64,
    /// The rate of the layer's GEMMs over their own time (0 when it has none).
    pub gemm_gflop_per_s: f64,
    /// Share of the layer's time in GEMMs.
    pub gemm_share: f64,
}

/// Training throughput on one adapter at one precision.
#[derive(Clone, Debug, Serialize)]
pub struct TrainBenchResult {
    pub adapter: String,
    pub model: TrainBenchModel,
    pub precision: Precision,
    pub samples: usize,
    pub batch_size: usize,
    /// Median wall time of an epoch without profiling.
    pub epoch_s: f64,
    pub samples_per_s: f64,
    pub clock: &'static str,
    pub layers: Vec<LayerTime>,
}

/// Trains the chosen network for a few epochs on synthetic, learnable data (7 classes, each a
/// different mean): the wall time of unprofiled epochs, then the per-layer times of a profiled
/// one.
pub fn train_on(gpu: &Gpu, cfg: &TrainBenchConfig, precision: Precision) -> Result<TrainBenchResult> {
    use crate::nn::{Architecture, Model, TimePooling};
    use crate::dataset::Dataset;
    use crate::train::{self, TrainConfig};
    let classes = 7;
    let (frames, features) = (399, 59);
    // The recurrent models as `ser train` builds them by default.
    let recurrent_head = crate::models::network::Settings::default().recurrent_head();
    let (arch, width) = match cfg.model {
        TrainBenchModel::Cnn => (Architecture::refined_cnn((59, 1), classes, TimePooling::Flatten), 59),
        TrainBenchModel::Mlp => (Architecture::mlp((118, 1), classes, &[512, 256], 0.4, true), 118),
        TrainBenchModel::Lstm => (Architecture::lstm((frames, features), classes, recurrent_head), frames * features),
        TrainBenchModel::CnnLstm => (Architecture::cnn_lstm((frames, features), classes, recurrent_head), frames * features),
        TrainBenchModel::CnnFrames => (Architecture::refined_cnn((frames, features), classes, TimePooling::Mean), frames * features),
    };
    let noise = pseudo_random(cfg.samples * width, 7);
    let y: Vec<u32> = (0..cfg.samples).map(|i| (i % classes) as u32).collect();
    let channels = arch.input.1;
    let mut x: Vec<f32> = (0..cfg.samples * width).map(|i| noise[i] + if (i % channels) % classes == y[i / width] as usize { 1.0 } else { 0.0 }).collect();
    // Frame sequences get lengths and zero padding past them.
    let lengths: Vec<u32> = if arch.uses_lengths() {
        pseudo_random(cfg.samples, 11).iter().map(|r| 200 + ((r + 1.0) * 0.5 * 199.0) as u32).collect()
    } else {
        Vec::new()
    };
    for (i, &len) in lengths.iter().enumerate() {
        x[i * width + len as usize * channels..(i + 1) * width].fill(0.0);
    }
    let data = Dataset { x, y, width, lengths };
    let mut model = Model::new(gpu, &arch, 0)?;
    let tc = TrainConfig { batch_size: cfg.batch_size, precision, ..Default::default() };
    let weights = vec![1.0; classes];
    let lr = model.adam.lr;
    let (epoch_s, profile) = median_and_profile(gpu, cfg.epochs, || train::fit_schedule(gpu, &mut model, &data, &weights, &tc, &[lr], |_, _, _| {}))?;
    let layers = profile.scopes().into_iter().map(|(layer, ms, gemm_gflop_per_s, gemm_share)| LayerTime { layer, ms, gemm_gflop_per_s, gemm_share }).collect();
    Ok(TrainBenchResult {
        adapter: gpu.label(),
        model: cfg.model,
        precision,
        samples: cfg.samples,
        batch_size: cfg.batch_size,
        epoch_s,
        samples_per_s: cfg.samples as f64 / epoch_s,
        clock: profile.clock,
        layers,
    })
}

/// The training benchmark on each selected adapter at each precision.
pub fn train_all(selectors: &[AdapterSelector], settings: &crate::runtime::Settings, cfg: &TrainBenchConfig, mut progress: impl FnMut(&TrainBenchResult)) -> Result<Vec<TrainBenchResult>> {
    each_adapter(selectors, settings, |gpu| {
        let mut out = Vec::new();
        for &p in &cfg.precisions {
            let r = train_on(gpu, cfg, p)?;
            progress(&r);
            out.push(r);
        }
        Ok(out)
    })
}

/// Markdown: epoch time and samples/s per (adapter, precision), then every layer's ms per epoch
/// (and its GEMMs' GFLOP/s), slowest on the first column first.
pub fn train_table(results: &[TrainBenchResult]) -> String {
    comparison_table(
        results,
        |r| format!("{} {:?} ({} clock)", r.adapter, r.precision, r.clock),
        &[("epoch (median, unprofiled)", &|r| format!("{:.2} s", r.epoch_s)), ("samples/s", &|r| format!("{:.0}", r.samples_per_s))],
        |r| {
            let cell = |l: &LayerTime| if l.gemm_gflop_per_s > 0.0 { format!("{:.0} ({:.1} GFLOP/s)", l.ms, l.gemm_gflop_per_s) } else { format!("{:.0}", l.ms) };
            r.layers.iter().map(|l| (l.layer.clone(), cell(l))).collect()
        },
    )
}
