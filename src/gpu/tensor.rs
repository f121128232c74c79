//! Typed GPU tensors and the pool their storage comes from.
//!
//! A tensor's buffer goes back to the pool when the last reference to it is dropped. Recorded but
//! unsubmitted steps hold references too, so a buffer is never handed out again while work that
//! reads it is still waiting to be submitted.

use std::collections::HashMap;
use std::hash::Hash;
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

/// Free GPU resources of one kind by key (a buffer's size class, a texture's size). A resource on
/// loan goes back here when the last reference to its [`Pooled`] is dropped.
pub(crate) struct Pool<K, R> {
    free: Mutex<HashMap<K, Vec<R>>>,
}

impl<K: Hash + Eq + Copy, R> Pool<K, R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Pool { free: Mutex::new(HashMap::new()) })
    }

    /// A free resource under `key`, or a new one from `make`.
    fn take(self: &Arc<Self>, key: K, make: impl FnOnce() -> R) -> Arc<Pooled<K, R>> {
        let reused = self.free.lock().unwrap().get_mut(&key).and_then(|v| v.pop());
        Arc::new(Pooled { resource: Some(reused.unwrap_or_else(make)), key, pool: Arc::downgrade(self) })
    }

    /// Bytes held by free resources, given each key's size in bytes.
    fn free_bytes(&self, bytes: impl Fn(&K) -> u64) -> u64 {
        self.free.lock().unwrap().iter().map(|(k, v)| bytes(k) * v.len() as u64).sum()
    }

    pub(crate) fn clear(&self) {
        self.free.lock().unwrap().clear();
    }
}

/// A resource on loan from a [`Pool`].
pub(crate) struct Pooled<K: Hash + Eq + Copy, R> {
    resource: Option<R>,
    key: K,
    pool: Weak<Pool<K, R>>,
}

impl<K: Hash + Eq + Copy, R> Pooled<K, R> {
    fn get(&self) -> &R {
        self.resource.as_ref().expect("resource present until drop")
    }
}

impl<K: Hash + Eq + Copy, R> Drop for Pooled<K, R> {
    fn drop(&mut self) {
        if let (Some(r), Some(pool)) = (self.resource.take(), self.pool.upgrade()) {
            pool.free.lock().unwrap().entry(self.key).or_default().push(r);
        }
    }
}

/// Free storage buffers by capacity. Capacities are rounded up to a coarse size class so that
/// tensors of similar sizes share buffers.
pub(crate) type BufferPool = Pool<u64, wgpu::Buffer>;
/// A storage buffer on loan from the pool.
pub(crate) type PooledBuffer = Pooled<u64, wgpu::Buffer>;

impl BufferPool {
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

    pub(crate) fn take_buffer(self: &Arc<Self>, device: &wgpu::Device, bytes: u64) -> Arc<PooledBuffer> {
        let class = Self::size_class(bytes);
        self.take(class, || {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ser.tensor"),
                size: class,
                // UNIFORM too: a kernel may read a small tensor as a uniform buffer (Access::Uniform).
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// Total bytes held by free buffers.
    pub(crate) fn free_buffer_bytes(&self) -> u64 {
        self.free_bytes(|class| *class)
    }
}

impl PooledBuffer {
    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        self.get()
    }
}

/// What one texel holds: four f32 (the default) or four u32 (packed narrower values, such as
/// pairs of bfloat16 GEMM operands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TexelFormat {
    Rgba32Float,
    Rgba32Uint,
}

impl TexelFormat {
    pub(crate) fn wgpu(self) -> wgpu::TextureFormat {
        match self {
            TexelFormat::Rgba32Float => wgpu::TextureFormat::Rgba32Float,
            TexelFormat::Rgba32Uint => wgpu::TextureFormat::Rgba32Uint,
        }
    }
}

/// Free textures (with their views) by (width, height, format).
pub(crate) type TexturePool = Pool<(u32, u32, TexelFormat), (wgpu::Texture, wgpu::TextureView)>;
/// A texture on loan from the pool.
pub(crate) type PooledTexture = Pooled<(u32, u32, TexelFormat), (wgpu::Texture, wgpu::TextureView)>;

impl TexturePool {
    pub(crate) fn take_texture(self: &Arc<Self>, device: &wgpu::Device, width: u32, height: u32, format: TexelFormat) -> Arc<PooledTexture> {
        self.take((width, height, format), || {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("ser.texture"),
                size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: format.wgpu(),
                usage: wgpu::TextureUsages::TEXTURE_BINDING
                    | wgpu::TextureUsages::STORAGE_BINDING
                    | wgpu::TextureUsages::COPY_DST
                    | wgpu::TextureUsages::COPY_SRC,
                view_formats: &[],
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            (texture, view)
        })
    }

    /// Total bytes held by free textures (16 per texel).
    pub(crate) fn free_texture_bytes(&self) -> u64 {
        self.free_bytes(|(w, h, _)| 16 * *w as u64 * *h as u64)
    }
}

impl PooledTexture {
    pub(crate) fn raw(&self) -> &wgpu::Texture {
        &self.get().0
    }

    pub(crate) fn view(&self) -> &wgpu::TextureView {
        &self.get().1
    }
}

/// A 2D texture of 16-byte texels (four f32, or four u32: [`TexelFormat`]). Kernels write it as
/// a storage texture and read it with `textureLoad`, which on some adapters (llvmpipe) is far
/// cheaper than a storage-buffer load (docs/results/history.md, GEMM section).
#[derive(Clone)]
pub struct Texture {
    pub(crate) tex: Arc<PooledTexture>,
    width: u32,
    height: u32,
    format: TexelFormat,
}

impl Texture {
    pub(crate) fn new(tex: Arc<PooledTexture>, width: u32, height: u32, format: TexelFormat) -> Self {
        Texture { tex, width, height, format }
    }

    pub fn format(&self) -> TexelFormat {
        self.format
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
        write!(f, "Texture({}x{} {:?})", self.width, self.height, self.format)
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
