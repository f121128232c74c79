//! Typed GPU tensors and the pool their storage comes from.
//!
//! A tensor's buffer goes back to the pool when the last reference to it is dropped. Recorded but
//! unsubmitted steps hold references too, so a buffer is never handed out again while work that
//! reads it is still waiting to be submitted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Element type of a tensor. Every type here is 4 bytes wide except `F16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
    I32,
    F16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            _ => 4,
        }
    }
}

type PoolMap = HashMap<u64, Vec<wgpu::Buffer>>;

/// Free storage buffers by capacity. Capacities are rounded up to a coarse size class so that
/// tensors of similar sizes share buffers.
pub(crate) struct BufferPool {
    free: Mutex<PoolMap>,
}

impl BufferPool {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(BufferPool { free: Mutex::new(HashMap::new()) })
    }

    /// Size classes: powers of two up to 1 MiB, then multiples of 1 MiB / 4 of the next power.
    pub(crate) fn size_class(bytes: u64) -> u64 {
        let bytes = bytes.max(16).next_multiple_of(16);
        if bytes <= 1 << 20 {
            bytes.next_power_of_two()
        } else {
            let step = bytes.next_power_of_two() / 8;
            bytes.next_multiple_of(step)
        }
    }

    pub(crate) fn take(self: &Arc<Self>, device: &wgpu::Device, bytes: u64) -> Arc<PooledBuffer> {
        let class = Self::size_class(bytes);
        let reused = self.free.lock().unwrap().get_mut(&class).and_then(|v| v.pop());
        let buffer = reused.unwrap_or_else(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ser.tensor"),
                size: class,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Arc::new(PooledBuffer { buffer: Some(buffer), class, pool: Arc::downgrade(self) })
    }

    /// Total bytes held by free buffers.
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free.lock().unwrap().iter().map(|(c, v)| c * v.len() as u64).sum()
    }

    pub(crate) fn clear(&self) {
        self.free.lock().unwrap().clear();
    }
}

/// A storage buffer on loan from the pool.
pub(crate) struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    pool: Weak<BufferPool>,
}

impl PooledBuffer {
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(buffer), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            pool.free.lock().unwrap().entry(self.class).or_default().push(buffer);
        }
    }
}

/// Free rgba32float textures by (width, height) in texels.
pub(crate) struct TexturePool {
    free: Mutex<HashMap<(u32, u32), Vec<(wgpu::Texture, wgpu::TextureView)>>>,
}

impl TexturePool {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(TexturePool { free: Mutex::new(HashMap::new()) })
    }

    pub(crate) fn take(self: &Arc<Self>, device: &wgpu::Device, width: u32, height: u32) -> Arc<PooledTexture> {
        let reused = self.free.lock().unwrap().get_mut(&(width, height)).and_then(|v| v.pop());
        let (texture, view) = reused.unwrap_or_else(|| {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("ser.packed"),
                size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING
                    | wgpu::TextureUsages::STORAGE_BINDING
                    | wgpu::TextureUsages::COPY_DST
                    | wgpu::TextureUsages::COPY_SRC,
                view_formats: &[],
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            (texture, view)
        });
        Arc::new(PooledTexture { texture: Some((texture, view)), key: (width, height), pool: Arc::downgrade(self) })
    }

    pub(crate) fn free_bytes(&self) -> u64 {
        self.free.lock().unwrap().iter().map(|((w, h), v)| 16 * *w as u64 * *h as u64 * v.len() as u64).sum()
    }

    pub(crate) fn clear(&self) {
        self.free.lock().unwrap().clear();
    }
}

/// A texture on loan from the pool.
pub(crate) struct PooledTexture {
    texture: Option<(wgpu::Texture, wgpu::TextureView)>,
    key: (u32, u32),
    pool: Weak<TexturePool>,
}

impl PooledTexture {
    pub(crate) fn raw(&self) -> &wgpu::Texture {
        &self.texture.as_ref().expect("texture present until drop").0
    }

    pub(crate) fn view(&self) -> &wgpu::TextureView {
        &self.texture.as_ref().expect("texture present until drop").1
    }
}

impl Drop for PooledTexture {
    fn drop(&mut self) {
        if let (Some(texture), Some(pool)) = (self.texture.take(), self.pool.upgrade()) {
            pool.free.lock().unwrap().entry(self.key).or_default().push(texture);
        }
    }
}

/// A 2D texture of rgba32float texels: four f32 per texel. Kernels write it as a storage texture
/// and read it with `textureLoad`, which on some adapters (llvmpipe) is far cheaper than a
/// storage-buffer load (docs/RESULTS.md, GEMM section).
#[derive(Clone)]
pub struct Texture {
    pub(crate) tex: Arc<PooledTexture>,
    width: u32,
    height: u32,
}

impl Texture {
    pub(crate) fn new(tex: Arc<PooledTexture>, width: u32, height: u32) -> Self {
        Texture { tex, width, height }
    }

    /// Width in texels (four values each).
    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn shares_storage(&self, other: &Texture) -> bool {
        Arc::ptr_eq(&self.tex, &other.tex)
    }
}

impl std::fmt::Debug for Texture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Texture({}x{} rgba32float)", self.width, self.height)
    }
}

/// A dense row-major tensor in GPU memory.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) buf: Arc<PooledBuffer>,
    shape: Vec<usize>,
    dtype: DType,
}

impl Tensor {
    pub(crate) fn new(buf: Arc<PooledBuffer>, shape: &[usize], dtype: DType) -> Self {
        Tensor { buf, shape: shape.to_vec(), dtype }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u64 {
        (self.len() * self.dtype.size()) as u64
    }

    /// The same storage seen with another shape of the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            self.len(),
            "reshape {:?} -> {:?} changes the element count",
            self.shape,
            shape
        );
        Tensor { buf: self.buf.clone(), shape: shape.to_vec(), dtype: self.dtype }
    }

    /// True when both tensors use the same GPU buffer.
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.shape, self.dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::BufferPool;

    #[test]
    fn size_classes_cover_the_request_with_bounded_waste() {
        for bytes in [1u64, 15, 16, 17, 1000, 4096, 1 << 20, (1 << 20) + 1, 3 << 22, 123_456_789] {
            let class = BufferPool::size_class(bytes);
            assert!(class >= bytes, "{bytes} -> {class}");
            assert_eq!(class % 16, 0);
            // Past 1 MiB the waste stays under 1/8 of the next power of two, i.e. under 25%.
            if bytes > 1 << 20 {
                assert!((class - bytes) as f64 / bytes as f64 <= 0.25, "{bytes} -> {class}");
            }
        }
    }
}
