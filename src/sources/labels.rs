//! The user's label map (`--label-map FILE.json` or `a=b,c=d`): renames or merges raw labels onto
//! the canonical classes, or drops them (`"dis": "drop"`).

use crate::audio::Emotion;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::Path;

/// Raw label (lower case) to its class, or None to drop it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelMap {
    entries: BTreeMap<String, Option<Emotion>>,
}

/// Where a label lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapped {
    Class(Emotion),
    Drop,
    Unknown,
}

impl LabelMap {
    /// Parses `--label-map`: a `.json` file holding one object of strings, or `a=b,c=d`.
    /// Each target is a class (or a spelling `Emotion::from_label` knows) or `drop`.
    pub fn parse(arg: &str) -> Result<LabelMap> {
        let pairs: Vec<(String, String)> = if arg.to_ascii_lowercase().ends_with(".json") {
            let text = std::fs::read_to_string(Path::new(arg)).with_context(|| format!("--label-map {arg}: cannot read"))?;
            let object: BTreeMap<String, String> =
                serde_json::from_str(text.trim_start_matches('\u{feff}')).with_context(|| format!("--label-map {arg}: not a JSON object of label to class strings"))?;
            object.into_iter().collect()
        } else {
            arg.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| match p.split_once('=') {
                    Some((a, b)) if !a.trim().is_empty() => Ok((a.trim().to_string(), b.trim().to_string())),
                    _ => bail!("--label-map {arg:?}: {p:?} is not LABEL=CLASS"),
                })
                .collect::<Result<_>>()?
        };
        let mut entries = BTreeMap::new();
        for (from, to) in pairs {
            let target = if to.eq_ignore_ascii_case("drop") {
                None
            } else {
                Some(Emotion::from_label(&to).with_context(|| {
                    format!("--label-map: {from:?} maps to {to:?}, which is not a class ({}) nor \"drop\"", Emotion::ALL.iter().map(|e| e.name()).collect::<Vec<_>>().join(", "))
                })?)
            };
            if entries.insert(from.trim().to_ascii_lowercase(), target).is_some() {
                bail!("--label-map: {from:?} is mapped twice");
            }
        }
        Ok(LabelMap { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn lookup(&self, label: &str) -> Option<Mapped> {
        self.entries.get(&label.trim().to_ascii_lowercase()).map(|t| t.map_or(Mapped::Drop, Mapped::Class))
    }

    /// Where a clip's label lands: the map's entry for the raw label, else for the class the
    /// corpus's code table gives, else that class, else the canonical class the raw label spells.
    pub fn apply(&self, raw: &str, corpus_class: Option<Emotion>) -> Mapped {
        if let Some(m) = self.lookup(raw) {
            return m;
        }
        match corpus_class.or_else(|| Emotion::from_label(raw)) {
            Some(e) => self.lookup(e.name()).unwrap_or(Mapped::Class(e)),
            None => Mapped::Unknown,
        }
    }

    /// The entries as (raw label, class name or "drop"), for a model's record.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.entries.iter().map(|(k, v)| (k.clone(), v.map_or("drop".to_string(), |e| e.name().to_string()))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_renames_merges_and_drops_and_refuses_what_it_cannot_place() {
        let m = LabelMap::parse("frustrated=angry, Excited=happy,dis=drop,calm=neutral").unwrap();
        assert_eq!(m.apply("frustrated", None), Mapped::Class(Emotion::Angry));
        assert_eq!(m.apply("EXCITED", None), Mapped::Class(Emotion::Happy));
        // A corpus code and the class its table gives are both keys.
        assert_eq!(m.apply("DIS", Some(Emotion::Disgust)), Mapped::Drop);
        assert_eq!(m.apply("02", Some(Emotion::Calm)), Mapped::Class(Emotion::Neutral));
        assert_eq!(m.apply("ang", None), Mapped::Class(Emotion::Angry));
        assert_eq!(m.apply("xxx", None), Mapped::Unknown);
        assert_eq!(LabelMap::default().apply("fear", None), Mapped::Class(Emotion::Fearful));
        // What a model records of it: the entries by raw label (lower case), classes by name.
        assert!(LabelMap::default().is_empty() && !m.is_empty());
        let pairs: Vec<(&str, &str)> = vec![("calm", "neutral"), ("dis", "drop"), ("excited", "happy"), ("frustrated", "angry")];
        assert_eq!(m.pairs().iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>(), pairs);
        for (bad, needle) in [("a=nonsense", "not a class"), ("a", "not LABEL=CLASS"), ("=angry", "not LABEL=CLASS"), ("a=angry,A=sad", "mapped twice"), ("missing.json", "cannot read")] {
            let e = format!("{:#}", LabelMap::parse(bad).unwrap_err());
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
