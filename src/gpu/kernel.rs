//! Shader files, kernel descriptions and the pipeline cache.
//!
//! Every WGSL file under `shaders/` is described by a [`ShaderFile`] beside the op that runs it
//! (src/ops/, listed in `ops::SHADERS`) with the device capabilities it needs. A kernel is one entry point of one shader plus the list of storage buffers it binds; its
//! compiled pipeline and bind group layout are created once per (shader, entry point, override
//! constants) and reused.

use super::TexelFormat;

/// Prepended to every kernel: the logical-grid helper that makes split dispatches transparent.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// One WGSL file and what it needs from the device.
#[derive(Debug)]
pub struct ShaderFile {
    /// File name under `shaders/`.
    pub name: &'static str,
    pub source: &'static str,
    /// Uses `enable f16;` (needs the SHADER_F16 feature).
    pub needs_f16: bool,
    /// Uses subgroup operations (needs the SUBGROUP feature).
    pub needs_subgroups: bool,
    /// Uses `enable wgpu_cooperative_matrix;` (needs the experimental cooperative-matrix feature).
    pub needs_cooperative_matrix: bool,
    /// Entry points that guard (or clamp) every buffer access against the logical sizes, where
    /// the host checks that those extents fit the bound tensors and no texture is read: wgpu's
    /// own shader bounds checks are redundant there and are left out (`SER_SHADER_CHECKS`
    /// overrides). Kernels that read textures rely on the runtime's clamping and keep them.
    pub bounds_proven: &'static [&'static str],
}

impl ShaderFile {
    /// The naga capabilities this file needs, and no more.
    pub fn capabilities(&self) -> naga::valid::Capabilities {
        let mut caps = capabilities_for(self.needs_f16, self.needs_subgroups);
        if self.needs_cooperative_matrix {
            caps |= naga::valid::Capabilities::COOPERATIVE_MATRIX;
        }
        caps
    }

    /// The text handed to the compiler: the prelude, then the file.
    pub fn full_source(&self) -> String {
        let (enables, body): (Vec<&str>, Vec<&str>) =
            self.source.lines().partition(|l| l.trim_start().starts_with("enable "));
        // `enable` directives must come before any declaration, so they go above the prelude.
        format!("{}\n{}\n{}", enables.join("\n"), PRELUDE, body.join("\n"))
    }
}

/// How a kernel uses one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read-only storage buffer.
    Read,
    /// A storage buffer the kernel writes (and may read).
    ReadWrite,
    /// A read-only uniform buffer (whole tensor, at most `UNIFORM_BINDING_BYTES`): where every
    /// invocation reads the same address, CPU adapters load it once for all lanes.
    Uniform,
    /// A `texture_2d<f32>` read with `textureLoad` (rgba32float, not filterable).
    Texture,
    /// A `texture_storage_2d<rgba32float, write>`.
    TextureWrite,
    /// A `texture_2d<u32>` read with `textureLoad` (rgba32uint).
    TextureUint,
    /// A `texture_storage_2d<rgba32uint, write>`.
    TextureWriteUint,
}

impl Access {
    pub fn writes(self) -> bool {
        matches!(self, Access::ReadWrite | Access::TextureWrite | Access::TextureWriteUint)
    }

    /// The texel format a texture binding takes; None for buffers.
    pub fn texel_format(self) -> Option<TexelFormat> {
        match self {
            Access::Texture | Access::TextureWrite => Some(TexelFormat::Rgba32Float),
            Access::TextureUint | Access::TextureWriteUint => Some(TexelFormat::Rgba32Uint),
            Access::Read | Access::ReadWrite | Access::Uniform => None,
        }
    }
}

/// One compute entry point. Binding 0 is always the params uniform (which starts with the
/// logical grid); bindings 1.. are the buffers and textures in `bindings` order.
#[derive(Debug)]
pub struct KernelSpec {
    pub shader: &'static ShaderFile,
    pub entry: &'static str,
    pub bindings: &'static [Access],
}

/// Cache key: which code, which entry point, which override constants (bit-exact).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub shader: &'static str,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u64)>,
}

pub(crate) struct CachedPipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

pub(crate) fn bind_group_layout(device: &wgpu::Device, spec: &KernelSpec) -> wgpu::BindGroupLayout {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for (i, access) in spec.bindings.iter().enumerate() {
        let ty = match access {
            Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: *access == Access::Read },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            Access::Uniform => wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            Access::Texture => wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            Access::TextureUint => wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Uint,
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            Access::TextureWrite | Access::TextureWriteUint => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::WriteOnly,
                format: access.texel_format().unwrap().wgpu(),
                view_dimension: wgpu::TextureViewDimension::D2,
            },
        };
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        });
    }
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(spec.entry),
        entries: &entries,
    })
}

/// naga capabilities matching what a device with `features` was given.
pub fn capabilities_for(f16: bool, subgroups: bool) -> naga::valid::Capabilities {
    let mut caps = naga::valid::Capabilities::empty();
    if f16 {
        caps |= naga::valid::Capabilities::SHADER_FLOAT16;
    }
    if subgroups {
        caps |= naga::valid::Capabilities::SUBGROUP;
    }
    caps
}

/// Parses and validates a shader with naga against exactly the given capabilities.
pub fn validate(shader: &ShaderFile, caps: naga::valid::Capabilities) -> Result<naga::Module, String> {
    let source = shader.full_source();
    let module = naga::front::wgsl::parse_str(&source)
        .map_err(|e| format!("{}: {}", shader.name, e.emit_to_string(&source)))?;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| format!("{}: {}", shader.name, e.emit_to_string(&source)))?;
    Ok(module)
}
