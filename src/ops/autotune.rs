//! The autotuner: it fills each device's GEMM kernel table (`ops::gemm::table`).
//!
//! The first time an (adapter, driver, `ser` version) meets a shape bucket (precision,
//! transposes, batching, and N, K rounded up to powers of two; never M, so that results do not
//! depend on batch size), every candidate kernel that passes a correctness check against the
//! float64 reference is timed on that shape and the fastest is kept (the fast mode stops timing
//! a candidate whose warm-up ran [`GIVE_UP_FACTOR`] times slower than the best before it, and
//! times a shape the adapter runs slowly on fewer rows: [`timing_dims`]). Choices persist in the
//! user's cache folder (`autotune.json`), keyed by adapter, driver and `ser` version, so tuning
//! happens once per machine. The mode ([`AutotuneMode`]: fast by default, a shortlist and few
//! repetitions; off, the adapter class's default, nothing timed) and a pinned kernel (for
//! reproducibility) are given to [`configure`] before work starts (`crate::runtime`; the CLI's
//! `SER_AUTOTUNE` and `SER_GEMM_KERNEL`), which loads the stored choices into the table; the
//! buckets still missing are tuned before training's first epoch (`nn::Model::prepare_kernels`)
//! or, for other work, at their first multiply. The table remembers every kernel a device ran
//! (`used`), so that checkpoints can record the kernels that trained them.

use super::gemm::table::{self, TableState};
use super::gemm::{self, GemmDims, GemmKernel, GemmOptions, Precision};
use crate::gpu::Gpu;
use crate::rng::SplitMix64;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

pub use super::gemm::table::{AutotuneMode, Candidate, Choice, bucket, choice, default_kernel, used};

/// The tuning file as stored: adapter key -> bucket -> choice, each choice kept as the JSON it
/// was read as, so that an entry this build cannot read (another version's) survives a save.
#[derive(Default, Serialize, Deserialize)]
struct TuneFile {
    #[serde(default)]
    adapters: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl TuneFile {
    /// The choices of adapter `key` this build can read; the others are named on stderr.
    fn choices(&self, path: &std::path::Path, key: &str) -> BTreeMap<String, Choice> {
        let mut out = BTreeMap::new();
        for (bucket, value) in self.adapters.get(key).into_iter().flatten() {
            match serde_json::from_value::<Choice>(value.clone()) {
                Ok(c) => {
                    out.insert(bucket.clone(), c);
                }
                Err(e) => eprintln!("warning: autotune file {}: the choice for {bucket:?} cannot be read ({e}); it is re-tuned, and kept in the file", path.display()),
            }
        }
        out
    }
}

/// What identifies an adapter's tuning: a new driver or a new `ser` re-tunes.
pub fn adapter_key(gpu: &Gpu) -> String {
    key_of(&gpu.report().adapter)
}

/// [`adapter_key`] from an adapter listing (no device opened).
pub fn key_of(a: &crate::gpu::AdapterReport) -> String {
    format!("{} | {} | {} {} | ser {}", a.name, a.backend, a.driver, a.driver_info, env!("CARGO_PKG_VERSION"))
}

/// The tuning file at `path`. A missing file only means tuning again. One that is not a tuning
/// file (damaged, or something else) is moved aside to `PATH.corrupt` with a warning, so that
/// saving new choices never destroys what it held.
fn read_file(path: &std::path::Path) -> TuneFile {
    let Ok(bytes) = std::fs::read(path) else { return TuneFile::default() };
    match serde_json::from_slice(&bytes) {
        Ok(file) => file,
        Err(e) => {
            let aside = path.with_extension("json.corrupt");
            let kept = std::fs::rename(path, &aside).map(|()| format!("moved aside to {}", aside.display())).unwrap_or_else(|err| format!("could not be moved aside: {err}"));
            eprintln!("warning: autotune file {} is not a tuning file ({e}); it was {kept}, and tuning starts afresh", path.display());
            TuneFile::default()
        }
    }
}

/// Sets how this device is tuned and loads its stored choices into its kernel table, before
/// any work (`crate::runtime::open` calls it; a device never configured runs the default
/// kernels). `file` None keeps choices in memory only. Installs [`tune_and_keep`] as the table's
/// tuner for the buckets neither the file nor earlier work chose for.
pub fn configure(gpu: &Gpu, mode: AutotuneMode, pin: Option<GemmKernel>, file: Option<PathBuf>) {
    let key = adapter_key(gpu);
    let choices = file.as_ref().map(|f| read_file(f).choices(f, &key)).unwrap_or_default();
    let handle = table::table(gpu);
    let mut t = handle.lock();
    // Checks already made on this device stay: a kernel's correctness does not depend on mode.
    let verified = std::mem::take(&mut t.verified);
    *t = TableState { mode, pin, file, choices, verified, used: BTreeMap::new(), tuner: Some(tune_and_keep) };
}

/// The candidates a mode times for this precision on this adapter.
pub fn candidates(gpu: &Gpu, mode: AutotuneMode, precision: Precision) -> Vec<GemmKernel> {
    GemmKernel::ALL
        .into_iter()
        .filter(|k| k.takes(precision))
        .filter(|_| precision != Precision::F16 || gpu.has_f16())
        .filter(|k| *k != GemmKernel::Tex8Shared || gpu.has_subgroups())
        .filter(|k| k.runs_on(gpu))
        .filter(|k| mode == AutotuneMode::Full || !matches!(k, GemmKernel::Naive | GemmKernel::Tiled16 | GemmKernel::Reg4x4 | GemmKernel::Vec4))
        .collect()
}

/// Records that `kernel` fails its check on this adapter in every precision and transpose, as
/// if `verify` had found it wrong: the tuner never times or chooses it. For a kernel known to
/// miscompute on a driver, and for the tests of the tuner's exclusion.
pub fn deny(gpu: &Gpu, kernel: GemmKernel, why: &str) -> Result<()> {
    let handle = table::table(gpu);
    let mut t = handle.lock();
    for precision in [Precision::F32, Precision::Bf16, Precision::F16] {
        for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
            t.verified.insert((kernel, precision, trans_a, trans_b), Err(why.to_string()));
        }
    }
    Ok(())
}

/// The choices stored for an adapter in one tuning file.
pub fn stored_choices_in(file: &std::path::Path, key: &str) -> BTreeMap<String, Choice> {
    read_file(file).choices(file, key)
}

/// Merges this adapter's choices into the file (other adapters' entries, and choices another
/// process wrote meanwhile, are kept) and writes it atomically. A failed write costs a re-tune
/// next time, so it is reported and not fatal.
fn save(t: &TableState, key: &str) {
    let Some(path) = &t.file else { return };
    let mut file = read_file(path);
    let mine = t.choices.iter().map(|(b, c)| Ok((b.clone(), serde_json::to_value(c)?))).collect::<Result<Vec<_>, serde_json::Error>>();
    let result = mine.map_err(anyhow::Error::from).and_then(|mine| {
        file.adapters.entry(key.to_string()).or_default().extend(mine);
        Ok(serde_json::to_vec_pretty(&file)?)
    });
    let result = result.and_then(|bytes| crate::store::write_atomic(path, &bytes));
    if let Err(e) = result {
        eprintln!("warning: autotune choices not saved: {e:#}");
    }
}

/// Checks one candidate on a small awkward multiply with the same transposes and precision
/// against the float64 reference (operand rounding bound for bf16 and f16).
fn verify(gpu: &Gpu, kernel: GemmKernel, o: &GemmOptions) -> Result<(), String> {
    let (m, n, k) = (13, 37, 29);
    let o = GemmOptions { kernel, alpha: 1.0, beta: 0.0, relu: false, ..*o };
    let d = GemmDims { batch: 1, m, n, k, broadcast_b: false };
    let mut rng = SplitMix64::new(0x5e7_7e57 ^ m as u64);
    let a = rng.vec(m * k, -1.0, 1.0);
    let b = rng.vec(k * n, -1.0, 1.0);
    let run = || -> Result<Vec<f32>> {
        let a_shape = if o.trans_a { [k, m] } else { [m, k] };
        let b_shape = if o.trans_b { [n, k] } else { [k, n] };
        let (ta, tb) = (gpu.upload_f32(&a, &a_shape)?, gpu.upload_f32(&b, &b_shape)?);
        let tc = gpu.upload_f32(&vec![f32::NAN; m * n], &[m, n])?;
        let mut step = gpu.step("autotune.verify");
        gemm::gemm(&mut step, &ta, &tb, None, &tc, &o)?;
        step.submit()?;
        gpu.read_f32(&tc)
    };
    let got = run().map_err(|e| format!("{e:#}"))?;
    let want = gemm::reference(&a, &b, None, &[], &d, &o);
    let abs = |x: &[f32]| x.iter().map(|v| v.abs()).collect::<Vec<f32>>();
    let scale = gemm::reference(&abs(&a), &abs(&b), None, &[], &d, &o);
    let u = match o.precision {
        Precision::F32 => 0.0,
        Precision::Bf16 => 2f64.powi(-8),
        Precision::F16 => 2f64.powi(-11),
    };
    for (i, ((g, w), s)) in got.iter().zip(&want).zip(&scale).enumerate() {
        let bound = s * 2.0 * u * (1.0 + u) + 4.0 * k as f64 * f32::EPSILON as f64 + 1e-6;
        if !((*g as f64 - w).abs() <= bound) {
            return Err(format!("wrong result: element {i} is {g}, the reference says {w}"));
        }
    }
    Ok(())
}

/// How much faster than the adapter's default a candidate must be to replace it.
pub const DEFAULT_MARGIN: f64 = 1.15;

/// The table's tuner: tunes the bucket of this multiply, records the choice in the table and
/// saves it to the tuning file.
fn tune_and_keep(gpu: &Gpu, t: &mut TableState, d: &GemmDims, o: &GemmOptions) -> Result<Choice> {
    let choice = tune(gpu, t, d, o)?;
    t.choices.insert(bucket(d, o), choice.clone());
    save(t, &adapter_key(gpu));
    Ok(choice)
}

/// Times every candidate that passes its check on this multiply's shape; the fastest wins.
fn tune(gpu: &Gpu, t: &mut TableState, d: &GemmDims, o: &GemmOptions) -> Result<Choice> {
    let timed_runs = if t.mode == AutotuneMode::Full { 8 } else { 4 };
    let timed = if t.mode == AutotuneMode::Full { *d } else { timing_dims(gpu, d, o, TIMED_RUN_MS) };
    let mut out: Vec<Candidate> = Vec::new();
    // A kernel that would fall back to another on these dims (vec4 shapes on unaligned rows)
    // is not a candidate of its own.
    for kernel in candidates(gpu, t.mode, o.precision).into_iter().filter(|k| k.for_dims(d, o) == *k) {
        let verdict = t.verified.entry((kernel, o.precision, o.trans_a, o.trans_b)).or_insert_with(|| verify(gpu, kernel, o)).clone();
        let best_so_far = out.iter().filter(|c| !c.warm_up_only).filter_map(|c| c.ms).min_by(f64::total_cmp);
        let give_up_above = best_so_far.filter(|_| t.mode == AutotuneMode::Fast).map(|ms| ms * GIVE_UP_FACTOR);
        let measured = verdict.and_then(|()| time_unless_slower(gpu, kernel, &timed, o, timed_runs, give_up_above).map_err(|e| format!("{e:#}")));
        out.push(match measured {
            Ok(timing) => Candidate { kernel: kernel.name(), ms: Some(timing.ms), error: None, warm_up_only: timing.warm_up_only },
            Err(e) => Candidate { kernel: kernel.name(), ms: None, error: Some(e), warm_up_only: false },
        });
    }
    let best = out.iter().filter_map(|c| c.ms.map(|ms| (ms, c.kernel.clone()))).min_by(|a, b| a.0.total_cmp(&b.0));
    // The adapter's default keeps its place unless a candidate beats it clearly: timed alone, a
    // multiply runs with hot caches and noise of several percent, and on lavapipe choices won
    // by less than this margin measured slower inside a training epoch (docs/results/history.md, "Session 18").
    let default = default_kernel(gpu, o.precision).name();
    let default_ms = out.iter().find(|c| c.kernel == default).and_then(|c| c.ms);
    let best = match (best, default_ms) {
        (Some((ms, _)), Some(d)) if ms * DEFAULT_MARGIN > d => Some((d, default)),
        (b, _) => b,
    };
    let Some((_, kernel)) = best else {
        let why: Vec<String> = out.iter().map(|c| format!("{}: {}", c.kernel, c.error.clone().unwrap_or_default())).collect();
        bail!("autotune: no GEMM kernel passed its check on {} for {}: {}", gpu.label(), bucket(d, o), why.join("; "));
    };
    Ok(Choice { kernel, timed_on: [timed.batch, timed.m, timed.n, timed.k], mode: t.mode, candidates: out })
}

/// How long one run of the adapter's default kernel may take on the multiply the tuner times.
/// On lavapipe a test pass's inference multiplies (M = 25k-102k rows of frames) ran 1-35 s per
/// candidate run, so tuning them took over 15 minutes (docs/results/history.md, session 18); a GPU runs
/// them in milliseconds and is timed on the real shape.
pub const TIMED_RUN_MS: f64 = 200.0;

/// The fewest rows (M times batch) a cut timing multiply keeps: enough workgroups to fill a GPU
/// many times over, so that the candidates' ranking is the one they have on the full shape.
pub const MIN_TIMED_ROWS: usize = 4096;

/// The multiply the tuner times for `d`: `d` itself, unless one run of the adapter's default
/// kernel on it (its warm-up's execution) takes longer than `run_ms`. Then its rows are cut in
/// proportion, the batch if batched, else M, to no fewer than [`MIN_TIMED_ROWS`]. A multiply's
/// time grows linearly in its rows once it fills the adapter, so the fastest kernel on the cut
/// shape is the fastest on the whole one (on lavapipe, the same kernels won at M = 2^14 as at
/// 2^17). M keeps its remainder mod 64, so every kernel's edge tiles and vector alignment stay
/// as they are.
pub fn timing_dims(gpu: &Gpu, d: &GemmDims, o: &GemmOptions, run_ms: f64) -> GemmDims {
    if d.batch * d.m <= MIN_TIMED_ROWS {
        return *d;
    }
    let default = default_kernel(gpu, o.precision).for_dims(d, o);
    // A default that fails here is timed (and reported) as a candidate; its shape stays whole.
    let Ok(probe) = time_unless_slower(gpu, default, d, o, 0, None) else { return *d };
    if probe.ms <= run_ms {
        return *d;
    }
    let keep = run_ms / probe.ms;
    if d.batch > 1 {
        let batch = ((d.batch as f64 * keep).ceil() as usize).max(MIN_TIMED_ROWS.div_ceil(d.m)).min(d.batch);
        return GemmDims { batch, ..*d };
    }
    let tail = d.m % 64;
    let m = ((d.m as f64 * keep) as usize).max(MIN_TIMED_ROWS);
    GemmDims { m: (m / 64 * 64 + tail).min(d.m), ..*d }
}

/// How many times slower than the best candidate so far a warm-up may run before the fast
/// tuner stops timing that candidate. On lavapipe the tile family runs the big convolution
/// multiplies 4-15x slower than the packed kernels at up to a second each, so timing each of
/// them five times made a first CNN epoch over frames spend most of its 35 minutes tuning
/// (docs/results/history.md, session 18). The factor leaves room for what a first execution costs
/// beyond a steady one (cold caches, lazy allocation), so that no contender is dropped.
pub const GIVE_UP_FACTOR: f64 = 4.0;

/// What [`time_unless_slower`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Milliseconds per multiply.
    pub ms: f64,
    /// Only the warm-up ran (it was slower than the limit): `ms` is its execution time.
    pub warm_up_only: bool,
}

/// Milliseconds per multiply of `kernel` on this shape: the fastest of `runs` timed submissions
/// after one warm-up (which also compiles the pipeline). Small multiplies are recorded several
/// times per submission so that the submission's fixed cost does not decide the winner. Stops
/// after the warm-up when its execution (submission to completion, so without the pipeline's
/// compilation) took longer than `give_up_above` ms per multiply; `runs` = 0 times the warm-up
/// alone (reported as `warm_up_only`).
pub fn time_unless_slower(gpu: &Gpu, kernel: GemmKernel, d: &GemmDims, o: &GemmOptions, runs: usize, give_up_above: Option<f64>) -> Result<Timing> {
    let o = GemmOptions { kernel, ..*o };
    let mut rng = SplitMix64::new(7);
    let a_shape = if o.trans_a { [d.batch, d.k, d.m] } else { [d.batch, d.m, d.k] };
    let b_batch = if d.broadcast_b || d.batch == 1 { vec![] } else { vec![d.batch] };
    let b_shape: Vec<usize> = b_batch.iter().copied().chain(if o.trans_b { [d.n, d.k] } else { [d.k, d.n] }).collect();
    let a = gpu.upload_f32(&rng.vec(a_shape.iter().product(), -1.0, 1.0), if d.batch == 1 { &a_shape[1..] } else { &a_shape })?;
    let b = gpu.upload_f32(&rng.vec(b_shape.iter().product(), -1.0, 1.0), &b_shape)?;
    let c_shape = if d.batch == 1 { vec![d.m, d.n] } else { vec![d.batch, d.m, d.n] };
    let c = gpu.upload_f32(&vec![0.0; c_shape.iter().product()], &c_shape)?;
    let per_submit = (2e8 / d.flops().max(1.0)).clamp(1.0, 16.0) as usize;
    let mut best = f64::INFINITY;
    for run in 0..=runs {
        let start = Instant::now();
        let mut step = gpu.step("autotune.time");
        for _ in 0..per_submit {
            gemm::gemm(&mut step, &a, &b, None, &c, &o)?;
        }
        let recorded = Instant::now();
        step.submit()?;
        gpu.wait()?;
        let per_multiply = |since: Instant| since.elapsed().as_secs_f64() * 1e3 / per_submit as f64;
        if run == 0 {
            let executed = per_multiply(recorded);
            if runs == 0 || give_up_above.is_some_and(|limit| executed > limit) {
                return Ok(Timing { ms: executed, warm_up_only: true });
            }
        } else {
            best = best.min(per_multiply(start));
        }
    }
    Ok(Timing { ms: best, warm_up_only: false })
}
