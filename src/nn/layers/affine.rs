//! Conv1d and Dense: a GEMM with bias (and fused ReLU), Glorot-uniform weights, zero biases.
//! Conv1d lowers the convolution onto the GEMM through im2col / col2im.

use super::{BuiltLayer, Init, LayerKind, Pass, Saved, Steps, check_weight, flat_input, saved};
use crate::gpu::{DType, Gpu, Tensor};
use crate::nn::{Param, param};
use crate::ops::conv::{self, ConvShape};
use crate::ops::elementwise::{self, BinaryOp};
use crate::ops::gemm::{self, GemmOptions};
use crate::ops::norm;
use anyhow::Result;

/// A stride-1 convolution over length (`Layer::Conv1d`).
pub(crate) struct Conv1dKind {
    pub filters: usize,
    pub kernel: usize,
    pub same: bool,
    pub relu: bool,
}

impl LayerKind for Conv1dKind {
    fn name(&self) -> &'static str {
        "conv1d"
    }

    fn output(&self, (l, c): (usize, usize)) -> Result<(usize, usize)> {
        check_weight(self.kernel.saturating_mul(c), self.filters)?;
        Ok((ConvShape::new(1, l, c, self.kernel, self.same)?.l_out, self.filters))
    }

    fn weight_values(&self, (_, c): (usize, usize)) -> usize {
        self.kernel * c * self.filters
    }

    fn steps(&self) -> Steps {
        // A valid convolution's output steps depend on where the input ends.
        if self.same { Steps::Kept } else { Steps::Fixed }
    }

    fn build(&self, gpu: &Gpu, i: usize, (_, c): (usize, usize), init: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(Conv1d::new(gpu, i, c, self.filters, self.kernel, self.same, self.relu, init)?))
    }
}

pub(crate) struct Conv1d {
    kernel: usize,
    same: bool,
    relu: bool,
    /// [kernel * channels, filters] and [filters].
    w: Param,
    b: Param,
}

struct ConvSaved {
    cols: Tensor,
    y: Tensor,
    shape: ConvShape,
}

impl Conv1d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, i: usize, channels: usize, filters: usize, kernel: usize, same: bool, relu: bool, init: &mut Init) -> Result<Conv1d> {
        let (fan_in, fan_out) = (kernel * channels, kernel * filters);
        let w = init.glorot(fan_in * filters, fan_in, fan_out);
        Ok(Conv1d {
            kernel,
            same,
            relu,
            w: param(gpu, format!("{i}.conv.weight"), &w, &[fan_in, filters])?,
            b: param(gpu, format!("{i}.conv.bias"), &vec![0.0; filters], &[filters])?,
        })
    }
}

impl BuiltLayer for Conv1d {
    fn params(&self) -> Vec<&Param> {
        vec![&self.w, &self.b]
    }

    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let gpu = p.step.gpu();
        let ((l, c), (l_out, c_out)) = (p.input, p.output);
        let shape = ConvShape::new(p.batch, l, c, self.kernel, self.same)?;
        let cols = gpu.empty(&[p.batch * l_out, shape.width()], DType::F32)?;
        conv::im2col(p.step, &shape, x, &cols)?;
        let y = gpu.empty(&[p.batch * l_out, c_out], DType::F32)?;
        gemm::gemm(p.step, &cols, &self.w.value, Some(&self.b.value), &y, &GemmOptions { relu: self.relu, precision: p.precision, ..Default::default() })?;
        Ok((y.clone(), Box::new(ConvSaved { cols, y, shape })))
    }

    fn backward(&self, p: &mut Pass, s: Saved, dy: &Tensor, need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let ConvSaved { cols, y, shape } = *saved::<ConvSaved>(s);
        let (dpre, grads) = weight_grads(p, self.relu, &cols, &y, &dy.reshape(y.shape()), &self.w)?;
        if !need_dx {
            return Ok((None, grads));
        }
        let gpu = p.step.gpu();
        let dcols = gpu.empty(cols.shape(), DType::F32)?;
        gemm::gemm(p.step, &dpre, &self.w.value, None, &dcols, &GemmOptions { trans_b: true, precision: p.precision, ..Default::default() })?;
        let dx = gpu.empty(&[p.batch * p.input.0, p.input.1], DType::F32)?;
        conv::col2im(p.step, &shape, &dcols, &dx)?;
        Ok((Some(dx), grads))
    }
}

/// A dense layer on a flat row (`Layer::Dense`).
pub(crate) struct DenseKind {
    pub units: usize,
    pub relu: bool,
}

impl LayerKind for DenseKind {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn output(&self, input: (usize, usize)) -> Result<(usize, usize)> {
        check_weight(input.1, self.units)?;
        flat_input("a dense layer", input)?;
        Ok((1, self.units))
    }

    fn weight_values(&self, (_, c): (usize, usize)) -> usize {
        c * self.units
    }

    fn steps(&self) -> Steps {
        Steps::Fixed
    }

    fn build(&self, gpu: &Gpu, i: usize, (l, c): (usize, usize), init: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(Dense::new(gpu, i, l * c, self.units, self.relu, init)?))
    }
}

pub(crate) struct Dense {
    relu: bool,
    /// [inputs, units] and [units].
    w: Param,
    b: Param,
}

struct DenseSaved {
    x: Tensor,
    y: Tensor,
}

impl Dense {
    pub fn new(gpu: &Gpu, i: usize, fan_in: usize, units: usize, relu: bool, init: &mut Init) -> Result<Dense> {
        let w = init.glorot(fan_in * units, fan_in, units);
        Ok(Dense { relu, w: param(gpu, format!("{i}.dense.weight"), &w, &[fan_in, units])?, b: param(gpu, format!("{i}.dense.bias"), &vec![0.0; units], &[units])? })
    }
}

impl BuiltLayer for Dense {
    fn params(&self) -> Vec<&Param> {
        vec![&self.w, &self.b]
    }

    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let ((l, c), (_, c_out)) = (p.input, p.output);
        let x2 = x.reshape(&[p.batch, l * c]);
        let y = p.step.gpu().empty(&[p.batch, c_out], DType::F32)?;
        gemm::gemm(p.step, &x2, &self.w.value, Some(&self.b.value), &y, &GemmOptions { relu: self.relu, precision: p.precision, ..Default::default() })?;
        Ok((y.clone(), Box::new(DenseSaved { x: x2, y })))
    }

    fn backward(&self, p: &mut Pass, s: Saved, dy: &Tensor, need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let DenseSaved { x, y } = *saved::<DenseSaved>(s);
        let (dpre, grads) = weight_grads(p, self.relu, &x, &y, dy, &self.w)?;
        if !need_dx {
            return Ok((None, grads));
        }
        let dx = p.step.gpu().empty(&[p.batch, p.input.0 * p.input.1], DType::F32)?;
        gemm::gemm(p.step, &dpre, &self.w.value, None, &dx, &GemmOptions { trans_b: true, precision: p.precision, ..Default::default() })?;
        Ok((Some(dx), grads))
    }
}

/// The gradient before the fused ReLU, and the weight and bias gradients from the GEMM's input
/// rows `x`: (dpre, [x^T dpre, column sums of dpre]).
fn weight_grads(p: &mut Pass, relu: bool, x: &Tensor, y: &Tensor, dy: &Tensor, w: &Param) -> Result<(Tensor, Vec<Tensor>)> {
    let gpu = p.step.gpu();
    let dpre = if relu {
        let out = gpu.empty(y.shape(), DType::F32)?;
        elementwise::binary(p.step, BinaryOp::ReluBackward, y, dy, &out)?;
        out
    } else {
        dy.clone()
    };
    let dw = gpu.empty(w.value.shape(), DType::F32)?;
    gemm::gemm(p.step, x, &dpre, None, &dw, &GemmOptions { trans_a: true, precision: p.precision, ..Default::default() })?;
    let db = gpu.empty(&[dpre.shape()[1]], DType::F32)?;
    // Summed per example first (its positions' rows): the sum does not depend on the padding
    // a batch carries past the example.
    norm::column_sum(p.step, &dpre, dpre.shape()[1], dpre.shape()[0] / p.batch, &db)?;
    Ok((dpre, vec![dw, db]))
}
