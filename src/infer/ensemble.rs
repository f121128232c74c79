//! Ensemble files (`ser ensemble`): models of any kinds and inputs, trained apart, saved as one
//! model whose class probabilities are the mean of theirs. The file holds each member's own
//! model file whole, so every member is read and checked by its own family's loader.
//!
//! Layout (kind "ensemble"): tensors `member0` .. `member{n-1}`, U8 [bytes], each a complete
//! model file of another kind; metadata `format`, `kind` = "ensemble", `members` = n and
//! `member_kinds` (a JSON list, for people reading the header).

use super::Predictor;
use crate::gpu::Gpu;
use crate::nn::checkpoint::{self, FORMAT, KIND};
use crate::store::{self, Loaded, Stored};
use anyhow::{Context, Result, bail};
use safetensors::Dtype;

pub use checkpoint::ENSEMBLE_KIND;

/// Most members an ensemble file may hold (a bound for files from elsewhere).
pub const MAX_MEMBERS: usize = 64;

/// Joins models into one ensemble, flattening members that are ensembles themselves. They must
/// share classes (in order), feature configuration and speaker normalisation: their
/// probabilities are averaged class by class over the same clips. Each keeps its own kind,
/// input, scaler and temperature.
pub fn join(models: Vec<Predictor>) -> Result<Predictor> {
    let mut members: Vec<Predictor> = Vec::new();
    for mut m in models {
        let others = std::mem::take(&mut m.others);
        members.push(m);
        members.extend(others);
    }
    if members.len() < 2 {
        bail!("an ensemble needs at least two models, {} given", members.len());
    }
    if members.len() > MAX_MEMBERS {
        bail!("an ensemble holds at most {MAX_MEMBERS} models, {} given", members.len());
    }
    if let Some((i, why)) = members.iter().enumerate().find_map(|(i, m)| mismatch(&members[0], m).map(|why| (i, why))) {
        bail!("model {} {why}", i + 1);
    }
    let mut members = members.into_iter();
    let mut first = members.next().expect("two members");
    first.others = members.collect();
    Ok(first)
}

/// Why `m` cannot be averaged with `first` over the same clips of one feature file, if so:
/// other classes or another feature configuration (what `ser eval` requires of its models).
pub fn data_mismatch(first: &Predictor, m: &Predictor) -> Option<String> {
    let (a, b) = (&first.meta.data, &m.meta.data);
    let names = |c: &[crate::audio::Emotion]| c.iter().map(|e| e.name()).collect::<Vec<_>>().join(",");
    if a.classes != b.classes {
        Some(format!("has the classes {} where the first has {}: an ensemble averages the same classes in the same order", names(&b.classes), names(&a.classes)))
    } else if a.features != b.features {
        Some("reads features of another configuration than the first (sample rate, frames, feature set): an ensemble reads one feature file".to_string())
    } else {
        None
    }
}

/// Why `m` cannot join `first` in an ensemble file, if so: the data differ, or the speaker
/// normalisation (one file normalises its members' speakers together).
fn mismatch(first: &Predictor, m: &Predictor) -> Option<String> {
    data_mismatch(first, m).or_else(|| {
        (first.meta.data.speaker_norm != m.meta.data.speaker_norm)
            .then(|| "normalises speakers otherwise than the first (--speaker-norm, --min-speaker-clips): an ensemble's members normalise alike".to_string())
    })
}

/// The ensemble file's bytes: each member's own file whole.
pub fn to_bytes(gpu: &Gpu, p: &Predictor) -> Result<Vec<u8>> {
    let files: Vec<Vec<u8>> = p.members().enumerate().map(|(k, m)| m.classifier.to_bytes(gpu, &m.meta).with_context(|| format!("member {k}"))).collect::<Result<_>>()?;
    let names: Vec<String> = (0..files.len()).map(|k| format!("member{k}")).collect();
    let stored: Vec<Stored> = files.iter().zip(&names).map(|(bytes, name)| Stored { name, dtype: Dtype::U8, shape: vec![bytes.len()], bytes }).collect();
    let kinds: Vec<&str> = p.members().map(|m| m.classifier.family().kind).collect();
    let metadata = [
        ("format", FORMAT.to_string()),
        (KIND, ENSEMBLE_KIND.to_string()),
        ("members", files.len().to_string()),
        ("member_kinds", serde_json::to_string(&kinds)?),
    ];
    store::to_safetensors(&stored, metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The members of an ensemble file, each loaded by its own kind, joined.
pub fn load(gpu: &Gpu, f: &Loaded) -> Result<Predictor> {
    let members = member_files(f)?.into_iter().map(|m| super::load_file(gpu, m)).collect::<Result<Vec<_>>>()?;
    join(members).with_context(|| format!("{}: its members cannot be averaged", f.path))
}

/// Each member's file, checked to be a ser model and not an ensemble itself.
pub fn member_files(f: &Loaded) -> Result<Vec<Loaded>> {
    let n: usize = f.meta("members")?.parse().ok().filter(|n| (2..=MAX_MEMBERS).contains(n)).with_context(|| format!("{}: metadata \"members\" is not a count from 2 to {MAX_MEMBERS}", f.path))?;
    (0..n)
        .map(|k| {
            let (bytes, shape) = f.tensor::<u8>(&format!("member{k}"), Dtype::U8)?;
            if shape.len() != 1 {
                bail!("{}: tensor member{k} has shape {shape:?}, not [bytes]", f.path);
            }
            let member = Loaded::from_bytes(&format!("{} (member {k})", f.path), bytes)?;
            if checkpoint::kind_of(&member)? == ENSEMBLE_KIND {
                bail!("{}: an ensemble inside an ensemble (`ser ensemble` flattens them)", member.path);
            }
            Ok(member)
        })
        .collect()
}
