//! The arena's state and the pure rules it follows: the geometry check, Rust's `Layout`
//! rule, the growth arithmetic, the release range. Each seeded fault changes exactly one of
//! these rules, under its own `cfg`; the exported functions in `lib.rs` only sequence them.
//!
//! All address arithmetic is `u64` and wraps modulo 2^64, as c_arena.h requires.

use std::os::raw::c_int;

use crate::abi::{Geometry, ReserveFn, SpanFn, METADATA_BELOW_FOOTER};

/// `isize::MAX` as a `u64`: no Rust allocation is larger.
pub const ISIZE_MAX: u64 = isize::MAX as u64;

/// Bytes of the footer the arena writes at F: the magic, then R.
pub const FOOTER_BYTES: u64 = 16;

/// Distinguishes our handles from stray pointers; cleared before the handle is freed so
/// that a destroyed handle passed back in is caught as long as its memory is not reused.
pub const HANDLE_MAGIC: u32 = 0xA4E7_C0DE;

/// The caller's (or the library's own) VM table, with its required functions present.
/// `decommit` is not kept: the arena never calls it.
#[derive(Clone, Copy)]
pub struct Os {
    pub reserve: ReserveFn,
    pub commit: SpanFn,
    pub release: SpanFn,
}

/// What a `struct c_arena *` points at. `repr(C)` with the magic first, so that the magic
/// sits at the same offset whatever the compiler.
///
/// Invariant between calls on a live arena: C <= S <= P <= F, S page-aligned, exactly
/// [S, C + CONTAINER_SIZE) committed, and every refused call changed nothing.
#[repr(C)]
pub struct Arena {
    pub magic: u32,
    pub alive: bool,
    pub pool: bool,
    pub last_os_error: c_int,
    pub os: Os,
    pub vm_ctx: *mut std::ffi::c_void,
    pub page: u64,
    pub min_align: u64,
    pub reserved_size: u64,
    pub container_size: u64,
    /// R
    pub reservation: u64,
    /// C
    pub container: u64,
    /// C + CONTAINER_SIZE
    pub container_end: u64,
    /// F
    pub footer: u64,
    /// F, or C + ACTIVE_SIZE for a pool arena
    pub reset_cursor: u64,
    /// S
    pub start: u64,
    /// P
    pub cursor: u64,
}

/// The geometry rules of c_arena.h, without any step that could overflow.
pub fn geometry_is_valid(g: &Geometry) -> bool {
    if !g.page.is_power_of_two()
        || !g.container_align.is_power_of_two()
        || g.container_align < g.page
    {
        return false;
    }
    if g.footer_size < FOOTER_BYTES
        || g.footer_size > ISIZE_MAX
        || g.block_size <= g.footer_size + METADATA_BELOW_FOOTER
    {
        return false;
    }
    if g.block_size > ISIZE_MAX - (g.page - 1) {
        return false;
    }
    let container_size = round_up(g.block_size, g.page);
    // container_align may be 2^63, the one power of two above isize::MAX: it is tested
    // first, so that the bound below never wraps.
    if g.container_align > ISIZE_MAX || container_size > ISIZE_MAX - g.container_align {
        return false;
    }
    if g.first_commit == 0 || g.first_commit & (g.page - 1) != 0 || g.first_commit > container_size
    {
        return false;
    }
    // The first commit must hold the footer: S0 <= F.
    container_size - g.first_commit <= g.block_size - g.footer_size
}

/// CONTAINER_SIZE: `block_size` rounded up to `page` (a power of two; checked not to
/// overflow by `geometry_is_valid`).
pub fn round_up(x: u64, page: u64) -> u64 {
    x.wrapping_add(page - 1) & !(page - 1)
}

/// C_ARENA_INVALID_LAYOUT unless `(size, align)` is a Rust `Layout`: `align` a power of
/// two, and `size` rounded up to `align` at most `isize::MAX`. The bound is written as
/// `isize::MAX - (align - 1)`, the largest multiple of `align` that fits, so the rounding
/// itself can never overflow.
///
/// This is `Layout::from_size_align(size as usize, align as usize).is_ok()` of Rust 1.64
/// and later, spelled out: Rust 1.63's `Layout` bounds the rounded size by `usize::MAX`,
/// not `isize::MAX`, and would accept `(2^63, 1)`.
#[cfg(not(fault = "accepts_bad_align"))]
pub fn layout_is_valid(size: u64, align: u64) -> bool {
    align.is_power_of_two() && size <= ISIZE_MAX - (align - 1)
}

/// Seeded fault "accepts_bad_align": the power-of-two test is skipped, so an align such
/// as 3 or 24 is accepted and rounded with `!(a - 1)` anyway. The size bound is kept,
/// written so that nothing wraps: align 0 is still refused, and so is an align above
/// 2^63 (rounding up to it could never fit in isize::MAX).
#[cfg(fault = "accepts_bad_align")]
pub fn layout_is_valid(size: u64, align: u64) -> bool {
    align != 0 && align - 1 <= ISIZE_MAX && size <= ISIZE_MAX - (align - 1)
}

impl Arena {
    /// The alignment an allocation gets: max(align, MIN_ALIGN).
    #[cfg(not(fault = "align_ignores_min_align"))]
    pub fn effective_align(&self, align: u64) -> u64 {
        if align > self.min_align {
            align
        } else {
            self.min_align
        }
    }

    /// Seeded fault "align_ignores_min_align": the arena's MIN_ALIGN is forgotten.
    #[cfg(fault = "align_ignores_min_align")]
    pub fn effective_align(&self, align: u64) -> u64 {
        align
    }

    /// The new S of a grow for the allocation at `p` (here C <= p < S): double the
    /// committed size, capped at the container, or more if the allocation needs more.
    /// max(S - committed, C) is taken without forming S - committed when it would fall
    /// below C (it could wrap below 0).
    #[cfg(not(fault = "grow_without_doubling"))]
    pub fn grow_start(&self, p: u64) -> u64 {
        let committed = self.container_end.wrapping_sub(self.start);
        let doubled = if self.start.wrapping_sub(self.container) >= committed {
            self.start.wrapping_sub(committed)
        } else {
            self.container
        };
        let needed = p & !(self.page - 1);
        if doubled < needed {
            doubled
        } else {
            needed
        }
    }

    /// Seeded fault "grow_without_doubling": commit only what the allocation needs.
    #[cfg(fault = "grow_without_doubling")]
    pub fn grow_start(&self, p: u64) -> u64 {
        p & !(self.page - 1)
    }

    /// What c_arena_free gives back: the whole reservation, (R, RESERVED_SIZE).
    #[cfg(not(fault = "release_container_only"))]
    pub fn release_range(&self) -> (u64, u64) {
        (self.reservation, self.reserved_size)
    }

    /// Seeded fault "release_container_only": only the container, (C, CONTAINER_SIZE),
    /// which leaks the head and tail of the reservation whenever R != C.
    #[cfg(fault = "release_container_only")]
    pub fn release_range(&self) -> (u64, u64) {
        (self.container, self.container_size)
    }

    /// Run after each successful allocation: nothing in the default build.
    #[cfg(not(fault = "write_below_start"))]
    #[inline]
    pub fn after_alloc(&self) {}

    /// Seeded fault "write_below_start": after each successful allocation, a store to the
    /// byte just below S, which is reserved but never committed, so the process faults.
    /// Only when that byte lies in the arena's own reservation (S - 1 >= R): below R it
    /// could belong to another mapping, and the store would corrupt it instead of faulting.
    #[cfg(fault = "write_below_start")]
    pub fn after_alloc(&self) {
        if self.start > self.reservation {
            // SAFETY: none; that is the fault. The byte is in our reservation, never
            // committed, so the store traps instead of corrupting anything.
            unsafe { std::ptr::write_volatile(self.start.wrapping_sub(1) as usize as *mut u8, 0) }
        }
    }
}
