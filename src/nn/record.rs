//! How a model was made: the training record a model file keeps beside its weights (metadata
//! key `training`, docs/guide/checkpoints.md). Typed where ser reads it back (resuming,
//! calibrating, refusing a fold's model on its own actors, the comparison table, the epoch a
//! checkpoint holds); what each family adds of its own (kernel ridge's penalty, the SVM's and
//! the forest's fits, a network's loss history) and the keys of older files ride along as JSON
//! and are written back unchanged. Every key is optional: a file written before a key existed
//! loads without it.

use super::predict::Calibration;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The training record. Absent keys are `None` and are not written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingRecord {
    /// The run's whole configuration (`experiment::RunConfig`, defined above this layer, so kept
    /// as its JSON here): what `--resume` and `ser calibrate` read back. Records before session
    /// 9 have none (`experiment` reads their older keys instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<serde_json::Value>,
    /// A fingerprint of the labelled clips (paths and classes) that trained the model: a resume
    /// or a calibration must be given the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The model name as the flag spells it (`cnn-lstm`), the split, seed, fractions and actors
    /// held out: the same facts as `run`, under the keys records had before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_actors: Option<Vec<u8>>,
    /// Trained again on every training clip (validation included): nothing to resume or to
    /// calibrate on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refit: Option<bool>,
    /// The weight of each class in the loss (none: unweighted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_clips: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_clips: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_clips: Option<usize>,
    /// The adapter that trained it, and the GEMM kernel chosen for each shape bucket: with the
    /// seed, what reproduces the weights bit for bit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gemm_kernels: Option<serde_json::Value>,
    /// A network's epoch whose weights the file holds (the best by validation loss so far),
    /// where `--resume` continues; `partial` while its run is still going.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_epoch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<bool>,
    /// Each member's softmax temperature fitted on the validation clips.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Vec<Calibration>>,
    /// Seconds to fit (a family fitted in one go) and to predict the test clips.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_predict_seconds: Option<f64>,
    /// The test clips' accuracy and macro F1, and the whole report (`report::Report`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_macro_f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_report: Option<serde_json::Value>,
    /// Everything else: each family's own record and the keys of older files.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Where a model trained on one fold of a cross-validation by speaker came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoldOrigin {
    /// The fold whose speakers it never heard (None: the record does not say).
    pub fold: Option<usize>,
    pub folds: Option<usize>,
}

impl TrainingRecord {
    /// A record from the JSON a model file stores.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text).context("not valid JSON")?;
        if !value.is_object() {
            bail!("not a JSON object");
        }
        serde_json::from_value(value).context("a key of the wrong type")
    }

    /// Adds the keys of `part` (a JSON object: what a family records of its fit), typed where
    /// the record knows them; a key already present is replaced.
    pub fn merge(&mut self, part: serde_json::Value) -> Result<()> {
        let serde_json::Value::Object(part) = part else { bail!("a training record part must be a JSON object") };
        let mut whole = match serde_json::to_value(&*self)? {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a record serialises to an object"),
        };
        whole.extend(part);
        *self = serde_json::from_value(serde_json::Value::Object(whole)).context("a training record part has a key of the wrong type")?;
        Ok(())
    }

    /// The record as the file stores it (JSON text; what Python's `Model.training` parses).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a record serialises")
    }

    /// The fold of a cross-validation by speaker the model was trained on, if it was (read from
    /// `run`: `split` "ActorFolds", `only_fold`, `folds`).
    pub fn actor_fold(&self) -> Option<FoldOrigin> {
        let run = self.run.as_ref()?;
        if run["split"].as_str() != Some("ActorFolds") {
            return None;
        }
        let count = |key: &str| run[key].as_u64().map(|v| v as usize);
        Some(FoldOrigin { fold: count("only_fold"), folds: count("folds") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record round-trips: typed keys into their fields, every other key (a family's record,
    /// an older file's) kept and written back as it was.
    #[test]
    fn unknown_keys_ride_along_and_typed_keys_are_typed() {
        let stored = json!({
            "run": {"split": "ActorFolds", "only_fold": 3, "folds": 5},
            "data": "0123456789abcdef",
            "saved_epoch": 12,
            "validation_clips": 157,
            "calibration": [{"temperature": 0.75, "val_loss": 0.5, "val_accuracy": 0.8, "calibrated": true}, {"temperature": 1.0, "val_loss": null, "val_accuracy": null, "calibrated": false}],
            "kernel_ridge": {"lambda": 0.1},
            "history": [[{"loss": 1.5}]],
            "config": [{"batch_size": 32}],
        });
        let r = TrainingRecord::from_json(&stored.to_string()).unwrap();
        assert_eq!((r.saved_epoch, r.validation_clips, r.data.as_deref()), (Some(12), Some(157), Some("0123456789abcdef")));
        let calibration = r.calibration.as_ref().unwrap();
        assert_eq!(calibration[0].temperature, 0.75);
        // A member too small to calibrate has no loss: NaN, which JSON writes as null.
        assert!(calibration[1].val_loss.is_nan() && calibration[1].val_accuracy.is_nan());
        assert_eq!(r.actor_fold(), Some(FoldOrigin { fold: Some(3), folds: Some(5) }));
        assert_eq!(r.other.keys().collect::<Vec<_>>(), ["config", "history", "kernel_ridge"]);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap(), stored);
    }

    #[test]
    fn a_record_from_before_a_key_loads_without_it() {
        let r = TrainingRecord::from_json(r#"{"model": "cnn", "seed": 4}"#).unwrap();
        assert_eq!((r.model.as_deref(), r.seed, r.run.is_none(), r.actor_fold()), (Some("cnn"), Some(4), true, None));
        assert_eq!(TrainingRecord::from_json("{}").unwrap(), TrainingRecord::default());
    }

    #[test]
    fn a_key_of_the_wrong_type_or_a_record_not_an_object_is_refused() {
        for bad in [r#"{"saved_epoch": "twelve"}"#, "[1, 2]", "{"] {
            assert!(TrainingRecord::from_json(bad).is_err(), "{bad}");
        }
    }

    /// A family's part merges in: known keys become typed, a key present is replaced.
    #[test]
    fn merging_a_family_s_part() {
        let mut r = TrainingRecord { seed: Some(1), fit_seconds: Some(9.0), ..Default::default() };
        r.merge(json!({"fit_seconds": 2.5, "svm": {"fits": []}})).unwrap();
        assert_eq!((r.seed, r.fit_seconds), (Some(1), Some(2.5)));
        assert_eq!(r.other["svm"], json!({"fits": []}));
        assert!(r.merge(json!({"saved_epoch": -1})).is_err());
        assert!(r.merge(json!([1])).is_err());
    }
}
