//! Ops recorded as values and encoded together: one command encoder and as few compute passes
//! as possible per batch; parameters go to the uniform arena.

use super::{Buffer, Gpu};
use crate::error::{Error, Result};

/// What makes two bind groups the same: pipeline, uniform slice and the bound buffers. A decode
/// step records the same dispatches with the same buffers and uniform offsets every token, so
/// after the first token every bind group comes from the cache.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct BindKey {
    pipeline: wgpu::ComputePipeline,
    uniform: (wgpu::Buffer, u64, u64),
    buffers: Vec<(u32, wgpu::Buffer)>,
    /// [`Buffer::id`] of the uniform chunk and of each bound buffer: the cache drops the entry
    /// once one of them is dropped.
    pub(crate) ids: Vec<u64>,
}

enum Cmd {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        groups: [u32; 3],
    },
    Copy {
        src: Buffer,
        src_offset: u64,
        dst: Buffer,
        dst_offset: u64,
        size: u64,
    },
}

/// Work recorded for one submission.
#[derive(Default)]
pub struct Batch {
    cmds: Vec<Cmd>,
    pub(crate) uniforms: Vec<u8>,
    dispatches: usize,
}

impl Batch {
    /// Number of dispatches recorded (a metric: decode speed is won by keeping it small).
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Record one dispatch: `params` go to binding 0 (uniform), each buffer to its binding.
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        gpu: &Gpu,
        pipeline: &wgpu::ComputePipeline,
        params: &P,
        buffers: &[(u32, &Buffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        let bytes = bytemuck::bytes_of(params);
        let (chunk, offset, slot) = {
            let mut arena = gpu
                .arena
                .lock()
                .map_err(|_| Error::Internal("uniform arena lock poisoned".into()))?;
            let slot = arena.slot_bytes(bytes.len());
            let start = (self.uniforms.len() as u64).div_ceil(arena.align()) * arena.align();
            // A slot never straddles two chunks.
            let start = if start % super::uniforms::CHUNK_BYTES + slot > super::uniforms::CHUNK_BYTES {
                start.div_ceil(super::uniforms::CHUNK_BYTES) * super::uniforms::CHUNK_BYTES
            } else {
                start
            };
            let (chunk, offset) = arena.chunk_for(gpu.device(), &gpu.memory, start, slot)?;
            self.uniforms.resize(start as usize, 0);
            self.uniforms.extend_from_slice(bytes);
            self.uniforms.resize((start + slot) as usize, 0);
            (chunk, offset, slot)
        };
        let key = BindKey {
            pipeline: pipeline.clone(),
            uniform: (chunk.raw().clone(), offset, slot),
            buffers: buffers.iter().map(|(b, buf)| (*b, buf.raw().clone())).collect(),
            ids: std::iter::once(chunk.id())
                .chain(buffers.iter().map(|(_, buf)| buf.id()))
                .collect(),
        };
        let bind_group = gpu.bind_group(key, |key| {
            let mut entries = Vec::with_capacity(key.buffers.len() + 1);
            entries.push(wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &key.uniform.0,
                    offset: key.uniform.1,
                    size: wgpu::BufferSize::new(key.uniform.2),
                }),
            });
            for (binding, b) in &key.buffers {
                entries.push(wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: b.as_entire_binding(),
                });
            }
            gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &key.pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })?;
        self.cmds.push(Cmd::Dispatch {
            pipeline: pipeline.clone(),
            bind_group,
            groups,
        });
        self.dispatches += 1;
        Ok(())
    }

    /// Record a buffer-to-buffer copy.
    pub fn copy(&mut self, src: &Buffer, src_offset: u64, dst: &Buffer, dst_offset: u64, size: u64) {
        self.cmds.push(Cmd::Copy {
            src: src.clone(),
            src_offset,
            dst: dst.clone(),
            dst_offset,
            size,
        });
    }

    /// Profiling: each dispatch in a compute pass of its own, with the timestamp writes
    /// `writes(index, pipeline)` returns for it (see `gpu::profile`).
    pub(crate) fn encode_each_pass<'q>(
        self,
        encoder: &mut wgpu::CommandEncoder,
        mut writes: impl FnMut(usize, &wgpu::ComputePipeline) -> Option<wgpu::ComputePassTimestampWrites<'q>>,
    ) {
        let mut i = 0;
        for cmd in self.cmds {
            match cmd {
                Cmd::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => {
                    encoder.copy_buffer_to_buffer(src.raw(), src_offset, dst.raw(), dst_offset, size);
                }
                Cmd::Dispatch {
                    pipeline,
                    bind_group,
                    groups,
                } => {
                    let timestamp_writes = writes(i, &pipeline);
                    i += 1;
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes,
                    });
                    pass.set_pipeline(&pipeline);
                    pass.set_bind_group(0, &bind_group, &[]);
                    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                }
            }
        }
    }

    /// Compute passes [`Batch::encode`] records: one per run of dispatches between copies.
    pub(crate) fn passes(&self) -> usize {
        let mut passes = 0;
        let mut in_pass = false;
        for cmd in &self.cmds {
            match cmd {
                Cmd::Dispatch { .. } if !in_pass => {
                    passes += 1;
                    in_pass = true;
                }
                Cmd::Dispatch { .. } => {}
                Cmd::Copy { .. } => in_pass = false,
            }
        }
        passes
    }

    pub(crate) fn encode(self, encoder: &mut wgpu::CommandEncoder) {
        self.encode_with(encoder, Timing::None);
    }

    /// [`Batch::encode`] with timestamp 0 of `set` written at the start of the first compute
    /// pass and timestamp 1 at the end of the last (profiling a whole step, `gpu::profile`).
    pub(crate) fn encode_timed(self, encoder: &mut wgpu::CommandEncoder, set: &wgpu::QuerySet) {
        self.encode_with(encoder, Timing::Whole(set));
    }

    /// Profiling inside one pass: the batch as [`Batch::encode`] records it, with timestamp 0
    /// of `set` written before the first dispatch and timestamp i + 1 after dispatch i (each
    /// pass's dispatches; `TIMESTAMP_QUERY_INSIDE_PASSES`). Returns the pipelines in order.
    pub(crate) fn encode_in_pass(
        self,
        encoder: &mut wgpu::CommandEncoder,
        set: &wgpu::QuerySet,
    ) -> Vec<wgpu::ComputePipeline> {
        self.encode_with(encoder, Timing::Each(set))
    }

    /// The batch in as few compute passes as its copies allow, with `timing`'s timestamp
    /// writes; returns the dispatched pipelines in order with [`Timing::Each`] (else nothing).
    fn encode_with(self, encoder: &mut wgpu::CommandEncoder, timing: Timing<'_>) -> Vec<wgpu::ComputePipeline> {
        let last_pass = self.passes();
        let mut order = Vec::new();
        let mut pass_index = 0;
        let mut cmds = self.cmds.into_iter().peekable();
        while let Some(cmd) = cmds.next() {
            match cmd {
                Cmd::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => {
                    encoder.copy_buffer_to_buffer(src.raw(), src_offset, dst.raw(), dst_offset, size);
                }
                Cmd::Dispatch {
                    pipeline,
                    bind_group,
                    groups,
                } => {
                    pass_index += 1;
                    let (first, last) = (pass_index == 1, pass_index == last_pass);
                    let timestamp_writes = match timing {
                        Timing::Whole(query_set) if first || last => Some(wgpu::ComputePassTimestampWrites {
                            query_set,
                            beginning_of_pass_write_index: first.then_some(0),
                            end_of_pass_write_index: last.then_some(1),
                        }),
                        _ => None,
                    };
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes,
                    });
                    if let (Timing::Each(set), true) = (timing, order.is_empty()) {
                        pass.write_timestamp(set, 0);
                    }
                    let mut next = Some((pipeline, bind_group, groups));
                    while let Some((pipeline, bind_group, groups)) = next.take() {
                        pass.set_pipeline(&pipeline);
                        pass.set_bind_group(0, &bind_group, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        if let Timing::Each(set) = timing {
                            order.push(pipeline);
                            pass.write_timestamp(set, order.len() as u32);
                        }
                        if let Some(Cmd::Dispatch { .. }) = cmds.peek() {
                            if let Some(Cmd::Dispatch {
                                pipeline,
                                bind_group,
                                groups,
                            }) = cmds.next()
                            {
                                next = Some((pipeline, bind_group, groups));
                            }
                        }
                    }
                }
            }
        }
        order
    }
}

/// The timestamp writes [`Batch::encode_with`] records.
#[derive(Clone, Copy)]
enum Timing<'a> {
    None,
    /// Start of the first pass (0) and end of the last (1).
    Whole(&'a wgpu::QuerySet),
    /// Before the first dispatch (0) and after each (i + 1), inside the passes.
    Each(&'a wgpu::QuerySet),
}
