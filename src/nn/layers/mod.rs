//! The layers of a built model, one implementation per layer kind, each owning its parameters
//! (and fixed tensors), its forward and its backward in one place: affine (Conv1d, Dense), norm
//! (BatchNorm, SequenceBatchNorm), shape (MaxPool, Dropout, Flatten, MaskPadding), fixed (RandomFourier, RbfKernel) and
//! recurrent (Lstm, TimeMean, AttentionPool). [`super::Layer`] is the serialisable
//! specification; [`build`] is the one place that turns a specification into its
//! implementation.

mod affine;
mod fixed;
mod norm;
mod recurrent;
mod shape;

use super::{Layer, Param};
use crate::gpu::{Gpu, Step, Tensor};
use crate::ops::gemm::Precision;
use crate::ops::norm::BatchNorm;
use crate::rng::splitmix64;
use anyhow::Result;
use std::any::Any;

/// What a layer's forward keeps for its backward (each kind keeps its own type).
pub(crate) type Saved = Box<dyn Any>;

/// One pass of one layer over a batch: where it records, the shapes around it and the batch's
/// per-pass settings.
pub(crate) struct Pass<'a, 'g> {
    pub step: &'a mut Step<'g>,
    pub batch: usize,
    /// (length, channels) entering and leaving the layer for this batch.
    pub input: (usize, usize),
    pub output: (usize, usize),
    /// (length, channels) entering the layer for the model's whole input length (the same as
    /// `input` unless the batch was cut after its longest clip).
    pub full_input: (usize, usize),
    /// Training (dropout on, batch statistics) or inference.
    pub train: bool,
    /// This layer's seed for the batch (dropout masks).
    pub seed: u64,
    /// Each example's valid steps entering the layer, for the layers that read them.
    pub lengths: Option<Tensor>,
    /// Their sum over the batch (batch x length when the layer does not read lengths).
    pub valid_steps: usize,
    pub precision: Precision,
    pub bn: &'a BatchNorm,
}

impl Pass<'_, '_> {
    /// The lengths a layer that `reads_lengths` is always given (the model passes them to
    /// every such layer; a missing one is a bug in the model, not in its input).
    pub fn sequence_lengths(&self) -> Tensor {
        self.lengths.clone().expect("sequence layers get lengths")
    }
}

/// A layer of a built model (shared with the threads that decode while a model predicts).
pub(crate) trait BuiltLayer: Send + Sync {
    /// Trained tensors, in the order `backward` returns their gradients.
    fn params(&self) -> Vec<&Param> {
        Vec::new()
    }

    /// Tensors that define the layer beyond its trained ones (moving statistics, fixed
    /// weights), by checkpoint name.
    fn fixed_tensors(&self) -> Vec<(String, &Tensor)> {
        Vec::new()
    }

    /// Whether the layer reads each example's valid steps.
    fn reads_lengths(&self) -> bool {
        false
    }

    /// Records the forward pass on `x`; returns the output and what backward needs.
    fn forward(&self, pass: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)>;

    /// Records the backward pass from the output's gradient `dy`: the input's gradient (when
    /// `need_dx`; layers without a cheaper path may return it anyway) and the parameters'.
    fn backward(&self, pass: &mut Pass, saved: Saved, dy: &Tensor, need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)>;
}

/// The seeded stream every layer's initial values are drawn from, in layer order (Keras's
/// initialisers on it): a model's weights depend on its seed alone.
pub(crate) struct Init {
    state: u64,
}

impl Init {
    pub fn new(seed: u64) -> Init {
        Init { state: seed }
    }

    /// Uniform on (-limit, limit).
    pub fn uniform(&mut self, limit: f64) -> f64 {
        self.state = splitmix64(self.state);
        ((self.state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * limit
    }

    /// Uniform on (0, 1], from the same stream.
    pub fn unit(&mut self) -> f64 {
        0.5 * (1.0 - self.uniform(1.0))
    }

    /// Glorot (Xavier) uniform values for a [fan_in, fan_out] weight.
    pub fn glorot(&mut self, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
        (0..n).map(|_| self.uniform(limit) as f32).collect()
    }
}

/// Builds layer `i` of a model: its implementation with freshly initialised tensors, for
/// inputs of `input` (length, channels).
pub(crate) fn build(gpu: &Gpu, i: usize, layer: &Layer, input: (usize, usize), init: &mut Init) -> Result<Box<dyn BuiltLayer>> {
    let (l, c) = input;
    Ok(match *layer {
        Layer::Conv1d { filters, kernel, same, relu } => Box::new(affine::Conv1d::new(gpu, i, c, filters, kernel, same, relu, init)?),
        Layer::Dense { units, relu } => Box::new(affine::Dense::new(gpu, i, l * c, units, relu, init)?),
        Layer::BatchNorm => Box::new(norm::BatchNormLayer::new(gpu, i, c, false)?),
        Layer::SequenceBatchNorm => Box::new(norm::BatchNormLayer::new(gpu, i, c, true)?),
        Layer::MaxPool { size, stride } => Box::new(shape::MaxPool { size, stride }),
        Layer::Dropout { rate } => Box::new(shape::Dropout { rate }),
        Layer::Flatten => Box::new(shape::Flatten),
        Layer::RandomFourier { features, gamma } => Box::new(fixed::RandomFourier::new(gpu, i, l * c, features, gamma, init)?),
        Layer::RbfKernel { centres, gamma } => Box::new(fixed::RbfKernel::new(gpu, i, l * c, centres, gamma)?),
        Layer::Lstm { units, bidirectional, sequences } => Box::new(recurrent::Lstm::new(gpu, i, c, units, bidirectional, sequences, init)?),
        Layer::TimeMean => Box::new(recurrent::TimeMean),
        Layer::AttentionPool => Box::new(recurrent::AttentionPool::new(gpu, i, c, init)?),
        Layer::MaskPadding => Box::new(shape::MaskPadding),
    })
}

/// Takes back what this layer's forward saved.
fn saved<T: 'static>(s: Saved) -> Box<T> {
    s.downcast::<T>().unwrap_or_else(|_| unreachable!("a layer's backward gets what its forward saved"))
}
