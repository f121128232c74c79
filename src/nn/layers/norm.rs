//! BatchNorm over the channels (every row of every example, or every valid step of every
//! sequence): batch statistics while training, moving ones in inference; (beta, gamma) trained,
//! Keras's initial values (0, 1).

use super::{BuiltLayer, Init, LayerKind, Pass, Saved, saved};
use crate::gpu::{DType, Gpu, Tensor};
use crate::nn::{Param, param};
use crate::ops::norm::{self, BnTensors, ValidSteps};
use anyhow::Result;

/// `Layer::BatchNorm`, or `Layer::SequenceBatchNorm` over valid steps only.
pub(crate) struct BatchNormKind {
    pub valid_steps_only: bool,
}

impl LayerKind for BatchNormKind {
    fn name(&self) -> &'static str {
        if self.valid_steps_only { "sequence_batch_norm" } else { "batch_norm" }
    }

    fn output(&self, input: (usize, usize)) -> Result<(usize, usize)> {
        Ok(input)
    }

    fn reads_lengths(&self) -> bool {
        self.valid_steps_only
    }


    fn build(&self, gpu: &Gpu, i: usize, (_, c): (usize, usize), _init: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(BatchNormLayer::new(gpu, i, c, self.valid_steps_only)?))
    }
}

pub(crate) struct BatchNormLayer {
    name: String,
    /// (beta, gamma) [c, 2], trained.
    affine: Param,
    /// This batch's statistics [c, 2] (scratch between forward and backward).
    stats: Tensor,
    /// Moving mean and variance [c, 2].
    moving: Tensor,
    /// Statistics over each sequence's valid steps, padding zeroed ([`crate::nn::Layer::SequenceBatchNorm`]).
    valid_steps_only: bool,
}

struct NormSaved {
    x: Tensor,
    lengths: Option<Tensor>,
}

impl BatchNormLayer {
    pub fn new(gpu: &Gpu, i: usize, c: usize, valid_steps_only: bool) -> Result<BatchNormLayer> {
        let affine: Vec<f32> = (0..c).flat_map(|_| [0.0, 1.0]).collect();
        let moving: Vec<f32> = (0..c).flat_map(|_| [0.0, 1.0]).collect();
        Ok(BatchNormLayer {
            name: format!("{i}.batch_norm.moving"),
            affine: param(gpu, format!("{i}.batch_norm.affine"), &affine, &[c, 2])?,
            stats: gpu.empty(&[c, 2], DType::F32)?,
            moving: gpu.upload_f32(&moving, &[c, 2])?,
            valid_steps_only,
        })
    }

    fn tensors(&self) -> BnTensors<'_> {
        BnTensors { affine: &self.affine.value, stats: &self.stats, moving: &self.moving }
    }
}

impl BuiltLayer for BatchNormLayer {
    fn params(&self) -> Vec<&Param> {
        vec![&self.affine]
    }

    fn fixed_tensors(&self) -> Vec<(String, &Tensor)> {
        vec![(self.name.clone(), &self.moving)]
    }


    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let (l, c) = p.input;
        let x2 = x.reshape(&[p.batch * l, c]);
        let y = p.step.gpu().empty(&[p.batch * l, c], DType::F32)?;
        let lengths = self.valid_steps_only.then(|| p.sequence_lengths());
        let valid = valid_steps(p, lengths.as_ref());
        if p.train {
            norm::forward_train(p.step, p.bn, &self.tensors(), &x2, &y, l, valid)?;
        } else {
            norm::forward_eval(p.step, p.bn, &self.tensors(), &x2, &y, l, valid)?;
        }
        Ok((y, Box::new(NormSaved { x: x2, lengths })))
    }

    fn backward(&self, p: &mut Pass, s: Saved, dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let NormSaved { x, lengths } = *saved::<NormSaved>(s);
        let gpu = p.step.gpu();
        let gs = gpu.empty(&[p.input.1, 2], DType::F32)?;
        let dx = gpu.empty(x.shape(), DType::F32)?;
        let valid = valid_steps(p, lengths.as_ref());
        norm::backward(p.step, &self.tensors(), &x, &dy.reshape(x.shape()), &gs, &dx, p.input.0, valid)?;
        Ok((Some(dx), vec![gs]))
    }
}

/// The sequences this pass's rows are, for a layer over valid steps only.
fn valid_steps<'a>(p: &Pass, lengths: Option<&'a Tensor>) -> Option<ValidSteps<'a>> {
    lengths.map(|lengths| ValidSteps { lengths, valid_rows: p.valid_steps })
}
