//! The library's own virtual-memory calls: the table `c_arena_create` uses when `vm` is
//! NULL. Each function has the signature of the caller's table (`ctx` is ignored), so both
//! modes run one code path.
//!
//! - POSIX (Linux, Android, macOS, iOS): `mmap(PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|
//!   MAP_NORESERVE)` reserves, `mprotect(PROT_READ|PROT_WRITE)` commits, `munmap` releases,
//!   a `MAP_FIXED` `PROT_NONE` mapping over the range decommits. A failure returns errno.
//! - Windows: `VirtualAlloc(MEM_RESERVE, PAGE_NOACCESS)` reserves,
//!   `VirtualAlloc(MEM_COMMIT, PAGE_READWRITE)` commits, `VirtualFree(base, 0, MEM_RELEASE)`
//!   releases, `VirtualFree(MEM_DECOMMIT)` decommits. A failure returns `GetLastError()`.
//!
//! A failure never reports 0, which the arena would take for success. Elsewhere there is
//! no direct table and `vm == NULL` is `C_ARENA_INVALID_ARGUMENT`.
//!
//! The arena never calls decommit (its commit only grows); the slot is filled so that the
//! table is complete, as in c_arena.c.

#[cfg(any(
    all(
        any(target_os = "linux", target_os = "android"),
        any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64",
            target_arch = "loongarch64"
        )
    ),
    target_os = "macos",
    target_os = "ios"
))]
mod imp {
    //! POSIX: mmap, mprotect, munmap.
    use crate::abi::Vm;
    use std::ffi::c_void;
    use std::os::raw::c_int;
    use std::ptr;

    /// The few `<sys/mman.h>` values the arena needs, per OS.
    mod consts {
        use std::os::raw::c_int;

        pub const PROT_NONE: c_int = 0;
        pub const PROT_READ: c_int = 1;
        pub const PROT_WRITE: c_int = 2;
        pub const MAP_PRIVATE: c_int = 0x02;
        pub const MAP_FIXED: c_int = 0x10;

        // The asm-generic values (x86_64, aarch64, riscv64, loongarch64).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        pub const MAP_ANONYMOUS: c_int = 0x20;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        pub const MAP_NORESERVE: c_int = 0x4000;

        // Darwin spells it MAP_ANON.
        #[cfg(any(target_os = "macos", target_os = "ios"))]
        pub const MAP_ANONYMOUS: c_int = 0x1000;
        #[cfg(any(target_os = "macos", target_os = "ios"))]
        pub const MAP_NORESERVE: c_int = 0x40;

        /// What to report when a call failed but errno reads 0.
        pub const EIO: c_int = 5;
    }
    use consts::*;

    const MAP_FAILED: *mut c_void = !0usize as *mut c_void;

    extern "C" {
        fn mmap(
            addr: *mut c_void,
            len: usize,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            offset: i64,
        ) -> *mut c_void;
        fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int;
        fn munmap(addr: *mut c_void, len: usize) -> c_int;
    }

    /// errno of the call that just failed, never 0.
    fn errno_code() -> c_int {
        match std::io::Error::last_os_error().raw_os_error() {
            Some(code) if code != 0 => code,
            _ => EIO,
        }
    }

    pub unsafe extern "C" fn reserve(_ctx: *mut c_void, size: u64, base: *mut u64) -> c_int {
        let p = mmap(
            ptr::null_mut(),
            size as usize,
            PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
            -1,
            0,
        );
        if p == MAP_FAILED {
            return errno_code();
        }
        *base = p as usize as u64;
        0
    }

    pub unsafe extern "C" fn commit(_ctx: *mut c_void, addr: u64, size: u64) -> c_int {
        if mprotect(
            addr as usize as *mut c_void,
            size as usize,
            PROT_READ | PROT_WRITE,
        ) == 0
        {
            0
        } else {
            errno_code()
        }
    }

    pub unsafe extern "C" fn decommit(_ctx: *mut c_void, addr: u64, size: u64) -> c_int {
        // A fresh PROT_NONE NORESERVE mapping drops the pages and their charge alike.
        let p = mmap(
            addr as usize as *mut c_void,
            size as usize,
            PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
            -1,
            0,
        );
        if p == MAP_FAILED {
            errno_code()
        } else {
            0
        }
    }

    pub unsafe extern "C" fn release(_ctx: *mut c_void, addr: u64, size: u64) -> c_int {
        if munmap(addr as usize as *mut c_void, size as usize) == 0 {
            0
        } else {
            errno_code()
        }
    }

    /// The table `vm == NULL` selects.
    pub const DIRECT: Option<Vm> = Some(Vm {
        reserve: Some(reserve),
        commit: Some(commit),
        decommit: Some(decommit),
        release: Some(release),
    });
}

#[cfg(windows)]
mod imp {
    //! Windows: VirtualAlloc, VirtualFree.
    use crate::abi::Vm;
    use std::ffi::c_void;
    use std::os::raw::c_int;
    use std::ptr;

    const MEM_COMMIT: u32 = 0x1000;
    const MEM_RESERVE: u32 = 0x2000;
    const MEM_DECOMMIT: u32 = 0x4000;
    const MEM_RELEASE: u32 = 0x8000;
    const PAGE_NOACCESS: u32 = 0x01;
    const PAGE_READWRITE: u32 = 0x04;
    /// What to report when a call failed but `GetLastError()` reads 0.
    const ERROR_GEN_FAILURE: u32 = 31;

    #[link(name = "kernel32")]
    extern "system" {
        fn VirtualAlloc(
            address: *mut c_void,
            size: usize,
            allocation_type: u32,
            protect: u32,
        ) -> *mut c_void;
        fn VirtualFree(address: *mut c_void, size: usize, free_type: u32) -> i32;
        fn GetLastError() -> u32;
    }

    /// The last error of the call that just failed, never 0.
    fn last_error() -> c_int {
        let code = unsafe { GetLastError() };
        (if code != 0 { code } else { ERROR_GEN_FAILURE }) as c_int
    }

    pub unsafe extern "C" fn reserve(_ctx: *mut c_void, size: u64, base: *mut u64) -> c_int {
        let p = VirtualAlloc(ptr::null_mut(), size as usize, MEM_RESERVE, PAGE_NOACCESS);
        if p.is_null() {
            return last_error();
        }
        *base = p as usize as u64;
        0
    }

    pub unsafe extern "C" fn commit(_ctx: *mut c_void, addr: u64, size: u64) -> c_int {
        let p = VirtualAlloc(
            addr as usize as *mut c_void,
            size as usize,
            MEM_COMMIT,
            PAGE_READWRITE,
        );
        if p.is_null() {
            last_error()
        } else {
            0
        }
    }

    pub unsafe extern "C" fn decommit(_ctx: *mut c_void, addr: u64, size: u64) -> c_int {
        if VirtualFree(addr as usize as *mut c_void, size as usize, MEM_DECOMMIT) != 0 {
            0
        } else {
            last_error()
        }
    }

    /// MEM_RELEASE takes the base VirtualAlloc returned and a size of 0: the whole
    /// reservation goes at once. `size` (RESERVED_SIZE) is what the arena asked for.
    pub unsafe extern "C" fn release(_ctx: *mut c_void, addr: u64, _size: u64) -> c_int {
        if VirtualFree(addr as usize as *mut c_void, 0, MEM_RELEASE) != 0 {
            0
        } else {
            last_error()
        }
    }

    /// The table `vm == NULL` selects.
    pub const DIRECT: Option<Vm> = Some(Vm {
        reserve: Some(reserve),
        commit: Some(commit),
        decommit: Some(decommit),
        release: Some(release),
    });
}

/// No direct calls on this target: `vm == NULL` is refused.
#[cfg(not(any(
    windows,
    all(
        any(target_os = "linux", target_os = "android"),
        any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64",
            target_arch = "loongarch64"
        )
    ),
    target_os = "macos",
    target_os = "ios"
)))]
mod imp {
    use crate::abi::Vm;

    pub const DIRECT: Option<Vm> = None;
}

/// The table `vm == NULL` selects, where this library has one.
pub use imp::DIRECT;
