//! Where labelled clips come from: folders laid out by a corpus's naming convention (RAVDESS,
//! CREMA-D, EmoDB, TESS, SAVEE, a Hugging Face audiofolder, one folder per class) and manifests
//! (CSV, TSV, JSONL, EmoBox's JSONL). Every label lands on the canonical classes (`Emotion`),
//! through each corpus's codes and the user's label map; every clip gets its speaker when the
//! source names one. Nothing here decodes audio: `features::corpus` does that with the list.

pub mod labels;
pub mod layout;
pub mod manifest;

pub use labels::{LabelMap, Mapped};
pub use layout::Layout;

use crate::audio::{Emotion, Selection};
use crate::features::set::ClipInfo;
use anyhow::{Result, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One place labelled clips are read from (`--data DIR` or `--manifest FILE`).
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Folder(PathBuf),
    Manifest(PathBuf),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Folder(p) | Source::Manifest(p) => p,
        }
    }

    /// The flag that names it, for messages.
    pub fn flag(&self) -> String {
        match self {
            Source::Folder(p) => format!("--data {}", p.display()),
            Source::Manifest(p) => format!("--manifest {}", p.display()),
        }
    }
}

/// A labelled clip to decode: the file, and what the feature file will record of it.
#[derive(Clone, Debug)]
pub struct Clip {
    pub file: PathBuf,
    pub info: ClipInfo,
}

/// A clip as a layout or manifest reads it, before labels are mapped.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub file: PathBuf,
    /// The path the feature file records (relative to the folder or manifest).
    pub relative: String,
    /// The label as the source spells it (a corpus code such as CREMA-D's "ANG", or a word).
    pub raw_label: String,
    /// The class the corpus's own code table gives, when it has one.
    pub emotion: Option<Emotion>,
    pub speaker: Option<String>,
    pub segment: Option<[f64; 2]>,
    /// The manifest's `split` column.
    pub split: Option<crate::features::set::RowSplit>,
    /// Where the row came from, for messages: "FILE line N" or the relative path.
    pub origin: String,
    /// The RAVDESS fields, for clips named by RAVDESS's convention.
    pub ravdess: Option<crate::audio::RavdessName>,
}

/// What `load` found and what it set aside.
#[derive(Debug, Default)]
pub struct Loaded {
    pub clips: Vec<Clip>,
    /// One line per source: which layout was recognised and how many files each rule took.
    pub summary: Vec<String>,
    /// Audio files no rule of the recognised layout took: (relative path, why).
    pub unmatched: Vec<(String, String)>,
    /// Rows naming files that cannot be used (a missing file): (origin, why).
    pub skipped: Vec<(String, String)>,
    /// Clips the selection (`--vocal`, `--drop`) or the label map (`drop`) left out.
    pub filtered_out: usize,
    pub dropped_by_map: usize,
}

/// Reads every source, maps its labels onto the canonical classes and applies the selection.
/// Labels neither a corpus's code table, the canonical names nor `map` know are refused, listed
/// with their counts. Several sources train on their union: their speakers are then prefixed with
/// each source's name ("crema-d/1001"), so that two corpora's "01" stay two speakers.
pub fn load(sources: &[Source], selection: &Selection, map: &LabelMap) -> Result<Loaded> {
    if sources.is_empty() {
        bail!("no data: give --data DIR or --manifest FILE");
    }
    let mut out = Loaded::default();
    let several = sources.len() > 1;
    let mut unknown: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for source in sources {
        let read = match source {
            Source::Folder(dir) => layout::read_folder(dir, map)?,
            Source::Manifest(file) => manifest::read(file)?,
        };
        out.summary.push(format!("{}: {}", source.flag(), read.summary));
        out.unmatched.extend(read.unmatched);
        out.skipped.extend(read.skipped);
        let tag = source_tag(source);
        for row in read.rows {
            let emotion = match map.apply(&row.raw_label, row.emotion) {
                Mapped::Class(e) => e,
                Mapped::Drop => {
                    out.dropped_by_map += 1;
                    continue;
                }
                Mapped::Unknown => {
                    let entry = unknown.entry(row.raw_label.clone()).or_insert((0, row.origin.clone()));
                    entry.0 += 1;
                    continue;
                }
            };
            let mut info = ClipInfo::unlabelled(if several { format!("{tag}/{}", row.relative) } else { row.relative.clone() });
            info.emotion = Some(emotion);
            info.corpus = Some(read.layout.name().to_string());
            info.segment = row.segment;
            info.split = row.split;
            if let Some(n) = row.ravdess {
                info.actor = Some(n.actor);
                info.vocal = Some(n.vocal);
                info.intensity = Some(n.intensity);
                info.statement = Some(n.statement);
                info.repetition = Some(n.repetition);
            }
            // A RAVDESS clip's speaker is its actor (`ClipInfo::speaker_id`), as in feature files
            // made before other corpora were read; the prefixed name only when several are joined.
            info.speaker = match (row.speaker, several) {
                (Some(s), true) => Some(format!("{tag}/{s}")),
                (None, true) => info.actor.map(|a| format!("{tag}/{a:02}")),
                (_, false) if info.actor.is_some() => None,
                (s, false) => s,
            };
            let keep = info.vocal_matches(selection.vocal) && !selection.drop.contains(&emotion);
            if !keep {
                out.filtered_out += 1;
                continue;
            }
            if let Some(first) = seen.insert(info.key(), row.origin.clone()) {
                bail!("{}: the same clip ({}) is listed twice: first at {first}", row.origin, info.key());
            }
            out.clips.push(Clip { file: row.file, info });
        }
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|(label, (n, first))| format!("{label:?} ({n} clip{}, first at {first})", if *n == 1 { "" } else { "s" })).collect();
        bail!(
            "labels that are not emotion classes: {}. The classes are {}; map these with --label-map (e.g. --label-map {}=neutral, or =drop to leave a class out)",
            list.join(", "),
            Emotion::ALL.iter().map(|e| e.name()).collect::<Vec<_>>().join(", "),
            unknown.keys().next().unwrap()
        );
    }
    Ok(out)
}

/// The name a source's clips and speakers are prefixed with when several are joined: the
/// folder's or manifest's own name.
fn source_tag(source: &Source) -> String {
    let p = source.path();
    let name = match source {
        Source::Folder(_) => p.file_name(),
        Source::Manifest(_) => p.file_stem(),
    };
    name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// What one source read: its layout, its rows, what it set aside.
pub(crate) struct Read {
    pub layout: Layout,
    pub summary: String,
    pub rows: Vec<Row>,
    pub unmatched: Vec<(String, String)>,
    pub skipped: Vec<(String, String)>,
}
