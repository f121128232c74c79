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
                    let gpu = crate::gpu::Gpu::new(sel)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keys_undo_quoting() {
        assert_eq!(csv_key("file,label"), None);
        assert_eq!(csv_key("a.wav,neutral,0.5").as_deref(), Some("a.wav"));
        assert_eq!(csv_key("\"my, \"\"take\"\".wav\",neutral").as_deref(), Some("my, \"take\".wav"));
    }
}
