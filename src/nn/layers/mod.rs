//! The layers of a built model, one implementation per layer kind, each owning its parameters
//! (and fixed tensors), its forward and its backward in one place: affine (Conv1d, Dense), norm
//! (BatchNorm, SequenceBatchNorm), shape (MaxPool, Dropout, Flatten, MaskPadding), fixed (RandomFourier, RbfKernel) and
//! recurrent (Lstm, TimeMean, AttentionPool). [`super::Layer`] is the serialisable
//! specification; [`kind`] is the one place that matches on it, turning each into its kind's
//! [`LayerKind`] (shape inference, weight sizes, how it treats steps and lengths, building),
//! which lives in the kind's module beside its forward and backward.

mod affine;
mod fixed;
mod norm;
mod recurrent;
mod shape;

use super::{Layer, MAX_TENSOR_VALUES, Param, TimePooling};
use crate::gpu::{Gpu, Step, Tensor};
use crate::ops::gemm::Precision;
use crate::ops::norm::BatchNorm;
use crate::rng::splitmix64;
use anyhow::{Result, bail};
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

/// How a layer kind treats the step (length) axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Steps {
    /// Each output step comes from the input step at its place.
    Kept,
    /// Windows of the input steps, `stride` apart.
    Pooled { stride: usize },
    /// One step from each sequence's valid steps.
    Reduced,
    /// The output depends on the whole length (a flat row; a valid convolution's edges): a
    /// batch must keep the model's full input length.
    Fixed,
}

/// What a layer kind knows before it has tensors, implemented in its module beside its
/// forward and backward. The model's shape inference, size checks, batching rules and building
/// ask each layer through it.
pub(crate) trait LayerKind {
    /// A short name for profiles.
    fn name(&self) -> &'static str;

    /// (length, channels) out for (length, channels) in; refuses an input it cannot take and
    /// weights past [`MAX_TENSOR_VALUES`] ([`check_weight`]).
    fn output(&self, input: (usize, usize)) -> Result<(usize, usize)>;

    /// Values its weights hold for `input` (0: none).
    fn weight_values(&self, _input: (usize, usize)) -> usize {
        0
    }

    fn steps(&self) -> Steps {
        Steps::Kept
    }

    /// Whether it reads each example's valid steps.
    fn reads_lengths(&self) -> bool {
        false
    }

    /// How it reduces a model's steps, for a layer that does (a pooling, Flatten, an LSTM's
    /// last state).
    fn pooling(&self) -> Option<TimePooling> {
        None
    }

    /// Its implementation with freshly initialised tensors, as layer `i` for inputs of `input`.
    fn build(&self, gpu: &Gpu, i: usize, input: (usize, usize), init: &mut Init) -> Result<Box<dyn BuiltLayer>>;
}

/// Refuses a weight of `rows` x `cols` values past [`MAX_TENSOR_VALUES`], so that a corrupt or
/// hostile checkpoint gets an error, not a multi-terabyte allocation.
pub(crate) fn check_weight(rows: usize, cols: usize) -> Result<()> {
    match rows.checked_mul(cols) {
        Some(n) if n <= MAX_TENSOR_VALUES => Ok(()),
        _ => bail!("its weights would hold {rows} x {cols} values, over the {MAX_TENSOR_VALUES} a model tensor may hold"),
    }
}

/// Refuses a layer that reads a flat row (one step) when `input` has several.
pub(crate) fn flat_input(name: &str, input: (usize, usize)) -> Result<()> {
    if input.0 != 1 {
        bail!("{name} needs a flat input; add a Flatten before it");
    }
    Ok(())
}

/// The kind of a layer specification: the one match on [`Layer`].
pub(crate) fn kind(layer: &Layer) -> Box<dyn LayerKind> {
    match *layer {
        Layer::Conv1d { filters, kernel, same, relu } => Box::new(affine::Conv1dKind { filters, kernel, same, relu }),
        Layer::Dense { units, relu } => Box::new(affine::DenseKind { units, relu }),
        Layer::BatchNorm => Box::new(norm::BatchNormKind { valid_steps_only: false }),
        Layer::SequenceBatchNorm => Box::new(norm::BatchNormKind { valid_steps_only: true }),
        Layer::MaxPool { size, stride } => Box::new(shape::MaxPool { size, stride }),
        Layer::Dropout { rate } => Box::new(shape::Dropout { rate }),
        Layer::Flatten => Box::new(shape::Flatten),
        Layer::RandomFourier { features, gamma } => Box::new(fixed::RandomFourierKind { features, gamma }),
        Layer::RbfKernel { centres, gamma } => Box::new(fixed::RbfKernelKind { centres, gamma }),
        Layer::Lstm { units, bidirectional, sequences } => Box::new(recurrent::LstmKind { units, bidirectional, sequences }),
        Layer::TimeMean => Box::new(recurrent::TimeMean),
        Layer::AttentionPool => Box::new(recurrent::AttentionPoolKind),
        Layer::MaskPadding => Box::new(shape::MaskPadding),
    }
}

/// Takes back what this layer's forward saved.
fn saved<T: 'static>(s: Saved) -> Box<T> {
    s.downcast::<T>().unwrap_or_else(|_| unreachable!("a layer's backward gets what its forward saved"))
}
