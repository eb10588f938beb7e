//! The device layer on Metal (objc2-metal): the kernels' library and
//! pipelines come from the cache of earlier starts (`metal_cache.rs`), buffers
//! use shared storage, and a batch is one command buffer with one concurrent
//! compute encoder, a memory barrier placed only before a dispatch that shares
//! a mutable buffer with one since the last barrier.

use super::metal_cache::{self, open_archive, store_archive, KernelCache};
use super::{Arg, GpuOptions, Hazards, KernelStats, Stats, MAX_BYTES_ARG};
use anyhow::{anyhow, bail, Result};
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::ProtocolObject;
use objc2_foundation::{NSArray, NSString};
use objc2_metal::{
    MTLBarrierScope, MTLBinaryArchive, MTLBinding, MTLBindingType, MTLBuffer, MTLBufferBinding,
    MTLCommandBuffer, MTLCommandBufferStatus, MTLCommandEncoder, MTLCommandQueue,
    MTLComputeCommandEncoder, MTLComputePipelineDescriptor, MTLComputePipelineReflection,
    MTLComputePipelineState, MTLCreateSystemDefaultDevice, MTLDevice, MTLDispatchType,
    MTLGPUFamily, MTLLibrary, MTLPipelineOption, MTLResourceOptions, MTLSize,
};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;

// MTLCreateSystemDefaultDevice finds no device in a command-line program unless CoreGraphics is linked.
#[link(name = "CoreGraphics", kind = "framework")]
extern "C" {}

/// Page size of Apple-silicon Macs: Metal wraps memory in place only in whole pages.
const PAGE: usize = 16384;

pub struct Gpu {
    device: Retained<ProtocolObject<dyn MTLDevice>>,
    queue: Retained<ProtocolObject<dyn MTLCommandQueue>>,
    library: Retained<ProtocolObject<dyn MTLLibrary>>,
    /// Compiled pipelines of earlier runs of the same kernels, and where it is kept.
    archive: Option<(Retained<ProtocolObject<dyn MTLBinaryArchive>>, PathBuf)>,
    /// A pipeline was added to the archive since it was read.
    archive_grew: std::cell::Cell<bool>,
}

#[derive(Clone)]
pub struct Pipeline {
    state: Retained<ProtocolObject<dyn MTLComputePipelineState>>,
    name: Arc<str>,
    /// (argument index, alignment of the bound type) of each buffer argument, from Metal's reflection.
    alignments: Arc<[(usize, usize)]>,
}

#[derive(Clone)]
pub struct Buffer {
    inner: Retained<ProtocolObject<dyn MTLBuffer>>,
    len: usize,
    // Keeps a wrapped file mapped for as long as Metal may read it.
    _map: Option<Arc<memmap2::Mmap>>,
}

/// One command buffer; `finish` commits it and waits.
pub struct Batch<'g> {
    _gpu: PhantomData<&'g Gpu>,
    command: Option<Retained<ProtocolObject<dyn MTLCommandBuffer>>>,
    encoder: Option<Retained<ProtocolObject<dyn MTLComputeCommandEncoder>>>,
    error: Option<anyhow::Error>,
    hazards: Hazards,
}

/// Offsets of a binding whose type Metal's reflection does not give are at
/// least this aligned (the smallest type forge binds).
const MIN_OFFSET_ALIGNMENT: usize = 4;

/// (index, alignment) of every buffer argument in a pipeline's reflection.
fn buffer_alignments(reflection: &MTLComputePipelineReflection) -> Vec<(usize, usize)> {
    reflection
        .bindings()
        .iter()
        .filter(|binding| binding.r#type() == MTLBindingType::Buffer)
        .map(|binding| {
            let pointer: *const ProtocolObject<dyn MTLBinding> = &*binding;
            // Metal's bindings of type Buffer are MTLBufferBindings, and both
            // protocol objects are the same Objective-C object pointer.
            let buffer = unsafe { &*pointer.cast::<ProtocolObject<dyn MTLBufferBinding>>() };
            (binding.index(), buffer.bufferAlignment().max(1))
        })
        .collect()
}

impl Gpu {
    /// Compiles `source` (the text of kernels.metal) for the default Metal device.
    pub fn new(source: &str, _options: GpuOptions) -> Result<Gpu> {
        let device =
            MTLCreateSystemDefaultDevice().ok_or_else(|| anyhow!("no Metal device found"))?;
        // The kernels use simdgroup matrices and 32-wide SIMD-group functions.
        if !device.supportsFamily(MTLGPUFamily::Apple7) {
            bail!(
                "the Metal device {} is not an Apple7 GPU or newer (M1 or later): the kernels need simdgroup matrices",
                device.name()
            );
        }
        let queue = device
            .newCommandQueue()
            .ok_or_else(|| anyhow!("Metal could not create a command queue"))?;
        let cache = KernelCache::new(source);
        let library = match &cache {
            Some(cache) => cache.library(&device, source)?,
            None => metal_cache::compile_source(&device, source)?,
        };
        let archive = cache.and_then(|cache| {
            let path = cache.archive_path();
            Some((open_archive(&device, &path)?, path))
        });
        Ok(Gpu {
            device,
            queue,
            library,
            archive,
            archive_grew: std::cell::Cell::new(false),
        })
    }

    /// The kernel `name`, its pipeline taken from (and added to) the binary archive.
    pub fn pipeline(&self, name: &str) -> Result<Pipeline> {
        autoreleasepool(|_| {
            let function = self
                .library
                .newFunctionWithName(&NSString::from_str(name))
                .ok_or_else(|| anyhow!("kernel '{name}' is not in shaders/kernels.metal"))?;
            let descriptor = MTLComputePipelineDescriptor::new();
            descriptor.setComputeFunction(Some(&function));
            let mut reflection = None;
            let mut compile = |options: MTLPipelineOption| {
                // The reflection gives each buffer argument's type alignment, checked at dispatch.
                self.device
                    .newComputePipelineStateWithDescriptor_options_reflection_error(
                        &descriptor,
                        options
                            | MTLPipelineOption::BindingInfo
                            | MTLPipelineOption::BufferTypeInfo,
                        Some(&mut reflection),
                    )
            };
            let cached = self.archive.as_ref().and_then(|(archive, _)| {
                descriptor.setBinaryArchives(Some(&NSArray::from_retained_slice(
                    std::slice::from_ref(archive),
                )));
                match compile(MTLPipelineOption::FailOnBinaryArchiveMiss) {
                    Ok(state) => Some(state),
                    Err(_) => {
                        // Not compiled before: compile it into the archive.
                        if archive
                            .addComputePipelineFunctionsWithDescriptor_error(&descriptor)
                            .is_ok()
                        {
                            self.archive_grew.set(true);
                        }
                        None
                    }
                }
            });
            let state = match cached {
                Some(state) => state,
                None => compile(MTLPipelineOption::None)
                    .map_err(|e| anyhow!("kernel '{name}': {}", e.localizedDescription()))?,
            };
            // The kernels' SIMD-group code assumes 32 lanes.
            let width = state.threadExecutionWidth();
            if width != 32 {
                bail!("kernel '{name}': this GPU runs {width}-wide SIMD groups; forge's kernels need 32");
            }
            Ok(Pipeline {
                state,
                name: name.into(),
                alignments: reflection
                    .as_deref()
                    .map(buffer_alignments)
                    .unwrap_or_default()
                    .into(),
            })
        })
    }

    /// Writes the binary archive when pipelines were added to it, so the next
    /// start finds them compiled (best effort: a failure only costs a compile).
    pub fn store_pipelines(&self) {
        if let (Some((archive, path)), true) = (&self.archive, self.archive_grew.get()) {
            if store_archive(archive, path) {
                self.archive_grew.set(false);
            }
        }
    }

    /// A zero-filled shared-storage buffer of `bytes` bytes.
    pub fn buffer(&self, bytes: usize) -> Buffer {
        // Metal refuses zero-length buffers; a one-byte buffer stands in for an empty one.
        let inner = self
            .device
            .newBufferWithLength_options(bytes.max(1), MTLResourceOptions::StorageModeShared)
            .unwrap_or_else(|| panic!("Metal could not allocate a buffer of {bytes} bytes"));
        Buffer {
            inner,
            len: bytes,
            _map: None,
        }
    }

    /// The whole mapped file as a buffer, without copying.
    pub fn wrap_mmap(&self, map: Arc<memmap2::Mmap>) -> Result<Buffer> {
        let len = map.len();
        let ptr = NonNull::new(map.as_ptr() as *mut std::ffi::c_void)
            .ok_or_else(|| anyhow!("the weights file is empty"))?;
        if !(ptr.as_ptr() as usize).is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            bail!("the weights file is {len} bytes, not a whole number of 16 KiB pages; re-export it with forge");
        }
        let max = self.device.maxBufferLength();
        if len > max {
            bail!("the weights file is {len} bytes; this Metal device allows buffers of at most {max} bytes");
        }
        // The mapping outlives the buffer (the Buffer holds the Arc), the range is
        // whole pages of it, and kernels only read weights.
        let inner = unsafe {
            self.device
                .newBufferWithBytesNoCopy_length_options_deallocator(
                    ptr,
                    len,
                    MTLResourceOptions::StorageModeShared,
                    None,
                )
        }
        .ok_or_else(|| anyhow!("Metal could not wrap the {len}-byte weights mapping"))?;
        Ok(Buffer {
            inner,
            len,
            _map: Some(map),
        })
    }

    pub fn batch(&self) -> Batch<'_> {
        let (command, encoder) = autoreleasepool(|_| {
            let command = self.queue.commandBuffer();
            let encoder = command
                .as_ref()
                .and_then(|c| c.computeCommandEncoderWithDispatchType(MTLDispatchType::Concurrent));
            (command, encoder)
        });
        let error = match (&command, &encoder) {
            (Some(_), Some(_)) => None,
            _ => Some(anyhow!("Metal could not create a command buffer")),
        };
        Batch {
            _gpu: PhantomData,
            command,
            encoder,
            error,
            hazards: Hazards::default(),
        }
    }

    /// Metal has no counters here; `bench` reports them on msl-emu.
    pub fn take_stats(&self) -> Option<Stats> {
        None
    }

    /// Metal has no counters here; `bench --kernels` reports them on msl-emu.
    pub fn take_kernel_stats(&self) -> Option<KernelStats> {
        None
    }

    pub fn backend(&self) -> &'static str {
        "metal"
    }
}

impl Buffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub(super) fn contents(&self) -> *mut u8 {
        self.inner.contents().as_ptr() as *mut u8
    }
}

impl Pipeline {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Batch<'_> {
    /// Encodes `grid` threadgroups of `threads` threads with `args` bound by index.
    pub fn dispatch(
        &mut self,
        p: &Pipeline,
        grid: [u32; 3],
        threads: [u32; 3],
        args: &[(u32, Arg)],
    ) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.encode(p, grid, threads, args) {
            self.error = Some(e);
        }
    }

    fn encode(
        &mut self,
        p: &Pipeline,
        grid: [u32; 3],
        threads: [u32; 3],
        args: &[(u32, Arg)],
    ) -> Result<()> {
        let encoder = self
            .encoder
            .as_ref()
            .ok_or_else(|| anyhow!("the batch has no encoder"))?;
        let per_group = threads.iter().map(|&t| t as usize).product::<usize>();
        let limit = p.state.maxTotalThreadsPerThreadgroup();
        if per_group == 0 || per_group > limit {
            bail!("kernel '{}': {per_group} threads per threadgroup; this pipeline allows 1 to {limit}", p.name);
        }
        let mutable: Vec<usize> = args
            .iter()
            .filter_map(|(_, arg)| match arg {
                Arg::Buffer(b, _) if b._map.is_none() => Some(b.contents() as usize),
                _ => None,
            })
            .collect();
        if self.hazards.barrier_before(&mutable) {
            encoder.memoryBarrierWithScope(MTLBarrierScope::Buffers);
        }
        encoder.setComputePipelineState(&p.state);
        for &(index, arg) in args {
            let index = index as usize;
            match arg {
                Arg::Buffer(buffer, offset) => {
                    if offset > buffer.len {
                        bail!("kernel '{}': offset {offset} is past the end of the {}-byte buffer at index {index}", p.name, buffer.len);
                    }
                    let alignment = p
                        .alignments
                        .iter()
                        .find(|&&(i, _)| i == index)
                        .map_or(MIN_OFFSET_ALIGNMENT, |&(_, a)| a);
                    if !offset.is_multiple_of(alignment) {
                        bail!("kernel '{}': buffer {index} is bound at offset {offset}, not a multiple of its type's {alignment}-byte alignment", p.name);
                    }
                    // In bounds (checked above); the buffer outlives the command buffer's wait in `finish`.
                    unsafe { encoder.setBuffer_offset_atIndex(Some(&buffer.inner), offset, index) };
                }
                Arg::Bytes(data) => {
                    if data.len() > MAX_BYTES_ARG {
                        bail!("kernel '{}': {} bytes at index {index} exceed Metal's {MAX_BYTES_ARG}-byte setBytes limit", p.name, data.len());
                    }
                    let bytes = NonNull::new(data.as_ptr() as *mut std::ffi::c_void)
                        .ok_or_else(|| anyhow!("kernel '{}': null bytes argument", p.name))?;
                    // Metal copies the bytes into the command before this call returns.
                    unsafe { encoder.setBytes_length_atIndex(bytes, data.len(), index) };
                }
                Arg::Threadgroup(len) => {
                    // Metal requires threadgroup lengths in multiples of 16 bytes.
                    unsafe {
                        encoder.setThreadgroupMemoryLength_atIndex(len.div_ceil(16) * 16, index)
                    };
                }
            }
        }
        let size = |[x, y, z]: [u32; 3]| MTLSize {
            width: x as usize,
            height: y as usize,
            depth: z as usize,
        };
        encoder.dispatchThreadgroups_threadsPerThreadgroup(size(grid), size(threads));
        Ok(())
    }

    /// Commits the command buffer, waits for it, and reports the first error.
    pub fn finish(mut self) -> Result<()> {
        if let Some(encoder) = self.encoder.take() {
            encoder.endEncoding();
        }
        let command = self.command.take();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let command = command.ok_or_else(|| anyhow!("the batch has no command buffer"))?;
        command.commit();
        command.waitUntilCompleted();
        if command.status() == MTLCommandBufferStatus::Error {
            let reason = autoreleasepool(|_| {
                command
                    .error()
                    .map(|e| e.localizedDescription().to_string())
                    .unwrap_or_else(|| "unknown error".to_string())
            });
            bail!("the Metal command buffer failed: {reason}");
        }
        Ok(())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        // Metal aborts when an encoder is released before endEncoding (a batch dropped unfinished).
        if let Some(encoder) = self.encoder.take() {
            encoder.endEncoding();
        }
    }
}
