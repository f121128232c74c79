//! Scoring saved models on labelled clips (`ser eval`): one model or an ensemble of models of
//! any kinds whose class probabilities are averaged, on every clip of a feature set, only on
//! the test clips a `ser train --seed N` run held out, or only on the actors fold K of a
//! `ser train --split actor-folds` run held out.

use super::{Predictor, ensemble};
use crate::features::set::FeatureSet;
use crate::gpu::Gpu;
use crate::dataset;
use crate::report::{self, Report};
use crate::contract::SpeakerGroups;
use anyhow::{Context, Result, bail};
use std::borrow::Cow;

/// What `evaluate` scores and how it normalises speakers.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Only the clips `ser train --seed N --test-fraction F` held out: (N, F).
    pub held_out_of_seed: Option<(u64, f64)>,
    /// Only the actors fold K of `ser train --split actor-folds --folds N` held out: (K, N).
    pub held_out_fold: Option<(usize, usize)>,
    /// How a speaker-normalised model groups clips into speakers.
    pub groups: SpeakerGroups,
    /// Fewest clips per speaker for a speaker-normalised model (None: the model's own).
    pub min_clips: Option<usize>,
}

/// A scored evaluation and what it left out.
#[derive(Debug)]
pub struct Evaluation {
    pub report: Report,
    /// The clips scored (indices into the feature set), in the report's order.
    pub clips: Vec<usize>,
    /// Clips whose emotion is none of the models' classes (or unknown).
    pub other_classes: usize,
    /// Those clips by their class ("unlabelled" where none), for the message that lists them.
    pub other_by_class: std::collections::BTreeMap<String, usize>,
    /// Augmented copies (`--speed-copies`): training material, never scored.
    pub speed_copies: usize,
}

/// The first member of an ensemble (by position) whose classes or feature configuration differ
/// from the first model's: an ensemble averages probabilities of the same classes over the same
/// features.
pub fn ensemble_mismatch(models: &[Predictor]) -> Option<usize> {
    let first = models.first()?;
    models.iter().position(|m| m.members().any(|m| ensemble::data_mismatch(first, m).is_some()))
}

/// Refuses a model saved by another fold of an actor cross-validation than the one scored: its
/// training clips would be its test clips. Models trained on any other split are the user's
/// choice and pass.
fn check_fold_models(models: &[&Predictor], fold: usize, folds: usize) -> Result<()> {
    for (i, m) in models.iter().enumerate() {
        let Some(origin) = m.meta.training.actor_fold() else { continue };
        if origin.fold != Some(fold) || origin.folds != Some(folds) {
            bail!(
                "model {} was trained on fold {} of {} by actor, not on fold {fold} of {folds}: it has heard the actors scored here",
                i + 1,
                origin.fold.map_or("?".into(), |k| k.to_string()),
                origin.folds.map_or("?".into(), |k| k.to_string())
            );
        }
    }
    Ok(())
}

/// Scores `models` (all with the first one's classes and feature configuration) on the
/// original clips of `set` that carry one of their classes. The clips are labelled in the
/// order `ser train` labels them, so `held_out_of_seed` selects exactly its test clips.
pub fn evaluate(gpu: &Gpu, models: &[Predictor], set: &FeatureSet, o: &EvalOptions) -> Result<Evaluation> {
    // An ensemble file's members count one by one, as if each had been given.
    let members: Vec<&Predictor> = models.iter().flat_map(Predictor::members).collect();
    let Some(&first) = members.first() else { bail!("no model to evaluate") };
    if let Some(i) = members.iter().position(|m| ensemble::data_mismatch(first, m).is_some()) {
        bail!("model {} of the ensemble has other classes or another feature configuration than the first; an ensemble needs the same", i + 1);
    }
    let (mut clips, mut labels, mut other_classes) = (Vec::new(), Vec::new(), 0);
    let mut other_by_class = std::collections::BTreeMap::new();
    for (i, c) in set.clips.iter().enumerate().filter(|(_, c)| c.speed.is_none()) {
        match c.emotion.and_then(|e| first.meta.data.classes.iter().position(|k| *k == e)) {
            Some(k) => {
                clips.push(i);
                labels.push(k as u32);
            }
            None => {
                other_classes += 1;
                *other_by_class.entry(c.emotion.map_or("unlabelled".to_string(), |e| e.name().to_string())).or_insert(0) += 1;
            }
        }
    }
    if clips.is_empty() {
        bail!("none of the {} clips carries one of the model's classes", set.clips.len());
    }
    if let Some((seed, fraction)) = o.held_out_of_seed {
        let all: Vec<usize> = (0..clips.len()).collect();
        let (_, test) = dataset::stratified(&labels, &all, fraction, seed);
        (clips, labels) = test.iter().map(|&i| (clips[i], labels[i])).unzip();
    }
    if let Some((fold, folds)) = o.held_out_fold {
        let speakers: Vec<String> = clips.iter().map(|&i| set.clips[i].speaker_id()).collect::<Option<_>>().context("--held-out-fold: a clip has no speaker (neither in its name nor in its manifest)")?;
        let distinct = speakers.iter().collect::<std::collections::BTreeSet<_>>().len();
        if folds < 2 || folds > distinct || fold >= folds {
            bail!("--held-out-fold {fold} of --folds {folds}: the folds are 0 to --folds - 1, with 2 to {distinct} folds (the speakers here)");
        }
        check_fold_models(&members, fold, folds)?;
        let held = dataset::fold_speakers(&speakers, folds, fold);
        (clips, labels) = clips.iter().zip(&labels).zip(&speakers).filter(|(_, a)| held.contains(a)).map(|((&c, &y), _)| (c, y)).unzip();
    }
    // What the models read beyond the feature file, computed once for all of them (a copy of
    // the set only when one needs it).
    let mut prepared = Cow::Borrowed(set);
    for m in &members {
        if dataset::missing(&prepared, m.meta.data.input).is_some() {
            dataset::prepare(gpu, prepared.to_mut(), m.meta.data.input)?;
        }
    }
    let set = prepared.as_ref();
    let mut sum: Vec<Vec<f32>> = Vec::new();
    for p in models {
        // Speaker statistics come from every clip of the set the model knows, as in training
        // (held-out clips included: a speaker is normalised with all of its clips).
        // Only a speaker-normalised model needs its own copy of the set, one for all the
        // members of an ensemble file (they normalise alike, each table once).
        let own = if p.meta.data.speaker_norm.is_some() {
            let mut own = set.clone();
            let known: Vec<usize> = (0..own.clips.len()).filter(|&i| own.clips[i].emotion.is_some_and(|e| p.meta.data.classes.contains(&e))).collect();
            p.normalise_speakers(&mut own, &known, o.groups, o.min_clips)?;
            Cow::Owned(own)
        } else {
            Cow::Borrowed(set)
        };
        for m in p.members() {
            let probs = m.own_probabilities(gpu, &m.dataset(&own, &clips, labels.clone())?)?;
            if sum.is_empty() {
                sum = probs;
            } else {
                sum.iter_mut().zip(&probs).for_each(|(s, q)| s.iter_mut().zip(q).for_each(|(a, b)| *a += b));
            }
        }
    }
    let predicted: Vec<u32> = sum.iter().map(|p| report::argmax(p) as u32).collect();
    Ok(Evaluation { report: Report::new(&first.class_names(), &labels, &predicted), clips, other_classes, other_by_class, speed_copies: set.speed_copies() })
}
