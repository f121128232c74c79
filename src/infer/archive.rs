//! Prediction over archives: file lists too long for a command line, deterministic shards of
//! the input for array jobs (Slurm, Kubernetes Indexed Jobs), and an output file that a rerun
//! after a kill resumes without duplicating or tearing a line.

use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Shard `index` of `count` (0-based): a contiguous run of the sorted input, so that the
/// shards' outputs concatenated in shard order are the unsharded run's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// "I/N" with 0 <= I < N.
    pub fn parse(text: &str) -> Result<Shard> {
        let (i, n) = text.split_once('/').with_context(|| format!("--shard {text:?}: expected I/N, e.g. 0/4"))?;
        let (index, count): (usize, usize) = (
            i.trim().parse().with_context(|| format!("--shard {text:?}: {i:?} is not a shard index"))?,
            n.trim().parse().with_context(|| format!("--shard {text:?}: {n:?} is not a shard count"))?,
        );
        Shard::new(index, count).with_context(|| format!("--shard {text:?}"))
    }

    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            bail!("shard {index} of {count}: the index must be below the count (0-based)");
        }
        Ok(Shard { index, count })
    }

    /// The shard an array job's environment names, and where it came from: Slurm
    /// (`SLURM_ARRAY_TASK_ID` with `SLURM_ARRAY_TASK_COUNT`, or with `..._MIN`/`..._MAX`) or a
    /// Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with the count from `count` — the
    /// `--shard-count` flag — or `SER_SHARD_COUNT`, since a pod does not see its job's
    /// completions). None outside array jobs.
    pub fn from_env(count: Option<usize>, env: impl Fn(&str) -> Option<String>) -> Result<Option<(Shard, String)>> {
        let num = |key: &str| -> Result<Option<usize>> {
            env(key).map(|v| v.trim().parse::<usize>().with_context(|| format!("{key}={v:?} is not a number"))).transpose()
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let (index, n) = match (num("SLURM_ARRAY_TASK_COUNT")?, num("SLURM_ARRAY_TASK_MIN")?, num("SLURM_ARRAY_TASK_MAX")?) {
                (_, Some(min), Some(max)) if max >= min && id >= min => (id - min, max - min + 1),
                (Some(n), _, _) => (id, n),
                _ => bail!("SLURM_ARRAY_TASK_ID={id} without SLURM_ARRAY_TASK_COUNT or MIN/MAX: give --shard I/N"),
            };
            let shard = Shard::new(index, count.unwrap_or(n)).context("Slurm array task")?;
            return Ok(Some((shard, format!("Slurm array task {id}"))));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let n = count.or(num("SER_SHARD_COUNT")?).context("JOB_COMPLETION_INDEX is set but not the shard count: give --shard-count N (the job's completions) or SER_SHARD_COUNT")?;
            return Ok(Some((Shard::new(index, n).context("Kubernetes Indexed Job")?, format!("Kubernetes job completion index {index}"))));
        }
        Ok(None)
    }

    /// This shard's part of `sorted`: items [index * len / count, (index + 1) * len / count).
    pub fn select<T: Clone>(&self, sorted: &[T]) -> Vec<T> {
        let len = sorted.len();
        sorted[self.index * len / self.count..(self.index + 1) * len / self.count].to_vec()
    }
}

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

/// Predicts `files` with one worker per adapter (each opens its own device and loads the model
/// from `model`, None for the built-in one). The files are cut into blocks of
/// `o.files_per_chunk`; a worker takes the next block when it finishes one (so faster adapters
/// do more), and `emit` sees the predictions in input order whatever finished first. Returns
/// the files that could not be predicted. Not for speaker-normalised models (they need every
/// clip of a speaker in one place).
pub fn predict_on_adapters(
    selectors: &[crate::gpu::AdapterSelector],
    model: Option<&Path>,
    files: &[PathBuf],
    o: &super::PredictOptions,
    mut emit: impl FnMut(super::Prediction),
) -> Result<Vec<(String, String)>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    type Block = (usize, Result<(Vec<super::Prediction>, Vec<(String, String)>)>);
    let blocks: Vec<&[PathBuf]> = files.chunks(o.files_per_chunk.max(1)).collect();
    let next = AtomicUsize::new(0);
    let mut failed = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel::<Block>();
        for sel in selectors {
            let (tx, next, blocks) = (tx.clone(), &next, &blocks);
            scope.spawn(move || {
                let worker = || -> Result<(crate::gpu::Gpu, super::Predictor)> {
                    let gpu = crate::gpu::Gpu::new(sel)?;
                    let p = super::load_model(&gpu, model)?;
                    if p.meta.speaker_norm.is_some() {
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
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(block) = blocks.get(i) else { return };
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
    Ok(failed)
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
    fn shards_partition_the_input_without_overlap() {
        for len in [0usize, 1, 7, 10, 101] {
            let items: Vec<usize> = (0..len).collect();
            for count in 1..=8 {
                let joined: Vec<usize> = (0..count).flat_map(|i| Shard::new(i, count).unwrap().select(&items)).collect();
                assert_eq!(joined, items, "len {len}, {count} shards");
            }
        }
        assert!(Shard::parse("4/4").is_err() && Shard::parse("1/0").is_err() && Shard::parse("x").is_err());
        assert_eq!(Shard::parse(" 2/5 ").unwrap(), Shard { index: 2, count: 5 });
    }

    #[test]
    fn array_job_environments_name_the_shard() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let slurm = Shard::from_env(None, env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "8")])).unwrap().unwrap();
        assert_eq!(slurm.0, Shard { index: 3, count: 8 });
        // --array=1-4: ids 1..4, shards 0..3.
        let ranged = Shard::from_env(None, env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "4")])).unwrap().unwrap();
        assert_eq!(ranged.0, Shard { index: 3, count: 4 });
        let k8s = Shard::from_env(Some(6), env(&[("JOB_COMPLETION_INDEX", "5")])).unwrap().unwrap();
        assert_eq!(k8s.0, Shard { index: 5, count: 6 });
        assert!(Shard::from_env(None, env(&[("JOB_COMPLETION_INDEX", "5")])).is_err(), "no count: an error, not a guess");
        assert!(Shard::from_env(None, env(&[])).unwrap().is_none());
        assert!(Shard::from_env(None, env(&[("SLURM_ARRAY_TASK_ID", "9"), ("SLURM_ARRAY_TASK_COUNT", "8")])).is_err());
    }

    #[test]
    fn csv_keys_undo_quoting() {
        assert_eq!(csv_key("file,label"), None);
        assert_eq!(csv_key("a.wav,neutral,0.5").as_deref(), Some("a.wav"));
        assert_eq!(csv_key("\"my, \"\"take\"\".wav\",neutral").as_deref(), Some("my, \"take\".wav"));
    }
}
