//! `GpuTensor`: a counted GPU buffer with a shape and an element type.

use super::{Buffer, Gpu};
use crate::error::{Error, Result};
use half::{bf16, f16};

/// Element types stored on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half (needs `shader-f16` to compute in; can always be stored and unpacked).
    F16,
    /// bfloat16, unpacked in kernels from u32 words (`bits << 16`).
    BF16,
    /// Signed 8-bit, with scales kept beside it by the owner (KV cache, quantised weights).
    I8,
    /// Unsigned 32-bit integers: token ids, lengths, positions.
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 => 1,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::U32 => "u32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor in GPU memory: row-major, contiguous.
#[derive(Debug, Clone)]
pub struct GpuTensor {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    buffer: Buffer,
}

/// Usage of every tensor buffer: readable and writable by kernels, copyable both ways.
const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl GpuTensor {
    /// Bytes for `numel` elements of `dtype`, rounded up to whole 16-byte vec4s and never zero:
    /// kernels bind tensors as `array<vec4<..>>` (16-byte loads), which WebGPU rejects for a
    /// buffer smaller than one vec4, and as u32 / f32 words.
    pub fn padded_bytes(numel: usize, dtype: DType) -> u64 {
        // Saturating throughout: a size near u64::MAX must not wrap to a small buffer.
        (numel as u64)
            .saturating_mul(dtype.size() as u64)
            .div_ceil(16)
            .max(1)
            .saturating_mul(16)
    }

    /// A zero-filled tensor.
    pub fn zeros(gpu: &Gpu, name: &str, shape: &[usize], dtype: DType) -> Result<Self> {
        let numel = numel(shape);
        let buffer = gpu.create_buffer(name, Self::padded_bytes(numel, dtype), TENSOR_USAGE)?;
        Ok(GpuTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype,
            buffer,
        })
    }

    /// Upload raw little-endian element bytes.
    pub fn from_bytes(gpu: &Gpu, name: &str, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<Self> {
        let n = numel(shape);
        if bytes.len() != n * dtype.size() {
            return Err(Error::Data {
                tensor: name.to_string(),
                detail: format!(
                    "shape {shape:?} of {dtype} needs {} bytes, got {}",
                    n * dtype.size(),
                    bytes.len()
                ),
            });
        }
        let t = Self::zeros(gpu, name, shape, dtype)?;
        let whole = bytes.len() / 4 * 4;
        if whole > 0 {
            gpu.queue().write_buffer(t.buffer.raw(), 0, &bytes[..whole]);
        }
        if whole < bytes.len() {
            // write_buffer needs a multiple of 4 bytes: pad the tail word with zeros.
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            gpu.queue().write_buffer(t.buffer.raw(), whole as u64, &tail);
        }
        Ok(t)
    }

    /// Upload f32 values, stored as `dtype` (converted on the CPU; i8 is not a conversion target).
    pub fn from_f32(gpu: &Gpu, name: &str, shape: &[usize], dtype: DType, data: &[f32]) -> Result<Self> {
        if data.len() != numel(shape) {
            return Err(Error::Data {
                tensor: name.to_string(),
                detail: format!(
                    "shape {shape:?} has {} elements, got {} values",
                    numel(shape),
                    data.len()
                ),
            });
        }
        let bytes: Vec<u8> = match dtype {
            DType::F32 => bytemuck::cast_slice(data).to_vec(),
            DType::F16 => data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            DType::BF16 => data.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
            DType::I8 | DType::U32 => {
                return Err(Error::DType {
                    op: "GpuTensor::from_f32",
                    tensor: name.to_string(),
                    got: dtype.name().into(),
                    expected: "f32, f16 or bf16 (quantise i8 with its scales; upload u32 with from_u32)".into(),
                })
            }
        };
        Self::from_bytes(gpu, name, shape, dtype, &bytes)
    }

    /// Upload u32 values (token ids, lengths).
    pub fn from_u32(gpu: &Gpu, name: &str, shape: &[usize], data: &[u32]) -> Result<Self> {
        Self::from_bytes(gpu, name, shape, DType::U32, bytemuck::cast_slice(data))
    }

    /// Read back u32 values.
    pub async fn to_u32_vec(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        self.expect_dtype("GpuTensor::to_u32_vec", &[DType::U32])?;
        let b = self.read_bytes(gpu).await?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Read the raw element bytes back.
    pub async fn read_bytes(&self, gpu: &Gpu) -> Result<Vec<u8>> {
        let len = (self.numel() * self.dtype.size()) as u64;
        let mut bytes = gpu
            .read_buffer(&self.buffer, 0, len.div_ceil(4) * 4, &self.name)
            .await?;
        bytes.truncate(len as usize);
        Ok(bytes)
    }

    /// Read back as f32 (f16 / bf16 widened, i8 as its integer value).
    pub async fn to_f32_vec(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let b = self.read_bytes(gpu).await?;
        Ok(match self.dtype {
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::I8 => b.iter().map(|&v| v as i8 as f32).collect(),
            DType::U32 => b
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
        })
    }

    /// Name (used in every error about this tensor).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Shape, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    /// The counted buffer behind it.
    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }
    /// Size of the last dimension (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Product of all but the last dimension.
    pub fn rows(&self) -> usize {
        self.numel() / self.last_dim().max(1)
    }

    /// The same buffer under another shape with the same element count (a view: no copy; writes
    /// through either are seen by both).
    pub fn reshape(&self, shape: &[usize]) -> Result<GpuTensor> {
        if numel(shape) != self.numel() {
            return Err(Error::Shape {
                op: "reshape",
                detail: format!(
                    "'{}' is {:?} ({} elements), cannot view it as {shape:?}",
                    self.name,
                    self.shape,
                    self.numel()
                ),
            });
        }
        Ok(GpuTensor {
            name: self.name.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
            buffer: self.buffer.clone(),
        })
    }

    /// Check the dtype for an op.
    pub fn expect_dtype(&self, op: &'static str, want: &[DType]) -> Result<()> {
        if want.contains(&self.dtype) {
            Ok(())
        } else {
            Err(Error::DType {
                op,
                tensor: self.name.clone(),
                got: self.dtype.name().into(),
                expected: want.iter().map(|d| d.name()).collect::<Vec<_>>().join(" or "),
            })
        }
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}
