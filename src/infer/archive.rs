//! Prediction over archives: file lists too long for a command line, deterministic shards of
//! the input for array jobs (Slurm, Kubernetes Indexed Jobs), and an output file that a rerun
//! after a kill resumes without duplicating or tearing a line.

use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};

pub use crate::shard::Shard;

/// Paths listed one per line in `source` (a file, or `-` for standard input); blank lines are
/// skipped, and names are taken byte for byte (a name may hold anything but a line break).
pub fn read_file_list(source: &str) -> Result<Vec<PathBuf>> {
    let mut bytes = Vec::new();
    if source == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("--files-from -: reading standard input")?;
    } else {
        bytes = std::fs::read(source).with_context(|| format!("--files-from {source}: cannot read"))?;
    }
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        #[cfg(unix)]
        out.push(PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(line)));
        #[cfg(not(unix))]
        out.push(PathBuf::from(String::from_utf8_lossy(line).into_owned()));
    }
    Ok(out)
}

/// Sorted by the paths' bytes: the order shards are cut from.
pub fn sort_paths(paths: &mut [PathBuf]) {
    paths.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
}

/// An output file written as results arrive and resumed by a rerun: whole lines only (each
/// file's lines go out in one write, and a torn last line left by a kill is cut off on reopening),
/// the files already in it are skipped, and the finished file is the one an uninterrupted run
/// writes.
pub struct ResumableOutput {
    file: std::fs::File,
    done: HashSet<String>,
}

impl ResumableOutput {
    /// Opens (or creates, writing `header` first) `path`; `key` gives the input file a line
    /// belongs to (None for a header).
    pub fn open(path: &Path, header: Option<&str>, key: impl Fn(&str) -> Option<String>) -> Result<ResumableOutput> {
        crate::store::check_output_path(path, "--out")?;
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(path).with_context(|| format!("--out {}: cannot open", path.display()))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).with_context(|| format!("--out {}: cannot read", path.display()))?;
        // A kill mid-write leaves a line without its newline: it is dropped and redone.
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            file.set_len(whole as u64).with_context(|| format!("--out {}: cannot cut a torn last line", path.display()))?;
            file.seek(std::io::SeekFrom::End(0))?;
        }
        let mut done = HashSet::new();
        for line in text[..whole].lines() {
            let line = line?;
            if let Some(k) = key(&line) {
                done.insert(k);
            }
        }
        if whole == 0 {
            if let Some(h) = header {
                file.write_all(format!("{h}\n").as_bytes())?;
            }
        }
        Ok(ResumableOutput { file, done })
    }

    /// Files the output already holds.
    pub fn done(&self) -> &HashSet<String> {
        &self.done
    }

    /// Appends the lines of one input file in a single write.
    pub fn write_block(&mut self, lines: &str) -> Result<()> {
        self.file.write_all(lines.as_bytes())?;
        self.file.flush()?;
        Ok(())
    }
}

/// The input file of a JSON line (`file`), or None.
pub fn jsonl_key(line: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(line).ok()?.get("file")?.as_str().map(str::to_string)
}

/// The input file of a CSV row (its first field, RFC 4180 quoting undone), or None for the
/// header.
pub fn csv_key(line: &str) -> Option<String> {
    let field = if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('"', Some('"')) => {
                    out.push('"');
                    chars.next();
                }
                ('"', _) => break,
                (c, _) => out.push(c),
            }
        }
        out
    } else {
        line.split(',').next()?.to_string()
    };
    (field != "file").then_some(field)
}

/// Files that could not be predicted: (file, reason).
pub type Skipped = Vec<(String, String)>;

/// One worker of `predict_on_adapters`: the adapter it opened, and how many blocks it predicted.
pub type WorkerShare = (String, usize);

/// Predicts `files` with one worker per adapter (each opens its own device and loads the model
/// from `model`, None for the built-in one). The files are cut into blocks of
/// `o.files_per_chunk`; a worker takes the next block when it finishes one (so faster adapters
/// do more), and `emit` sees the predictions in input order whatever finished first. Returns
/// the files that could not be predicted. Not for speaker-normalised models (they need every
/// clip of a speaker in one place). Also returns, per worker, the adapter it opened and how
/// many blocks it predicted.
pub fn predict_on_adapters(
    selectors: &[crate::gpu::AdapterSelector],
    settings: &crate::runtime::Settings,
    model: Option<&Path>,
    files: &[PathBuf],
    o: &super::PredictOptions,
    mut emit: impl FnMut(super::Prediction),
) -> Result<(Skipped, Vec<WorkerShare>)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    type Block = (usize, Result<(Vec<super::Prediction>, Vec<(String, String)>)>);
    let blocks: Vec<&[PathBuf]> = files.chunks(o.files_per_chunk.max(1)).collect();
    let next = AtomicUsize::new(0);
    let mut failed = Vec::new();
    let done: Vec<std::sync::Mutex<(String, usize)>> = selectors.iter().map(|_| std::sync::Mutex::new((String::new(), 0))).collect();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel::<Block>();
        for (sel, done) in selectors.iter().zip(&done) {
            let (tx, next, blocks) = (tx.clone(), &next, &blocks);
            scope.spawn(move || {
                let worker = || -> Result<(crate::gpu::Gpu, super::Predictor)> {
                    let gpu = crate::runtime::open(sel, settings)?;
                    let p = super::load_model(&gpu, model)?;
                    if p.meta.data.speaker_norm.is_some() {
                        bail!("a speaker-normalised model predicts on one adapter (it needs every clip of a speaker together)");
                    }
                    Ok((gpu, p))
                };
                let (gpu, p) = match worker() {
                    Ok(w) => w,
                    Err(e) => {
                        // The first block this worker would have taken carries its error.
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.send((i, Err(e.context(format!("adapter {:?}", sel.name)))));
                        return;
                    }
                };
                done.lock().unwrap_or_else(|e| e.into_inner()).0 = gpu.label();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(block) = blocks.get(i) else { return };
                    done.lock().unwrap_or_else(|e| e.into_inner()).1 += 1;
                    let mut out = Vec::new();
                    let r = p.predict_files(&gpu, block, o, |pr| out.push(pr)).map(|f| (out, f));
                    if tx.send((i, r)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        // Blocks come back in any order; they go out in input order.
        let mut waiting = std::collections::BTreeMap::new();
        let mut due = 0;
        for (i, r) in rx {
            waiting.insert(i, r);
            while let Some(r) = waiting.remove(&due) {
                let (preds, f) = r?;
                preds.into_iter().for_each(&mut emit);
                failed.extend(f);
                due += 1;
            }
        }
        if due < blocks.len() {
            bail!("prediction stopped after {due} of {} blocks (a worker failed)", blocks.len());
        }
        Ok(())
    })?;
    Ok((failed, done.into_iter().map(|d| d.into_inner().unwrap_or_else(|e| e.into_inner())).collect()))
}

/// The adapters `--adapters` names: `all`, or a comma-separated list of `ser devices` indices
/// or name substrings (a name matched on several backends takes each).
pub fn adapters_named(spec: &str) -> Result<Vec<crate::gpu::AdapterSelector>> {
    let all = crate::gpu::list_adapters();
    if all.is_empty() {
        bail!("no GPU adapter found. {}", crate::gpu::NO_ADAPTER_HELP);
    }
    let selector = |a: &crate::gpu::AdapterReport| crate::gpu::AdapterSelector { name: Some(a.name.clone()), backend: crate::gpu::BackendChoice::parse(&a.backend) };
    if spec.trim() == "all" {
        return Ok(all.iter().map(selector).collect());
    }
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let picked: Vec<&crate::gpu::AdapterReport> = match item.parse::<usize>() {
            Ok(i) => all.iter().filter(|a| a.index == i).collect(),
            Err(_) => all.iter().filter(|a| a.name.to_lowercase().contains(&item.to_lowercase())).collect(),
        };
        if picked.is_empty() {
            let present: Vec<String> = all.iter().map(|a| format!("[{}] {} ({})", a.index, a.name, a.backend)).collect();
            bail!("--adapters {item:?}: no such adapter; present: {}", present.join(", "));
        }
        out.extend(picked.into_iter().map(selector));
    }
    Ok(out)
}


crate::choices! {
    /// How predictions are written.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum OutputFormat {
        /// One JSON object per line.
        Jsonl = "jsonl",
        /// A header, then one row per prediction (RFC 4180 quoting).
        Csv = "csv",
    }
}

/// Hears how a prediction run advances.
pub trait Progress {
    /// The files the run will predict (after its shard and what its output already holds).
    fn planned(&mut self, files: usize);
    /// One prediction made.
    fn saw(&mut self, prediction: &super::Prediction);
}

/// Where a run's device work happens.
pub enum Workers<'a> {
    /// One device, the model already loaded on it.
    Local(&'a crate::gpu::Gpu, &'a super::Predictor),
    /// One worker per adapter, each opened with the settings and loading the model from
    /// `model` (None: the built-in one).
    Adapters(&'a [crate::gpu::AdapterSelector], &'a crate::runtime::Settings, Option<&'a Path>),
}

/// A prediction run over an archive: which files, how written, where.
pub struct ArchiveRun<'a> {
    /// The input, in the order given (a shard is cut from it sorted).
    pub files: Vec<PathBuf>,
    /// The shard to predict and where it came from (`--shard`, a scheduler's variables).
    pub shard: Option<(Shard, String)>,
    pub format: OutputFormat,
    /// A file written as results arrive, resumed by a rerun; None: lines go to `print`.
    pub out: Option<&'a Path>,
    pub options: &'a super::PredictOptions,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct ArchiveReport {
    /// The files this run set out to predict (after the shard and what `out` already held).
    pub files: usize,
    /// Predictions written (a file cut into segments gives several).
    pub predicted: usize,
    /// Files that could not be predicted, with the reason.
    pub failed: Skipped,
    /// Per worker with `Workers::Adapters`: the adapter it opened and the blocks it predicted.
    pub workers: Vec<WorkerShare>,
}

/// The classes of a model in the order the output lists their probabilities (sorted names, the
/// JSON lines' key order, so that both formats agree).
fn column_order(meta: &crate::nn::checkpoint::ModelMeta) -> Vec<String> {
    let mut names: Vec<String> = meta.data.classes.iter().map(|c| c.to_string()).collect();
    names.sort();
    names
}

/// The CSV header for a model's predictions.
pub fn csv_header(meta: &crate::nn::checkpoint::ModelMeta, segments: bool) -> String {
    format!("file,{}label,confidence,{}", if segments { "start,end," } else { "" }, column_order(meta).join(","))
}

/// One prediction as a JSON line or a CSV row (no line break).
pub fn prediction_line(pr: &super::Prediction, format: OutputFormat) -> String {
    match format {
        OutputFormat::Jsonl => pr.json().to_string(),
        OutputFormat::Csv => {
            // RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
            let file = if pr.file.contains([',', '"', '\n', '\r']) { format!("\"{}\"", pr.file.replace('"', "\"\"")) } else { pr.file.clone() };
            let mut sorted = pr.probabilities.clone();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let probs: Vec<String> = sorted.iter().map(|(_, v)| format!("{v:.6}")).collect();
            let span = pr.span.map_or(String::new(), |(start, end)| format!("{start:.3},{end:.3},"));
            format!("{file},{span}{},{:.6},{}", pr.label, pr.confidence, probs.join(","))
        }
    }
}

/// Predicts an archive: cuts the shard from the sorted input, skips what `run.out` already
/// holds, and writes every prediction as it arrives, one input file's lines in a single write
/// (so a kill never splits a file) to `run.out`, or to `print` line by line (the header first
/// for CSV). `progress` hears how many files are to be predicted, then of each prediction;
/// `log` gets what a user should read (the shard, files already done). Errors writing `out` stop nothing but are returned at the
/// end, so that every prediction made is kept.
pub fn predict_archive(
    workers: Workers,
    meta: &crate::nn::checkpoint::ModelMeta,
    mut run: ArchiveRun,
    print: &mut dyn FnMut(&str),
    progress: &mut dyn Progress,
    log: &dyn Fn(&str),
) -> Result<ArchiveReport> {
    if let Some((s, from)) = &run.shard {
        // Shards are cut from the sorted input, so every shard sees the same order.
        let total = run.files.len();
        sort_paths(&mut run.files);
        run.files = s.select(&run.files);
        log(&format!("shard {}/{} (from {from}): {} of {total} files", s.index, s.count, run.files.len()));
    }
    let header = (run.format == OutputFormat::Csv).then(|| csv_header(meta, run.options.segments.is_some()));
    let mut out = match run.out {
        Some(path) => {
            let key = match run.format {
                OutputFormat::Jsonl => jsonl_key,
                OutputFormat::Csv => csv_key,
            };
            let o = ResumableOutput::open(path, header.as_deref(), key)?;
            if !o.done().is_empty() {
                let before = run.files.len();
                run.files.retain(|f| !o.done().contains(&super::path_text(f)));
                log(&format!("{}: {} files already done, {} to go", path.display(), before - run.files.len(), run.files.len()));
            }
            Some(o)
        }
        None => {
            if let Some(h) = &header {
                print(h);
            }
            None
        }
    };
    let mut report = ArchiveReport { files: run.files.len(), ..Default::default() };
    progress.planned(run.files.len());
    if run.files.is_empty() {
        return Ok(report);
    }
    // One file's lines go out together (segments make several).
    let mut pending: Option<(String, String)> = None;
    let mut write_error: Option<anyhow::Error> = None;
    let mut flush = |pending: &mut Option<(String, String)>, out: &mut Option<ResumableOutput>| {
        if let (Some((_, lines)), Some(o)) = (pending.take(), out.as_mut()) {
            if let Err(e) = o.write_block(&lines) {
                write_error.get_or_insert(e);
            }
        }
    };
    let mut predicted = 0usize;
    let emit = |pr: super::Prediction| {
        predicted += 1;
        progress.saw(&pr);
        let line = prediction_line(&pr, run.format);
        if out.is_none() {
            print(&line);
            return;
        }
        if pending.as_ref().is_some_and(|(f, _)| *f != pr.file) {
            flush(&mut pending, &mut out);
        }
        pending.get_or_insert_with(|| (pr.file.clone(), String::new())).1.push_str(&format!("{line}\n"));
    };
    match workers {
        Workers::Adapters(selectors, settings, model) => {
            let (failed, shares) = predict_on_adapters(selectors, settings, model, &run.files, run.options, emit)?;
            report.failed = failed;
            report.workers = shares;
        }
        Workers::Local(gpu, predictor) => report.failed = predictor.predict_files(gpu, &run.files, run.options, emit)?,
    }
    flush(&mut pending, &mut out);
    if let Some(e) = write_error {
        return Err(e.context("--out: writing results"));
    }
    report.predicted = predicted;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keys_undo_quoting() {
        assert_eq!(csv_key("file,label"), None);
        assert_eq!(csv_key("a.wav,neutral,0.5").as_deref(), Some("a.wav"));
        assert_eq!(csv_key("\"my, \"\"take\"\".wav\",neutral").as_deref(), Some("my, \"take\".wav"));
    }

    #[test]
    fn json_keys_are_the_file_field() {
        assert_eq!(jsonl_key(r#"{"file":"a b.wav","label":"sad"}"#).as_deref(), Some("a b.wav"));
        assert_eq!(jsonl_key(r#"{"label":"sad"}"#), None);
        assert_eq!(jsonl_key("not json"), None);
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ser-archive-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn file_lists_skip_blank_lines_and_keep_names_whole() {
        let dir = temp("list");
        let list = dir.join("list.txt");
        std::fs::write(&list, "b.wav\r\n\n  \na dir/a, take 1.wav\nc.wav").unwrap();
        let files = read_file_list(list.to_str().unwrap()).unwrap();
        assert_eq!(files, [PathBuf::from("b.wav"), PathBuf::from("a dir/a, take 1.wav"), PathBuf::from("c.wav")]);
        let mut sorted = files.clone();
        sort_paths(&mut sorted);
        assert_eq!(sorted, [PathBuf::from("a dir/a, take 1.wav"), PathBuf::from("b.wav"), PathBuf::from("c.wav")]);
        assert!(read_file_list(dir.join("missing").to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A new output gets its header; a rerun finds the files already written, and a torn last
    /// line (a kill mid-write) is cut off and left to be redone.
    #[test]
    fn resumable_output_knows_what_it_holds_and_cuts_a_torn_line() {
        let dir = temp("resume");
        let path = dir.join("out.csv");
        let mut out = ResumableOutput::open(&path, Some("file,label"), csv_key).unwrap();
        assert!(out.done().is_empty());
        out.write_block("a.wav,sad\na.wav,happy\n").unwrap();
        out.write_block("b.wav,calm\n").unwrap();
        drop(out);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "file,label\na.wav,sad\na.wav,happy\nb.wav,calm\n");
        std::fs::write(&path, "file,label\na.wav,sad\nb.wav,ca").unwrap();
        let mut out = ResumableOutput::open(&path, Some("file,label"), csv_key).unwrap();
        assert_eq!(out.done(), &HashSet::from(["a.wav".to_string()]));
        out.write_block("b.wav,calm\n").unwrap();
        drop(out);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "file,label\na.wav,sad\nb.wav,calm\n", "the header once, the torn line replaced");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
