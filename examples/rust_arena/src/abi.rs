//! The declarations of `native/c_arena.h`, in Rust: constants, status codes and the two
//! structures a caller passes in. Field order and types follow the header exactly.

use std::ffi::c_void;
use std::os::raw::c_int;

/// `C_ARENA_ABI_VERSION`.
pub const ABI_VERSION: u32 = 1;

/// `C_ARENA_FOOTER_MAGIC`: the first 8 bytes of the footer (little-endian); the next 8 hold R.
pub const FOOTER_MAGIC: u64 = 0xA4E7_A4E7_F007_E400;

/// `C_ARENA_TRANSFER_METADATA_SIZE` + `C_ARENA_POOL_METADATA_SIZE`: the bytes of a pool
/// arena's block between its allocatable bytes and the footer.
pub const METADATA_BELOW_FOOTER: u64 = 16 + 8;

/// `C_ARENA_POOL`, the one flag of `c_arena_create`.
pub const POOL: u32 = 1;

/// `enum c_arena_status`.
pub const OK: c_int = 0;
pub const FULL: c_int = 1;
pub const INVALID_LAYOUT: c_int = 2;
pub const INVALID_ARGUMENT: c_int = 3;
pub const RESERVE_FAILED: c_int = 4;
pub const COMMIT_FAILED: c_int = 5;
pub const RELEASE_FAILED: c_int = 6;
pub const DOUBLE_FREE: c_int = 7;
pub const USE_AFTER_FREE: c_int = 8;
pub const OUT_OF_MEMORY: c_int = 9;

/// `struct c_arena_geometry`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Geometry {
    /// Commit granularity (the OS page size).
    pub page: u64,
    /// Alignment of the container C.
    pub container_align: u64,
    /// The arena's block, footer included.
    pub block_size: u64,
    /// Bytes committed at creation, at the top of the container.
    pub first_commit: u64,
    /// Bytes at the top of the block that belong to the footer.
    pub footer_size: u64,
}

/// `int (*reserve)(void *ctx, uint64_t size, uint64_t *base)`.
pub type ReserveFn = unsafe extern "C" fn(ctx: *mut c_void, size: u64, base: *mut u64) -> c_int;

/// `int (*commit / decommit / release)(void *ctx, uint64_t addr, uint64_t size)`.
pub type SpanFn = unsafe extern "C" fn(ctx: *mut c_void, addr: u64, size: u64) -> c_int;

/// `struct c_arena_vm`. `None` is a NULL function pointer: the only way to spell one.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Vm {
    pub reserve: Option<ReserveFn>,
    pub commit: Option<SpanFn>,
    pub decommit: Option<SpanFn>,
    pub release: Option<SpanFn>,
}
