//! Sample-rate conversion with rubato's FFT resampler (fixed ratio, high quality). Output length
//! is ceil(n * out / in), as librosa's `resample(..., fix=True)` gives.

use anyhow::{Result, anyhow};
use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| anyhow!("resampler {from} -> {to} Hz: {e}"))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| anyhow!("resampler input: {e}"))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| anyhow!("resampling {from} -> {to} Hz: {e}"))?;
    let mut data = out.take_data();
    let want = (samples.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    data.resize(want, 0.0);
    Ok(data)
}
