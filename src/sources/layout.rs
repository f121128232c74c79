//! Corpus layouts recognised in a folder without flags: each corpus's file-name convention, a
//! Hugging Face audiofolder (`metadata.csv` / `metadata.jsonl`), or one folder per class.

use super::{LabelMap, Mapped, Read, Row};
use crate::audio::{self, Emotion, RavdessName};
use anyhow::{Result, bail};
use std::path::Path;

/// How a source's labels are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `MM-VV-EE-II-SS-RR-AA.wav`: emotion code EE, actor AA.
    Ravdess,
    /// `1001_DFA_ANG_XX.wav`: speaker, sentence, emotion (ANG DIS FEA HAP NEU SAD), intensity.
    CremaD,
    /// `03a01Fa.wav`: speaker, text, emotion (W L E A F T N, German initials), version.
    EmoDb,
    /// `OAF_back_angry.wav`: speaker (OAF, YAF), word, emotion (`ps`: pleasant surprise).
    Tess,
    /// `DC_a01.wav` or `DC/a01.wav`: speaker (DC JE JK KL), emotion (a d f h n sa su), number.
    Savee,
    /// `metadata.csv` or `metadata.jsonl` at the folder's root: `file_name`, `label`, `speaker`.
    AudioFolder,
    /// `DIR/angry/*.wav`: the folder holding each file names its class.
    ClassFolders,
    /// A manifest (`--manifest`).
    Manifest,
}

/// What a file name says under a convention: (raw label, class, speaker).
type Named = (String, Emotion, String);

/// The layouts recognised by file name, in the order they are tried (their patterns are disjoint).
const NAMED: [Layout; 5] = [Layout::Ravdess, Layout::CremaD, Layout::EmoDb, Layout::Tess, Layout::Savee];

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Ravdess => "ravdess",
            Layout::CremaD => "crema-d",
            Layout::EmoDb => "emodb",
            Layout::Tess => "tess",
            Layout::Savee => "savee",
            Layout::AudioFolder => "audiofolder",
            Layout::ClassFolders => "class-folders",
            Layout::Manifest => "manifest",
        }
    }

    /// What its names look like, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Ravdess => "RAVDESS names (03-01-05-02-01-01-07.wav)",
            Layout::CremaD => "CREMA-D names (1001_DFA_ANG_XX.wav)",
            Layout::EmoDb => "EmoDB names (03a01Fa.wav)",
            Layout::Tess => "TESS names (OAF_back_angry.wav)",
            Layout::Savee => "SAVEE names (DC_a01.wav or DC/a01.wav)",
            Layout::AudioFolder => "a Hugging Face audiofolder (metadata.csv or metadata.jsonl)",
            Layout::ClassFolders => "one folder per class (angry/*.wav)",
            Layout::Manifest => "a manifest",
        }
    }

    /// (raw label, class, speaker) of a file at `relative` (forward slashes) under this
    /// layout's naming convention; None when the name does not follow it.
    pub fn parse_name(self, relative: &str) -> Option<Named> {
        let base = relative.rsplit('/').next().unwrap_or(relative);
        let stem = base.rsplit_once('.').map_or(base, |(s, _)| s);
        match self {
            Layout::Ravdess => RavdessName::parse(relative).ok().map(|n| (n.emotion.name().to_string(), n.emotion, format!("{:02}", n.actor))),
            Layout::CremaD => {
                let f: Vec<&str> = stem.split('_').collect();
                let ok = f.len() == 4
                    && f[0].len() == 4
                    && f[0].bytes().all(|b| b.is_ascii_digit())
                    && f[1].len() == 3
                    && f[1].bytes().all(|b| b.is_ascii_uppercase())
                    && ["LO", "MD", "HI", "XX", "X"].contains(&f[3]);
                let e = match f.get(2).copied() {
                    Some("ANG") => Emotion::Angry,
                    Some("DIS") => Emotion::Disgust,
                    Some("FEA") => Emotion::Fearful,
                    Some("HAP") => Emotion::Happy,
                    Some("NEU") => Emotion::Neutral,
                    Some("SAD") => Emotion::Sad,
                    _ => return None,
                };
                ok.then(|| (f[2].to_string(), e, f[0].to_string()))
            }
            Layout::EmoDb => {
                let b = stem.as_bytes();
                let ok = b.len() == 7
                    && b[..2].iter().all(u8::is_ascii_digit)
                    && (b[2] == b'a' || b[2] == b'b')
                    && b[3..5].iter().all(u8::is_ascii_digit)
                    && b[6].is_ascii_lowercase();
                let e = match b.get(5) {
                    Some(b'W') => Emotion::Angry,
                    Some(b'L') => Emotion::Boredom,
                    Some(b'E') => Emotion::Disgust,
                    Some(b'A') => Emotion::Fearful,
                    Some(b'F') => Emotion::Happy,
                    Some(b'T') => Emotion::Sad,
                    Some(b'N') => Emotion::Neutral,
                    _ => return None,
                };
                ok.then(|| ((b[5] as char).to_string(), e, stem[..2].to_string()))
            }
            Layout::Tess => {
                let f: Vec<&str> = stem.split('_').collect();
                let speaker = f.first()?.to_ascii_uppercase();
                if f.len() != 3 || !(speaker == "OAF" || speaker == "YAF") || f[1].is_empty() {
                    return None;
                }
                let e = match f[2].to_ascii_lowercase().as_str() {
                    "angry" => Emotion::Angry,
                    "disgust" => Emotion::Disgust,
                    "fear" => Emotion::Fearful,
                    "happy" => Emotion::Happy,
                    "neutral" => Emotion::Neutral,
                    "ps" => Emotion::Surprised,
                    "sad" => Emotion::Sad,
                    _ => return None,
                };
                Some((f[2].to_string(), e, speaker))
            }
            Layout::Savee => {
                // DC_a01 in one folder, or a01 inside the speaker's folder DC/.
                let parent = relative.rsplit('/').nth(1);
                let (speaker, rest) = match stem.split_once('_') {
                    Some((s, r)) => (s, r),
                    None => (parent?, stem),
                };
                if !["DC", "JE", "JK", "KL"].contains(&speaker) {
                    return None;
                }
                let digits = rest.trim_start_matches(|c: char| c.is_ascii_lowercase());
                let code = &rest[..rest.len() - digits.len()];
                if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let e = match code {
                    "a" => Emotion::Angry,
                    "d" => Emotion::Disgust,
                    "f" => Emotion::Fearful,
                    "h" => Emotion::Happy,
                    "n" => Emotion::Neutral,
                    "sa" => Emotion::Sad,
                    "su" => Emotion::Surprised,
                    _ => return None,
                };
                Some((code.to_string(), e, speaker.to_string()))
            }
            Layout::AudioFolder | Layout::ClassFolders | Layout::Manifest => None,
        }
    }
}

/// Reads a folder: an audiofolder when it has metadata at its root; else the one naming
/// convention its files follow; else one folder per class. A folder whose files follow two
/// conventions, or none, is refused with the counts.
pub(crate) fn read_folder(dir: &Path, map: &LabelMap) -> Result<Read> {
    for meta in ["metadata.csv", "metadata.jsonl"] {
        let file = dir.join(meta);
        if file.is_file() {
            let mut read = super::manifest::read(&file)?;
            read.layout = Layout::AudioFolder;
            read.summary = format!("{} ({meta}: {} rows)", Layout::AudioFolder.describe(), read.rows.len() + read.skipped.len());
            return Ok(read);
        }
    }
    let files = audio::find_audio_files(dir)?;
    let relative: Vec<String> = files.iter().map(|f| audio::dataset::relative(dir, f)).collect();
    // Which naming convention each file follows (at most one: the patterns are disjoint).
    let matched: Vec<Option<(Layout, Named)>> =
        relative.iter().map(|r| NAMED.iter().find_map(|&l| l.parse_name(r).map(|p| (l, p)))).collect();
    let counts: Vec<(Layout, usize)> = NAMED.iter().map(|&l| (l, matched.iter().filter(|m| m.as_ref().is_some_and(|(x, _)| *x == l)).count())).filter(|(_, n)| *n > 0).collect();
    if counts.len() > 1 {
        let list: Vec<String> = counts.iter().map(|(l, n)| format!("{n} {}", l.describe())).collect();
        bail!("{}: the files follow more than one corpus's naming ({}); give each corpus its own --data, or list the clips in a --manifest", dir.display(), list.join(", "));
    }
    let mut read = Read { layout: Layout::ClassFolders, summary: String::new(), rows: vec![], unmatched: vec![], skipped: vec![] };
    if let Some(&(layout, n)) = counts.first() {
        read.layout = layout;
        for ((file, rel), m) in files.into_iter().zip(relative).zip(matched) {
            match m {
                Some((_, (raw, emotion, speaker))) => {
                    let ravdess = (layout == Layout::Ravdess).then(|| RavdessName::parse(&rel).ok()).flatten();
                    read.rows.push(Row { file, origin: rel.clone(), relative: rel, raw_label: raw, emotion: Some(emotion), speaker: Some(speaker), segment: None, split: None, ravdess });
                }
                None => {
                    let why = match layout {
                        Layout::Ravdess => RavdessName::parse(&rel).err().unwrap_or_default(),
                        _ => format!("not a {}", layout.describe()),
                    };
                    read.unmatched.push((rel, why));
                }
            }
        }
        read.summary = format!("{} ({n} files{})", layout.describe(), if read.unmatched.is_empty() { String::new() } else { format!(", {} others not used", read.unmatched.len()) });
        return Ok(read);
    }
    // No naming convention: the folder holding each file names its class.
    for (file, rel) in files.into_iter().zip(relative) {
        let class_folder = rel.rsplit('/').nth(1).filter(|folder| map.apply(folder, None) != Mapped::Unknown);
        match class_folder {
            Some(folder) => read.rows.push(Row { file, origin: rel.clone(), raw_label: folder.to_string(), relative: rel, emotion: None, speaker: None, segment: None, split: None, ravdess: None }),
            None => read.unmatched.push((rel, "in no folder named after a class".to_string())),
        }
    }
    if read.rows.is_empty() {
        bail!(
            "{}: no layout recognised among its {} audio files: none is named as {}, none sits in a folder named after a class ({}), and there is no metadata.csv; list the clips in a --manifest (path,label[,speaker])",
            dir.display(),
            read.unmatched.len(),
            NAMED.iter().map(|l| l.describe()).collect::<Vec<_>>().join(", "),
            Emotion::ALL.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
        );
    }
    read.summary = format!("{} ({} files{})", Layout::ClassFolders.describe(), read.rows.len(), if read.unmatched.is_empty() { String::new() } else { format!(", {} others not used", read.unmatched.len()) });
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_corpus_name_gives_its_class_and_speaker() {
        let cases = [
            (Layout::Ravdess, "Actor_07/03-01-05-02-01-01-07.wav", "angry", Emotion::Angry, "07"),
            (Layout::CremaD, "1001_DFA_ANG_XX.wav", "ANG", Emotion::Angry, "1001"),
            (Layout::CremaD, "AudioWAV/1091_WSI_SAD_HI.wav", "SAD", Emotion::Sad, "1091"),
            (Layout::EmoDb, "wav/03a01Fa.wav", "F", Emotion::Happy, "03"),
            (Layout::EmoDb, "16b10Lb.wav", "L", Emotion::Boredom, "16"),
            (Layout::Tess, "OAF_angry/OAF_back_angry.wav", "angry", Emotion::Angry, "OAF"),
            (Layout::Tess, "YAF_youth_ps.wav", "ps", Emotion::Surprised, "YAF"),
            (Layout::Savee, "DC_sa01.wav", "sa", Emotion::Sad, "DC"),
            (Layout::Savee, "KL/su15.wav", "su", Emotion::Surprised, "KL"),
        ];
        for (layout, name, raw, class, speaker) in cases {
            assert_eq!(layout.parse_name(name), Some((raw.to_string(), class, speaker.to_string())), "{name}");
            // No other convention takes it.
            for other in NAMED.iter().filter(|l| **l != layout) {
                assert_eq!(other.parse_name(name), None, "{name} read as {other:?}");
            }
        }
        for (layout, name) in [
            (Layout::CremaD, "1001_DFA_XYZ_XX.wav"),
            (Layout::CremaD, "10011_DFA_ANG_XX.wav"),
            (Layout::EmoDb, "03c01Fa.wav"),
            (Layout::EmoDb, "03a01Qa.wav"),
            (Layout::Tess, "BOB_back_angry.wav"),
            (Layout::Tess, "OAF_back_bored.wav"),
            (Layout::Savee, "XX_a01.wav"),
            (Layout::Savee, "DC_a1.wav"),
            (Layout::Savee, "a01.wav"),
        ] {
            assert_eq!(layout.parse_name(name), None, "{name}");
        }
    }

    /// Every class code of every convention, as each corpus's documentation lists them.
    #[test]
    fn every_class_code_of_every_convention() {
        use Emotion::*;
        type Convention = (Layout, &'static [(&'static str, Emotion)], fn(&str) -> String);
        let codes: [Convention; 4] = [
            (Layout::CremaD, &[("ANG", Angry), ("DIS", Disgust), ("FEA", Fearful), ("HAP", Happy), ("NEU", Neutral), ("SAD", Sad)], |c| format!("1001_DFA_{c}_XX.wav")),
            (Layout::EmoDb, &[("W", Angry), ("L", Boredom), ("E", Disgust), ("A", Fearful), ("F", Happy), ("T", Sad), ("N", Neutral)], |c| format!("03a01{c}a.wav")),
            (Layout::Tess, &[("angry", Angry), ("disgust", Disgust), ("fear", Fearful), ("happy", Happy), ("neutral", Neutral), ("ps", Surprised), ("sad", Sad)], |c| format!("OAF_back_{c}.wav")),
            (Layout::Savee, &[("a", Angry), ("d", Disgust), ("f", Fearful), ("h", Happy), ("n", Neutral), ("sa", Sad), ("su", Surprised)], |c| format!("JE_{c}07.wav")),
        ];
        for (layout, table, name) in codes {
            for (code, class) in table {
                let got = layout.parse_name(&name(code)).map(|(raw, e, _)| (raw, e));
                assert_eq!(got, Some((code.to_string(), *class)), "{layout:?} {code}");
            }
        }
        for layout in NAMED {
            assert!(layout.describe().contains("names"), "{layout:?}: {}", layout.describe());
        }
    }

    /// A folder is read by the one convention its files follow: two conventions are refused
    /// with each one's count, and a file the convention does not name is listed with why.
    #[test]
    fn a_folder_follows_one_convention_or_is_refused() {
        let dir = std::env::temp_dir().join(format!("ser-layout-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("Actor_01")).unwrap();
        for f in ["Actor_01/03-01-05-02-01-01-01.wav", "Actor_01/03-01-03-01-02-01-01.wav", "Actor_01/03-01-99-01-01-01-01.wav"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let read = read_folder(&dir, &LabelMap::default()).unwrap();
        assert_eq!(read.layout, Layout::Ravdess);
        assert_eq!(read.rows.len(), 2);
        assert!(read.rows.iter().all(|r| r.ravdess.is_some()), "RAVDESS rows keep their fields");
        assert_eq!(read.unmatched.len(), 1);
        assert_eq!(read.unmatched[0].1, RavdessName::parse("Actor_01/03-01-99-01-01-01-01.wav").unwrap_err());
        std::fs::write(dir.join("1001_DFA_ANG_XX.wav"), b"").unwrap();
        let Err(e) = read_folder(&dir, &LabelMap::default()) else { panic!("two conventions read") };
        let e = e.to_string();
        assert!(e.contains("more than one corpus's naming") && e.contains("2 RAVDESS names") && e.contains("1 CREMA-D names"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
