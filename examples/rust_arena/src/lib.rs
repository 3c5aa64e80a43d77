//! `rust_arena`: the fixed-size arena of `native/c_arena.h`, written in Rust.
//!
//! A `cdylib` exporting exactly the C ABI of `native/c_arena.h` (ABI version 1), with the
//! behaviour of the reference implementation `native/c_arena.c` call for call: the same
//! VM calls with the same addresses and sizes in the same order, the same statuses, the
//! same out-parameters. The harness loads it with ctypes (`ARENACHECK_C_ARENA_LIB`) and
//! model-checks it like the C and Python arenas. The algorithm is that of oxc's fixed-size
//! arena (`docs/ARENA.md` sections 1 to 3): reserve RESERVED_SIZE bytes, place a container
//! aligned on CONTAINER_ALIGN inside, commit the top FIRST_COMMIT bytes, bump allocations
//! down from the footer F, and grow the commit downwards by doubling, capped at the
//! container.
//!
//! The header is the contract; in short:
//!
//! - Every function but `c_arena_abi_version` returns a status (`abi::OK` ...) and zeroes
//!   its out-parameters first; a refused call changes nothing.
//! - A handle is a `Box`ed `arena::Arena` handed out as a raw pointer and checked on
//!   entry by its magic number (`0xA4E7C0DE`, cleared before the box is dropped).
//! - `c_arena_free` releases the reservation and leaves a tombstone: a second free is
//!   `C_ARENA_DOUBLE_FREE`, anything else `C_ARENA_USE_AFTER_FREE`, both without an OS
//!   call; the identity getters keep answering. `c_arena_destroy` frees the handle.
//! - With a `vm` table, every OS call goes through it (`vm_ctx` passed back). With
//!   `vm == NULL` the library makes its own calls (module `vm`): mmap / mprotect / munmap on
//!   Linux and macOS, VirtualAlloc / VirtualFree on Windows (the shape of oxc's fixed-size
//!   arena after its pull request 22124). Both modes run one code path. (c_arena.h says
//!   `vm == NULL` is `C_ARENA_INVALID_ARGUMENT` "where the library was built without"
//!   direct calls; this one has them on Windows too, and refuses NULL only on other
//!   targets.)
//!
//! Nothing here panics (no unwinding may cross the C ABI): address arithmetic uses
//! `wrapping_*` where the C wraps modulo 2^64, and every other step is checked first.
//! Build with `-C panic=abort` all the same.
//!
//! # Seeded faults
//!
//! For the harness's own tests, six bugs can be built in, each under a `cfg` of the form
//! `rustc --cfg 'fault="NAME"'`. The default build has none.
//!
//! | `fault=` | class | what changes |
//! |---|---|---|
//! | `grow_without_doubling` | growth arithmetic | a grow commits only what the allocation needs: new S = p rounded down to page, not min(max(S - committed, C), p rounded down) |
//! | `align_ignores_min_align` | alignment | the effective alignment is `align`, not max(align, MIN_ALIGN) |
//! | `release_container_only` | release | free releases (C, CONTAINER_SIZE) instead of (R, RESERVED_SIZE) |
//! | `accepts_bad_align` | bad-input check | the layout check skips the power-of-two test (align 0 is still refused) |
//! | `write_below_start` | touches memory never committed | after each successful allocation, a volatile store to S - 1 when S - 1 >= R (as `ARENACHECK_FAULT_WRITE_BELOW_START` in c_arena.c) |
//! | `double_free_releases` | release / misuse | a free on a tombstone calls release again, then returns `C_ARENA_DOUBLE_FREE` anyway |

// The `fault` cfgs are declared for cargo in Cargo.toml (`[lints.rust]`); a hand-run rustc
// given `--check-cfg` without them must not fail a `-D warnings` build either, and
// `unknown_lints` covers a compiler that has no `unexpected_cfgs` lint at all.
#![allow(unknown_lints)]
#![allow(unexpected_cfgs)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("the arena's ABI needs a 64-bit address space");

mod abi;
mod arena;
mod vm;

use std::alloc::{self, Layout};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::ptr;

use abi::{
    Geometry, Vm, ABI_VERSION, COMMIT_FAILED, DOUBLE_FREE, FOOTER_MAGIC, FULL, INVALID_ARGUMENT,
    INVALID_LAYOUT, METADATA_BELOW_FOOTER, OK, OUT_OF_MEMORY, POOL, RELEASE_FAILED, RESERVE_FAILED,
    USE_AFTER_FREE,
};
use arena::{geometry_is_valid, layout_is_valid, round_up, Arena, Os, HANDLE_MAGIC, ISIZE_MAX};

/// `C_ARENA_ABI_VERSION` of this library.
#[no_mangle]
pub extern "C" fn c_arena_abi_version() -> u32 {
    ABI_VERSION
}

// ------------------------------------------------------------------------ helpers

/// A handle from `c_arena_create`, as far as the magic number can tell.
unsafe fn is_handle(arena: *const Arena) -> bool {
    !arena.is_null() && (*arena).magic == HANDLE_MAGIC
}

/// Every getter: zero the out-parameter, refuse NULL or a foreign pointer.
unsafe fn begin<T>(arena: *const Arena, out: *mut T, zero: T) -> c_int {
    if !out.is_null() {
        *out = zero;
    }
    if is_handle(arena) && !out.is_null() {
        OK
    } else {
        INVALID_ARGUMENT
    }
}

/// The getters of state a freed arena no longer has refuse a tombstone as well.
unsafe fn begin_live(arena: *const Arena, out: *mut u64) -> c_int {
    let status = begin(arena, out, 0);
    if status != OK {
        return status;
    }
    if (*arena).alive {
        OK
    } else {
        USE_AFTER_FREE
    }
}

/// The footer at F: C_ARENA_FOOTER_MAGIC, then R, each as 8 little-endian bytes. F need
/// not be 8-aligned, so the bytes are copied.
unsafe fn write_footer(footer: u64, reservation: u64) {
    let dst = footer as usize as *mut u8;
    ptr::copy_nonoverlapping(FOOTER_MAGIC.to_le_bytes().as_ptr(), dst, 8);
    ptr::copy_nonoverlapping(reservation.to_le_bytes().as_ptr(), dst.wrapping_add(8), 8);
}

// ------------------------------------------------------------------------ creation

/// `c_arena_create`: reserve RESERVED_SIZE bytes, commit the first chunk at the top of the
/// container, write the footer. See c_arena.h for the checks and their order.
///
/// # Safety
///
/// `geometry` and `vm` must be NULL or point to a valid structure; `out` and `os_error`
/// NULL or writable; the table's functions and `vm_ctx` valid until `c_arena_destroy`.
#[no_mangle]
pub unsafe extern "C" fn c_arena_create(
    geometry: *const Geometry,
    min_align: u64,
    flags: u32,
    vm: *const Vm,
    vm_ctx: *mut c_void,
    out: *mut *mut Arena,
    os_error: *mut c_int,
) -> c_int {
    if !out.is_null() {
        *out = ptr::null_mut();
    }
    if !os_error.is_null() {
        *os_error = 0;
    }
    if out.is_null() || geometry.is_null() || flags & !POOL != 0 {
        return INVALID_ARGUMENT;
    }
    let g = *geometry;
    if !geometry_is_valid(&g) {
        return INVALID_ARGUMENT;
    }
    let (table, vm_ctx) = if vm.is_null() {
        match vm::DIRECT {
            Some(table) => (table, ptr::null_mut()),
            None => return INVALID_ARGUMENT,
        }
    } else {
        (*vm, vm_ctx)
    };
    let os = match (table.reserve, table.commit, table.release) {
        (Some(reserve), Some(commit), Some(release)) => Os {
            reserve,
            commit,
            release,
        },
        _ => return INVALID_ARGUMENT,
    };
    if !matches!(min_align, 1 | 2 | 4 | 8 | 16) {
        return INVALID_LAYOUT;
    }

    // The handle first: running out of heap must not leave a reservation behind. Allocated
    // as `Box::new` would (the global allocator, `Layout::new::<Arena>()`), so that
    // `c_arena_destroy` can take it back with `Box::from_raw`; but a failure is reported as
    // C_ARENA_OUT_OF_MEMORY instead of aborting the process.
    let layout = Layout::new::<Arena>();
    let handle = alloc::alloc(layout).cast::<Arena>();
    if handle.is_null() {
        return OUT_OF_MEMORY;
    }

    // geometry_is_valid bounds CONTAINER_SIZE by isize::MAX, so neither wraps.
    let container_size = round_up(g.block_size, g.page);
    let reserved_size = container_size.wrapping_add(g.container_align);

    let mut base: u64 = 0;
    let code = (os.reserve)(vm_ctx, reserved_size, &mut base);
    if code != 0 {
        alloc::dealloc(handle.cast::<u8>(), layout);
        if !os_error.is_null() {
            *os_error = code;
        }
        return RESERVE_FAILED;
    }
    let pool = flags & POOL != 0;
    let container = base.wrapping_add(base.wrapping_neg() & (g.container_align - 1));
    let footer = container.wrapping_add(g.block_size - g.footer_size);
    let reset_cursor = if pool {
        container.wrapping_add(g.block_size - g.footer_size - METADATA_BELOW_FOOTER)
    } else {
        footer
    };
    let container_end = container.wrapping_add(container_size);
    let start = container_end.wrapping_sub(g.first_commit);

    let code = (os.commit)(vm_ctx, start, g.first_commit);
    if code != 0 {
        // Nothing may stay reserved; if this release fails too, the commit's code is still
        // the one worth reporting: it is why creation failed.
        let _ = (os.release)(vm_ctx, base, reserved_size);
        alloc::dealloc(handle.cast::<u8>(), layout);
        if !os_error.is_null() {
            *os_error = code;
        }
        return COMMIT_FAILED;
    }

    write_footer(footer, base);

    handle.write(Arena {
        magic: HANDLE_MAGIC,
        alive: true,
        pool,
        last_os_error: 0,
        os,
        vm_ctx,
        page: g.page,
        min_align,
        reserved_size,
        container_size,
        reservation: base,
        container,
        container_end,
        footer,
        reset_cursor,
        start,
        cursor: reset_cursor,
    });
    *out = handle;
    OK
}

// ---------------------------------------------------------------------- allocation

/// `c_arena_alloc`: `size` bytes aligned on max(align, MIN_ALIGN), bumped down from P,
/// growing the commit by one VM commit when the committed chunk is too small.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_alloc(
    arena: *mut Arena,
    size: u64,
    align: u64,
    out_addr: *mut u64,
) -> c_int {
    if !out_addr.is_null() {
        *out_addr = 0;
    }
    if !is_handle(arena) || out_addr.is_null() {
        return INVALID_ARGUMENT;
    }
    let arena = &mut *arena;
    if !arena.alive {
        return USE_AFTER_FREE;
    }
    if !layout_is_valid(size, align) {
        return INVALID_LAYOUT;
    }
    let a = arena.effective_align(align);
    // Subtract, then round down; both wrap modulo 2^64, so a size larger than P wraps to a
    // huge p that the range checks below reject.
    let p = arena.cursor.wrapping_sub(size) & !a.wrapping_sub(1);
    if p.wrapping_sub(arena.start) <= ISIZE_MAX {
        arena.cursor = p;
        *out_addr = p;
        arena.after_alloc();
        return OK;
    }
    if p.wrapping_sub(arena.container) > ISIZE_MAX {
        return FULL;
    }
    // Here C <= p < S.
    let new_start = arena.grow_start(p);
    let code = (arena.os.commit)(arena.vm_ctx, new_start, arena.start.wrapping_sub(new_start));
    if code != 0 {
        arena.last_os_error = code;
        return COMMIT_FAILED;
    }
    arena.start = new_start;
    arena.cursor = p;
    *out_addr = p;
    arena.after_alloc();
    OK
}

/// `c_arena_reset`: P = F (pool: C + ACTIVE_SIZE). S is kept. No OS call.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_reset(arena: *mut Arena) -> c_int {
    if !is_handle(arena) {
        return INVALID_ARGUMENT;
    }
    let arena = &mut *arena;
    if !arena.alive {
        return USE_AFTER_FREE;
    }
    arena.cursor = arena.reset_cursor;
    OK
}

// ---------------------------------------------------------------------- free, destroy

/// `c_arena_free`: release(R, RESERVED_SIZE); the handle becomes a tombstone.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_free(arena: *mut Arena) -> c_int {
    if !is_handle(arena) {
        return INVALID_ARGUMENT;
    }
    let arena = &mut *arena;
    if !arena.alive {
        // No OS call: the range may already belong to another mapping.
        #[cfg(fault = "double_free_releases")]
        {
            // Seeded fault "double_free_releases": release it again all the same.
            let (base, size) = arena.release_range();
            let code = (arena.os.release)(arena.vm_ctx, base, size);
            if code != 0 {
                arena.last_os_error = code;
            }
        }
        return DOUBLE_FREE;
    }
    let (base, size) = arena.release_range();
    let code = (arena.os.release)(arena.vm_ctx, base, size);
    if code != 0 {
        arena.last_os_error = code;
        return RELEASE_FAILED;
    }
    arena.alive = false;
    OK
}

/// `c_arena_destroy`: free the handle, releasing a live arena first. NULL does nothing.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_destroy(arena: *mut Arena) -> c_int {
    if arena.is_null() {
        return OK;
    }
    if !is_handle(arena) {
        return INVALID_ARGUMENT;
    }
    if (*arena).alive {
        let status = c_arena_free(arena);
        if status != OK {
            return status;
        }
    }
    // Volatile, so that the store is not dropped as dead right before the deallocation.
    ptr::write_volatile(ptr::addr_of_mut!((*arena).magic), 0);
    drop(Box::from_raw(arena));
    OK
}

// ------------------------------------------------------------------------- getters

/// 1 until the arena is freed, then 0.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_alive(arena: *const Arena, out: *mut c_int) -> c_int {
    let status = begin(arena, out, 0);
    if status == OK {
        *out = (*arena).alive as c_int;
    }
    status
}

/// The code of the most recent failed VM call made for this arena after creation.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_last_os_error(arena: *const Arena, out: *mut c_int) -> c_int {
    let status = begin(arena, out, 0);
    if status == OK {
        *out = (*arena).last_os_error;
    }
    status
}

/// R, the base the VM's reserve returned. Answers on a tombstone.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_reservation(arena: *const Arena, out: *mut u64) -> c_int {
    let status = begin(arena, out, 0);
    if status == OK {
        *out = (*arena).reservation;
    }
    status
}

/// C. Answers on a tombstone.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_container(arena: *const Arena, out: *mut u64) -> c_int {
    let status = begin(arena, out, 0);
    if status == OK {
        *out = (*arena).container;
    }
    status
}

/// F = C + block_size - footer_size. Answers on a tombstone.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_footer(arena: *const Arena, out: *mut u64) -> c_int {
    let status = begin(arena, out, 0);
    if status == OK {
        *out = (*arena).footer;
    }
    status
}

/// S; C_ARENA_USE_AFTER_FREE on a tombstone.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_start(arena: *const Arena, out: *mut u64) -> c_int {
    let status = begin_live(arena, out);
    if status == OK {
        *out = (*arena).start;
    }
    status
}

/// P; C_ARENA_USE_AFTER_FREE on a tombstone.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_cursor(arena: *const Arena, out: *mut u64) -> c_int {
    let status = begin_live(arena, out);
    if status == OK {
        *out = (*arena).cursor;
    }
    status
}

/// C + CONTAINER_SIZE - S; C_ARENA_USE_AFTER_FREE on a tombstone.
///
/// # Safety
///
/// `arena` must be NULL or a handle from `c_arena_create` not yet destroyed (the magic
/// number catches some other pointers, not all); every other pointer NULL or valid for
/// what c_arena.h says is stored through it.
#[no_mangle]
pub unsafe extern "C" fn c_arena_committed_bytes(arena: *const Arena, out: *mut u64) -> c_int {
    let status = begin_live(arena, out);
    if status == OK {
        let arena = &*arena;
        *out = arena.container_end.wrapping_sub(arena.start);
    }
    status
}
