//! Fibers: each GPU thread of a threadgroup with sync points runs on its own
//! stack and switches to another fiber at barriers and SIMD collectives.
//! The switch is a few instructions of assembly on x86-64 (inline) and aarch64
//! (only callee-saved registers move); other targets, or the `ucontext`
//! feature, use the slower libc ucontext calls.

use std::ffi::c_void;

/// Usable stack of one fiber. Kernels keep little on the stack (a simdgroup
/// matrix is 256 bytes), and untouched pages cost nothing.
pub const STACK_BYTES: usize = 128 * 1024;
const GUARD_BYTES: usize = 4096;
pub const MAX_FIBERS: usize = 1024;

pub type FiberEntry = extern "C" fn(*mut c_void) -> !;

/// Stacks for up to 1024 fibers in one mapping, each with a guard page below it.
pub struct Stacks {
    base: *mut u8,
    bytes: usize,
}

unsafe impl Send for Stacks {}

impl Stacks {
    pub fn new() -> Result<Stacks, String> {
        let stride = STACK_BYTES + GUARD_BYTES;
        let bytes = stride * MAX_FIBERS;
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("cannot map {} MiB of fiber stacks", bytes >> 20));
        }
        let base = base as *mut u8;
        for i in 0..MAX_FIBERS {
            // A stack overflow then faults instead of corrupting the neighbour's stack.
            unsafe {
                libc::mprotect(
                    base.add(i * stride) as *mut c_void,
                    GUARD_BYTES,
                    libc::PROT_NONE,
                )
            };
        }
        Ok(Stacks { base, bytes })
    }

    /// The (16-byte aligned) top of fiber `i`'s stack. Tops are staggered
    /// over the 64 cache-line offsets of a page: at the same page offset every
    /// fiber's hot frames would map to one cache set and evict each other.
    pub fn top(&self, i: usize) -> *mut u8 {
        debug_assert!(i < MAX_FIBERS);
        let colour = (i * 7 % 64) * 64;
        unsafe {
            self.base
                .add((i + 1) * (STACK_BYTES + GUARD_BYTES) - colour)
        }
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.base as *mut c_void, self.bytes) };
    }
}

#[cfg(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "ucontext")
))]
mod imp {
    use super::FiberEntry;
    use std::ffi::c_void;

    /// A suspended fiber is just its saved stack pointer; the registers are on its stack.
    pub struct Context {
        sp: *mut u8,
    }

    impl Context {
        pub fn new() -> Context {
            Context {
                sp: std::ptr::null_mut(),
            }
        }

        /// Prepares a fiber that will call `entry(arg)` on the stack ending at `top`.
        ///
        /// # Safety
        /// `top` must be the 16-byte aligned end of a stack that outlives the fiber.
        pub unsafe fn init(&mut self, top: *mut u8, entry: FiberEntry, arg: *mut c_void) {
            #[cfg(target_arch = "x86_64")]
            {
                // `switch` returns into the trampoline, which pops `entry` and `arg`;
                // rsp is then 16-byte aligned, so its `call` enters `entry` as the ABI requires.
                let sp = top.sub(40) as *mut usize;
                sp.write(trampoline as *const () as usize);
                sp.add(1).write(entry as usize);
                sp.add(2).write(arg as usize);
                self.sp = sp as *mut u8;
            }
            #[cfg(target_arch = "aarch64")]
            {
                let sp = top.sub(176) as *mut usize;
                sp.write(arg as usize); // x19
                sp.add(1).write(entry as usize); // x20
                sp.add(10).write(0); // x29
                sp.add(11).write(trampoline as *const () as usize); // x30
                self.sp = sp as *mut u8;
            }
        }
    }

    /// Saves the current registers into `from` and resumes `to`.
    ///
    /// Inline, so only the registers live across the switch are saved: all but
    /// rbx and rbp are declared clobbered (the compiler saves what it needs), and
    /// those two, which cannot be declared, are pushed here. The `call`/`ret` pair
    /// keeps the return-address predictor right when both fibers switch from the
    /// same place, which is the common case (lanes blocking at the same sync point).
    ///
    /// # Safety
    /// `to` must hold a context saved by `switch` or prepared by `init`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub unsafe fn switch(from: *mut Context, to: *const Context) {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "call 2f",
            "jmp 3f",
            "2:",
            "mov [rdi], rsp",
            "mov rsp, rsi",
            "ret",
            "3:",
            "pop rbx",
            "pop rbp",
            in("rdi") &mut (*from).sp,
            in("rsi") (*to).sp,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("C"),
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[unsafe(naked)]
    unsafe extern "C" fn trampoline() {
        core::arch::naked_asm!("pop rax", "pop rdi", "xor ebp, ebp", "call rax", "ud2")
    }

    /// Saves the current registers into `from` and resumes `to`.
    ///
    /// # Safety
    /// `to` must hold a context saved by `switch` or prepared by `init`.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub unsafe fn switch(from: *mut Context, to: *const Context) {
        switch_context(&mut (*from).sp, (*to).sp);
    }

    #[cfg(target_arch = "aarch64")]
    #[unsafe(naked)]
    unsafe extern "C" fn switch_context(save: *mut *mut u8, load: *mut u8) {
        core::arch::naked_asm!(
            "sub sp, sp, #176",
            "stp x19, x20, [sp, #0]",
            "stp x21, x22, [sp, #16]",
            "stp x23, x24, [sp, #32]",
            "stp x25, x26, [sp, #48]",
            "stp x27, x28, [sp, #64]",
            "stp x29, x30, [sp, #80]",
            "stp d8, d9, [sp, #96]",
            "stp d10, d11, [sp, #112]",
            "stp d12, d13, [sp, #128]",
            "stp d14, d15, [sp, #144]",
            "mov x9, sp",
            "str x9, [x0]",
            "mov sp, x1",
            "ldp x19, x20, [sp, #0]",
            "ldp x21, x22, [sp, #16]",
            "ldp x23, x24, [sp, #32]",
            "ldp x25, x26, [sp, #48]",
            "ldp x27, x28, [sp, #64]",
            "ldp x29, x30, [sp, #80]",
            "ldp d8, d9, [sp, #96]",
            "ldp d10, d11, [sp, #112]",
            "ldp d12, d13, [sp, #128]",
            "ldp d14, d15, [sp, #144]",
            "add sp, sp, #176",
            "ret",
        )
    }

    #[cfg(target_arch = "aarch64")]
    #[unsafe(naked)]
    unsafe extern "C" fn trampoline() {
        core::arch::naked_asm!("mov x0, x19", "blr x20", "brk #1")
    }
}

#[cfg(any(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    feature = "ucontext"
))]
mod imp {
    use super::{FiberEntry, STACK_BYTES};
    use std::ffi::c_void;

    pub struct Context {
        uc: Box<libc::ucontext_t>,
    }

    impl Context {
        pub fn new() -> Context {
            Context {
                uc: Box::new(unsafe { std::mem::zeroed() }),
            }
        }

        /// # Safety
        /// `top` must be the end of a stack of STACK_BYTES that outlives the fiber.
        pub unsafe fn init(&mut self, top: *mut u8, entry: FiberEntry, arg: *mut c_void) {
            libc::getcontext(&mut *self.uc);
            self.uc.uc_stack.ss_sp = top.sub(STACK_BYTES) as *mut c_void;
            self.uc.uc_stack.ss_size = STACK_BYTES;
            self.uc.uc_link = std::ptr::null_mut();
            // makecontext passes int arguments: the pointers travel as 32-bit halves.
            let e = entry as usize as u64;
            let a = arg as usize as u64;
            let start: extern "C" fn(u32, u32, u32, u32) = start;
            let f: extern "C" fn() = std::mem::transmute(start);
            libc::makecontext(
                &mut *self.uc,
                f,
                4,
                e as u32,
                (e >> 32) as u32,
                a as u32,
                (a >> 32) as u32,
            );
        }
    }

    extern "C" fn start(e_lo: u32, e_hi: u32, a_lo: u32, a_hi: u32) {
        let entry: FiberEntry =
            unsafe { std::mem::transmute((e_lo as u64 | ((e_hi as u64) << 32)) as usize) };
        entry((a_lo as u64 | ((a_hi as u64) << 32)) as usize as *mut c_void)
    }

    /// # Safety
    /// `to` must hold a context saved by `switch` or prepared by `init`.
    pub unsafe fn switch(from: *mut Context, to: *const Context) {
        libc::swapcontext(&mut *(*from).uc, &*(*to).uc);
    }
}

pub use imp::{switch, Context};

#[cfg(test)]
mod tests {
    use super::*;

    struct PingPong {
        main: Context,
        fiber: Context,
        log: Vec<u32>,
    }

    extern "C" fn body(arg: *mut c_void) -> ! {
        let p = arg as *mut PingPong;
        unsafe {
            for i in 0..3 {
                (*p).log.push(100 + i);
                switch(&mut (*p).fiber, &(*p).main);
            }
            (*p).log.push(999);
            switch(&mut (*p).fiber, &(*p).main);
        }
        std::process::abort()
    }

    #[test]
    fn fibers_switch_back_and_forth_keeping_their_state() {
        let stacks = Stacks::new().unwrap();
        let mut p = Box::new(PingPong {
            main: Context::new(),
            fiber: Context::new(),
            log: Vec::new(),
        });
        let raw: *mut PingPong = &mut *p;
        unsafe {
            (*raw).fiber.init(stacks.top(5), body, raw as *mut c_void);
            for i in 0..4 {
                (*raw).log.push(i);
                switch(&mut (*raw).main, &(*raw).fiber);
            }
        }
        assert_eq!(p.log, [0, 100, 1, 101, 2, 102, 3, 999]);
    }
}
