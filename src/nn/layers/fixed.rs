//! Layers whose tensors are fixed (not trained by gradients; they must come before every
//! trainable layer): random Fourier features and the RBF kernel against fixed centres (the
//! network form of kernel ridge files written before kernel ridge had its own kind).

use super::{BuiltLayer, Init, LayerKind, Pass, Saved, Steps, check_weight, flat_input};
use crate::gpu::{DType, Gpu, Tensor};
use crate::ops::elementwise::{self, UnaryOp};
use crate::ops::gemm::{self, GemmOptions};
use crate::ops::kernel;
use anyhow::{Result, bail};

/// Random Fourier features of a flat row (`Layer::RandomFourier`).
pub(crate) struct RandomFourierKind {
    pub features: usize,
    pub gamma: f32,
}

impl LayerKind for RandomFourierKind {
    fn name(&self) -> &'static str {
        "random_fourier"
    }

    fn output(&self, input: (usize, usize)) -> Result<(usize, usize)> {
        check_weight(input.1, self.features)?;
        flat_input("random Fourier features", input)?;
        Ok((1, self.features))
    }

    fn weight_values(&self, (_, c): (usize, usize)) -> usize {
        c * self.features
    }

    fn steps(&self) -> Steps {
        Steps::Fixed
    }

    fn build(&self, gpu: &Gpu, i: usize, (l, c): (usize, usize), init: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(RandomFourier::new(gpu, i, l * c, self.features, self.gamma, init)?))
    }
}

/// The RBF kernel of a flat row against fixed centres (`Layer::RbfKernel`).
pub(crate) struct RbfKernelKind {
    pub centres: usize,
    pub gamma: f32,
}

impl LayerKind for RbfKernelKind {
    fn name(&self) -> &'static str {
        "rbf_kernel"
    }

    fn output(&self, input: (usize, usize)) -> Result<(usize, usize)> {
        check_weight(input.1, self.centres)?;
        flat_input("an RBF kernel layer", input)?;
        Ok((1, self.centres))
    }

    fn weight_values(&self, (_, c): (usize, usize)) -> usize {
        c * self.centres
    }

    fn steps(&self) -> Steps {
        Steps::Fixed
    }

    fn build(&self, gpu: &Gpu, i: usize, (l, c): (usize, usize), _init: &mut Init) -> Result<Box<dyn BuiltLayer>> {
        Ok(Box::new(RbfKernel::new(gpu, i, l * c, self.centres, self.gamma)?))
    }
}

/// sqrt(2/D) cos(x W + b), W ~ N(0, 2 gamma), b ~ U(0, 2 pi), drawn once.
pub(crate) struct RandomFourier {
    names: [String; 2],
    features: usize,
    w: Tensor,
    b: Tensor,
}

impl RandomFourier {
    pub fn new(gpu: &Gpu, i: usize, fan_in: usize, features: usize, gamma: f32, init: &mut Init) -> Result<RandomFourier> {
        let std = (2.0 * gamma as f64).sqrt();
        // Box-Muller on the model's uniform stream.
        let w: Vec<f32> = (0..fan_in * features)
            .map(|_| (std * (-2.0 * init.unit().max(1e-300).ln()).sqrt() * (std::f64::consts::TAU * init.unit()).cos()) as f32)
            .collect();
        let b: Vec<f32> = (0..features).map(|_| (std::f64::consts::TAU * init.unit()) as f32).collect();
        Ok(RandomFourier {
            names: [format!("{i}.fourier.weight"), format!("{i}.fourier.bias")],
            features,
            w: gpu.upload_f32(&w, &[fan_in, features])?,
            b: gpu.upload_f32(&b, &[features])?,
        })
    }
}

impl BuiltLayer for RandomFourier {
    fn fixed_tensors(&self) -> Vec<(String, &Tensor)> {
        vec![(self.names[0].clone(), &self.w), (self.names[1].clone(), &self.b)]
    }

    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let gpu = p.step.gpu();
        let x2 = x.reshape(&[p.batch, p.input.0 * p.input.1]);
        let z = gpu.empty(&[p.batch, self.features], DType::F32)?;
        gemm::gemm(p.step, &x2, &self.w, Some(&self.b), &z, &GemmOptions::default())?;
        let y = gpu.empty(&[p.batch, self.features], DType::F32)?;
        elementwise::unary(p.step, UnaryOp::ScaledCos((2.0 / self.features as f32).sqrt()), &z, &y)?;
        Ok((y, Box::new(())))
    }

    fn backward(&self, _p: &mut Pass, _s: Saved, _dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        bail!("random_fourier is fixed and must come before every trainable layer")
    }
}

/// exp(-gamma |x - c_j|^2) against fixed centres c_j (their squared norms kept beside them).
pub(crate) struct RbfKernel {
    names: [String; 2],
    gamma: f32,
    centres: Tensor,
    norms: Tensor,
}

impl RbfKernel {
    pub fn new(gpu: &Gpu, i: usize, fan_in: usize, centres: usize, gamma: f32) -> Result<RbfKernel> {
        Ok(RbfKernel {
            names: [format!("{i}.rbf.centres"), format!("{i}.rbf.centre_sq_norms")],
            gamma,
            centres: gpu.empty(&[centres, fan_in], DType::F32)?,
            norms: gpu.empty(&[centres], DType::F32)?,
        })
    }
}

impl BuiltLayer for RbfKernel {
    fn fixed_tensors(&self) -> Vec<(String, &Tensor)> {
        vec![(self.names[0].clone(), &self.centres), (self.names[1].clone(), &self.norms)]
    }

    fn forward(&self, p: &mut Pass, x: &Tensor) -> Result<(Tensor, Saved)> {
        let gpu = p.step.gpu();
        let x2 = x.reshape(&[p.batch, p.input.0 * p.input.1]);
        let x_norms = gpu.empty(&[p.batch], DType::F32)?;
        kernel::sq_norms(p.step, &x2, &x_norms)?;
        let k = gpu.empty(&[p.batch, p.output.1], DType::F32)?;
        kernel::rbf(p.step, &x2, &x_norms, &self.centres, &self.norms, self.gamma, &k)?;
        Ok((k, Box::new(())))
    }

    fn backward(&self, _p: &mut Pass, _s: Saved, _dy: &Tensor, _need_dx: bool) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        bail!("rbf_kernel is fixed and must come before every trainable layer")
    }
}
