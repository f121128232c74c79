//! Layers without parameters that reshape or mask: MaxPool over length, Dropout, Flatten,
//! MaskPadding.

use super::{BuiltLayer, Init, LayerKind, Pass, Saved, Steps, saved};
use crate::gpu::Gpu;
use crate::nn::TimePooling;
use crate::gpu::{DType, Tensor};
use crate::ops::dropout;
use crate::ops::pool::{self, PoolShape};
use anyhow::Result;

pub(crate) struct MaxPool {
    pub size: usize,
    pub stride: usize,
}

struct PoolSaved {
    winner: Tensor,
    shape: PoolShape,
}

impl BuiltLayer for MaxPool {
    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let gpu = p.step.gpu();
        let ((l, c), (l_out, _)) = (p.input, p.output);
        let shape = PoolShape::new(p.batch, l, c, self.size, self.stride)?;
        let winner = gpu.empty(&[p.batch * l_out * c], DType::U32)?;
        let y = gpu.empty(&[p.batch * l_out, c], DType::F32)?;
        pool::forward(p.step, &shape, x, &winner, &y)?;
        Ok((y, Box::new(PoolSaved { winner, shape })))
    }

    fn backward(&self, p: &mut Pass, s: Saved, dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let PoolSaved { winner, shape } = *saved::<PoolSaved>(s);
        let dx = p.step.gpu().empty(&[p.batch * p.input.0, p.input.1], DType::F32)?;
        pool::backward(p.step, &shape, dy, &winner, &dx)?;
        Ok((Some(dx), vec![]))
    }
}

/// Inverted dropout while training (the mask from the layer's seed for the batch, so backward
/// draws the same one); nothing in inference. In a batch cut after its longest clip each
/// element draws what it would at the model's full input length.
pub(crate) struct Dropout {
    pub rate: f32,
}

impl Dropout {
    /// (elements per example in this batch, at full length) when they differ.
    fn rows(p: &Pass) -> Option<(usize, usize)> {
        let ((l, c), (l_full, c_full)) = (p.input, p.full_input);
        (l != l_full).then_some((l * c, l_full * c_full))
    }
}

impl BuiltLayer for Dropout {
    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        if !(p.train && self.rate > 0.0) {
            return Ok((x.clone(), Box::new(())));
        }
        let y = p.step.gpu().empty(x.shape(), DType::F32)?;
        dropout::apply(p.step, self.rate, p.seed, Self::rows(p), x, &y)?;
        Ok((y, Box::new(())))
    }

    fn backward(&self, p: &mut Pass, _s: Saved, dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        if self.rate <= 0.0 {
            return Ok((Some(dy.clone()), vec![]));
        }
        let dx = p.step.gpu().empty(dy.shape(), DType::F32)?;
        dropout::apply(p.step, self.rate, p.seed, Self::rows(p), dy, &dx)?;
        Ok((Some(dx), vec![]))
    }
}

pub(crate) struct Flatten;

impl BuiltLayer for Flatten {
    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        Ok((x.reshape(&[p.batch, p.input.0 * p.input.1]), Box::new(())))
    }

    fn backward(&self, p: &mut Pass, _s: Saved, dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        Ok((Some(dy.reshape(&[p.batch * p.input.0, p.input.1])), vec![]))
    }
}

/// Zeroes every step past each example's length; the backward zeroes the same steps of dy.
pub(crate) struct MaskPadding;

impl BuiltLayer for MaskPadding {
    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let lengths = p.sequence_lengths();
        let y = p.step.gpu().empty(x.shape(), DType::F32)?;
        dropout::mask_padding(p.step, (p.batch, p.input.0, p.input.1), x, &lengths, &y)?;
        Ok((y, Box::new(lengths)))
    }

    fn backward(&self, p: &mut Pass, s: Saved, dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let lengths = *saved::<Tensor>(s);
        let dx = p.step.gpu().empty(dy.shape(), DType::F32)?;
        dropout::mask_padding(p.step, (p.batch, p.input.0, p.input.1), dy, &lengths, &dx)?;
        Ok((Some(dx), vec![]))
    }
}

impl LayerKind for MaxPool {
    fn name(&self) -> &'static str {
        "max_pool"
    }

    fn output(&self, (l, c): (usize, usize)) -> Result<(usize, usize)> {
        Ok((PoolShape::new(1, l, c, self.size, self.stride)?.l_out, c))
    }

    fn steps(&self) -> Steps {
        Steps::Pooled { stride: self.stride.max(1) }
    }

    fn build(&self, _: &Gpu, _: usize, _: (usize, usize), _: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(MaxPool { size: self.size, stride: self.stride }))
    }
}

impl LayerKind for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn output(&self, input: (usize, usize)) -> Result<(usize, usize)> {
        Ok(input)
    }

    fn build(&self, _: &Gpu, _: usize, _: (usize, usize), _: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(Dropout { rate: self.rate }))
    }
}

impl LayerKind for Flatten {
    fn name(&self) -> &'static str {
        "flatten"
    }

    fn output(&self, (l, c): (usize, usize)) -> Result<(usize, usize)> {
        Ok((1, l * c))
    }

    fn steps(&self) -> Steps {
        Steps::Fixed
    }

    fn pooling(&self) -> Option<TimePooling> {
        Some(TimePooling::Flatten)
    }

    fn build(&self, _: &Gpu, _: usize, _: (usize, usize), _: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(Flatten))
    }
}

impl LayerKind for MaskPadding {
    fn name(&self) -> &'static str {
        "mask_padding"
    }

    fn output(&self, input: (usize, usize)) -> Result<(usize, usize)> {
        Ok(input)
    }

    fn reads_lengths(&self) -> bool {
        true
    }

    fn build(&self, _: &Gpu, _: usize, _: (usize, usize), _: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(MaskPadding))
    }
}
