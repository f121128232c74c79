//! Features for a whole corpus: list its labelled clips (`sources`), read and hash, decode and
//! resample in parallel on the CPU, extract on the GPU in batches, and cache the result keyed by
//! the configuration, the selection, the labels and every file's contents.

use super::set::{ClipInfo, FeatureSet};
use super::{Extractor, FeatureConfig};
use crate::audio::{self, Selection};
use crate::sources::{self, LabelMap, Source};
use crate::gpu::Gpu;
use crate::progress::Progress;
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct BuildOptions {
    /// Stop at the first unreadable file instead of skipping it.
    pub strict: bool,
    /// Folder of cached feature files; None disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Show progress bars (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Speed factors of augmented copies to add for every clip (`--speed-copies`): each copy
    /// is the decoded clip read as if sampled `factor` times faster, resampled back to the
    /// feature rate. Empty: none.
    pub speed_copies: Vec<f32>,
    /// Build only this shard of the labelled clips (contiguous runs of the sources' order), for
    /// an array job; `merge` joins the parts into the unsharded file.
    pub shard: Option<crate::shard::Shard>,
    /// Told after each block of files read or decoded and each GPU batch; its error stops the
    /// build there, nothing cached.
    pub on_progress: Progress,
}

/// The speed factors `--speed-copies` takes: slower or faster by up to a factor of two, 1
/// (the clip itself) excluded.
pub fn check_speed_copies(factors: &[f32]) -> Result<()> {
    for (i, &f) in factors.iter().enumerate() {
        if !(0.5..=2.0).contains(&f) || f == 1.0 {
            bail!("--speed-copies {f}: a factor must lie in [0.5, 2] and not be 1");
        }
        if factors[..i].contains(&f) {
            bail!("--speed-copies {f}: given twice");
        }
    }
    Ok(())
}

/// A clip played `factor` times faster at `rate`: read as if sampled at rate x factor and
/// resampled to `rate` (the rational ratio is exact to 1 Hz). Returns the copy and the factor
/// it really has.
pub fn speed_copy(signal: &[f32], rate: u32, factor: f32) -> Result<(Vec<f32>, f32)> {
    let from = (rate as f64 * factor as f64).round() as u32;
    Ok((audio::resample(signal, from, rate)?, from as f32 / rate as f32))
}

/// What happened while building, for the user.
#[derive(Debug, Default)]
pub struct BuildReport {
    pub clips: usize,
    /// Files that could not be used: (relative path, error).
    pub skipped: Vec<(String, String)>,
    /// Audio files no rule of their folder's layout took.
    pub unmatched: Vec<(String, String)>,
    /// Per source, the layout recognised and how many files it took.
    pub layouts: Vec<String>,
    /// FLAC files written without an MD5 signature: used, but their audio could not be verified.
    pub unverified: Vec<String>,
    pub filtered_out: usize,
    pub cache_file: Option<PathBuf>,
    pub cache_hit: bool,
    pub audio_seconds: f64,
    pub read_s: f64,
    pub decode_s: f64,
    pub gpu_s: f64,
    pub total_s: f64,
}

/// Progress of a long stage on stderr: a bar on a terminal; otherwise (a log file, a batch
/// job) a line at every tenth of the work, so that minutes of decoding are never silent.
enum Meter {
    Bar(indicatif::ProgressBar),
    Lines { what: String, total: usize, done: std::sync::atomic::AtomicUsize },
    Off,
}

impl Meter {
    fn inc(&self, n: u64) {
        match self {
            Meter::Bar(b) => b.inc(n),
            Meter::Lines { what, total, done } => {
                let before = done.fetch_add(n as usize, std::sync::atomic::Ordering::Relaxed);
                let after = before + n as usize;
                if *total > 0 && before * 10 / total != after * 10 / total {
                    eprintln!("{what}: {after}/{total}");
                }
            }
            Meter::Off => {}
        }
    }

    fn finish_and_clear(&self) {
        if let Meter::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

fn bar(len: usize, what: &str, show: bool) -> Meter {
    if !show {
        return Meter::Off;
    }
    if !std::io::stderr().is_terminal() {
        return Meter::Lines { what: what.to_string(), total: len, done: 0.into() };
    }
    let b = indicatif::ProgressBar::new(len as u64);
    b.set_style(indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}").unwrap().progress_chars("=> "));
    b.set_message(what.to_string());
    Meter::Bar(b)
}

/// Frames of spectra per GPU batch: the largest intermediate ([frames, bins]) stays well under
/// the storage binding limit, the batch keeps device memory modest, and its spectra fit one
/// texture (one row per frame).
fn frames_per_batch(gpu: &Gpu, cfg: &FeatureConfig) -> usize {
    let stride = (cfg.n_fft / 2 + 1).next_multiple_of(4);
    let budget = (gpu.max_storage_binding() as usize).min(64 << 20);
    (budget / (stride * 4)).clamp(1, gpu.max_texture_side() as usize)
}

/// Refuses a decoded clip too long for one GPU batch (its spectra must fit one texture), with
/// the length and the limit in the message.
pub fn check_length(gpu: &Gpu, cfg: &FeatureConfig, samples: usize) -> Result<()> {
    let frames = cfg.layout()?.frames(samples);
    let budget = frames_per_batch(gpu, cfg);
    if frames > budget {
        bail!(
            "too long: {:.0} s gives {frames} frames, more than the {budget} one GPU batch holds on this adapter",
            samples as f64 / cfg.sample_rate as f64
        );
    }
    Ok(())
}

/// The labelled data a command reads: its sources, the selection and the label map.
#[derive(Clone, Debug, Default)]
pub struct Data {
    pub sources: Vec<Source>,
    pub selection: Selection,
    pub label_map: LabelMap,
}

impl Data {
    /// How the sources are named in messages.
    fn flags(&self) -> String {
        self.sources.iter().map(Source::flag).collect::<Vec<_>>().join(" ")
    }
}

pub fn build(gpu: &Gpu, data: &Data, cfg: &FeatureConfig, opts: &BuildOptions) -> Result<(FeatureSet, BuildReport)> {
    build_from(gpu, data, sources::load(&data.sources, &data.selection, &data.label_map)?, cfg, opts)
}

/// `build` on clips already read from `data`'s sources (`sources::load`), for a caller that
/// tells a bad folder or manifest apart from what fails later.
pub fn build_from(gpu: &Gpu, data: &Data, mut found: sources::Loaded, cfg: &FeatureConfig, opts: &BuildOptions) -> Result<(FeatureSet, BuildReport)> {
    let start = Instant::now();
    if let Some(shard) = opts.shard {
        let total = found.clips.len();
        found.clips = shard.select(&found.clips);
        found.summary.push(format!("shard {}/{}: {} of {total} labelled clips", shard.index, shard.count, found.clips.len()));
    }
    let selection = &data.selection;
    let mut report = BuildReport { unmatched: found.unmatched, filtered_out: found.filtered_out + found.dropped_by_map, layouts: found.summary, skipped: found.skipped, ..Default::default() };
    if found.clips.is_empty() {
        bail!("{}: no labelled clips match the selection ({} other audio files, {} left out by the selection or the label map)", data.flags(), report.unmatched.len(), report.filtered_out);
    }
    if opts.strict && let Some((origin, why)) = report.skipped.first() {
        bail!("{origin}: {why} (stopping at the first bad file: --strict)");
    }
    // Read every file once: its bytes feed both the cache key and the decoder.
    let t = Instant::now();
    let bytes: Vec<Result<Vec<u8>>> =
        in_blocks(found.clips.iter(), "read", &opts.on_progress, |c| std::fs::read(&c.file).with_context(|| format!("{}: cannot read", c.file.display())))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(serde_json::to_string(&(cfg, selection, super::set::FORMAT, super::set::COMPUTATION))?.as_bytes());
    // A block whose clip statistics skip frames (f0's, over its voiced frames; every frame,
    // zeros included, before) says so in the key, so no older cache entry serves the old ones.
    // Other sets keep their keys.
    if cfg.set.iter().any(|b| b.moment_frames() != crate::ops::segment::Frames::All) {
        hasher.update(b"f0 moments over voiced frames");
    }
    // Pitch blocks made before librosa's d(1) was matched (session 31: voicing, voiced_prob
    // and yin moved on quiet frames) are never served again; sets without them keep their keys.
    if cfg.has_pitch() {
        hasher.update(b"pitch: librosa's d(1)");
    }
    check_speed_copies(&opts.speed_copies)?;
    // Only files with copies hash them: every earlier cache entry keeps its key.
    if !opts.speed_copies.is_empty() {
        hasher.update(format!("speed copies {:?}", opts.speed_copies).as_bytes());
    }
    // Labels from names are fixed by the path; labels from a manifest or a label map are not, so
    // they join the key (RAVDESS folders keep the keys their cache entries always had).
    if !data.label_map.is_empty() {
        hasher.update(format!("label map {:?}", data.label_map.pairs()).as_bytes());
    }
    for (clip, b) in found.clips.iter().zip(&bytes) {
        hasher.update(clip.info.path.as_bytes());
        if clip.info.corpus.as_deref() != Some("ravdess") || clip.info.speaker.is_some() {
            hasher.update(serde_json::to_string(&(&clip.info.emotion, &clip.info.speaker, &clip.info.segment, &clip.info.corpus))?.as_bytes());
        }
        match b {
            Ok(b) => hasher.update(blake3::hash(b).as_bytes()),
            Err(e) => hasher.update(e.to_string().as_bytes()),
        };
    }
    let key = hasher.finalize().to_hex()[..32].to_string();
    report.read_s = t.elapsed().as_secs_f64();
    if let Some(dir) = &opts.cache_dir {
        let file = dir.join(format!("{key}.safetensors"));
        report.cache_file = Some(file.clone());
        if file.exists() {
            // A corrupt cache entry is rebuilt, not trusted.
            if let Ok(set) = FeatureSet::read(&file) {
                report.cache_hit = true;
                report.clips = set.clips.len();
                // The files skipped when the entry was made are skipped again, and listed, and
                // the FLACs that could not be verified are listed again: both were kept beside it
                // (for an older entry, the gap shows which were skipped).
                let notes = std::fs::read(notes_file(&file)).ok().and_then(|b| CacheNotes::parse(&b));
                report.unverified = notes.as_ref().map(|n| n.unverified.clone()).unwrap_or_default();
                report.skipped = notes.map(|n| n.skipped).unwrap_or_else(|| {
                    let kept: std::collections::HashSet<&str> = set.clips.iter().map(|c| c.path.as_str()).collect();
                    found.clips.iter().filter(|c| !kept.contains(c.info.path.as_str())).map(|c| (c.info.path.clone(), "could not be used when these features were cached (--no-cache shows why)".to_string())).collect()
                });
                report.total_s = start.elapsed().as_secs_f64();
                return Ok((set, report));
            }
        }
    }

    // Decode and resample in parallel; failures are reported with the file's name.
    let t = Instant::now();
    let progress = bar(found.clips.len(), "decode", opts.progress);
    let decode = |clip: &sources::Clip, b: Result<Vec<u8>>| {
        let name = || clip.file.display().to_string();
        let r = b.and_then(|b| {
            let mut a = audio::decode_bytes(&b).with_context(name)?;
            if let Some(segment) = clip.info.segment {
                a.samples = cut_segment(&a.samples, a.sample_rate, segment).with_context(name)?;
            }
            let s = audio::to_rate(&a, cfg.sample_rate).with_context(name)?;
            audio::check_signal(&s, cfg.sample_rate).with_context(name)?;
            check_length(gpu, cfg, s.len()).map_err(|e| anyhow::anyhow!("{e:#} (cut it into segments: a --manifest with start and end columns, docs/guide/data.md)")).with_context(name)?;
            Ok((s, a.integrity))
        });
        progress.inc(1);
        r
    };
    let decoded: Vec<Result<(Vec<f32>, audio::Integrity)>> = in_blocks(found.clips.iter().zip(bytes), "decode", &opts.on_progress, |(clip, b)| decode(clip, b))?;
    progress.finish_and_clear();
    report.decode_s = t.elapsed().as_secs_f64();
    let mut clips = Vec::new();
    let mut signals = Vec::new();
    for (clip, r) in found.clips.iter().zip(decoded) {
        match r {
            Ok((s, integrity)) => {
                if integrity == audio::Integrity::Unverifiable {
                    report.unverified.push(clip.info.key());
                }
                clips.push(clip.info.clone());
                signals.push(s);
            }
            Err(e) if opts.strict => return Err(e.context("stopping at the first bad file (--strict)")),
            Err(e) => report.skipped.push((clip.info.key(), format!("{e:#}"))),
        }
    }
    if signals.is_empty() {
        // Nothing is left to report the skipped files later: say why here.
        let why: Vec<String> = report.skipped.iter().take(3).map(|(file, e)| format!("\n  {file}: {e}")).collect();
        let more = report.skipped.len().saturating_sub(why.len());
        let more = if more > 0 { format!("\n  and {more} more") } else { String::new() };
        bail!("{}: none of the {} selected files could be decoded:{}{more}", data.flags(), found.clips.len(), why.concat());
    }
    if !opts.speed_copies.is_empty() {
        let originals = clips.len();
        for &factor in &opts.speed_copies {
            let copies: Vec<Result<(Vec<f32>, f32)>> = signals[..originals]
                .par_iter()
                .zip(&clips[..originals])
                .map(|(s, c)| {
                    let (copy, real) = speed_copy(s, cfg.sample_rate, factor)?;
                    check_length(gpu, cfg, copy.len()).with_context(|| format!("{}: its copy at speed {real}", c.path))?;
                    Ok((copy, real))
                })
                .collect();
            for (i, r) in copies.into_iter().enumerate() {
                let (copy, real) = r?;
                clips.push(ClipInfo { speed: Some(real), ..clips[i].clone() });
                signals.push(copy);
            }
        }
    }
    report.audio_seconds = signals.iter().map(|s| s.len()).sum::<usize>() as f64 / cfg.sample_rate as f64;

    let t = Instant::now();
    let slices: Vec<&[f32]> = signals.iter().map(Vec::as_slice).collect();
    let mut set = extract_all(gpu, cfg, clips, &slices, opts.progress, &opts.on_progress)?;
    set.label_map = data.label_map.pairs();
    report.gpu_s = t.elapsed().as_secs_f64();
    report.clips = set.clips.len();
    if let Some(file) = &report.cache_file {
        // The cache is an optimisation: failing to write it is not an error.
        let notes = serde_json::to_vec(&CacheNotes { skipped: report.skipped.clone(), unverified: report.unverified.clone() }).map_err(anyhow::Error::from);
        if let Err(e) = set.write(file).and_then(|()| crate::store::write_atomic(&notes_file(file), &notes?)) {
            eprintln!("warning: feature cache not written: {e:#}");
        }
    }
    report.total_s = start.elapsed().as_secs_f64();
    Ok((set, report))
}

/// Joins the parts `ser features --shard I/N` wrote (given in shard order) into the file the
/// unsharded run writes, byte for byte: the clips in order, frames padded to the longest clip,
/// and speed copies after every original as an unsharded run lays them out. Parts of another
/// feature configuration, or holding a clip twice, are refused naming the part.
pub fn merge(parts: &[PathBuf]) -> Result<FeatureSet> {
    let Some(first) = parts.first() else { bail!("--merge: no parts given") };
    let sets: Vec<FeatureSet> = parts.iter().map(|p| FeatureSet::read(p)).collect::<Result<_>>()?;
    for (p, s) in parts.iter().zip(&sets) {
        if s.config != sets[0].config || s.has_frames() != sets[0].has_frames() {
            bail!("--merge {}: made with another feature configuration than {}; parts of one file share one", p.display(), first.display());
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (p, s) in parts.iter().zip(&sets) {
        for c in &s.clips {
            if let Some(other) = seen.insert((c.key(), c.speed.map(f32::to_bits)), p) {
                bail!("--merge {}: clip {} is also in {}; give each part once", p.display(), c.key(), other.display());
            }
        }
    }
    // An unsharded run lists every original, then each speed factor's copies in turn.
    let mut factors: Vec<Option<u32>> = vec![None];
    for c in sets.iter().flat_map(|s| &s.clips) {
        if !factors.contains(&c.speed.map(f32::to_bits)) {
            factors.push(c.speed.map(f32::to_bits));
        }
    }
    let joined = FeatureSet::concat(sets)?;
    let group = |i: usize| factors.iter().position(|f| *f == joined.clips[i].speed.map(f32::to_bits)).unwrap();
    let mut order: Vec<usize> = (0..joined.clips.len()).collect();
    order.sort_by_key(|&i| group(i));
    Ok(joined.select(&order))
}

/// The samples of `[start, end)` seconds of a clip at its own rate, sample-exact: the segment
/// gives the features the same samples give in a file of their own.
pub fn cut_segment(samples: &[f32], rate: u32, [start, end]: [f64; 2]) -> Result<Vec<f32>> {
    let (first, last) = ((start * rate as f64).round() as usize, (end * rate as f64).round() as usize);
    if last > samples.len() {
        bail!("segment {start}-{end} s runs past the file's end ({:.3} s)", samples.len() as f64 / rate as f64);
    }
    Ok(samples[first..last].to_vec())
}

/// What a cache entry's build said about its files, kept beside it so that a hit says it again.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheNotes {
    /// Files that could not be used: (file, why).
    skipped: Vec<(String, String)>,
    /// FLACs without an MD5 signature, used as decoded.
    unverified: Vec<String>,
}

impl CacheNotes {
    /// The notes, or an older entry's list of skipped files alone.
    fn parse(bytes: &[u8]) -> Option<CacheNotes> {
        serde_json::from_slice(bytes).ok().or_else(|| serde_json::from_slice(bytes).ok().map(|skipped| CacheNotes { skipped, unverified: Vec::new() }))
    }
}

/// Where a cache entry keeps its notes (the name it has always had: the skipped files came first).
fn notes_file(entry: &Path) -> PathBuf {
    entry.with_extension("skipped.json")
}

/// Files read or decoded together between two progress reports: enough to keep every core
/// busy, few enough that a stop comes within a second or two.
const FILES_PER_BLOCK: usize = 256;

/// `work` on every item, in parallel within blocks of [`FILES_PER_BLOCK`], the results in the
/// items' order; `on_progress` hears of each block as `stage` and may stop the run there.
fn in_blocks<T: Send, R: Send>(items: impl ExactSizeIterator<Item = T>, stage: &'static str, on_progress: &Progress, work: impl Fn(T) -> R + Sync) -> Result<Vec<R>> {
    let total = items.len();
    let mut items = items.peekable();
    let mut done = Vec::with_capacity(total);
    while items.peek().is_some() {
        let block: Vec<T> = items.by_ref().take(FILES_PER_BLOCK).collect();
        done.par_extend(block.into_par_iter().map(&work));
        on_progress.report(stage, done.len(), total)?;
    }
    Ok(done)
}

/// Extracts features of decoded clips in GPU batches and lays them out as one feature set;
/// `bars` draws a progress bar, `on_progress` hears of each batch and may stop the run.
pub fn extract_all(gpu: &Gpu, cfg: &FeatureConfig, clips: Vec<ClipInfo>, signals: &[&[f32]], bars: bool, on_progress: &Progress) -> Result<FeatureSet> {
    let ex = Extractor::new(gpu, cfg)?;
    let layout = cfg.layout()?;
    let dim = cfg.dim();
    let budget = frames_per_batch(gpu, cfg);
    let lengths: Vec<u32> = signals.iter().map(|s| layout.frames(s.len()) as u32).collect();
    if let Some((i, _)) = lengths.iter().enumerate().find(|(_, l)| **l as usize > budget) {
        bail!("{}: too long for one GPU batch ({} frames, at most {budget})", clips[i].path, lengths[i]);
    }
    let t_max = *lengths.iter().max().unwrap_or(&0) as usize;
    let n = signals.len();
    let mut frames = vec![0f32; n * t_max * dim];
    let mut vectors = vec![0f32; n * dim];
    let mut stds = vec![0f32; n * dim];
    let progress = bar(n, "features", bars);
    let mut first = 0;
    while first < n {
        let mut end = first;
        let mut batch_frames = 0;
        while end < n && batch_frames + lengths[end] as usize <= budget {
            batch_frames += lengths[end] as usize;
            end += 1;
        }
        let f = ex.extract(gpu, &signals[first..end])?;
        for (i, c) in (first..end).enumerate() {
            let rows = f.lengths[i] as usize * dim;
            frames[c * t_max * dim..][..rows].copy_from_slice(&f.frames[i * f.t_max * dim..][..rows]);
            vectors[c * dim..][..dim].copy_from_slice(&f.vectors[i * dim..][..dim]);
            stds[c * dim..][..dim].copy_from_slice(&f.stds[i * dim..][..dim]);
        }
        progress.inc((end - first) as u64);
        first = end;
        on_progress.report("features", first, n)?;
    }
    progress.finish_and_clear();
    Ok(FeatureSet { config: cfg.clone(), clips, frames, lengths, t_max, vectors, stds, dim, label_map: vec![], distribution: vec![], distribution_width: 0, durations: vec![], voicing: vec![] })
}
