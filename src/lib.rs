//! `ser`: speech emotion recognition as a GPU-native compute pipeline.
//!
//! Stages, in data-flow order: [`audio`] (finding, decoding, resampling clips), [`sources`]
//! (which clips, with which labels and speakers: corpus layouts and manifests), [`gpu`] (the
//! runtime that owns every wgpu call), [`ops`]
//! (kernel families, each with a CPU reference), [`features`], [`contract`] (what a model needs to read audio as it was trained),
//! [`nn`], [`train`], [`infer`],
//! [`experiment`] (a whole training run with its typed configuration: what `ser train` and the
//! tests call), [`bench`] (throughput measurements) and [`selftest`] (every kernel family and the built-in
//! model checked on the adapter at hand). [`progress`] is how a long run tells its caller how far it
//! has come, and how the caller stops it.

// `!(x > 0.0)` is how the code refuses a NaN together with the out-of-range values.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod audio;
pub mod bench;
pub mod choice;
pub mod contract;
pub mod dataset;
pub mod experiment;
pub mod features;
pub mod gpu;
pub mod infer;
pub mod models;
pub mod nn;
pub mod ops;
pub mod progress;
pub mod report;
pub mod rng;
pub mod runtime;
pub mod selftest;
pub mod shard;
pub mod sources;
pub mod store;
pub mod train;
