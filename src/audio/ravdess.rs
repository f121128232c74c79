//! RAVDESS file names: `MM-VV-EE-II-SS-RR-AA.wav` (or `.flac`), seven two-digit fields.

use serde::{Deserialize, Serialize};

crate::choices! {
    /// The canonical emotion classes every corpus's labels land on: RAVDESS's eight, in its code
    /// order (01..08), then EmoDB's boredom. A model's classes are the ones its data held.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Emotion {
        Neutral = "neutral",
        Calm = "calm",
        Happy = "happy",
        Sad = "sad",
        Angry = "angry",
        Fearful = "fearful",
        Disgust = "disgust",
        Surprised = "surprised",
        Boredom = "boredom",
    }
}

impl Emotion {
    /// Every class: RAVDESS's eight, then boredom.
    pub const ALL: [Emotion; 9] = {
        let mut all = [Emotion::Boredom; 9];
        let mut i = 0;
        while i < 8 {
            all[i] = Emotion::RAVDESS[i];
            i += 1;
        }
        all
    };

    /// RAVDESS's eight, in code order.
    pub const RAVDESS: [Emotion; 8] = [
        Emotion::Neutral,
        Emotion::Calm,
        Emotion::Happy,
        Emotion::Sad,
        Emotion::Angry,
        Emotion::Fearful,
        Emotion::Disgust,
        Emotion::Surprised,
    ];

    /// The RAVDESS code (01..08; boredom has none).
    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    /// The emotion of a RAVDESS code (01..08).
    pub fn from_code(code: u8) -> Option<Emotion> {
        Emotion::RAVDESS.get((code as usize).wrapping_sub(1)).copied()
    }

    /// The canonical class a label names: its canonical name or a common spelling of it, any
    /// case (`ang`, `anger`, `angry`; `ps` is TESS's "pleasant surprise"). None for anything
    /// else: a label outside this table needs `--label-map`.
    pub fn from_label(label: &str) -> Option<Emotion> {
        let l = label.trim().to_ascii_lowercase();
        Some(match l.as_str() {
            "neutral" | "neu" | "neutrality" => Emotion::Neutral,
            "calm" | "cal" | "calmness" => Emotion::Calm,
            "happy" | "hap" | "happiness" | "joy" | "happy/joy" => Emotion::Happy,
            "sad" | "sadness" => Emotion::Sad,
            "angry" | "ang" | "anger" => Emotion::Angry,
            "fearful" | "fea" | "fear" | "fearfulness" => Emotion::Fearful,
            "disgust" | "dis" | "disgusted" => Emotion::Disgust,
            "surprised" | "sur" | "surprise" | "ps" | "pleasant_surprise" | "pleasant surprise" | "pleasant_surprised" => Emotion::Surprised,
            "boredom" | "bor" | "bored" => Emotion::Boredom,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        crate::choice::Choice::name(self)
    }
}

/// Speech or song (field VV).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VocalChannel {
    Speech,
    Song,
}

/// Everything a RAVDESS file name encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RavdessName {
    /// 01 full audio-video, 02 video-only, 03 audio-only.
    pub modality: u8,
    pub vocal: VocalChannel,
    pub emotion: Emotion,
    /// 1 normal, 2 strong.
    pub intensity: u8,
    /// 1 "Kids are talking by the door", 2 "Dogs are sitting by the door".
    pub statement: u8,
    pub repetition: u8,
    /// 1..=24; odd actors are male, even female.
    pub actor: u8,
}

impl RavdessName {
    /// Parses a file name (with or without directories and extension). Says which field is wrong.
    pub fn parse(file_name: &str) -> Result<RavdessName, String> {
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        let stem = base.split('.').next().unwrap_or(base);
        let fields: Vec<&str> = stem.split('-').collect();
        if fields.len() != 7 {
            return Err(format!("{base:?} does not have the 7 dash-separated fields MM-VV-EE-II-SS-RR-AA"));
        }
        let mut codes = [0u8; 7];
        for (i, f) in fields.iter().enumerate() {
            if f.len() != 2 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{base:?}: field {} ({f:?}) is not a two-digit number", i + 1));
            }
            codes[i] = f.parse().unwrap();
        }
        let check = |ok: bool, what: &str, v: u8| if ok { Ok(()) } else { Err(format!("{base:?}: {what} code {v:02} is out of range")) };
        let [modality, vocal, emotion, intensity, statement, repetition, actor] = codes;
        check((1..=3).contains(&modality), "modality", modality)?;
        check((1..=2).contains(&vocal), "vocal channel", vocal)?;
        let emotion_v = Emotion::from_code(emotion).ok_or_else(|| format!("{base:?}: emotion code {emotion:02} is out of range"))?;
        check((1..=2).contains(&intensity), "intensity", intensity)?;
        check((1..=2).contains(&statement), "statement", statement)?;
        check((1..=2).contains(&repetition), "repetition", repetition)?;
        check((1..=24).contains(&actor), "actor", actor)?;
        Ok(RavdessName {
            modality,
            vocal: if vocal == 1 { VocalChannel::Speech } else { VocalChannel::Song },
            emotion: emotion_v,
            intensity,
            statement,
            repetition,
            actor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field() {
        let n = RavdessName::parse("Actor_07/03-02-05-02-01-02-07.flac").unwrap();
        assert_eq!(n.modality, 3);
        assert_eq!(n.vocal, VocalChannel::Song);
        assert_eq!(n.emotion, Emotion::Angry);
        assert_eq!((n.intensity, n.statement, n.repetition, n.actor), (2, 1, 2, 7));
        assert_eq!(RavdessName::parse("03-01-08-01-01-01-24.wav").unwrap().emotion, Emotion::Surprised);
    }

    #[test]
    fn names_the_bad_field() {
        for (name, needle) in [
            ("03-01-09-01-01-01-01.wav", "emotion"),
            ("03-01-01-01-01-01-25.wav", "actor"),
            ("03-03-01-01-01-01-01.wav", "vocal"),
            ("03-01-01-1-01-01-01.wav", "field 4"),
            ("03-01-01-01-01-01.wav", "7 dash-separated"),
            ("hello.wav", "7 dash-separated"),
        ] {
            let e = RavdessName::parse(name).unwrap_err();
            assert!(e.contains(needle), "{name}: {e}");
        }
    }
}
