//! The LSTM over the length axis (ops::lstm: one or two directions, the whole sequence or the
//! last state) and the poolings over each sequence's valid steps (the mean, attention).
//! Keras's initialisation: Glorot uniform input kernel, orthogonal recurrent kernel, zero bias
//! but 1 for the forget gate.

use super::{BuiltLayer, Init, LayerKind, Pass, Saved, Steps, check_weight, saved};
use crate::nn::TimePooling;
use crate::gpu::{DType, Gpu, Tensor};
use crate::nn::{Param, param};
use crate::ops::gemm::{self, GemmOptions};
use crate::ops::lstm::{self, LstmKernel, LstmSaved, LstmShape, LstmWeights};
use anyhow::Result;

/// `Layer::Lstm`: one or two directions, the whole sequence or the last state.
pub(crate) struct LstmKind {
    pub units: usize,
    pub bidirectional: bool,
    pub sequences: bool,
}

impl LstmKind {
    fn directions(&self) -> usize {
        1 + self.bidirectional as usize
    }
}

impl LayerKind for LstmKind {
    fn name(&self) -> &'static str {
        "lstm"
    }

    fn output(&self, (l, c): (usize, usize)) -> Result<(usize, usize)> {
        if self.units == 0 || self.units > lstm::MAX_UNITS {
            anyhow::bail!("an LSTM has 1 to {} units per direction, not {}", lstm::MAX_UNITS, self.units);
        }
        check_weight(c + self.units, 4 * self.units)?;
        Ok((if self.sequences { l } else { 1 }, self.directions() * self.units))
    }

    fn weight_values(&self, (_, c): (usize, usize)) -> usize {
        self.directions() * (c + self.units + 1) * 4 * self.units
    }

    fn steps(&self) -> Steps {
        if self.sequences { Steps::Kept } else { Steps::Reduced }
    }

    fn reads_lengths(&self) -> bool {
        true
    }

    fn pooling(&self) -> Option<TimePooling> {
        (!self.sequences).then_some(TimePooling::Last)
    }

    fn build(&self, gpu: &Gpu, i: usize, (_, c): (usize, usize), init: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(Lstm::new(gpu, i, c, self.units, self.bidirectional, self.sequences, init)?))
    }
}

pub(crate) struct Lstm {
    units: usize,
    sequences: bool,
    /// Per direction: input kernel [in, 4 units], recurrent kernel [units, 4 units], bias.
    directions: Vec<[Param; 3]>,
}

struct LstmKept {
    x: Tensor,
    lengths: Tensor,
    directions: Vec<(LstmShape, LstmSaved)>,
}

impl Lstm {
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, i: usize, channels: usize, units: usize, bidirectional: bool, sequences: bool, init: &mut Init) -> Result<Lstm> {
        let g4 = 4 * units;
        let mut directions = Vec::new();
        for d in 0..1 + bidirectional as usize {
            let wx = init.glorot(channels * g4, channels, g4);
            let mut normal = || {
                let (u1, u2) = (init.unit(), init.unit());
                (-2.0 * u1.max(1e-300).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            };
            let wh = lstm::orthogonal(units, g4, &mut normal);
            let b: Vec<f32> = (0..g4).map(|k| if (units..2 * units).contains(&k) { 1.0 } else { 0.0 }).collect();
            directions.push([
                param(gpu, format!("{i}.lstm.{d}.input_kernel"), &wx, &[channels, g4])?,
                param(gpu, format!("{i}.lstm.{d}.recurrent_kernel"), &wh, &[units, g4])?,
                param(gpu, format!("{i}.lstm.{d}.bias"), &b, &[g4])?,
            ]);
        }
        Ok(Lstm { units, sequences, directions })
    }
}

impl BuiltLayer for Lstm {
    fn params(&self) -> Vec<&Param> {
        self.directions.iter().flatten().collect()
    }


    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let gpu = p.step.gpu();
        let (l, c) = p.input;
        let lengths = p.sequence_lengths();
        let x2 = x.reshape(&[p.batch * l, c]);
        let width = self.directions.len() * self.units;
        let (h_seq, h_last) = (gpu.empty(&[p.batch * l, width], DType::F32)?, gpu.empty(&[p.batch, width], DType::F32)?);
        p.step.zero(&h_seq);
        p.step.zero(&h_last);
        let mut kept = Vec::new();
        for (d, [wx, wh, b]) in self.directions.iter().enumerate() {
            let kernel = LstmKernel::for_adapter(gpu, self.units);
            let s = LstmShape { batch: p.batch, steps: l, input: c, units: self.units, reverse: d == 1, out_stride: width, out_col: d * self.units, kernel, steps_per_dispatch: None, precision: p.precision };
            let w = LstmWeights { wx: &wx.value, wh: &wh.value, b: &b.value };
            kept.push((s, lstm::forward(p.step, &s, &x2, &w, &lengths, &h_seq, &h_last)?));
        }
        let y = if self.sequences { h_seq } else { h_last };
        Ok((y, Box::new(LstmKept { x: x2, lengths, directions: kept })))
    }

    fn backward(&self, p: &mut Pass, s: Saved, dy: &Tensor, need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let LstmKept { x, lengths, directions: kept } = *saved::<LstmKept>(s);
        let gpu = p.step.gpu();
        let ((l, c), width) = (p.input, p.output.1);
        // The gradient arrives on the output the layer gave; the other is zero.
        let zeros = gpu.empty(&[if self.sequences { p.batch } else { p.batch * l }, width], DType::F32)?;
        p.step.zero(&zeros);
        let (dh_seq, dh_last) = if self.sequences { (dy.reshape(&[p.batch * l, width]), zeros) } else { (zeros, dy.reshape(&[p.batch, width])) };
        let dx = if need_dx { Some(gpu.empty(&[p.batch * l, c], DType::F32)?) } else { None };
        let mut grads = Vec::new();
        for (d, ((s, sv), [wx, wh, b])) in kept.iter().zip(&self.directions).enumerate() {
            let w = LstmWeights { wx: &wx.value, wh: &wh.value, b: &b.value };
            // The second direction adds its input gradient to the first's.
            grads.extend(lstm::backward(p.step, s, &x, &w, &lengths, sv, &dh_seq, &dh_last, dx.as_ref().map(|t| (t, d > 0)))?);
        }
        Ok((dx, grads))
    }
}

/// [length, channels] -> [1, channels]: the mean over each sequence's valid steps.
pub(crate) struct TimeMean;

impl LayerKind for TimeMean {
    fn name(&self) -> &'static str {
        "time_mean"
    }

    fn output(&self, (_, c): (usize, usize)) -> Result<(usize, usize)> {
        Ok((1, c))
    }

    fn steps(&self) -> Steps {
        Steps::Reduced
    }

    fn reads_lengths(&self) -> bool {
        true
    }

    fn pooling(&self) -> Option<TimePooling> {
        Some(TimePooling::Mean)
    }

    fn build(&self, _: &Gpu, _: usize, _: (usize, usize), _: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(TimeMean))
    }
}

impl BuiltLayer for TimeMean {
    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let (l, c) = p.input;
        let lengths = p.sequence_lengths();
        let y = p.step.gpu().empty(&[p.batch, c], DType::F32)?;
        lstm::time_mean(p.step, p.batch, l, c, &x.reshape(&[p.batch * l, c]), &lengths, &y)?;
        Ok((y, Box::new(lengths)))
    }

    fn backward(&self, p: &mut Pass, s: Saved, dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let lengths = *saved::<Tensor>(s);
        let (l, c) = p.input;
        let dx = p.step.gpu().empty(&[p.batch * l, c], DType::F32)?;
        lstm::time_mean_backward(p.step, p.batch, l, c, &dy.reshape(&[p.batch, c]), &lengths, &dx)?;
        Ok((Some(dx), vec![]))
    }
}

/// `Layer::AttentionPool`.
pub(crate) struct AttentionPoolKind;

impl LayerKind for AttentionPoolKind {
    fn name(&self) -> &'static str {
        "attention_pool"
    }

    fn output(&self, (_, c): (usize, usize)) -> Result<(usize, usize)> {
        Ok((1, c))
    }

    fn weight_values(&self, (_, c): (usize, usize)) -> usize {
        c
    }

    fn steps(&self) -> Steps {
        Steps::Reduced
    }

    fn reads_lengths(&self) -> bool {
        true
    }

    fn pooling(&self) -> Option<TimePooling> {
        Some(TimePooling::Attention)
    }

    fn build(&self, gpu: &Gpu, i: usize, (_, c): (usize, usize), init: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(AttentionPool::new(gpu, i, c, init)?))
    }
}

/// [length, channels] -> [1, channels]: attention pooling over each sequence's valid steps,
/// with its trained score vector w [channels] (Glorot uniform, as a Keras Dense(1) would be).
pub(crate) struct AttentionPool {
    w: Param,
}

struct AttentionKept {
    x: Tensor,
    lengths: Tensor,
    alpha: Tensor,
}

impl AttentionPool {
    pub fn new(gpu: &Gpu, i: usize, channels: usize, init: &mut Init) -> Result<AttentionPool> {
        let w = init.glorot(channels, channels, 1);
        Ok(AttentionPool { w: param(gpu, format!("{i}.attention.vector"), &w, &[channels])? })
    }
}

impl BuiltLayer for AttentionPool {
    fn params(&self) -> Vec<&Param> {
        vec![&self.w]
    }


    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let gpu = p.step.gpu();
        let (l, c) = p.input;
        let lengths = p.sequence_lengths();
        let x = x.reshape(&[p.batch * l, c]);
        let (y, alpha) = (gpu.empty(&[p.batch, c], DType::F32)?, gpu.empty(&[p.batch, l], DType::F32)?);
        lstm::attention_pool(p.step, p.batch, l, c, &x, &self.w.value, &lengths, &y, &alpha)?;
        Ok((y, Box::new(AttentionKept { x, lengths, alpha })))
    }

    fn backward(&self, p: &mut Pass, s: Saved, dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let AttentionKept { x, lengths, alpha } = *saved::<AttentionKept>(s);
        let gpu = p.step.gpu();
        let (l, c) = p.input;
        let (dx, dscore) = (gpu.empty(&[p.batch * l, c], DType::F32)?, gpu.empty(&[p.batch, l], DType::F32)?);
        lstm::attention_pool_backward(p.step, p.batch, l, c, &x, &self.w.value, &lengths, &alpha, &dy.reshape(&[p.batch, c]), &dx, &dscore)?;
        // dw = sum over examples and steps of dscore_t x_t: one row times the whole sequence.
        let dw = gpu.empty(&[1, c], DType::F32)?;
        gemm::gemm(p.step, &dscore.reshape(&[1, p.batch * l]), &x, None, &dw, &GemmOptions::default())?;
        Ok((Some(dx), vec![dw.reshape(&[c])]))
    }
}
