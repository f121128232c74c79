//! Speaker normalisation: each clip's features standardised with the mean and standard deviation
//! of its own speaker's clips, before the model's scaler. A voice's pitch, timbre and level move
//! every statistic of every clip it speaks; taking them out is what lets a model trained on some
//! speakers hear emotion in another's (docs/RESULTS.md, "Accuracy on RAVDESS against the reference study").
//!
//! It is transductive: a speaker's statistics come from every clip of that speaker the command
//! works on (training and evaluation: the clips of the selected classes; prediction: every file
//! given), without their labels. So it needs a batch of clips per speaker whose emotions are
//! mixed, and refuses speakers with fewer than `min_clips` of them (statistics of a handful of
//! clips hurt more than they help).

use super::{Input, Scaler};
use crate::audio::RavdessName;
use crate::features::set::{ClipInfo, FeatureSet};
use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

crate::choices! {
    /// How clips are grouped into speakers.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum SpeakerGroups {
        /// By speaker when every clip has one (a RAVDESS actor, another corpus's speaker, a
        /// manifest's column), otherwise by folder.
        Auto = "auto",
        /// By the speaker the data names: RAVDESS's actor field, CREMA-D's, EmoDB's, TESS's or
        /// SAVEE's speaker, a manifest's speaker column.
        Actor = "actor" | "speaker",
        /// By the folder holding each file: one speaker per folder.
        Folder = "folder",
        /// Each file its own speaker: for long recordings of one voice cut with `--segment`.
        File = "file",
    }
}

/// A model's speaker normalisation, recorded in its checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeakerNorm {
    /// Fewest clips a speaker's statistics may come from.
    pub min_clips: usize,
}

/// The default `min_clips`: from 30 clips per speaker the statistics still helped in the peer
/// check (0.686 against 0.652 without normalisation, 5-fold by actor), from 10 they hurt (0.625).
pub const DEFAULT_MIN_CLIPS: usize = 30;

/// A clip's speaker as `--speaker-groups actor` names it: "actor 07" for RAVDESS actors (from
/// the record or the file name), "speaker X" for a speaker another corpus's names or a manifest gave.
fn speaker_of(c: &ClipInfo) -> Option<String> {
    match (&c.speaker, c.actor.or_else(|| RavdessName::parse(&c.path).ok().map(|n| n.actor))) {
        (Some(s), _) => Some(format!("speaker {s}")),
        (None, Some(a)) => Some(format!("actor {a:02}")),
        (None, None) => None,
    }
}

/// Each clip's speaker, in order: "actor 07", "speaker X", "folder <path>" or "file <path>".
pub fn speaker_keys(clips: &[ClipInfo], by: SpeakerGroups) -> Result<Vec<String>> {
    let by = match by {
        SpeakerGroups::Auto if clips.iter().all(|c| speaker_of(c).is_some()) => SpeakerGroups::Actor,
        SpeakerGroups::Auto => SpeakerGroups::Folder,
        b => b,
    };
    // A copy at another speed has another pitch: its own group, as another speaker would be.
    let speed = |c: &ClipInfo| c.speed.map(|f| format!(" at speed {f}")).unwrap_or_default();
    clips
        .iter()
        .map(|c| match by {
            SpeakerGroups::Actor => speaker_of(c)
                .map(|a| format!("{a}{}", speed(c)))
                .ok_or_else(|| anyhow!("{}: no speaker is known for it (neither its name nor a manifest gives one; group speakers by folder instead: --speaker-groups folder)", c.path)),
            SpeakerGroups::File => Ok(format!("file {}{}", c.path, speed(c))),
            SpeakerGroups::Folder | SpeakerGroups::Auto => {
                let folder = Path::new(&c.path).parent().map(|p| p.display().to_string()).unwrap_or_default();
                Ok(format!("folder {}{}", if folder.is_empty() { "." } else { &folder }, speed(c)))
            }
        })
        .collect()
}

/// Clips by speaker, from (clip index, speaker key) pairs.
pub fn groups<'a>(keyed: impl IntoIterator<Item = (usize, &'a str)>) -> BTreeMap<&'a str, Vec<usize>> {
    let mut out: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, k) in keyed {
        out.entry(k).or_default().push(i);
    }
    out
}

/// The clips of `set` listed in `clips`, by speaker.
pub fn speakers_of<'a>(keys: &'a [String], clips: &[usize]) -> BTreeMap<&'a str, Vec<usize>> {
    groups(clips.iter().map(|&c| (c, keys[c].as_str())))
}

/// Why a speaker with `n` clips is refused.
pub fn too_few(key: &str, n: usize, min_clips: usize) -> String {
    format!("speaker {key:?} has {n} clip{}; speaker normalisation takes each speaker's statistics from at least {min_clips} of their clips (--min-speaker-clips)", if n == 1 { "" } else { "s" })
}

/// Standardises, in place, what `inputs` read of every clip in `speakers` (the time means and
/// standard deviations, the distribution embedding, the clips' lengths and voicing moments, the frames) with the statistics of its
/// speaker's clips, each table once however many inputs read it, and says on stderr how many
/// clips and speakers. Clips in no group are left as they are.
pub fn normalise(set: &mut FeatureSet, inputs: &[Input], speakers: &BTreeMap<&str, Vec<usize>>, min_clips: usize) -> Result<()> {
    let d = set.dim;
    let summaries = inputs.iter().any(|&i| i != Input::Frames);
    let distribution = inputs.iter().any(|i| i.embeds());
    let durations = inputs.iter().any(|i| i.reads_length());
    let voicing = inputs.contains(&Input::DistributionVoicing);
    for &input in inputs {
        if let Some(why) = super::missing(set, input) {
            bail!("{why}, before speaker normalisation");
        }
    }
    for (key, clips) in speakers {
        if clips.len() < min_clips {
            bail!("{}", too_few(key, clips.len(), min_clips));
        }
        if summaries {
            let w = set.distribution_width;
            let mut tables = vec![(&mut set.vectors, d), (&mut set.stds, d)];
            if distribution {
                tables.push((&mut set.distribution, w));
            }
            if durations {
                tables.push((&mut set.durations, 1));
            }
            if voicing {
                tables.push((&mut set.voicing, super::VOICING_WIDTH));
            }
            for (table, width) in tables {
                let s = Scaler::fit(clips.iter().copied(), table, width);
                for &c in clips {
                    s.apply(&mut table[c * width..(c + 1) * width]);
                }
            }
        }
        if inputs.contains(&Input::Frames) {
            // Every real frame of the speaker's clips; the zero padding stays zero.
            let (lengths, t_max) = (&set.lengths, set.t_max);
            let rows: Vec<usize> = clips.iter().flat_map(|&c| (0..lengths[c] as usize).map(move |t| c * t_max + t)).collect();
            let s = Scaler::fit(rows.iter().copied(), &set.frames, d);
            for r in rows {
                s.apply(&mut set.frames[r * d..(r + 1) * d]);
            }
        }
    }
    eprintln!("speaker normalisation: {} clips of {} speakers", speakers.values().map(Vec::len).sum::<usize>(), speakers.len());
    Ok(())
}

/// Groups `clips` (indices into `set`) into speakers `by` their names or folders and normalises
/// what `inputs` read of them.
pub fn normalise_clips(set: &mut FeatureSet, clips: &[usize], inputs: &[Input], by: SpeakerGroups, min_clips: usize) -> Result<()> {
    let keys = speaker_keys(&set.clips, by)?;
    normalise(set, inputs, &speakers_of(&keys, clips), min_clips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureConfig;

    fn clip(path: &str) -> ClipInfo {
        ClipInfo::unlabelled(path)
    }

    #[test]
    fn keys_by_actor_when_every_name_has_one_else_by_folder() {
        let ravdess = [clip("a/03-01-05-02-01-02-07.wav"), clip("b/03-02-01-01-01-01-12.flac")];
        assert_eq!(speaker_keys(&ravdess, SpeakerGroups::Auto).unwrap(), ["actor 07", "actor 12"]);
        assert_eq!(speaker_keys(&ravdess, SpeakerGroups::Folder).unwrap(), ["folder a", "folder b"]);
        // A speed copy (another pitch) is a group of its own.
        let copy = ClipInfo { speed: Some(0.9), ..ravdess[0].clone() };
        assert_eq!(speaker_keys(&[ravdess[0].clone(), copy.clone()], SpeakerGroups::Auto).unwrap(), ["actor 07", "actor 07 at speed 0.9"]);
        assert_eq!(speaker_keys(&[copy], SpeakerGroups::Folder).unwrap(), ["folder a at speed 0.9"]);
        assert_eq!(speaker_keys(&ravdess, SpeakerGroups::File).unwrap(), ["file a/03-01-05-02-01-02-07.wav", "file b/03-02-01-01-01-01-12.flac"]);
        let mixed = [clip("a/03-01-05-02-01-02-07.wav"), clip("take 2.wav")];
        assert_eq!(speaker_keys(&mixed, SpeakerGroups::Auto).unwrap(), ["folder a", "folder ."]);
        let e = speaker_keys(&mixed, SpeakerGroups::Actor).unwrap_err().to_string();
        assert!(e.contains("take 2.wav") && e.contains("--speaker-groups folder"), "{e}");
    }

    /// Two speakers, 40 clips each, columns with speaker-specific offsets and scales; frames of
    /// different lengths. After normalisation every speaker's columns have mean 0 and standard
    /// deviation 1 (float64 reference), and the padding is untouched.
    #[test]
    fn every_speaker_standardised_with_its_own_statistics() {
        let config = FeatureConfig::default();
        let (d, t_max, n) = (config.dim(), 5, 80);
        let mut rng = crate::rng::SplitMix64::new(9);
        let mut u = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        let value = |c: usize, j: usize, u: f32| if c.is_multiple_of(2) { 3.0 + u } else { -5.0 + 4.0 * u * (1 + j % 3) as f32 };
        let mut set = FeatureSet { config, clips: vec![], frames: vec![], lengths: vec![], t_max, vectors: vec![], stds: vec![], dim: d, label_map: vec![], distribution: vec![], distribution_width: 0, durations: vec![], voicing: vec![] };
        set.distribution_width = crate::contract::DISTRIBUTION_WIDTH;
        for c in 0..n {
            set.distribution.extend((0..crate::contract::DISTRIBUTION_WIDTH).map(|j| value(c, j, u())));
            set.durations.push(value(c, 1, u()));
            set.voicing.extend((0..crate::contract::VOICING_WIDTH).map(|j| value(c, j, u())));
            set.clips.push(clip(&format!("s{}/x{c}.wav", c % 2)));
            let len = 1 + c % t_max;
            set.lengths.push(len as u32);
            for t in 0..t_max {
                for j in 0..d {
                    set.frames.push(if t < len { value(c, j, u()) } else { 0.0 });
                }
            }
            for j in 0..d {
                set.vectors.push(value(c, j, u()));
                set.stds.push(value(c, j, u()) * 0.5);
            }
        }
        let keys = speaker_keys(&set.clips, SpeakerGroups::Auto).unwrap();
        let all: Vec<usize> = (0..n).collect();
        let speakers = speakers_of(&keys, &all);
        assert_eq!(speakers.keys().copied().collect::<Vec<_>>(), ["folder s0", "folder s1"]);
        for input in [Input::Stats, Input::Frames, Input::DistributionLength, Input::DistributionVoicing] {
            let mut s = set.clone();
            normalise(&mut s, &[input], &speakers, 40).unwrap();
            for speaker in 0..2 {
                // Every column of `table` ([rows, width]) over `rows`: mean 0, deviation 1.
                let check = |table: &[f32], width: usize, rows: Vec<usize>| {
                    for j in 0..width {
                        let v: Vec<f64> = rows.iter().map(|&r| table[r * width + j] as f64).collect();
                        let m = v.iter().sum::<f64>() / v.len() as f64;
                        let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt();
                        assert!(m.abs() < 1e-4 && (sd - 1.0).abs() < 1e-4, "{input:?} speaker {speaker} column {j} of {width}: mean {m}, std {sd}");
                    }
                };
                let clips: Vec<usize> = (speaker..n).step_by(2).collect();
                if input == Input::Frames {
                    check(&s.frames, d, clips.iter().flat_map(|&c| (0..s.lengths[c] as usize).map(move |t| c * t_max + t)).collect());
                    for &c in &clips {
                        assert!(s.frames[(c * t_max + s.lengths[c] as usize) * d..(c + 1) * t_max * d].iter().all(|&x| x == 0.0));
                    }
                } else {
                    check(&s.vectors, d, clips.clone());
                    check(&s.stds, d, clips.clone());
                }
                if input.reads_length() {
                    check(&s.durations, 1, clips.clone());
                } else {
                    assert_eq!(s.durations, set.durations, "{input:?} reads no lengths");
                }
                if input == Input::DistributionVoicing {
                    check(&s.voicing, crate::contract::VOICING_WIDTH, clips.clone());
                } else {
                    assert_eq!(s.voicing, set.voicing, "{input:?} reads no voicing moments");
                }
            }
        }
        // For an ensemble's inputs together: each table exactly as its own input alone does it,
        // once (the summaries not standardised twice), the frames as the frames input does them.
        let (mut both, mut stats, mut frames) = (set.clone(), set.clone(), set.clone());
        normalise(&mut both, &[Input::Stats, Input::Frames, Input::Vectors], &speakers, 40).unwrap();
        normalise(&mut stats, &[Input::Stats], &speakers, 40).unwrap();
        normalise(&mut frames, &[Input::Frames], &speakers, 40).unwrap();
        assert_eq!((&both.vectors, &both.stds, &both.frames), (&stats.vectors, &stats.stds, &frames.frames));
        assert_ne!(both.frames, set.frames);
        let e = normalise(&mut set.clone(), &[Input::Stats], &speakers, 41).unwrap_err().to_string();
        assert!(e.contains("\"folder s0\" has 40 clips") && e.contains("at least 41"), "{e}");
        // Only the listed clips are normalised, with statistics of those alone.
        let mut s = set.clone();
        let first_half: Vec<usize> = (0..n / 2).collect();
        normalise(&mut s, &[Input::Vectors], &speakers_of(&keys, &first_half), 20).unwrap();
        assert_eq!(s.vectors[n / 2 * d..], set.vectors[n / 2 * d..]);
        let mut t = set.clone();
        t.vectors.truncate(n / 2 * d);
        t.stds.truncate(n / 2 * d);
        t.clips.truncate(n / 2);
        normalise(&mut t, &[Input::Vectors], &speakers_of(&keys, &first_half), 20).unwrap();
        assert_eq!(s.vectors[..n / 2 * d], t.vectors[..]);
    }
}
