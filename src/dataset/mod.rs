//! From a feature file to training examples: class selection, stratified and actor-held-out
//! splits, the feature scaler fitted on training data only, balanced class weights, and what an
//! input reads beyond the feature file (the `distribution` input's embedding, on the GPU).

use crate::audio::{Emotion, Selection, VocalFilter};
use crate::contract::{CLIP_LENGTH_SCALE, DISTRIBUTION_GAMMA, DISTRIBUTION_SEED, DISTRIBUTION_WIDTH, VOICED_MFCCS, VOICING_WIDTH, has_embedding, has_voicing};
pub use crate::contract::missing;
use crate::features::set::FeatureSet;
use crate::gpu::Gpu;
use crate::ops::embedding::{self, Projection};
use crate::ops::segment;
pub use crate::contract::{Input, Scaler};
use anyhow::{Result, bail};

/// Computes what `input` reads of `set` beyond its feature file: for `distribution`, every
/// clip's frame-distribution embedding (from its frames, so before speaker normalisation, which
/// then standardises it with the means and deviations); for `distribution-length` also every
/// clip's length in seconds; for `distribution-voicing` also its voicing moments. Nothing for
/// the other inputs, or what the set has already.
pub fn prepare(gpu: &Gpu, set: &mut FeatureSet, input: Input) -> Result<()> {
    if input.reads_length() && set.durations.len() != set.clips.len() {
        // Centred frames: a clip of n samples has 1 + n / hop of them.
        let seconds_per_frame = set.config.hop as f32 / set.config.sample_rate as f32;
        set.durations = set.lengths.iter().map(|&n| n.saturating_sub(1) as f32 * seconds_per_frame).collect();
    }
    // What is left to compute: the voicing moments and the embedding, from the frames.
    if missing(set, input).is_none() {
        return Ok(());
    }
    if !set.has_frames() && !set.clips.is_empty() {
        bail!("the {input} input reads every clip's frames, and these features have none (frames dropped)");
    }
    let (d, t) = (set.dim, set.t_max);
    let clips: Vec<&[f32]> = (0..set.clips.len()).map(|c| &set.frames[c * t * d..][..set.lengths[c] as usize * d]).collect();
    if input == Input::DistributionVoicing && !has_voicing(set) {
        let (take, flag) = voicing_columns(&set.config.feature_names())?;
        set.voicing = segment::split_moments(gpu, &clips, d, &take, flag)?;
    }
    if !has_embedding(set) {
        let projection = Projection::new(d, DISTRIBUTION_WIDTH, DISTRIBUTION_GAMMA, DISTRIBUTION_SEED);
        set.distribution = embedding::embed(gpu, &clips, &projection)?;
        set.distribution_width = DISTRIBUTION_WIDTH;
    }
    Ok(())
}

/// Whether features made with `config` carry what `input` reads beyond the feature file (the
/// `distribution-voicing` input: `voiced` and the first MFCCs): checked before features are
/// built, so a run does not extract a corpus to refuse it afterwards.
pub fn check_features_for(input: Input, config: &crate::features::FeatureConfig) -> Result<()> {
    if input == Input::DistributionVoicing {
        voicing_columns(&config.feature_names())?;
    }
    Ok(())
}

/// The columns the `distribution-voicing` input takes its moments of (the first VOICED_MFCCS
/// MFCCs) and the one that splits the frames (pyin's `voiced` flag), among features `names`.
fn voicing_columns(names: &[String]) -> Result<(Vec<usize>, usize)> {
    let find = |name: &str| names.iter().position(|n| n == name);
    let Some(flag) = find("voiced") else {
        bail!("the distribution-voicing input splits each clip's frames by pyin's voicing flag, and these features have no `voiced` column (extract them with `--set` naming voiced, e.g. mfcc,chroma,contrast,rms,zcr,voiced_prob,delta_rms,f0,voiced)");
    };
    let take: Option<Vec<usize>> = (0..VOICED_MFCCS).map(|i| find(&format!("mfcc_{i}"))).collect();
    let Some(take) = take else {
        bail!("the distribution-voicing input reads the first {VOICED_MFCCS} MFCCs, and these features have no mfcc_0..mfcc_{} columns (`--set` naming mfcc with at least {VOICED_MFCCS} coefficients)", VOICED_MFCCS - 1);
    };
    Ok((take, flag))
}

/// Examples in memory: x [n, length, channels] row-major and class indices.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
    /// Floats per example (length * channels).
    pub width: usize,
    /// Valid steps of each example for sequence input (frames, zero-padded past them); empty
    /// when every example is whole (summary vectors).
    pub lengths: Vec<u32>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Labelled clips of a feature file after dropping classes: indices into the file, class index.
pub struct Labelled {
    /// Set indices of the original clips the selection keeps: what splits are made over.
    pub clips: Vec<usize>,
    pub labels: Vec<u32>,
    /// Each position's speaker (`ClipInfo::speaker_id`: "07" for RAVDESS actor 7); None where
    /// the data names none (a folder per class): splits by speaker then refuse to run.
    pub speakers: Vec<Option<String>>,
    /// Each position's own split from a manifest's `split` column (`--split given`).
    pub given: Vec<Option<crate::features::set::RowSplit>>,
    pub classes: Vec<Emotion>,
    /// Set indices of each position's augmented copies (`ClipInfo::speed`), which train beside
    /// it and are never split apart from it (empty without copies).
    pub copies: Vec<Vec<usize>>,
}

impl Labelled {
    /// Every position's speaker, for what `needs` them (a flag, in the message): an error naming
    /// the first clip whose speaker is unknown.
    pub fn known_speakers(&self, set: &FeatureSet, needs: &str) -> Result<Vec<String>> {
        self.speakers
            .iter()
            .enumerate()
            .map(|(p, s)| {
                s.clone().ok_or_else(|| {
                    anyhow::anyhow!("{needs} needs every clip's speaker, and {} has none: its layout names no speaker; list the clips in a manifest with a speaker column", set.clips[self.clips[p]].key())
                })
            })
            .collect()
    }

    /// Every set index the selection keeps: the originals, then all their copies.
    pub fn all_clips(&self) -> Vec<usize> {
        self.clips.iter().copied().chain(self.copies.iter().flatten().copied()).collect()
    }

    /// How many augmented copies the positions bring.
    pub fn copies_of(&self, positions: &[usize]) -> usize {
        positions.iter().map(|&p| self.copies[p].len()).sum()
    }
}

/// The clips of `set` the selection keeps, labelled with the classes they hold: every canonical
/// class present among them and not dropped, in canonical order.
pub fn labelled(set: &FeatureSet, selection: &Selection) -> Result<Labelled> {
    let present: std::collections::BTreeSet<Emotion> = set.clips.iter().filter(|c| c.speed.is_none() && c.vocal_matches(selection.vocal)).filter_map(|c| c.emotion).collect();
    let classes = selection.classes().into_iter().filter(|e| present.contains(e)).collect();
    labelled_as(set, selection.vocal, classes)
}

/// The clips of `set` labelled with exactly `classes` (a saved model's), each of which must have
/// examples; clips of other classes are left out.
pub fn labelled_as(set: &FeatureSet, vocal: VocalFilter, classes: Vec<Emotion>) -> Result<Labelled> {
    let mut out = Labelled { clips: vec![], labels: vec![], speakers: vec![], given: vec![], classes: classes.clone(), copies: vec![] };
    let mut position_of = std::collections::HashMap::new();
    for (i, c) in set.clips.iter().enumerate() {
        if c.speed.is_some() {
            continue;
        }
        let Some(e) = c.emotion else { bail!("{}: clip has no emotion label", c.path) };
        if !c.vocal_matches(vocal) {
            continue;
        }
        if let Some(k) = classes.iter().position(|x| *x == e) {
            position_of.insert(c.key(), out.clips.len());
            out.clips.push(i);
            out.labels.push(k as u32);
            out.speakers.push(c.speaker_id());
            out.given.push(c.split);
        }
    }
    if out.clips.is_empty() {
        bail!("no labelled clips left after the selection");
    }
    for (k, e) in classes.iter().enumerate() {
        if !out.labels.contains(&(k as u32)) {
            bail!("class {e} has no examples (drop it with --drop {e})");
        }
    }
    // A copy follows its source (same path): left out with it by the selection.
    out.copies = vec![Vec::new(); out.clips.len()];
    for (i, c) in set.clips.iter().enumerate() {
        if c.speed.is_none() {
            continue;
        }
        if let Some(&p) = position_of.get(&c.key()) {
            if set.clips[out.clips[p]].emotion != c.emotion || set.clips[out.clips[p]].speaker_id() != c.speaker_id() {
                bail!("{} (copy at speed {:?}): its labels differ from the clip it copies", c.path, c.speed);
            }
            out.copies[p].push(i);
        }
    }
    Ok(out)
}

/// The speakers fold `fold` of a cross-validation by speaker holds out: the distinct speakers
/// sorted and dealt round-robin into `folds` groups. `ser train --split speaker-folds` and `ser
/// eval --held-out-fold` both choose with it, so they agree on every fold.
pub fn fold_speakers(speakers: &[String], folds: usize, fold: usize) -> Vec<String> {
    let mut distinct = speakers.to_vec();
    distinct.sort();
    distinct.dedup();
    distinct.into_iter().enumerate().filter(|(i, _)| i % folds == fold).map(|(_, a)| a).collect()
}

/// EmoBox's number of folds by speaker for `speakers` speakers: one speaker out at a time for 4
/// to 6 speakers, otherwise a quarter of the speakers (RAVDESS's 22 actors: 5). None below 2.
pub fn default_folds(speakers: usize) -> Option<usize> {
    match speakers {
        0..=1 => None,
        2..=6 => Some(speakers),
        n => Some((n / 4).max(2)),
    }
}

/// Stratified split of positions 0..labels.len(): `fraction` of each class to the second part.
pub fn stratified(labels: &[u32], positions: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let classes = labels.iter().max().map_or(0, |m| *m as usize + 1);
    for k in 0..classes {
        let mut members: Vec<usize> = positions.iter().copied().filter(|&p| labels[p] as usize == k).collect();
        crate::rng::shuffle(&mut members, seed ^ (k as u64).wrapping_mul(0x9E37_79B9));
        // A fraction outside [0, 1] (the CLI refuses one) must not index past the class.
        let n_second = ((members.len() as f64 * fraction.clamp(0.0, 1.0)).round() as usize).min(members.len());
        second.extend_from_slice(&members[..n_second]);
        first.extend_from_slice(&members[n_second..]);
    }
    first.sort();
    second.sort();
    (first, second)
}

/// Balanced class weights over the given labels: n / (k * count).
pub fn balanced_weights(labels: impl Iterator<Item = u32>, classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    let mut n = 0;
    for y in labels {
        counts[y as usize] += 1;
        n += 1;
    }
    counts.iter().map(|&c| if c == 0 { 0.0 } else { n as f32 / (classes as f32 * c as f32) }).collect()
}

/// One clip as model input, scaled: `length` rows (frames are zero-padded or cut to it).
pub fn example(set: &FeatureSet, c: usize, input: Input, length: usize, scaler: &Scaler) -> Vec<f32> {
    let d = set.dim;
    match input {
        Input::Vectors | Input::Stats | Input::Distribution | Input::DistributionLength | Input::DistributionVoicing => {
            let mut v = summary(set, c, input);
            scaler.apply(&mut v);
            v
        }
        Input::Frames => {
            let keep = (set.lengths[c] as usize).min(length);
            let mut v = vec![0f32; length * d];
            v[..keep * d].copy_from_slice(&set.frames[c * set.t_max * d..][..keep * d]);
            scaler.apply(&mut v[..keep * d]);
            v
        }
    }
}

/// Valid frames of each clip for frame input (at most `length`); empty for summary inputs.
pub fn frame_lengths(set: &FeatureSet, clips: impl Iterator<Item = usize>, input: Input, length: usize) -> Vec<u32> {
    match input {
        Input::Frames => clips.map(|c| (set.lengths[c] as usize).min(length) as u32).collect(),
        Input::Vectors | Input::Stats | Input::Distribution | Input::DistributionLength | Input::DistributionVoicing => Vec::new(),
    }
}

/// A clip's unscaled per-clip vector: the means, the means followed by the standard
/// deviations, those followed by the distribution embedding, then the clip's length, then its
/// voicing moments.
fn summary(set: &FeatureSet, c: usize, input: Input) -> Vec<f32> {
    let d = set.dim;
    let mut v = set.vectors[c * d..(c + 1) * d].to_vec();
    if input != Input::Vectors {
        v.extend_from_slice(&set.stds[c * d..(c + 1) * d]);
    }
    if let Some(why) = missing(set, input) {
        panic!("{why}");
    }
    if input.embeds() {
        let w = set.distribution_width;
        v.extend_from_slice(&set.distribution[c * w..(c + 1) * w]);
    }
    if input.reads_length() {
        v.push(set.durations[c]);
    }
    if input == Input::DistributionVoicing {
        v.extend_from_slice(&set.voicing[c * VOICING_WIDTH..(c + 1) * VOICING_WIDTH]);
    }
    v
}

/// The examples at `positions` (into `l`), as model input, scaled.
pub fn dataset(set: &FeatureSet, l: &Labelled, positions: &[usize], input: Input, scaler: &Scaler) -> Dataset {
    dataset_of(set, positions.iter().map(|&p| (l.clips[p], l.labels[p])), input, scaler)
}

/// The examples at `positions` followed by their augmented copies: what a model trains on.
pub fn training_dataset(set: &FeatureSet, l: &Labelled, positions: &[usize], input: Input, scaler: &Scaler) -> Dataset {
    let copies = positions.iter().flat_map(|&p| l.copies[p].iter().map(move |&c| (c, l.labels[p])));
    dataset_of(set, positions.iter().map(|&p| (l.clips[p], l.labels[p])).chain(copies), input, scaler)
}

fn dataset_of(set: &FeatureSet, examples: impl Iterator<Item = (usize, u32)>, input: Input, scaler: &Scaler) -> Dataset {
    let (length, channels) = input.shape(set.dim, set.t_max);
    let (clips, y): (Vec<usize>, Vec<u32>) = examples.unzip();
    let x = clips.iter().flat_map(|&c| example(set, c, input, length, scaler)).collect();
    let lengths = frame_lengths(set, clips.iter().copied(), input, length);
    Dataset { x, y, width: length * channels, lengths }
}

/// Fits the scaler on the training positions.
pub fn fit_scaler(set: &FeatureSet, l: &Labelled, train: &[usize], input: Input) -> Scaler {
    let d = set.dim;
    match input {
        Input::Vectors | Input::Stats | Input::Distribution | Input::DistributionLength | Input::DistributionVoicing => {
            let rows: Vec<f32> = train.iter().flat_map(|&p| summary(set, l.clips[p], input)).collect();
            let scaler = Scaler::fit(0..train.len(), &rows, input.scaler_width(d));
            match input {
                Input::Distribution => weigh_halves(scaler, 2 * d, 0),
                Input::DistributionLength => weigh_halves(scaler, 2 * d, 1),
                Input::DistributionVoicing => weigh_halves(scaler, 2 * d, 1 + VOICING_WIDTH),
                _ => scaler,
            }
        }
        Input::Frames => {
            let rows = train.iter().flat_map(|&p| {
                let c = l.clips[p];
                (0..set.lengths[c] as usize).map(move |t| c * set.t_max + t)
            });
            Scaler::fit(rows, &set.frames, d)
        }
    }
}

/// Weighs the two parts of a distribution input (the first `stats` columns, the embedding) so
/// that each carries half of their variance after scaling, whatever their widths: a kernel of
/// width 1 / columns then sees the means and deviations as much as the embedding (equal weights
/// were best by actor, docs/RESULTS.md). Of the `extra` columns after them, the first (the
/// clip's length) gets CLIP_LENGTH_SCALE times a statistics column's deviation, the others (the
/// voicing moments) a statistics column's.
fn weigh_halves(mut scaler: Scaler, stats: usize, extra: usize) -> Scaler {
    let width = scaler.std.len() - extra;
    let half = width as f32 / 2.0;
    let (a, b) = ((half / stats as f32).sqrt(), (half / (width - stats) as f32).sqrt());
    for (j, sd) in scaler.std.iter_mut().enumerate() {
        *sd /= if j < stats {
            a
        } else if j < width {
            b
        } else if j == width {
            a * CLIP_LENGTH_SCALE
        } else {
            a
        };
    }
    scaler
}

/// Writes the rows a final fit sees (`train`) and the test rows, both as the model reads them
/// (scaled), to a safetensors file for a peer implementation (tools/peer/classical.py):
/// `x_train` [n, width] f32, `y_train` [n] u32, `x_test`, `y_test`; metadata `classes` (names,
/// JSON) and `class_weights` (JSON, the balanced weights of `train` when used).
pub fn export_split(path: &std::path::Path, train: &Dataset, test: &Dataset, classes: &[String], class_weight: &[f32]) -> anyhow::Result<()> {
    use crate::store::{self, Stored};
    use safetensors::Dtype;
    let u32s = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (ytr, yte) = (u32s(&train.y), u32s(&test.y));
    let stored = [
        Stored { name: "x_train", dtype: Dtype::F32, shape: vec![train.len(), train.width], bytes: bytemuck::cast_slice(&train.x) },
        Stored { name: "y_train", dtype: Dtype::U32, shape: vec![train.len()], bytes: &ytr },
        Stored { name: "x_test", dtype: Dtype::F32, shape: vec![test.len(), train.width], bytes: bytemuck::cast_slice(&test.x) },
        Stored { name: "y_test", dtype: Dtype::U32, shape: vec![test.len()], bytes: &yte },
    ];
    let metadata = [("classes".to_string(), serde_json::to_string(classes)?), ("class_weights".to_string(), serde_json::to_string(class_weight)?)].into_iter().collect();
    store::write_atomic(path, &store::to_safetensors(&stored, metadata)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scaled by the weighted scaler, the columns of each part of a distribution input add up to
    /// half of the input's variance, whatever the parts' widths.
    #[test]
    fn the_two_parts_of_a_distribution_input_weigh_half_each() {
        let (stats, width, n) = (6, 40, 50);
        let mut rng = crate::rng::SplitMix64::new(5);
        // The last column is the clip's length of a distribution-length input.
        let rows: Vec<f32> = (0..n * (width + 1)).map(|i| rng.uniform(-1.0, 1.0) * (1 + i % 7) as f32 + (i % 3) as f32).collect();
        for extra in [0, 1] {
            let all = width + extra;
            let rows: Vec<f32> = rows.chunks(width + 1).flat_map(|r| r[..all].to_vec()).collect();
            let scaler = weigh_halves(Scaler::fit(0..n, &rows, all), stats, extra);
            let mut scaled = rows.clone();
            scaler.apply(&mut scaled);
            let variance = |j: usize| {
                let col: Vec<f64> = (0..n).map(|r| scaled[r * all + j] as f64).collect();
                let m = col.iter().sum::<f64>() / n as f64;
                col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64
            };
            let (first, second): (f64, f64) = ((0..stats).map(variance).sum(), (stats..width).map(variance).sum());
            assert!((first - width as f64 / 2.0).abs() < 1e-3 && (second - width as f64 / 2.0).abs() < 1e-3, "{first} {second}");
            if extra == 1 {
                // Its deviation: CLIP_LENGTH_SCALE times a statistics column's.
                let ratio = (variance(width) / variance(0)).sqrt();
                assert!((ratio - CLIP_LENGTH_SCALE as f64).abs() < 1e-4, "{ratio}");
            }
        }
    }

    /// 3 classes of 10, 20 and 5 clips: each class gives its own share to the second part, the
    /// parts cover every position once, and the seed alone decides which clips go.
    #[test]
    fn stratified_splits_each_class_by_the_fraction() {
        let labels: Vec<u32> = (0..35).map(|i| if i < 10 { 0 } else if i < 30 { 1 } else { 2 }).collect();
        let all: Vec<usize> = (0..35).collect();
        let (first, second) = stratified(&labels, &all, 0.2, 7);
        let count = |part: &[usize], k: u32| part.iter().filter(|&&p| labels[p] == k).count();
        assert_eq!([0, 1, 2].map(|k| count(&second, k)), [2, 4, 1]);
        assert_eq!([0, 1, 2].map(|k| count(&first, k)), [8, 16, 4]);
        let mut both: Vec<usize> = first.iter().chain(&second).copied().collect();
        both.sort();
        assert_eq!(both, all);
        assert!(first.windows(2).all(|w| w[0] < w[1]) && second.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(stratified(&labels, &all, 0.2, 7), (first.clone(), second.clone()));
        assert_ne!(stratified(&labels, &all, 0.2, 8).1, second, "another seed, other clips");
        // Only the given positions are split.
        let some: Vec<usize> = (10..30).collect();
        let (f, s) = stratified(&labels, &some, 0.5, 1);
        assert_eq!((f.len(), s.len()), (10, 10));
        assert!(f.iter().chain(&s).all(|p| (10..30).contains(p)));
    }

    #[test]
    fn speaker_folds_hold_each_speaker_out_once() {
        let speakers: Vec<String> = ["07", "01", "03", "01", "02", "05", "04", "06", "07"].iter().map(|s| s.to_string()).collect();
        let folds: Vec<Vec<String>> = (0..3).map(|k| fold_speakers(&speakers, 3, k)).collect();
        assert_eq!(folds[0], ["01", "04", "07"]);
        assert_eq!(folds[1], ["02", "05"]);
        assert_eq!(folds[2], ["03", "06"]);
        assert_eq!([0, 1, 2, 3, 4, 5, 6, 7, 22, 1000].map(default_folds), [None, None, Some(2), Some(3), Some(4), Some(5), Some(6), Some(2), Some(5), Some(250)]);
    }

    #[test]
    fn balanced_weights_are_n_over_k_times_count() {
        let w = balanced_weights([0, 0, 0, 1, 2, 2].into_iter(), 4);
        assert_eq!(w, [6.0 / 12.0, 6.0 / 4.0, 6.0 / 8.0, 0.0]);
    }
}
