//! Adapter discovery and choice: which GPU `ser` runs on, by flag, by environment, or by rank.

use anyhow::{Result, bail};
use serde::Serialize;

crate::choices! {
    /// The graphics APIs `ser` can run its kernels through.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum BackendChoice {
        Vulkan = "vulkan",
        Gl = "gl",
        Metal = "metal",
        Dx12 = "dx12",
    }
}

impl BackendChoice {
    fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Gl => wgpu::Backends::GL,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
        }
    }

    /// "vulkan"/"vk", "gl"/"gles"/"opengl", "metal"/"mtl", "dx12"/"d3d12"; also the names
    /// `ser devices` prints.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Some(Self::Vulkan),
            "gl" | "gles" | "opengl" => Some(Self::Gl),
            "metal" | "mtl" => Some(Self::Metal),
            "dx12" | "d3d12" => Some(Self::Dx12),
            _ => None,
        }
    }
}

/// How to pick an adapter. Flags win over the environment (`WGPU_ADAPTER_NAME`, `WGPU_BACKEND`).
#[derive(Clone, Debug, Default)]
pub struct AdapterSelector {
    /// Case-insensitive substring of the adapter name.
    pub name: Option<String>,
    pub backend: Option<BackendChoice>,
}

impl AdapterSelector {
    /// Fills the fields left empty by flags from `WGPU_ADAPTER_NAME` and `WGPU_BACKEND`: for the
    /// edges (the CLI), which read the environment once.
    pub fn with_env(mut self) -> Result<Self> {
        if self.name.is_none() {
            self.name = std::env::var("WGPU_ADAPTER_NAME").ok().filter(|s| !s.is_empty());
        }
        if self.backend.is_none() {
            if let Ok(text) = std::env::var("WGPU_BACKEND") {
                if !text.is_empty() {
                    match BackendChoice::parse(&text) {
                        Some(b) => self.backend = Some(b),
                        None => bail!("WGPU_BACKEND={text:?} is not one of vulkan, gl, metal, dx12"),
                    }
                }
            }
        }
        Ok(self)
    }

    fn backends(&self) -> wgpu::Backends {
        self.backend.map_or(wgpu::Backends::all() - wgpu::Backends::BROWSER_WEBGPU, |b| b.backends())
    }
}

/// What `ser devices` shows about one adapter.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub subgroup_size: (u32, u32),
    pub limits: KeyLimits,
    pub features: Vec<String>,
    /// Cooperative-matrix configurations (M x N x K, operand -> accumulator type) the adapter
    /// reports through wgpu's experimental feature; empty where it has none.
    pub cooperative_matrix: Vec<String>,
}

/// The limits that decide how `ser` lays out its kernels and buffers.
#[derive(Clone, Debug, Serialize)]
pub struct KeyLimits {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_uniform_buffer_binding_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_workgroup_size: [u32; 3],
}

impl KeyLimits {
    pub(crate) fn of(l: &wgpu::Limits) -> Self {
        KeyLimits {
            max_buffer_size: l.max_buffer_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_uniform_buffer_binding_size: l.max_uniform_buffer_binding_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_workgroup_size: [
                l.max_compute_workgroup_size_x,
                l.max_compute_workgroup_size_y,
                l.max_compute_workgroup_size_z,
            ],
        }
    }
}

/// The optional features `ser` uses when an adapter has them.
pub(crate) const OPTIONAL_FEATURES: [(wgpu::Features, &str); 3] = [
    (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
    (wgpu::Features::SHADER_F16, "shader-f16"),
    (wgpu::Features::SUBGROUP, "subgroup"),
];

pub(crate) fn feature_names(features: wgpu::Features) -> Vec<String> {
    OPTIONAL_FEATURES
        .iter()
        .filter(|(f, _)| features.contains(*f))
        .map(|(_, n)| n.to_string())
        .collect()
}

/// Turns off Mesa's implicit Vulkan device-select layer for this process unless the user
/// steers it (`DRI_PRIME`, or `NODEVICE_SELECT` already set). The layer reorders GPUs by the
/// desktop's display, which `ser` does not use (it ranks adapters itself), and on a headless
/// machine its display probe prints `XDG_RUNTIME_DIR is invalid or not set` twice per run,
/// which users read as a failure.
///
/// # Safety
/// Sets an environment variable: call it before any other thread exists (first thing in `main`).
pub unsafe fn quiet_device_select_layer() {
    if std::env::var_os("NODEVICE_SELECT").is_none() && std::env::var_os("DRI_PRIME").is_none() {
        // SAFETY: the caller guarantees the process is still single-threaded.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

/// Every backend `ser` can use.
pub(crate) const ALL_BACKENDS: wgpu::Backends = wgpu::Backends::all().difference(wgpu::Backends::BROWSER_WEBGPU);

/// The native APIs, probed before GL: GL's probe (EGL looking for a display) prints
/// `XDG_RUNTIME_DIR is invalid` on headless Linux, which users read as a failure.
const NATIVE_BACKENDS: wgpu::Backends = wgpu::Backends::VULKAN.union(wgpu::Backends::METAL).union(wgpu::Backends::DX12);

pub(crate) fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// The adapters of `backends`, best first.
pub(crate) fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let instance = new_instance(backends);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info())));
    adapters
}

/// Higher is better: real GPUs before software ones, native APIs before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 1,
        _ => 0,
    };
    (device, api)
}

pub(crate) fn backend_name(b: wgpu::Backend) -> String {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        wgpu::Backend::Noop => "noop",
    }
    .to_string()
}

/// Whether the adapter multiplies 8x8x8 f32 tiles on its matrix units through wgpu's
/// experimental cooperative-matrix feature (the configuration gemm_coop.wgsl is written for).
/// `GpuSettings::cooperative_matrix` false declines it (the feature is experimental in wgpu 30).
pub(crate) fn has_coop8_f32(adapter: &wgpu::Adapter) -> bool {
    use wgpu::CooperativeScalarType::F32;
    adapter.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        && coop_configs(adapter).iter().any(|c| (c.m_size, c.n_size, c.k_size) == (8, 8, 8) && c.ab_type == F32 && c.cr_type == F32)
}

fn coop_configs(adapter: &wgpu::Adapter) -> Vec<wgpu::CooperativeMatrixProperties> {
    if adapter.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) { adapter.cooperative_matrix_properties() } else { Vec::new() }
}

pub(crate) fn report(index: usize, adapter: &wgpu::Adapter) -> AdapterReport {
    let info = adapter.get_info();
    AdapterReport {
        index,
        name: info.name.clone(),
        backend: backend_name(info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        vendor: info.vendor,
        device: info.device,
        subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
        limits: KeyLimits::of(&adapter.limits()),
        features: feature_names(adapter.features()),
        cooperative_matrix: coop_configs(adapter)
            .iter()
            .map(|c| format!("{}x{}x{} {:?}->{:?}", c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type).to_lowercase())
            .collect(),
    }
}

/// The message for a machine with no usable adapter: say what to install, not just that it failed.
pub const NO_ADAPTER_HELP: &str = "ser needs a Vulkan, Metal or DX12 driver \
(or OpenGL via wgpu's GL backend). On a machine without a GPU install Mesa's software Vulkan \
driver: `apt-get install mesa-vulkan-drivers libvulkan1` on Debian and Ubuntu, \
`dnf install mesa-vulkan-drivers` on Fedora.";

/// The selected adapter. Native APIs are probed first and GL only when it was asked for or no
/// native adapter matches, so a machine with Vulkan never runs GL's noisy probe.
pub(crate) fn choose(sel: &AdapterSelector) -> Result<wgpu::Adapter> {
    let wanted = sel.backends();
    let name = sel.name.as_ref().map(|n| n.to_ascii_lowercase());
    let matches = |a: &wgpu::Adapter| {
        let info = a.get_info();
        wanted.contains(wgpu::Backends::from(info.backend)) && name.as_ref().is_none_or(|n| info.name.to_ascii_lowercase().contains(n))
    };
    for stage in [wanted & NATIVE_BACKENDS, wanted - NATIVE_BACKENDS] {
        if !stage.is_empty() {
            if let Some(a) = enumerate(stage).into_iter().find(|a| matches(a)) {
                return Ok(a);
            }
        }
    }
    let all = enumerate(ALL_BACKENDS);
    if all.is_empty() {
        bail!("no GPU adapter found. {NO_ADAPTER_HELP}");
    }
    let present: Vec<String> = all
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({})", i.name, backend_name(i.backend))
        })
        .collect();
    let any_on_backend = all.iter().any(|a| wanted.contains(wgpu::Backends::from(a.get_info().backend)));
    bail!(
        "no adapter matches name {:?} and backend {:?}; present: {}{}",
        sel.name.as_deref().unwrap_or("any"),
        sel.backend.map_or("any".to_string(), |b| format!("{b:?}").to_lowercase()),
        present.join(", "),
        if any_on_backend { String::new() } else { format!("\n{NO_ADAPTER_HELP}") }
    )
}
