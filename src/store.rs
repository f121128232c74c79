//! Files `ser` writes: safetensors with JSON metadata, always written atomically (a temporary
//! file in the same folder, synced, then renamed), so a crash or a full disk never leaves a
//! half-written feature file or checkpoint in place of a good one.

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Checks before any work that `path` can take an output file: if it exists it is a regular
/// file (never a symbolic link, folder or device, which an atomic rename would replace), and
/// its folder exists (made if missing) and accepts a new file (tried). `flag` names the option.
pub fn check_output_path(path: &Path, flag: &str) -> Result<()> {
    refuse_non_file(path, flag)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // A missing folder is made, as the write would make it.
    std::fs::create_dir_all(dir).with_context(|| format!("{flag} {}: cannot create the folder {}", path.display(), dir.display()))?;
    let probe = dir.join(format!(".ser-write-probe.{}", std::process::id()));
    std::fs::File::create(&probe).with_context(|| format!("{flag} {}: cannot write in {}", path.display(), dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn refuse_non_file(path: &Path, flag: &str) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let kind = meta.file_type();
        if kind.is_symlink() {
            bail!("{flag} {}: is a symbolic link; give the path of the file itself", path.display());
        }
        if !kind.is_file() {
            bail!("{flag} {}: exists and is not a regular file (a folder, device or FIFO)", path.display());
        }
    }
    Ok(())
}

/// Temporary files of earlier writes to `name` in `dir` that a killed process left behind
/// (older than ten minutes, so a concurrent writer's own file is never touched).
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let old = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > 600);
        if file.starts_with(&prefix) && file.ends_with(".tmp") && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes `bytes` to `path` atomically. Refuses to replace anything but a regular file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    refuse_non_file(path, "output")?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}: cannot write", path.display()));
    }
    remove_stale_temporaries(dir, &name.to_string_lossy());
    Ok(())
}

/// A tensor to store: name, element type, shape, little-endian bytes.
pub struct Stored<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
}

/// Serialises tensors and string metadata to safetensors bytes.
pub fn to_safetensors(tensors: &[Stored], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| Ok((t.name.to_string(), TensorView::new(t.dtype, t.shape.clone(), t.bytes)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    canonical_header(safetensors::serialize(views, Some(metadata))?)
}

/// The same safetensors file with its JSON header's keys sorted (the metadata arrives as a
/// `HashMap`, whose order changes from process to process): the same contents give the same
/// bytes, so that a merged feature file can equal the unsharded one and files can be compared
/// by hash. The header stays padded with spaces to a multiple of 8 bytes, as safetensors writes it.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    // serde_json's maps are ordered by key: parsing and printing sorts them.
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    let mut text = serde_json::to_vec(&header)?;
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// A safetensors file read into memory, with helpers that name the file in every error.
pub struct Loaded {
    pub path: String,
    bytes: Vec<u8>,
}

impl Loaded {
    pub fn read(path: &Path) -> Result<Loaded> {
        let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Loaded::from_bytes(&path.display().to_string(), bytes)
    }

    /// Bytes already in memory (an embedded file), named `name` in errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Loaded> {
        SafeTensors::deserialize(&bytes).with_context(|| format!("{name}: not a valid safetensors file (truncated or corrupt?)"))?;
        Ok(Loaded { path: name.to_string(), bytes })
    }

    pub fn metadata(&self) -> HashMap<String, String> {
        SafeTensors::read_metadata(&self.bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }

    pub fn meta(&self, key: &str) -> Result<String> {
        self.metadata().remove(key).with_context(|| format!("{}: metadata has no {key:?}", self.path))
    }

    /// A tensor's data as `T`, checking its element type and returning its shape.
    /// The file's size in bytes (an upper bound on what its tensors hold).
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn tensor<T: bytemuck::Pod>(&self, name: &str, dtype: Dtype) -> Result<(Vec<T>, Vec<usize>)> {
        let st = SafeTensors::deserialize(&self.bytes)?;
        let t = st.tensor(name).with_context(|| format!("{}: no tensor {name:?}", self.path))?;
        if t.dtype() != dtype {
            bail!("{}: tensor {name:?} is {:?}, expected {dtype:?}", self.path, t.dtype());
        }
        Ok((bytemuck::pod_collect_to_vec(t.data()), t.shape().to_vec()))
    }
}
