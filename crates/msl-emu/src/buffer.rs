//! Buffers: owned zeroed memory, or a wrapped memory region (e.g. an mmapped
//! weights file) that is used in place. Clones share the same memory, like
//! MTLBuffer references.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::any::Any;
use std::sync::Arc;

/// Alignment of owned buffers: enough for any vector type and a cache line.
const ALIGN: usize = 64;

enum Owner {
    Heap(Layout),
    External(#[allow(dead_code)] Arc<dyn Any + Send + Sync>),
}

struct Inner {
    ptr: *mut u8,
    len: usize,
    owner: Owner,
}

// Kernels write buffers from several worker threads, as a GPU does; ordering
// between dispatches is the caller's business, as in Metal.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Owner::Heap(layout) = self.owner {
            unsafe { dealloc(self.ptr, layout) };
        }
    }
}

#[derive(Clone)]
pub struct Buffer {
    inner: Arc<Inner>,
}

impl Buffer {
    /// A zeroed buffer of `len` bytes, 64-byte aligned.
    pub fn new(len: usize) -> Buffer {
        let layout =
            Layout::from_size_align(len.max(1), ALIGN).expect("buffer size overflows isize");
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Buffer {
            inner: Arc::new(Inner {
                ptr,
                len,
                owner: Owner::Heap(layout),
            }),
        }
    }

    pub fn from_slice<T: Copy>(data: &[T]) -> Buffer {
        let b = Buffer::new(std::mem::size_of_val(data));
        b.write(0, data);
        b
    }

    /// Uses `len` bytes at `ptr` without copying; `owner` is kept alive as long
    /// as any clone of the buffer.
    ///
    /// # Safety
    /// `ptr..ptr+len` must stay valid (and writable if kernels write it) while `owner` lives.
    pub unsafe fn wrap(ptr: *mut u8, len: usize, owner: Arc<dyn Any + Send + Sync>) -> Buffer {
        Buffer {
            inner: Arc::new(Inner {
                ptr,
                len,
                owner: Owner::External(owner),
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.len
    }

    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    pub fn contents(&self) -> *mut u8 {
        self.inner.ptr
    }

    /// Copies the whole buffer out as `T`s (a trailing partial element is dropped).
    pub fn read<T: Copy>(&self) -> Vec<T> {
        let size = std::mem::size_of::<T>();
        if size == 0 {
            return Vec::new();
        }
        let n = self.len() / size;
        let mut out = Vec::<T>::with_capacity(n);
        unsafe {
            std::ptr::copy_nonoverlapping(self.inner.ptr, out.as_mut_ptr() as *mut u8, n * size);
            out.set_len(n);
        }
        out
    }

    /// Copies `data` in at `offset_bytes`. Panics when it does not fit (a caller bug).
    pub fn write<T: Copy>(&self, offset_bytes: usize, data: &[T]) {
        let bytes = std::mem::size_of_val(data);
        let end = offset_bytes.checked_add(bytes).filter(|&e| e <= self.len());
        assert!(
            end.is_some(),
            "Buffer::write of {bytes} bytes at offset {offset_bytes} exceeds the buffer's {} bytes",
            self.len()
        );
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr() as *const u8,
                self.inner.ptr.add(offset_bytes),
                bytes,
            )
        };
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes at {:p})", self.len(), self.inner.ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_buffers_are_zeroed_aligned_and_shared_by_clones() {
        let b = Buffer::new(100);
        assert_eq!(b.contents() as usize % ALIGN, 0);
        assert!(b.read::<u8>().iter().all(|&x| x == 0));
        let c = b.clone();
        c.write(8, &[1.5f32, 2.5]);
        assert_eq!(&b.read::<f32>()[2..4], &[1.5, 2.5]);
        assert_eq!(b.read::<f32>().len(), 25);
    }

    #[test]
    fn wrapped_memory_is_used_in_place_and_kept_alive() {
        let data: Arc<Vec<u32>> = Arc::new(vec![7, 8, 9]);
        let ptr = data.as_ptr() as *mut u8;
        let b = unsafe { Buffer::wrap(ptr, 12, data.clone()) };
        drop(data);
        assert_eq!(b.contents(), ptr);
        assert_eq!(b.read::<u32>(), [7, 8, 9]);
    }
}
