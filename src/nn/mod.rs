//! Neural networks on the GPU: layer specifications ([`Layer`], [`Architecture`]: what a
//! checkpoint stores), a sequential model holding each layer's implementation (`layers`: its
//! tensors, forward and backward in one place per kind) and Adam's state in GPU memory, and its
//! forward, backward and Adam step recorded into one submission per batch. Activations are
//! channels-last, [batch, length, channels].

pub mod checkpoint;
mod layers;
pub mod predict;
pub mod record;

use crate::gpu::{DType, Gpu, Step, Tensor};
use crate::ops::gemm::Precision;
use crate::ops::loss;
use crate::ops::norm::BatchNorm;
use crate::ops::optim::{self, Adam};
use layers::Steps;
use crate::rng::splitmix64;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One layer of a sequential model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Layer {
    /// Stride-1 convolution over length; "same" keeps the length; ReLU fused when `relu`.
    Conv1d { filters: usize, kernel: usize, same: bool, relu: bool },
    BatchNorm,
    MaxPool { size: usize, stride: usize },
    Dropout { rate: f32 },
    Flatten,
    Dense { units: usize, relu: bool },
    /// Random Fourier features of the flat input (Rahimi & Recht 2007): sqrt(2/D) cos(x W + b)
    /// with W ~ N(0, 2 gamma) and b ~ U(0, 2 pi) drawn once and kept fixed, so that a linear
    /// layer on top approximates a kernel machine with the RBF kernel exp(-gamma |x - x'|^2).
    /// Not trained: it must come before every trainable layer.
    RandomFourier { features: usize, gamma: f32 },
    /// The Gaussian kernel exp(-gamma |x - c_j|^2) against fixed centres c_j: how kernel ridge
    /// models were saved before they had their own kind (the shipped one among them). Such files
    /// load as `train::kernel_ridge::KernelRidge`; the layer stays so that they still parse and
    /// still run as the network they are. Not trained by gradients.
    RbfKernel { centres: usize, gamma: f32 },
    /// A recurrent layer over the length axis (ops::lstm): `units` per direction, the second
    /// direction walking each sequence backwards when `bidirectional` (outputs concatenated);
    /// the whole sequence [length, directions x units] when `sequences`, else the state after
    /// each sequence's last valid step [1, directions x units]. Steps past a sequence's length
    /// are never visited.
    Lstm { units: usize, bidirectional: bool, sequences: bool },
    /// The mean over each sequence's valid steps: [length, channels] -> [1, channels].
    TimeMean,
    /// Attention pooling over each sequence's valid steps (Mirsamadi et al. 2017): weights
    /// softmax(w . x_t) with a trained vector w, then the weighted sum: [length, channels] ->
    /// [1, channels].
    AttentionPool,
    /// Every step past each sequence's length set to zero, [length, channels] kept. After each
    /// convolution block of a model that pools its steps: the padding a batch carries past a
    /// clip (up to the batch's longest clip, or none when the batch is cut there) then reaches
    /// neither the next convolution nor a pooling window, so a clip's output does not depend
    /// on the batch it is in. (Batch statistics in training still see the padding: models
    /// saved before [`Layer::SequenceBatchNorm`] have BatchNorm, MaskPadding.)
    MaskPadding,
    /// BatchNorm over each sequence's valid steps: batch statistics and gradient sums from
    /// those steps alone, every step past a sequence's length zero in the output and in the
    /// input's gradient. After each convolution of a model that pools its steps: the padding a
    /// batch carries past a clip then reaches nothing, so a clip's output, the loss and every
    /// gradient are the same whatever the batch's length (BatchNorm then MaskPadding, but with
    /// the padding out of the statistics too).
    SequenceBatchNorm,
}

crate::choices! {
    /// How a sequence model reduces its steps to one vector before the classifier.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum TimePooling {
        /// The mean over the valid steps (the study's models).
        #[default]
        Mean = "mean",
        /// A learned softmax weighting of the valid steps.
        Attention = "attention",
        /// No pooling: Flatten keeps every step, padding included (the study's refined CNN; its
        /// weights then depend on the sequence length).
        Flatten = "flatten",
        /// The LSTM's state after each sequence's last valid step, no pooling layer (Keras's
        /// `return_sequences=False`; lstm and cnn-lstm only). Bidirectional: the forward
        /// direction's state there beside the backward direction's after it walked back to the
        /// first step.
        Last = "last",
    }
}

impl TimePooling {
    /// The layer that pools; None where the LSTM itself returns one state ([`TimePooling::Last`]).
    fn layer(self) -> Option<Layer> {
        match self {
            TimePooling::Mean => Some(Layer::TimeMean),
            TimePooling::Attention => Some(Layer::AttentionPool),
            TimePooling::Flatten => Some(Layer::Flatten),
            TimePooling::Last => None,
        }
    }
}

/// The recurrent part of the lstm and cnn-lstm models: the LSTM and how its steps are reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecurrentHead {
    /// Units per direction.
    pub units: usize,
    /// A second direction walking each sequence backwards, its outputs beside the first's.
    pub bidirectional: bool,
    pub pooling: TimePooling,
}

/// The most values one model tensor (a weight, or one example's activation) may hold: 2^28
/// (1 GiB of f32), far past any model here (the refined CNN's largest weight has 0.9 M).
pub const MAX_TENSOR_VALUES: usize = 1 << 28;

/// A model's shape: input (length, channels), layers, and the class count of the last Dense.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub input: (usize, usize),
    pub layers: Vec<Layer>,
}

impl Layer {
    /// A short name for profiles.
    pub fn kind(&self) -> &'static str {
        layers::kind(self).name()
    }
}

impl Architecture {
    /// The reference study's refined CNN: three Conv1D(k5, same) -> BN -> MaxPool(2) ->
    /// Dropout(0.3) blocks of 128, 256 and 512 filters, Flatten, Dense(256) -> Dropout(0.4) ->
    /// Dense(128) -> Dropout(0.4) -> Dense(classes) (softmax in the loss). Over frames `head`
    /// may pool the steps instead of flattening them (the mean or attention over valid steps;
    /// each block's batch norm then sees only valid steps and zeroes the padding,
    /// [`Layer::SequenceBatchNorm`]): with
    /// Flatten the first Dense has 25,088 inputs per unit and Adam's first steps kill its
    /// ReLUs, in Keras as here (docs/results/history.md, "The study's sequence models"). [`TimePooling::Last`] is an LSTM's: given
    /// here it leaves the steps unreduced, which [`Architecture::shapes`] refuses.
    pub fn refined_cnn(input: (usize, usize), classes: usize, head: TimePooling) -> Architecture {
        let mut layers = Vec::new();
        for filters in [128, 256, 512] {
            layers.push(Layer::Conv1d { filters, kernel: 5, same: true, relu: true });
            layers.push(if head == TimePooling::Flatten { Layer::BatchNorm } else { Layer::SequenceBatchNorm });
            layers.push(Layer::MaxPool { size: 2, stride: 2 });
            layers.push(Layer::Dropout { rate: 0.3 });
        }
        layers.extend(head.layer());
        layers.extend([
            Layer::Dense { units: 256, relu: true },
            Layer::Dropout { rate: 0.4 },
            Layer::Dense { units: 128, relu: true },
            Layer::Dropout { rate: 0.4 },
            Layer::Dense { units: classes, relu: false },
        ]);
        Architecture { input, layers }
    }

    /// A multilayer perceptron over the flattened input: Dense(h, ReLU) [-> BatchNorm] ->
    /// Dropout(rate) for each hidden width h, then Dense(classes).
    pub fn mlp(input: (usize, usize), classes: usize, hidden: &[usize], dropout: f32, batch_norm: bool) -> Architecture {
        let mut layers = vec![Layer::Flatten];
        for &units in hidden {
            layers.push(Layer::Dense { units, relu: true });
            if batch_norm {
                layers.push(Layer::BatchNorm);
            }
            if dropout > 0.0 {
                layers.push(Layer::Dropout { rate: dropout });
            }
        }
        layers.push(Layer::Dense { units: classes, relu: false });
        Architecture { input, layers }
    }

    /// An RBF kernel machine by random Fourier features: Flatten -> RandomFourier(features,
    /// gamma = gamma_scale / input size, i.e. scikit-learn's gamma="scale" on standardised
    /// input when gamma_scale is 1) -> Dense(classes). Training it is a convex problem; weight
    /// decay on the last layer plays the part of the kernel machine's norm penalty.
    pub fn fourier(input: (usize, usize), classes: usize, features: usize, gamma_scale: f32) -> Architecture {
        let gamma = gamma_scale / (input.0 * input.1) as f32;
        Self::fixed_then_linear(input, classes, Layer::RandomFourier { features, gamma })
    }

    /// The study's LSTM over frame sequences: an LSTM (bidirectional in ser's default head)
    /// returning its sequence, then the pooling over valid steps (the mean, or attention), or
    /// returning its last state ([`TimePooling::Last`]); Dropout(0.3), Dense(classes).
    pub fn lstm(input: (usize, usize), classes: usize, head: RecurrentHead) -> Architecture {
        let RecurrentHead { units, bidirectional, pooling } = head;
        let mut layers = vec![Layer::Lstm { units, bidirectional, sequences: pooling != TimePooling::Last }];
        layers.extend(pooling.layer());
        layers.extend([Layer::Dropout { rate: 0.3 }, Layer::Dense { units: classes, relu: false }]);
        Architecture { input, layers }
    }

    /// The study's CNN+LSTM: two Conv1D(k5, same, ReLU) -> BatchNorm -> MaxPool(2) blocks of
    /// 64 and 128 filters over the frames (a quarter of the steps), each block's batch norm over
    /// valid steps only, zeroing the padding ([`Layer::SequenceBatchNorm`]), then the LSTM head
    /// of [`Architecture::lstm`].
    pub fn cnn_lstm(input: (usize, usize), classes: usize, head: RecurrentHead) -> Architecture {
        let mut layers = Vec::new();
        for filters in [64, 128] {
            layers.push(Layer::Conv1d { filters, kernel: 5, same: true, relu: true });
            layers.push(Layer::SequenceBatchNorm);
            layers.push(Layer::MaxPool { size: 2, stride: 2 });
        }
        layers.extend(Architecture::lstm(input, classes, head).layers);
        Architecture { input, layers }
    }

    /// Each example's valid steps entering every layer (and leaving the last), from the valid
    /// steps of its input: pooling shortens them as it shortens the sequence (a window counts
    /// when it starts inside), every other layer keeps them (flat layers: 1).
    pub fn lengths_through(&self, lengths: &[u32]) -> Result<Vec<Vec<u32>>> {
        let shapes = self.shapes()?;
        let mut out = vec![lengths.iter().map(|&n| n.min(self.input.0 as u32)).collect::<Vec<u32>>()];
        for (i, layer) in self.layers.iter().enumerate() {
            let prev = out.last().expect("one at least");
            let l_out = shapes[i + 1].0 as u32;
            let next: Vec<u32> = match layers::kind(layer).steps() {
                Steps::Pooled { stride } => prev.iter().map(|&n| n.div_ceil(stride as u32).min(l_out)).collect(),
                _ if l_out == 1 => prev.iter().map(|&n| n.min(1)).collect(),
                _ => prev.iter().map(|&n| n.min(l_out)).collect(),
            };
            out.push(next);
        }
        Ok(out)
    }

    /// The same layers on inputs of `steps` steps.
    pub fn with_steps(&self, steps: usize) -> Architecture {
        Architecture { input: (steps, self.input.1), layers: self.layers.clone() }
    }

    /// Whether a batch may come with fewer steps than the input shape (cut after its longest
    /// example): the model reads lengths, and the length axis is reduced (a time mean, an
    /// LSTM's last state) before any layer that reads a flat row, so no weight's shape depends
    /// on it. Saves the work on padding that every clip of the batch has.
    pub fn takes_shorter_batches(&self) -> bool {
        if !self.uses_lengths() {
            return false;
        }
        for layer in &self.layers {
            match layers::kind(layer).steps() {
                Steps::Reduced => return true,
                Steps::Fixed => return false,
                Steps::Kept | Steps::Pooled { .. } => {}
            }
        }
        false
    }

    /// What a shorter batch's steps must be a multiple of: the pooling strides' product, so
    /// that every pooling window of the padded batch that starts inside a clip is still there.
    pub fn step_quantum(&self) -> usize {
        self.layers.iter().map(|l| if let Steps::Pooled { stride } = layers::kind(l).steps() { stride } else { 1 }).product()
    }

    /// How the model reduces its steps: its first pooling or flattening layer, or an LSTM
    /// that returns its last state.
    pub fn time_pooling(&self) -> Option<TimePooling> {
        self.layers.iter().find_map(|l| layers::kind(l).pooling())
    }

    /// Whether any layer reads the sequence lengths.
    pub fn uses_lengths(&self) -> bool {
        self.layers.iter().any(|l| layers::kind(l).reads_lengths())
    }

    /// Flatten -> `fixed` (a kernel layer) -> Dense(classes).
    fn fixed_then_linear(input: (usize, usize), classes: usize, fixed: Layer) -> Architecture {
        Architecture { input, layers: vec![Layer::Flatten, fixed, Layer::Dense { units: classes, relu: false }] }
    }

    /// (length, channels) entering each layer, and leaving the last one. Refuses shapes whose
    /// activations (per example) or weights would pass [`MAX_TENSOR_VALUES`], so that a
    /// corrupt or hostile checkpoint gets an error, not a multi-terabyte allocation.
    pub fn shapes(&self) -> Result<Vec<(usize, usize)>> {
        let size = |what: String, a: usize, b: usize| -> Result<()> {
            match a.checked_mul(b) {
                Some(n) if n <= MAX_TENSOR_VALUES => Ok(()),
                _ => bail!("{what} would hold {a} x {b} values, over the {MAX_TENSOR_VALUES} a model tensor may hold"),
            }
        };
        size("the input".into(), self.input.0, self.input.1)?;
        if self.input.0 == 0 || self.input.1 == 0 {
            bail!("the input shape {:?} is empty", self.input);
        }
        let mut shapes = vec![self.input];
        for (i, layer) in self.layers.iter().enumerate() {
            let next = layers::kind(layer).output(*shapes.last().unwrap()).map_err(|e| anyhow::anyhow!("layer {i} ({layer:?}): {e:#}"))?;
            size(format!("layer {i} ({layer:?})'s output"), next.0, next.1)?;
            if next.0 == 0 || next.1 == 0 {
                bail!("layer {i} ({layer:?}) leaves nothing: output shape {next:?}");
            }
            shapes.push(next);
        }
        Ok(shapes)
    }

    /// Values held by the weights of the layers that have them (a lower bound on what a
    /// checkpoint of this architecture must store), checked against overflow.
    pub fn weight_values(&self) -> Result<usize> {
        let shapes = self.shapes()?;
        let mut total = 0usize;
        for (layer, &input) in self.layers.iter().zip(&shapes) {
            let n = layers::kind(layer).weight_values(input);
            total = total.checked_add(n).context("the architecture's weights overflow a count")?;
        }
        Ok(total)
    }

    pub fn classes(&self) -> Result<usize> {
        match self.layers.last() {
            Some(Layer::Dense { units, relu: false }) => Ok(*units),
            _ => bail!("the last layer must be a Dense without ReLU (the logits)"),
        }
    }
}

/// One trainable tensor with its Adam moments.
pub struct Param {
    pub name: String,
    pub value: Tensor,
    m: Tensor,
    v: Tensor,
}

/// A sequential model living on the GPU: each layer's implementation (nn::layers) with its
/// tensors, and the optimiser's settings and step count.
pub struct Model {
    pub arch: Architecture,
    shapes: Vec<(usize, usize)>,
    layers: Vec<Box<dyn layers::BuiltLayer>>,
    pub adam: Adam,
    pub bn: BatchNorm,
    /// Input augmentation while training (off by default).
    pub augment: crate::ops::dropout::Augment,
    /// Adam steps taken.
    pub step: u32,
}

pub(crate) fn param(gpu: &Gpu, name: String, values: &[f32], shape: &[usize]) -> Result<Param> {
    let zeros = vec![0f32; values.len()];
    Ok(Param { name, value: gpu.upload_f32(values, shape)?, m: gpu.upload_f32(&zeros, shape)?, v: gpu.upload_f32(&zeros, shape)? })
}

/// A recorded forward pass: the logits, what each layer keeps for backward, and the (length,
/// channels) entering each layer for the batch's steps.
struct Forward {
    logits: Tensor,
    saved: Vec<layers::Saved>,
    shapes: Vec<(usize, usize)>,
    lengths: Vec<Option<LayerLengths>>,
}

/// One layer's lengths for a batch: each example's valid steps entering it, and their sum.
#[derive(Clone)]
struct LayerLengths {
    tensor: Tensor,
    valid: usize,
}

impl Model {
    /// A freshly initialised model: Keras's initialisers (Glorot-uniform weights, zero biases,
    /// BN gamma 1 and beta 0, the LSTM's orthogonal recurrent kernel), drawn from `seed`.
    pub fn new(gpu: &Gpu, arch: &Architecture, seed: u64) -> Result<Model> {
        let shapes = arch.shapes()?;
        arch.classes()?;
        let mut init = layers::Init::new(seed);
        let built = arch.layers.iter().enumerate().map(|(i, layer)| layers::kind(layer).build(gpu, i, shapes[i], &mut init)).collect::<Result<Vec<_>>>()?;
        Ok(Model { arch: arch.clone(), shapes, layers: built, adam: Adam::default(), bn: BatchNorm::default(), augment: Default::default(), step: 0 })
    }

    /// Every trainable parameter, in layer order.
    pub fn params(&self) -> Vec<&Param> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    /// Adam's first and second moments of every parameter, by name ("{param}.adam_m", ".adam_v"):
    /// with `step` and the learning rate, what continuing training needs beyond the weights.
    pub fn optimizer_tensors(&self) -> Vec<(String, &Tensor)> {
        self.params().into_iter().flat_map(|p| [(format!("{}.adam_m", p.name), &p.m), (format!("{}.adam_v", p.name), &p.v)]).collect()
    }

    /// Every tensor that defines the model (parameters, moving statistics, fixed tensors), by
    /// name.
    pub fn tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out: Vec<(String, &Tensor)> = self.params().into_iter().map(|p| (p.name.clone(), &p.value)).collect();
        out.extend(self.layers.iter().flat_map(|l| l.fixed_tensors()));
        out
    }

    /// Steps per example of a batch input `x` of `batch` examples: the input shape's, or fewer
    /// where the architecture takes shorter batches.
    fn batch_steps(&self, x: &Tensor, batch: usize) -> Result<usize> {
        let (l0, c0) = self.arch.input;
        let steps = if batch > 0 && x.len().is_multiple_of(batch * c0) { x.len() / (batch * c0) } else { 0 };
        let q = self.arch.step_quantum();
        if steps == l0 || (steps >= 1 && steps < l0 && steps % q == 0 && self.arch.takes_shorter_batches()) {
            return Ok(steps);
        }
        let shorter = if self.arch.takes_shorter_batches() { format!(" (or a multiple of {q} steps below {l0})") } else { String::new() };
        bail!("batch input {:?} is not [{batch}, {l0}, {c0}]{shorter}", x.shape())
    }

    /// (length, channels) entering each layer for inputs of `steps` steps.
    fn shapes_for(&self, steps: usize) -> Result<Vec<(usize, usize)>> {
        if steps == self.arch.input.0 { Ok(self.shapes.clone()) } else { self.arch.with_steps(steps).shapes() }
    }

    /// Each sequence layer's lengths, from the input's valid steps (all full when none are
    /// given); None for the layers that do not read them.
    fn layer_lengths(&self, gpu: &Gpu, lengths: Option<&[u32]>, batch: usize, steps: usize) -> Result<Vec<Option<LayerLengths>>> {
        let reads: Vec<bool> = self.arch.layers.iter().map(|l| layers::kind(l).reads_lengths()).collect();
        if !reads.contains(&true) {
            return Ok(vec![None; self.layers.len()]);
        }
        let full = vec![steps as u32; batch];
        let given = lengths.unwrap_or(&full);
        if given.len() != batch {
            bail!("{} lengths for a batch of {batch}", given.len());
        }
        if let Some(&n) = given.iter().find(|&&n| n as usize > steps) {
            bail!("a length of {n} in a batch of {steps} steps");
        }
        let through = self.arch.with_steps(steps).lengths_through(given)?;
        let upload = |n: &[u32]| -> Result<LayerLengths> { Ok(LayerLengths { tensor: gpu.upload(n, &[batch], DType::U32)?, valid: n.iter().map(|&k| k as usize).sum() }) };
        reads.iter().enumerate().map(|(i, &r)| r.then(|| upload(&through[i])).transpose()).collect()
    }

    /// Layer `i`'s seed for the batch of `seed` (dropout masks; the same in its backward).
    fn layer_seed(seed: u64, i: usize) -> u64 {
        splitmix64(seed ^ (i as u64).wrapping_mul(0x1000_0000_01b3))
    }

    fn pass<'a, 'g>(&'a self, step: &'a mut Step<'g>, f: &PassOf) -> layers::Pass<'a, 'g> {
        layers::Pass {
            step,
            batch: f.batch,
            input: f.shapes[f.i],
            output: f.shapes[f.i + 1],
            full_input: self.shapes[f.i],
            train: f.train,
            seed: Self::layer_seed(f.seed, f.i),
            lengths: f.lengths[f.i].as_ref().map(|n| n.tensor.clone()),
            valid_steps: f.lengths[f.i].as_ref().map_or(f.batch * f.shapes[f.i].0, |n| n.valid),
            precision: f.precision,
            bn: &self.bn,
        }
    }

    /// Records the forward pass (training: dropout on, batch statistics; else inference).
    fn forward(&self, step: &mut Step, x: &Tensor, lengths: Option<&[u32]>, batch: usize, mode: Mode) -> Result<Forward> {
        let (train, seed, precision) = match mode {
            Mode::Inference => (false, 0, Precision::F32),
            Mode::Training { seed, precision } => (true, seed, precision),
        };
        let shapes = self.shapes_for(self.batch_steps(x, batch)?)?;
        let lengths = self.layer_lengths(step.gpu(), lengths, batch, shapes[0].0)?;
        let mut cur = x.clone();
        let mut saved = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            step.set_scope(Some(format!("{i}.{} {}", self.arch.layers[i].kind(), if train { "forward" } else { "inference" })));
            let (y, kept) = layer.forward(&mut self.pass(step, &PassOf { i, batch, shapes: &shapes, lengths: &lengths, train, seed, precision }), &cur)?;
            saved.push(kept);
            cur = y;
        }
        step.set_scope(None);
        Ok(Forward { logits: cur.reshape(&[batch, shapes.last().unwrap().1]), saved, shapes, lengths })
    }

    /// Records one training step on a batch: forward (dropout on, batch statistics), softmax
    /// cross-entropy with class weights, backward, and an Adam update of every parameter.
    /// Returns the per-sample losses [batch] (read them when convenient).
    /// `lengths`: each example's valid steps, for models with sequence layers (None: all full).
    /// `precision`: the operands of the convolution and dense GEMMs, forward and backward (sums
    /// are f32 either way, weights and Adam's state stay f32; inference is always f32).
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(&mut self, step: &mut Step, x: &Tensor, lengths: Option<&[u32]>, labels: &Tensor, class_weight: &Tensor, seed: u64, precision: Precision) -> Result<Tensor> {
        let batch = labels.len();
        let gpu = step.gpu();
        let augmented;
        let x = if self.augment.is_on() {
            let (steps, channels) = (self.batch_steps(x, batch)?, self.arch.input.1);
            let valid = gpu.upload(lengths.map_or(&vec![steps as u32; batch][..], |l| l), &[batch], DType::U32)?;
            augmented = gpu.empty(x.shape(), DType::F32)?;
            step.set_scope(Some("augment".to_string()));
            crate::ops::dropout::augment(step, &self.augment, splitmix64(seed ^ 0xa5a5_5a5a_0f0f_f0f0), (batch, steps, channels), self.arch.input.0, x, &valid, &augmented)?;
            &augmented
        } else {
            x
        };
        let Forward { logits, saved, shapes, lengths } = self.forward(step, x, lengths, batch, Mode::Training { seed, precision })?;
        let classes = logits.shape()[1];
        let losses = gpu.empty(&[batch], DType::F32)?;
        let dlogits = gpu.empty(&[batch, classes], DType::F32)?;
        loss::softmax_cross_entropy(step, &logits, labels, class_weight, &losses, &dlogits)?;

        let mut dy = dlogits;
        let mut grads: Vec<(usize, Vec<Tensor>)> = Vec::new();
        // Nothing below the first trainable layer needs a gradient.
        let first = self.layers.iter().position(|l| !l.params().is_empty()).unwrap_or(0);
        for (i, kept) in saved.into_iter().enumerate().skip(first).rev() {
            step.set_scope(Some(format!("{i}.{} backward", self.arch.layers[i].kind())));
            let of = PassOf { i, batch, shapes: &shapes, lengths: &lengths, train: true, seed, precision };
            let (dx, gs) = self.layers[i].backward(&mut self.pass(step, &of), kept, &dy, i > first)?;
            grads.push((i, gs));
            if let Some(dx) = dx {
                dy = dx;
            }
        }
        step.set_scope(Some("adam".to_string()));
        self.step += 1;
        let updates: Vec<optim::Update> = grads
            .iter()
            .flat_map(|(i, gs)| self.layers[*i].params().into_iter().zip(gs).map(|(p, g)| optim::Update { grad: g, weight: &p.value, m: &p.m, v: &p.v }))
            .collect();
        optim::adam(step, &self.adam, self.step, &updates)?;
        step.set_scope(None);
        Ok(losses)
    }

    /// Chooses now every GEMM kernel that training steps of `train_batches` examples and
    /// inference over `inference_batches` will run, so that the device's kernel table tunes
    /// them before work starts rather than at a bucket's first multiply in the middle of the
    /// first epoch (where tuning time counted as training time). It records one training step
    /// and one inference pass per size on zero inputs and submits nothing: the model is left
    /// as it was (its step count restored). Does nothing on a device that tunes nothing.
    pub fn prepare_kernels(&mut self, gpu: &Gpu, train_batches: &[usize], inference_batches: &[usize], precision: Precision) -> Result<()> {
        if !crate::ops::gemm::table::will_tune(gpu) {
            return Ok(());
        }
        let (steps, channels) = self.arch.input;
        let classes = self.arch.classes()?;
        let class_weight = gpu.upload_f32(&vec![1.0; classes], &[classes])?;
        let zeros = |batch: usize| gpu.upload_f32(&vec![0.0; batch * steps * channels], &[batch, steps * channels]);
        let adam_step = self.step;
        let recorded = (|| -> Result<()> {
            for &batch in train_batches.iter().filter(|&&b| b > 0) {
                let labels = gpu.upload(&vec![0u32; batch], &[batch], DType::U32)?;
                let mut step = gpu.step("prepare kernels");
                self.train_step(&mut step, &zeros(batch)?, None, &labels, &class_weight, 0, precision)?;
            }
            for &batch in inference_batches.iter().filter(|&&b| b > 0) {
                let mut step = gpu.step("prepare kernels");
                self.logits(&mut step, &zeros(batch)?, None, batch)?;
            }
            Ok(())
        })();
        self.step = adam_step;
        recorded
    }

    /// Records inference (dropout off, moving statistics) and returns the logits [batch, classes].
    pub fn logits(&self, step: &mut Step, x: &Tensor, lengths: Option<&[u32]>, batch: usize) -> Result<Tensor> {
        Ok(self.forward(step, x, lengths, batch, Mode::Inference)?.logits)
    }
}

/// How a forward pass runs.
#[derive(Clone, Copy)]
enum Mode {
    /// Dropout off, moving statistics, f32 operands.
    Inference,
    /// Dropout on (masks from `seed`), batch statistics, GEMM operands at `precision`.
    Training { seed: u64, precision: Precision },
}

/// Which layer a pass is, over which batch.
struct PassOf<'a> {
    i: usize,
    batch: usize,
    shapes: &'a [(usize, usize)],
    lengths: &'a [Option<LayerLengths>],
    train: bool,
    seed: u64,
    precision: Precision,
}
