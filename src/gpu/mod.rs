//! The GPU runtime: device, capabilities, pipelines, uniforms, tensors, memory. It knows nothing
//! about models.

mod batch;
pub mod caps;
mod context;
pub mod memory;
pub mod pipelines;
pub mod profile;
pub mod readback;
pub mod shader;
pub mod subgroups;
pub mod tensor;
pub mod uniforms;

pub use batch::Batch;
pub use caps::{Capabilities, LaunchShapes, Reduction, SwigluVariant, Variants};
pub use context::{Gpu, GpuOptions, ShaderChecks};
pub use memory::{process_memory, Buffer, MemoryStats, ProcessMemory};
pub use profile::Profile;
pub use shader::{Const, Kernel};
pub use tensor::{DType, GpuTensor};
