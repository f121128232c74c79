//! Finding labelled RAVDESS clips under a folder and selecting the ones a run uses.

use super::ravdess::{Emotion, RavdessName, VocalChannel};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Which vocal channel to keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VocalFilter {
    Speech,
    Song,
    #[default]
    Both,
}

/// What a run keeps from a folder of RAVDESS clips.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    pub vocal: VocalFilter,
    /// Emotions left out entirely (the refined model drops disgust).
    pub drop: Vec<Emotion>,
}

impl Selection {
    pub fn keeps(&self, name: &RavdessName) -> bool {
        let vocal_ok = match self.vocal {
            VocalFilter::Both => true,
            VocalFilter::Speech => name.vocal == VocalChannel::Speech,
            VocalFilter::Song => name.vocal == VocalChannel::Song,
        };
        vocal_ok && !self.drop.contains(&name.emotion)
    }

    /// The classes that remain, in code order.
    pub fn classes(&self) -> Vec<Emotion> {
        Emotion::ALL.iter().copied().filter(|e| !self.drop.contains(e)).collect()
    }
}

/// One selected clip.
#[derive(Clone, Debug)]
pub struct LabelledClip {
    pub path: PathBuf,
    /// Path relative to the data folder, with forward slashes.
    pub relative: String,
    pub name: RavdessName,
}

/// The result of looking through a folder.
#[derive(Debug, Default)]
pub struct Discovery {
    pub clips: Vec<LabelledClip>,
    /// Audio files whose names are not RAVDESS names: (relative path, why).
    pub unmatched: Vec<(String, String)>,
    /// RAVDESS clips the selection left out.
    pub filtered_out: usize,
}

pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

/// Every `.wav`/`.flac` under `root`, parsed and filtered. Files with other names are counted
/// and reported, never silently used or dropped.
pub fn discover(root: &Path, selection: &Selection) -> Result<Discovery> {
    let mut d = Discovery::default();
    for path in super::find_audio_files(root)? {
        let rel = relative(root, &path);
        match RavdessName::parse(&rel) {
            Ok(name) if selection.keeps(&name) => d.clips.push(LabelledClip { path, relative: rel, name }),
            Ok(_) => d.filtered_out += 1,
            Err(why) => d.unmatched.push((rel, why)),
        }
    }
    Ok(d)
}
