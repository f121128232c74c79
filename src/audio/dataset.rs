//! Which labelled clips a run keeps (vocal channel, classes left out), and the relative paths
//! clips are recorded under. Finding and labelling them is `sources`' work.

use super::ravdess::Emotion;
use std::path::Path;

crate::choices! {
    /// Which vocal channel to keep.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum VocalFilter {
        Speech = "speech",
        Song = "song",
        #[default]
        Both = "both",
    }
}

/// What a run keeps of the labelled clips.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    pub vocal: VocalFilter,
    /// Emotions left out entirely (the refined model drops disgust).
    pub drop: Vec<Emotion>,
}

impl Selection {
    /// The classes that remain, in canonical order.
    pub fn classes(&self) -> Vec<Emotion> {
        Emotion::ALL.iter().copied().filter(|e| !self.drop.contains(e)).collect()
    }
}

/// `path` relative to `root`, with forward slashes.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}
