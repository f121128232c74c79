//! The GPU runtime. This module owns every wgpu call in `ser`: adapter choice, the device and its
//! limits, tensors and their buffer pool, the pipeline cache, recording and submitting steps,
//! reading results back and profiling kernels. Everything above it speaks in tensors and kernels.

mod adapter;
mod kernel;
mod profiler;
mod tensor;

pub use adapter::{AdapterReport, AdapterSelector, BackendChoice, KeyLimits, NO_ADAPTER_HELP, quiet_device_select_layer};
pub use kernel::{Access, KernelSpec, PRELUDE, ShaderFile, capabilities_for, validate};
pub use profiler::{KernelStat, ProfileReport};
pub use tensor::{DType, TexelFormat, Tensor, Texture};

use anyhow::{Context, Result, anyhow, bail};
use kernel::{CachedPipeline, PipelineKey};
use profiler::Profiler;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tensor::{BufferPool, PooledBuffer, PooledTexture, TexturePool};

/// Lists every adapter wgpu can see, best first.
pub fn list_adapters() -> Vec<AdapterReport> {
    adapter::enumerate(adapter::ALL_BACKENDS).iter().enumerate().map(|(i, a)| adapter::report(i, a)).collect()
}

/// What the device was created with, for reports and for the shader validation test.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceReport {
    pub adapter: AdapterReport,
    /// Optional features requested because the adapter has them.
    pub features: Vec<String>,
    pub limits: KeyLimits,
}

/// The most bytes `ser` asks to bind as one uniform buffer (WebGPU's default; Vulkan and Metal
/// adapters give at least this).
pub const UNIFORM_BINDING_BYTES: u64 = 65536;

/// Limits every kernel in `ser` fits in. Requested explicitly; anything beyond comes from the
/// adapter only where it is useful (buffer sizes).
fn required_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    let mut req = wgpu::Limits::downlevel_defaults();
    req.max_storage_buffers_per_shader_stage = 8;
    // Workgroup memory holds reduction scratch and GEMM tiles (a few KiB); take what is there.
    req.max_compute_workgroup_storage_size = adapter.max_compute_workgroup_storage_size.min(65536);
    req.max_compute_invocations_per_workgroup = 256;
    req.max_compute_workgroup_size_x = 256;
    req.max_compute_workgroup_size_y = 256;
    req.max_compute_workgroup_size_z = 64;
    req.max_storage_buffer_binding_size = adapter.max_storage_buffer_binding_size;
    req.max_buffer_size = adapter.max_buffer_size;
    // Small read-everywhere tensors (the LSTM lane kernel's recurrent weights) as uniforms.
    req.max_uniform_buffer_binding_size = adapter.max_uniform_buffer_binding_size.clamp(req.max_uniform_buffer_binding_size, UNIFORM_BINDING_BYTES);
    // Packed GEMM operands are textures with one row per matrix row: as tall as the adapter allows.
    req.max_texture_dimension_2d = adapter.max_texture_dimension_2d;
    req.max_storage_textures_per_shader_stage = req.max_storage_textures_per_shader_stage.max(1);
    req
}

/// Lowered device limits for one check (split dispatches, chunked textures without huge
/// inputs); the device limits come back when this is dropped, even if the check fails.
pub struct LoweredLimits<'a>(&'a Gpu);

impl<'a> LoweredLimits<'a> {
    pub fn new(gpu: &'a Gpu) -> Self {
        LoweredLimits(gpu)
    }

    pub fn texture_side(&self, limit: u32) {
        self.0.set_texture_side_limit_for_tests(limit);
    }

    pub fn dispatch_dim(&self, limit: u32) {
        self.0.set_dispatch_dim_limit_for_tests(limit);
    }
}

impl Drop for LoweredLimits<'_> {
    fn drop(&mut self) {
        self.0.set_texture_side_limit_for_tests(u32::MAX);
        self.0.set_dispatch_dim_limit_for_tests(u32::MAX);
    }
}

/// One device and queue, shared by everything that runs on it.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    report: DeviceReport,
    features: wgpu::Features,
    limits: wgpu::Limits,
    pipelines: Mutex<HashMap<PipelineKey, Arc<CachedPipeline>>>,
    pool: Arc<BufferPool>,
    textures: Arc<TexturePool>,
    /// The uniform arena for step params; the lock is held from write to submit so that two
    /// threads sharing this device never see each other's params.
    params_arena: Mutex<Option<wgpu::Buffer>>,
    profiler: Mutex<Profiler>,
    /// Largest workgroup count per dispatch dimension; the device limit, lowered only by tests.
    dispatch_dim_limit: std::sync::atomic::AtomicU32,
    /// Largest texture side handed out; the device limit, lowered only by tests.
    texture_side_limit: std::sync::atomic::AtomicU32,
    /// Profiles time dispatches with timestamp queries (see `has_timestamps`).
    timestamps: bool,
    settings: GpuSettings,
    /// A 16-byte buffer bound where a kernel's optional input is absent.
    placeholder: Tensor,
    /// State the layers above keep per device (see [`Gpu::local`]), by type.
    locals: Mutex<HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>>,
}

/// How a device runs kernels: settings the edge gives (the CLI from the environment, through
/// `crate::runtime::Settings::from_env`; Python as arguments). The defaults are what every
/// adapter should use; the others exist to measure and to work around drivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuSettings {
    /// Time profiled dispatches with GPU timestamps (Some(true)) or the host clock
    /// (Some(false)); None: timestamps except on software adapters, whose timestamps undercount
    /// texture kernels (docs/results/history.md, "Portable kernels, autotuning, bounds checks").
    pub gpu_timestamps: Option<bool>,
    /// wgpu's shader bounds checks: everywhere (Some(true)), nowhere (Some(false), to measure
    /// their cost), or None: everywhere but the entry points whose bounds are proven
    /// (`ShaderFile::bounds_proven`).
    pub bounds_checks: Option<bool>,
    /// Use the adapter's matrix units through wgpu's experimental cooperative-matrix feature
    /// where it has the configuration gemm_coop.wgsl is written for.
    pub cooperative_matrix: bool,
    /// The LSTM recurrence kernel by name (`workgroup` or `lane`, ops::lstm::LstmKernel); None:
    /// the adapter's choice.
    pub lstm_kernel: Option<String>,
}

impl Default for GpuSettings {
    fn default() -> Self {
        GpuSettings { gpu_timestamps: None, bounds_checks: None, cooperative_matrix: true, lstm_kernel: None }
    }
}

impl Gpu {
    /// Opens the adapter the selector (flags, else rank) picks, with the default settings.
    pub fn new(selector: &AdapterSelector) -> Result<Gpu> {
        Gpu::with_settings(selector, GpuSettings::default())
    }

    /// The value of type `T` this device keeps for a layer above it (the GEMM kernel table,
    /// `ops::gemm::table`): made with `T::default()` on first use, shared by every caller after,
    /// dropped with the device. Per device rather than per process, so that two devices (or two
    /// opened on one adapter with different settings) never see each other's state; the GPU
    /// layer never looks inside.
    pub fn local<T: std::any::Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut locals = self.locals.lock().unwrap();
        let value = locals.entry(std::any::TypeId::of::<T>()).or_insert_with(|| Arc::new(T::default()));
        Arc::clone(value).downcast::<T>().unwrap_or_else(|_| unreachable!("a local is stored under its own type"))
    }

    /// Opens the adapter the selector picks, with `settings`.
    pub fn with_settings(selector: &AdapterSelector, settings: GpuSettings) -> Result<Gpu> {
        let adapter = adapter::choose(selector)?;
        let info = adapter.get_info();
        let supported = adapter.features();
        let features = adapter::OPTIONAL_FEATURES
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| supported.contains(*f))
            .fold(wgpu::Features::empty(), |acc, f| acc | f);
        let coop = settings.cooperative_matrix && adapter::has_coop8_f32(&adapter);
        let features = if coop { features | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX } else { features };
        let adapter_limits = adapter.limits();
        let limits = required_limits(&adapter_limits);
        let mut short = Vec::new();
        limits.check_limits_with_fail_fn(&adapter_limits, false, |name, want, have| {
            short.push(format!("{name}: need {want}, adapter has {have}"))
        });
        if !short.is_empty() {
            bail!("adapter {} ({:?}) is too small for ser: {}", info.name, info.backend, short.join("; "));
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ser"),
            required_features: features,
            required_limits: limits.clone(),
            // SAFETY: only the cooperative-matrix feature is experimental here, requested only
            // where the adapter reports the configuration gemm_coop.wgsl uses (see
            // `adapter::has_coop8_f32`); its kernel is checked like every other (`ser selftest`).
            experimental_features: if coop { unsafe { wgpu::ExperimentalFeatures::enabled() } } else { wgpu::ExperimentalFeatures::disabled() },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("opening a device on {} ({:?})", info.name, info.backend))?;
        let report = DeviceReport {
            adapter: adapter::report(0, &adapter),
            features: adapter::feature_names(features).into_iter().chain(coop.then(|| "cooperative-matrix-8x8-f32".to_string())).collect(),
            limits: KeyLimits::of(&limits),
        };
        let pool = BufferPool::new();
        let placeholder = Tensor::new(pool.take_buffer(&device, 16), &[4], DType::F32);
        let timestamp_period = queue.get_timestamp_period();
        let timestamps = settings.gpu_timestamps.unwrap_or(info.device_type != wgpu::DeviceType::Cpu) && features.contains(wgpu::Features::TIMESTAMP_QUERY);
        Ok(Gpu {
            dispatch_dim_limit: limits.max_compute_workgroups_per_dimension.into(),
            texture_side_limit: limits.max_texture_dimension_2d.into(),
            timestamps,
            settings,
            device,
            queue,
            report,
            features,
            limits,
            pipelines: Mutex::new(HashMap::new()),
            pool,
            textures: TexturePool::new(),
            params_arena: Mutex::new(None),
            profiler: Mutex::new(Profiler::new(timestamp_period)),
            placeholder,
            locals: Mutex::new(HashMap::new()),
        })
    }

    pub fn report(&self) -> &DeviceReport {
        &self.report
    }

    /// "name (backend)", for tables and logs.
    pub fn label(&self) -> String {
        format!("{} ({})", self.report.adapter.name, self.report.adapter.backend)
    }

    /// Whether profiles use GPU timestamp queries rather than host timing (one submission per
    /// dispatch, waited for). Timestamps need the feature, and are not used on software (CPU)
    /// adapters unless `SER_PROFILE_CLOCK=gpu`: lavapipe 22.3 stamps kernels that read textures
    /// 3-4x short (four conv-sized texture GEMMs: 57 ms by timestamps, 240 ms by the wall
    /// clock; docs/results/history.md, "Portable kernels, autotuning, bounds checks"). `SER_PROFILE_CLOCK=host` forces host timing anywhere.
    /// Decided once, when the device opens (every submission asks).
    /// Whether the adapter is a CPU implementation (lavapipe, llvmpipe, WARP), whose costs
    /// some kernels are chosen for beside their portable path.
    /// Bytes this device binds as one uniform buffer.
    pub fn uniform_binding_bytes(&self) -> u64 {
        self.report.limits.max_uniform_buffer_binding_size
    }

    pub fn is_cpu(&self) -> bool {
        self.report.adapter.device_type == "Cpu"
    }

    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// 8x8 f32 cooperative matrices (gemm_coop.wgsl) are available on this device.
    pub fn has_cooperative_matrix(&self) -> bool {
        self.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
    }

    /// naga capabilities that match the features this device was created with.
    pub fn capabilities(&self) -> naga::valid::Capabilities {
        let caps = capabilities_for(self.has_f16(), self.has_subgroups());
        if self.has_cooperative_matrix() { caps | naga::valid::Capabilities::COOPERATIVE_MATRIX } else { caps }
    }

    pub fn max_storage_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    /// Lowers the per-dimension dispatch limit so tests can exercise split dispatches cheaply.
    #[doc(hidden)]
    pub fn set_dispatch_dim_limit_for_tests(&self, limit: u32) {
        let limit = limit.clamp(1, self.limits.max_compute_workgroups_per_dimension);
        self.dispatch_dim_limit.store(limit, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lowers the largest texture side so tests can exercise split packed multiplies cheaply.
    #[doc(hidden)]
    pub fn set_texture_side_limit_for_tests(&self, limit: u32) {
        let limit = limit.clamp(8, self.limits.max_texture_dimension_2d);
        self.texture_side_limit.store(limit, std::sync::atomic::Ordering::SeqCst);
    }

    // ---- tensors ----

    /// An uninitialised tensor from the pool. Its contents are whatever the buffer last held.
    pub fn empty(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = (shape.iter().product::<usize>() * dtype.size()) as u64;
        if bytes > self.limits.max_storage_buffer_binding_size {
            bail!(
                "tensor {shape:?} needs {bytes} bytes, over this adapter's storage binding limit of {}",
                self.limits.max_storage_buffer_binding_size
            );
        }
        Ok(Tensor::new(self.pool.take_buffer(&self.device, bytes), shape, dtype))
    }

    /// Uploads host data (any 4-byte or 2-byte plain type) as a tensor of `shape`.
    pub fn upload<T: bytemuck::Pod>(&self, data: &[T], shape: &[usize], dtype: DType) -> Result<Tensor> {
        let count: usize = shape.iter().product();
        if data.len() != count || std::mem::size_of::<T>() != dtype.size() {
            bail!("upload of {} {}-byte values into {shape:?} {dtype:?}", data.len(), size_of::<T>());
        }
        let t = self.empty(shape, dtype)?;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(t.buf.raw(), 0, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            self.queue.write_buffer(t.buf.raw(), 0, &padded);
        }
        Ok(t)
    }

    /// Overwrites a tensor's contents (ordered after work already submitted).
    pub fn write<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) -> Result<()> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 != t.bytes() || !bytes.len().is_multiple_of(4) {
            bail!("writing {} bytes into {t:?}", bytes.len());
        }
        self.queue.write_buffer(t.buf.raw(), 0, bytes);
        Ok(())
    }

    pub fn upload_f32(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        self.upload(data, shape, DType::F32)
    }

    /// Reads a tensor back to the host, waiting for all submitted work that writes it.
    pub fn read<T: bytemuck::Pod>(&self, t: &Tensor) -> Result<Vec<T>> {
        if std::mem::size_of::<T>() != t.dtype().size() {
            bail!("reading {:?} as {}-byte values", t.dtype(), size_of::<T>());
        }
        let bytes = t.bytes().next_multiple_of(4).max(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ser.readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(t.buf.raw(), 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let raw = self.map_read(&staging)?;
        // pod_collect_to_vec copies without assuming the byte buffer is aligned for T.
        Ok(bytemuck::pod_collect_to_vec(&raw[..t.bytes() as usize]))
    }

    pub fn read_f32(&self, t: &Tensor) -> Result<Vec<f32>> {
        self.read(t)
    }

    /// The one place that maps buffers: waits for the queue, then copies the bytes out.
    fn map_read(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU: {e}"))?;
        rx.recv()
            .map_err(|_| anyhow!("buffer map callback never ran"))?
            .map_err(|e| anyhow!("mapping a readback buffer: {e}"))?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| anyhow!("reading a mapped buffer: {e:?}"))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Blocks until every submitted step has finished.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| anyhow!("waiting for the GPU: {e}"))
    }

    /// Bytes held by free pooled buffers and textures (for memory reports).
    pub fn pool_free_bytes(&self) -> u64 {
        self.pool.free_buffer_bytes() + self.textures.free_texture_bytes()
    }

    /// Drops every free pooled buffer and texture.
    pub fn trim_pool(&self) {
        self.pool.clear();
        self.textures.clear();
    }

    /// Largest width or height of a texture on this device, in texels.
    pub fn max_texture_side(&self) -> u32 {
        self.texture_side_limit.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Reads a texture's `width` x `height` texels back (four floats each, row by row), waiting
    /// for all submitted work that writes it.
    pub fn read_texture(&self, t: &Texture) -> Result<Vec<f32>> {
        let (w, h) = (t.width(), t.height());
        // Texture-to-buffer copies need rows padded to wgpu's copy alignment.
        let row = (w * 16).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ser.readback"),
            size: row as u64 * h as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo { texture: t.tex.raw(), mip_level: 0, origin: wgpu::Origin3d::ZERO, aspect: wgpu::TextureAspect::All },
            wgpu::TexelCopyBufferInfo {
                buffer: &staging,
                layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row), rows_per_image: Some(h) },
            },
            wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        );
        self.queue.submit([encoder.finish()]);
        let raw = self.map_read(&staging)?;
        Ok(raw.chunks(row as usize).flat_map(|r| bytemuck::pod_collect_to_vec::<u8, f32>(&r[..w as usize * 16])).collect())
    }

    /// Uploads host floats into a new `width` x `height` rgba32float texture, row by row (four
    /// values per texel), zero past the end of `data`.
    pub fn upload_texture(&self, data: &[f32], width: u32, height: u32) -> Result<Texture> {
        let texels = width as usize * height as usize;
        if data.len() > 4 * texels {
            bail!("{} values do not fit a {width}x{height} texture", data.len());
        }
        let t = self.texture(width, height)?;
        let mut padded = data.to_vec();
        padded.resize(4 * texels, 0.0);
        self.queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: t.tex.raw(),
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            bytemuck::cast_slice(&padded),
            wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(width * 16), rows_per_image: Some(height) },
            wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
        );
        Ok(t)
    }

    /// An uninitialised rgba32float texture from the pool (`width` texels of four values).
    pub fn texture(&self, width: u32, height: u32) -> Result<Texture> {
        self.texture_of(TexelFormat::Rgba32Float, width, height)
    }

    /// An uninitialised texture of `format` from the pool.
    pub fn texture_of(&self, format: TexelFormat, width: u32, height: u32) -> Result<Texture> {
        let max = self.max_texture_side();
        if width == 0 || height == 0 || width > max || height > max {
            bail!("a {width}x{height} texture does not fit this adapter's limit of {max} per side");
        }
        // Allocations are powers of two on both sides (kernels bound their own rows and texels):
        // textures of every size then share one pool class per power and, on llvmpipe, one
        // compiled shader variant, whose key includes whether each texture side is a power of
        // two (mixed sizes cost a JIT compile of ~0.3-2 s per new combination).
        let (w, h) = (width.next_power_of_two().min(max), height.next_power_of_two().min(max));
        Ok(Texture::new(self.textures.take_texture(&self.device, w, h, format), width, height, format))
    }

    /// A 16-byte tensor to bind where an optional input is absent.
    pub fn placeholder(&self) -> &Tensor {
        &self.placeholder
    }

    // ---- kernels ----

    /// The compiled pipeline for a kernel with these override constants, built on first use.
    fn pipeline(&self, spec: &KernelSpec, constants: &[(&'static str, f64)]) -> Result<Arc<CachedPipeline>> {
        let key = PipelineKey {
            shader: spec.shader.name,
            entry: spec.entry,
            constants: constants.iter().map(|(n, v)| (*n, v.to_bits())).collect(),
        };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        if spec.shader.needs_f16 && !self.has_f16() {
            bail!("{}::{} needs shader-f16, which {} lacks", spec.shader.name, spec.entry, self.label());
        }
        if spec.shader.needs_subgroups && !self.has_subgroups() {
            bail!("{}::{} needs subgroups, which {} lacks", spec.shader.name, spec.entry, self.label());
        }
        if spec.shader.needs_cooperative_matrix && !self.has_cooperative_matrix() {
            bail!("{}::{} needs 8x8 f32 cooperative matrices, which {} lacks", spec.shader.name, spec.entry, self.label());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(spec.shader.name),
            source: wgpu::ShaderSource::Wgsl(spec.shader.full_source().into()),
        };
        let module = if self.bounds_checks_for(spec) {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: the entry point guards every buffer access itself and the host checks the
            // extents (`ShaderFile::bounds_proven`), or the user asked for it
            // (SER_SHADER_CHECKS=off, a measurement setting). Loop bounding stays on.
            let checks = wgpu::ShaderRuntimeChecks { bounds_checks: false, ..wgpu::ShaderRuntimeChecks::checked() };
            unsafe { self.device.create_shader_module_trusted(desc, checks) }
        };
        let layout = kernel::bind_group_layout(&self.device, spec);
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(spec.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Kernels initialise the workgroup memory they read; zeroing it costs a barrier.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            bail!("compiling {}::{} with {constants:?}: {err}", spec.shader.name, spec.entry);
        }
        let cached = Arc::new(CachedPipeline { pipeline, layout });
        self.pipelines.lock().unwrap().insert(key, cached.clone());
        Ok(cached)
    }

    /// Whether wgpu's shader bounds checks are compiled into a kernel
    /// ([`GpuSettings::bounds_checks`]).
    fn bounds_checks_for(&self, spec: &KernelSpec) -> bool {
        self.settings.bounds_checks.unwrap_or_else(|| !spec.shader.bounds_proven.contains(&spec.entry))
    }

    /// The settings the device was opened with.
    pub fn settings(&self) -> &GpuSettings {
        &self.settings
    }

    /// Starts recording a step: a sequence of dispatches submitted as one command buffer.
    pub fn step(&self, label: &'static str) -> Step<'_> {
        Step { gpu: self, label, commands: Vec::new(), scope: None }
    }

    // ---- profiling ----

    /// Turns per-kernel timing on or off (off by default: it splits passes and adds readbacks).
    pub fn set_profiling(&self, on: bool) {
        self.profiler.lock().unwrap().enabled = on;
    }

    /// Per-kernel timings gathered since the last reset.
    pub fn profile(&self) -> ProfileReport {
        self.profiler.lock().unwrap().report(self.has_timestamps())
    }

    pub fn reset_profile(&self) {
        self.profiler.lock().unwrap().reset();
    }

    /// Splits a logical grid into a dispatch the device accepts (see shaders/prelude.wgsl).
    fn fold_grid(&self, grid: [u32; 3]) -> Result<[u32; 3]> {
        let max = self.dispatch_dim_limit.load(std::sync::atomic::Ordering::SeqCst);
        if grid.iter().all(|&g| g <= max) {
            return Ok(grid);
        }
        let total = grid.iter().map(|&g| g as u64).product::<u64>();
        let max = max as u64;
        let x = total.min(max);
        let y = total.div_ceil(x).min(max);
        let z = total.div_ceil(x * y);
        if z > max {
            bail!("grid {grid:?} needs {total} workgroups, more than {max}^3");
        }
        Ok([x as u32, y as u32, z as u32])
    }
}

/// A recorded kernel launch.
struct Dispatch {
    pipeline: Arc<CachedPipeline>,
    label: String,
    resources: Vec<Resource>,
    params: Vec<u8>,
    workgroups: [u32; 3],
    /// Floating-point operations the launch performs, when the op declares them (profiles).
    flops: f64,
}

/// What one binding of a recorded dispatch holds on to until submission.
enum Resource {
    Buffer(Arc<PooledBuffer>),
    Texture(Arc<PooledTexture>),
}

/// One argument of a dispatch, in the kernel's binding order.
#[derive(Clone, Copy)]
pub enum Binding<'a> {
    Buffer(&'a Tensor),
    Texture(&'a Texture),
}

impl<'a> From<&'a Tensor> for Binding<'a> {
    fn from(t: &'a Tensor) -> Self {
        Binding::Buffer(t)
    }
}

impl<'a> From<&'a Texture> for Binding<'a> {
    fn from(t: &'a Texture) -> Self {
        Binding::Texture(t)
    }
}

impl Binding<'_> {
    fn same_storage(&self, other: &Binding) -> bool {
        match (self, other) {
            (Binding::Buffer(a), Binding::Buffer(b)) => a.shares_storage(b),
            (Binding::Texture(a), Binding::Texture(b)) => a.shares_storage(b),
            _ => false,
        }
    }
}

enum Command {
    Dispatch(Dispatch),
    Copy { src: Arc<PooledBuffer>, dst: Arc<PooledBuffer>, bytes: u64 },
    Zero { dst: Arc<PooledBuffer>, bytes: u64 },
}

/// Work recorded for one submission. Nothing reaches the GPU until [`Step::submit`], which
/// encodes everything into one command encoder.
pub struct Step<'g> {
    gpu: &'g Gpu,
    label: &'static str,
    commands: Vec<Command>,
    /// Prefix of the profile labels of the dispatches recorded next (e.g. a model layer).
    scope: Option<String>,
}

impl<'g> Step<'g> {
    /// The device this step records for (outlives the step, so it can allocate while recording).
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Declares the floating-point operations of the last recorded dispatch, for GFLOP/s in
    /// profiles.
    pub fn count_flops(&mut self, flops: f64) {
        if let Some(Command::Dispatch(d)) = self.commands.last_mut() {
            d.flops = flops;
        }
    }

    /// Profiles of the dispatches recorded from now on read "scope/label" (None: plain label),
    /// so that time can be attributed to, say, one layer's backward pass.
    pub fn set_scope(&mut self, scope: Option<String>) {
        self.scope = scope;
    }

    /// Records one kernel launch over a logical `grid` of workgroups. `params` is the kernel's
    /// uniform after its leading grid field (which the runtime fills); `bindings` are the storage
    /// buffers in the kernel's declared order; `label` names the launch in profiles.
    pub fn dispatch(
        &mut self,
        spec: &KernelSpec,
        constants: &[(&'static str, f64)],
        bindings: &[&Tensor],
        params: &[u8],
        grid: [u32; 3],
        label: impl Into<String>,
    ) -> Result<()> {
        let bound: Vec<Binding> = bindings.iter().map(|t| Binding::Buffer(t)).collect();
        self.dispatch_bound(spec, constants, &bound, params, grid, label)
    }

    /// [`Step::dispatch`] for kernels that also bind textures.
    pub fn dispatch_bound(
        &mut self,
        spec: &KernelSpec,
        constants: &[(&'static str, f64)],
        bindings: &[Binding],
        params: &[u8],
        grid: [u32; 3],
        label: impl Into<String>,
    ) -> Result<()> {
        if bindings.len() != spec.bindings.len() {
            bail!("{} takes {} bindings, got {}", spec.entry, spec.bindings.len(), bindings.len());
        }
        for (i, (a, acc_a)) in bindings.iter().zip(spec.bindings).enumerate() {
            let format = match a {
                Binding::Texture(t) => Some(t.format()),
                Binding::Buffer(_) => None,
            };
            if format != acc_a.texel_format() {
                let want = acc_a.texel_format().map_or("buffer".to_string(), |f| format!("{f:?} texture"));
                bail!("{}: binding {} must be a {want}", spec.entry, i + 1);
            }
            for (b, acc_b) in bindings[i + 1..].iter().zip(&spec.bindings[i + 1..]) {
                if a.same_storage(b) && (acc_a.writes() || acc_b.writes()) {
                    bail!("{}: a resource written by the kernel is also bound as another argument", spec.entry);
                }
            }
        }
        if grid.contains(&0) {
            return Ok(());
        }
        let pipeline = self.gpu.pipeline(spec, constants)?;
        let workgroups = self.gpu.fold_grid(grid)?;
        let mut uniform = Vec::with_capacity(16 + params.len());
        uniform.extend_from_slice(bytemuck::cast_slice(&[grid[0], grid[1], grid[2], 0u32]));
        uniform.extend_from_slice(params);
        uniform.resize(uniform.len().next_multiple_of(16), 0);
        self.commands.push(Command::Dispatch(Dispatch {
            pipeline,
            label: match &self.scope {
                Some(s) => format!("{s}/{}", label.into()),
                None => label.into(),
            },
            resources: bindings
                .iter()
                .map(|b| match b {
                    Binding::Buffer(t) => Resource::Buffer(t.buf.clone()),
                    Binding::Texture(t) => Resource::Texture(t.tex.clone()),
                })
                .collect(),
            params: uniform,
            workgroups,
            flops: 0.0,
        }));
        Ok(())
    }

    /// Copies `src` into `dst` (same byte size).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        if src.bytes() != dst.bytes() {
            bail!("copy of {:?} into {:?}", src, dst);
        }
        let bytes = src.bytes().next_multiple_of(4);
        self.commands.push(Command::Copy { src: src.buf.clone(), dst: dst.buf.clone(), bytes });
        Ok(())
    }

    /// Sets every byte of `dst` to zero.
    pub fn zero(&mut self, dst: &Tensor) {
        let bytes = dst.bytes().next_multiple_of(4);
        self.commands.push(Command::Zero { dst: dst.buf.clone(), bytes });
    }

    /// Zeroes the first `elements` elements of `dst` (all of it when it has fewer).
    pub fn zero_prefix(&mut self, dst: &Tensor, elements: usize) {
        let bytes = ((elements * dst.dtype().size()) as u64).min(dst.bytes()).next_multiple_of(4);
        self.commands.push(Command::Zero { dst: dst.buf.clone(), bytes });
    }

    /// Encodes and submits everything recorded. With profiling on, each dispatch gets its own
    /// timed pass (timestamp queries) or, on adapters without them, its own timed submission.
    pub fn submit(self) -> Result<()> {
        let gpu = self.gpu;
        if self.commands.is_empty() {
            return Ok(());
        }
        let profiling = gpu.profiler.lock().unwrap().enabled;
        match (profiling, gpu.has_timestamps()) {
            (true, false) => self.submit_host_timed(),
            (timed, _) => self.encode_and_submit(timed),
        }
    }

    fn encode_and_submit(self, profiling: bool) -> Result<()> {
        let gpu = self.gpu;
        let mut arena_slot = gpu.params_arena.lock().unwrap();
        let (arena, offsets) = write_params(gpu, &mut arena_slot, &self.commands);
        let bind_groups = bind_groups(gpu, arena, &self.commands, &offsets);
        // Steps of copies only (no dispatch) have nothing to time.
        let has_dispatch = self.commands.iter().any(|c| matches!(c, Command::Dispatch(_)));
        let timing = (profiling && has_dispatch).then(|| Timestamps::new(gpu, &self.commands));
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(self.label) });
        let mut pass: Option<wgpu::ComputePass<'static>> = None;
        let mut dispatch_index = 0u32;
        for (cmd, bg) in self.commands.iter().zip(&bind_groups) {
            match cmd {
                Command::Dispatch(d) => {
                    let timed = timing.as_ref().map(|t| t.writes(dispatch_index));
                    if timed.is_some() {
                        pass = None;
                    }
                    let p = pass.get_or_insert_with(|| {
                        encoder
                            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                                label: Some(self.label),
                                timestamp_writes: timed,
                            })
                            .forget_lifetime()
                    });
                    p.set_pipeline(&d.pipeline.pipeline);
                    p.set_bind_group(0, bg.as_ref(), &[]);
                    p.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
                    dispatch_index += 1;
                    if timing.is_some() {
                        pass = None;
                    }
                }
                Command::Copy { src, dst, bytes } => {
                    pass = None;
                    encoder.copy_buffer_to_buffer(src.raw(), 0, dst.raw(), 0, *bytes);
                }
                Command::Zero { dst, bytes } => {
                    pass = None;
                    encoder.clear_buffer(dst.raw(), 0, Some(*bytes));
                }
            }
        }
        drop(pass);
        if let Some(t) = &timing {
            t.resolve(&mut encoder);
        }
        gpu.queue.submit([encoder.finish()]);
        drop(arena_slot);
        if let Some(t) = timing {
            let ticks = t.read(gpu)?;
            let labels = self.commands.iter().filter_map(|c| match c {
                Command::Dispatch(d) => Some((d.label.as_str(), d.flops)),
                _ => None,
            });
            gpu.profiler.lock().unwrap().record_ticks(labels, &ticks);
        }
        Ok(())
    }

    /// Profiling without timestamp queries: one submission per command, timed on the host.
    fn submit_host_timed(self) -> Result<()> {
        let gpu = self.gpu;
        gpu.wait()?;
        for cmd in self.commands {
            let label = match &cmd {
                Command::Dispatch(d) => Some((d.label.clone(), d.flops)),
                _ => None,
            };
            let start = Instant::now();
            Step { gpu, label: self.label, commands: vec![cmd], scope: None }.encode_and_submit(false)?;
            gpu.wait()?;
            if let Some((label, flops)) = label {
                gpu.profiler.lock().unwrap().record_host(&label, flops, start.elapsed());
            }
        }
        Ok(())
    }
}

/// Writes every dispatch's params into the shared uniform arena (grown as needed) and returns
/// it with each dispatch's offset.
fn write_params<'a>(
    gpu: &Gpu,
    slot: &'a mut Option<wgpu::Buffer>,
    commands: &[Command],
) -> (&'a wgpu::Buffer, Vec<u64>) {
    let align = gpu.limits.min_uniform_buffer_offset_alignment as usize;
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for cmd in commands {
        if let Command::Dispatch(d) = cmd {
            bytes.resize(bytes.len().next_multiple_of(align), 0);
            offsets.push(bytes.len() as u64);
            bytes.extend_from_slice(&d.params);
        }
    }
    bytes.resize(bytes.len().next_multiple_of(align).max(align), 0);
    if slot.as_ref().is_none_or(|b| b.size() < bytes.len() as u64) {
        *slot = Some(gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ser.params"),
            size: (bytes.len() as u64).next_power_of_two(),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }));
    }
    let arena = slot.as_ref().unwrap();
    gpu.queue.write_buffer(arena, 0, &bytes);
    (arena, offsets)
}

fn bind_groups(
    gpu: &Gpu,
    arena: &wgpu::Buffer,
    commands: &[Command],
    offsets: &[u64],
) -> Vec<Option<wgpu::BindGroup>> {
    let mut next = offsets.iter();
    commands
        .iter()
        .map(|cmd| {
            let Command::Dispatch(d) = cmd else { return None };
            let offset = *next.next().unwrap();
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: arena,
                    offset,
                    size: std::num::NonZeroU64::new(d.params.len() as u64),
                }),
            }];
            for (i, r) in d.resources.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: match r {
                        Resource::Buffer(b) => b.raw().as_entire_binding(),
                        Resource::Texture(t) => wgpu::BindingResource::TextureView(t.view()),
                    },
                });
            }
            Some(gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &d.pipeline.layout,
                entries: &entries,
            }))
        })
        .collect()
}

/// Timestamp queries for one step: a begin and an end query per dispatch.
struct Timestamps {
    sets: Vec<wgpu::QuerySet>,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    count: u32,
}

const QUERIES_PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES;

impl Timestamps {
    fn new(gpu: &Gpu, commands: &[Command]) -> Self {
        let dispatches = commands.iter().filter(|c| matches!(c, Command::Dispatch(_))).count() as u32;
        let count = dispatches * 2;
        let sets = (0..count.div_ceil(QUERIES_PER_SET))
            .map(|i| {
                gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("ser.timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: (count - i * QUERIES_PER_SET).min(QUERIES_PER_SET),
                })
            })
            .collect();
        let bytes = count as u64 * 8;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ser.timestamps.resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ser.timestamps.read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Timestamps { sets, resolve, staging, count }
    }

    fn writes(&self, dispatch: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        let q = dispatch * 2;
        wgpu::ComputePassTimestampWrites {
            query_set: &self.sets[(q / QUERIES_PER_SET) as usize],
            beginning_of_pass_write_index: Some(q % QUERIES_PER_SET),
            end_of_pass_write_index: Some(q % QUERIES_PER_SET + 1),
        }
    }

    fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        for (i, set) in self.sets.iter().enumerate() {
            let first = i as u32 * QUERIES_PER_SET;
            let n = (self.count - first).min(QUERIES_PER_SET);
            encoder.resolve_query_set(set, 0..n, &self.resolve, first as u64 * 8);
        }
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, self.count as u64 * 8);
    }

    fn read(&self, gpu: &Gpu) -> Result<Vec<u64>> {
        Ok(bytemuck::pod_collect_to_vec(&gpu.map_read(&self.staging)?))
    }
}
