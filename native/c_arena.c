/*
 * c_arena.c - the fixed-size arena of c_arena.h: reserve, commit a first chunk at the top
 * of an aligned container, bump allocations down, grow the commit by doubling.
 *
 * Invariant between calls on a live arena: C <= S <= P <= F, S page-aligned, exactly
 * [S, C + CONTAINER_SIZE) committed, and every refused call changed nothing.
 */

/* glibc hides MAP_ANONYMOUS and MAP_NORESERVE under -std=c11 without this. */
#define _DEFAULT_SOURCE

#include "c_arena.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#if !defined(_WIN32)
#define C_ARENA_HAVE_MMAP 1
#include <sys/mman.h>
#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif
#if !defined(MAP_NORESERVE)
/* Where the flag does not exist, PROT_NONE mappings are not charged anyway. */
#define MAP_NORESERVE 0
#endif
#endif

/* Addresses travel as uint64_t and are cast to pointers only to touch memory; that cast
 * must lose nothing, and a 6 GiB reservation needs a 64-bit address space anyway. */
_Static_assert(sizeof(void *) == 8, "the arena needs 64-bit pointers");
_Static_assert(sizeof(uintptr_t) == sizeof(uint64_t), "uintptr_t must be 64 bits");

#define ISIZE_MAX UINT64_C(0x7FFFFFFFFFFFFFFF)
#define FOOTER_BYTES 16u
#define METADATA_BELOW_FOOTER (C_ARENA_TRANSFER_METADATA_SIZE + C_ARENA_POOL_METADATA_SIZE)

/* Distinguishes our handles from stray pointers; cleared before the handle is freed so
 * that a destroyed handle passed back in is caught as long as its memory is not reused. */
#define HANDLE_MAGIC UINT32_C(0xA4E7C0DE)

struct c_arena {
    uint32_t magic;
    int alive;
    int pool;
    int last_os_error;
    struct c_arena_vm vm;
    void *vm_ctx;
    uint64_t page;
    uint64_t min_align;
    uint64_t reserved_size;
    uint64_t container_size;
    uint64_t reservation;   /* R */
    uint64_t container;     /* C */
    uint64_t container_end; /* C + CONTAINER_SIZE */
    uint64_t footer;        /* F */
    uint64_t reset_cursor;  /* F, or C + ACTIVE_SIZE for a pool arena */
    uint64_t start;         /* S */
    uint64_t cursor;        /* P */
};

uint32_t c_arena_abi_version(void) { return C_ARENA_ABI_VERSION; }

/* ------------------------------------------------------------ the built-in POSIX VM */

#if defined(C_ARENA_HAVE_MMAP)

/* A failed call must never report 0, which the arena would take for success. */
static int errno_code(void) { return errno != 0 ? errno : EIO; }

static int direct_reserve(void *ctx, uint64_t size, uint64_t *base) {
    (void)ctx;
    void *p = mmap(NULL, (size_t)size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
        return errno_code();
    }
    *base = (uint64_t)(uintptr_t)p;
    return 0;
}

static int direct_commit(void *ctx, uint64_t addr, uint64_t size) {
    (void)ctx;
    return mprotect((void *)(uintptr_t)addr, (size_t)size, PROT_READ | PROT_WRITE) == 0
               ? 0
               : errno_code();
}

static int direct_decommit(void *ctx, uint64_t addr, uint64_t size) {
    (void)ctx;
    /* A fresh PROT_NONE NORESERVE mapping drops the pages and their charge alike. */
    void *p = mmap((void *)(uintptr_t)addr, (size_t)size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? errno_code() : 0;
}

static int direct_release(void *ctx, uint64_t addr, uint64_t size) {
    (void)ctx;
    return munmap((void *)(uintptr_t)addr, (size_t)size) == 0 ? 0 : errno_code();
}

static const struct c_arena_vm DIRECT_VM = {
    direct_reserve,
    direct_commit,
    direct_decommit,
    direct_release,
};

#endif

/* ----------------------------------------------------------------------- helpers */

static int is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

static int is_handle(const struct c_arena *arena) {
    return arena != NULL && arena->magic == HANDLE_MAGIC;
}

/* The geometry rules of c_arena.h, without any step that could overflow. */
static int geometry_is_valid(const struct c_arena_geometry *g) {
    if (!is_power_of_two(g->page) || !is_power_of_two(g->container_align) ||
        g->container_align < g->page) {
        return 0;
    }
    if (g->footer_size < FOOTER_BYTES || g->footer_size > ISIZE_MAX ||
        g->block_size <= g->footer_size + METADATA_BELOW_FOOTER) {
        return 0;
    }
    if (g->block_size > ISIZE_MAX - (g->page - 1)) {
        return 0;
    }
    uint64_t container_size = (g->block_size + g->page - 1) & ~(g->page - 1);
    /* container_align may be 2^63, the one power of two above ISIZE_MAX: tested first,
     * so that the bound never wraps. */
    if (g->container_align > ISIZE_MAX || container_size > ISIZE_MAX - g->container_align) {
        return 0;
    }
    if (g->first_commit == 0 || g->first_commit % g->page != 0 ||
        g->first_commit > container_size) {
        return 0;
    }
    /* The first commit must hold the footer: S0 <= F. */
    return container_size - g->first_commit <= g->block_size - g->footer_size;
}

static void store_le64(unsigned char *dst, uint64_t value) {
    for (unsigned i = 0; i < 8; i++) {
        dst[i] = (unsigned char)(value >> (8 * i));
    }
}

/* Rust's Layout::from_size_align: align a power of two (<= 2^63 holds for any power of
 * two in a uint64_t), and size rounded up to align at most isize::MAX. The bound is
 * written as isize::MAX - (align - 1), the largest multiple of align that fits, so the
 * rounding itself can never overflow. */
static int layout_is_valid(uint64_t size, uint64_t align) {
    return is_power_of_two(align) && size <= ISIZE_MAX - (align - 1);
}

#if defined(ARENACHECK_FAULT_WRITE_BELOW_START)
/* A seeded bug, built only into a separate library for the harness's own tests: a store to
 * the byte just below S, which is reserved but never committed, so the process faults.
 * Only when that byte lies in the arena's own reservation: below R it could belong to
 * another mapping, and the store would corrupt it instead of faulting. */
static void fault_write_below_start(const struct c_arena *arena) {
    if (arena->start > arena->reservation) {
        *(volatile unsigned char *)(uintptr_t)(arena->start - 1) = 0;
    }
}
#else
static void fault_write_below_start(const struct c_arena *arena) { (void)arena; }
#endif

/* -------------------------------------------------------------------- creation */

int c_arena_create(const struct c_arena_geometry *geometry, uint64_t min_align, uint32_t flags,
                   const struct c_arena_vm *vm, void *vm_ctx, struct c_arena **out,
                   int *os_error) {
    if (out != NULL) {
        *out = NULL;
    }
    if (os_error != NULL) {
        *os_error = 0;
    }
    if (out == NULL || geometry == NULL || (flags & ~C_ARENA_POOL) != 0) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    if (!geometry_is_valid(geometry)) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    if (vm == NULL) {
#if defined(C_ARENA_HAVE_MMAP)
        vm = &DIRECT_VM;
        vm_ctx = NULL;
#else
        return C_ARENA_INVALID_ARGUMENT;
#endif
    } else if (vm->reserve == NULL || vm->commit == NULL || vm->release == NULL) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    if (min_align != 1 && min_align != 2 && min_align != 4 && min_align != 8 &&
        min_align != 16) {
        return C_ARENA_INVALID_LAYOUT;
    }

    /* The handle first: running out of heap must not leave a reservation behind. */
    struct c_arena *arena = malloc(sizeof *arena);
    if (arena == NULL) {
        return C_ARENA_OUT_OF_MEMORY;
    }
    arena->vm = *vm;
    arena->vm_ctx = vm_ctx;
    arena->page = geometry->page;
    arena->min_align = min_align;
    arena->pool = (flags & C_ARENA_POOL) != 0;
    arena->last_os_error = 0;
    arena->container_size = (geometry->block_size + geometry->page - 1) & ~(geometry->page - 1);
    arena->reserved_size = arena->container_size + geometry->container_align;

    uint64_t base = 0;
    int code = arena->vm.reserve(arena->vm_ctx, arena->reserved_size, &base);
    if (code != 0) {
        free(arena);
        if (os_error != NULL) {
            *os_error = code;
        }
        return C_ARENA_RESERVE_FAILED;
    }
    arena->reservation = base;
    arena->container = base + ((0 - base) & (geometry->container_align - 1));
    arena->container_end = arena->container + arena->container_size;
    arena->footer = arena->container + geometry->block_size - geometry->footer_size;
    arena->reset_cursor =
        arena->pool ? arena->container + geometry->block_size - geometry->footer_size -
                          METADATA_BELOW_FOOTER
                    : arena->footer;
    arena->start = arena->container_end - geometry->first_commit;
    arena->cursor = arena->reset_cursor;

    code = arena->vm.commit(arena->vm_ctx, arena->start, geometry->first_commit);
    if (code != 0) {
        /* Nothing may stay reserved; if this release fails too, the commit's code is
         * still the one worth reporting: it is why creation failed. */
        (void)arena->vm.release(arena->vm_ctx, arena->reservation, arena->reserved_size);
        free(arena);
        if (os_error != NULL) {
            *os_error = code;
        }
        return C_ARENA_COMMIT_FAILED;
    }

    /* The footer makes corruption detectable: the magic, then R. Byte by byte so the
     * content is little-endian on any host, as impl/arena.py packs it. */
    unsigned char *footer = (unsigned char *)(uintptr_t)arena->footer;
    store_le64(footer, C_ARENA_FOOTER_MAGIC);
    store_le64(footer + 8, arena->reservation);

    arena->alive = 1;
    arena->magic = HANDLE_MAGIC;
    *out = arena;
    return C_ARENA_OK;
}

/* ------------------------------------------------------------------ allocation */

int c_arena_alloc(struct c_arena *arena, uint64_t size, uint64_t align, uint64_t *out_addr) {
    if (out_addr != NULL) {
        *out_addr = 0;
    }
    if (!is_handle(arena) || out_addr == NULL) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    if (!arena->alive) {
        return C_ARENA_USE_AFTER_FREE;
    }
    if (!layout_is_valid(size, align)) {
        return C_ARENA_INVALID_LAYOUT;
    }
    uint64_t a = align > arena->min_align ? align : arena->min_align;
    /* Subtract, then round down; both wrap modulo 2^64 exactly as in the Rust original, so
     * a size larger than P wraps to a huge p that the range checks below reject. */
    uint64_t p = (arena->cursor - size) & ~(a - 1);
    if (p - arena->start <= ISIZE_MAX) {
        arena->cursor = p;
        *out_addr = p;
        fault_write_below_start(arena);
        return C_ARENA_OK;
    }
    if (p - arena->container > ISIZE_MAX) {
        return C_ARENA_FULL;
    }
    /* Here C <= p < S. Double the committed size, capped at the container, or more if the
     * allocation needs more. max(S - committed, C) is taken without forming S - committed
     * when it would fall below C (it could wrap below 0). */
    uint64_t committed = arena->container_end - arena->start;
    uint64_t doubled = arena->start - arena->container >= committed ? arena->start - committed
                                                                    : arena->container;
    uint64_t needed = p & ~(arena->page - 1);
    uint64_t new_start = doubled < needed ? doubled : needed;
    int code = arena->vm.commit(arena->vm_ctx, new_start, arena->start - new_start);
    if (code != 0) {
        arena->last_os_error = code;
        return C_ARENA_COMMIT_FAILED;
    }
    arena->start = new_start;
    arena->cursor = p;
    *out_addr = p;
    fault_write_below_start(arena);
    return C_ARENA_OK;
}

int c_arena_reset(struct c_arena *arena) {
    if (!is_handle(arena)) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    if (!arena->alive) {
        return C_ARENA_USE_AFTER_FREE;
    }
    arena->cursor = arena->reset_cursor;
    return C_ARENA_OK;
}

/* ------------------------------------------------------------------- free, destroy */

int c_arena_free(struct c_arena *arena) {
    if (!is_handle(arena)) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    if (!arena->alive) {
        /* No OS call: the range may already belong to another mapping. */
        return C_ARENA_DOUBLE_FREE;
    }
    int code = arena->vm.release(arena->vm_ctx, arena->reservation, arena->reserved_size);
    if (code != 0) {
        arena->last_os_error = code;
        return C_ARENA_RELEASE_FAILED;
    }
    arena->alive = 0;
    return C_ARENA_OK;
}

int c_arena_destroy(struct c_arena *arena) {
    if (arena == NULL) {
        return C_ARENA_OK;
    }
    if (!is_handle(arena)) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    if (arena->alive) {
        int status = c_arena_free(arena);
        if (status != C_ARENA_OK) {
            return status;
        }
    }
    arena->magic = 0;
    free(arena);
    return C_ARENA_OK;
}

/* ------------------------------------------------------------------------ getters */

int c_arena_alive(const struct c_arena *arena, int *out) {
    if (out != NULL) {
        *out = 0;
    }
    if (!is_handle(arena) || out == NULL) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    *out = arena->alive;
    return C_ARENA_OK;
}

int c_arena_last_os_error(const struct c_arena *arena, int *out) {
    if (out != NULL) {
        *out = 0;
    }
    if (!is_handle(arena) || out == NULL) {
        return C_ARENA_INVALID_ARGUMENT;
    }
    *out = arena->last_os_error;
    return C_ARENA_OK;
}

/* Every getter: zero the out-parameter, refuse NULL or a foreign pointer. */
static int begin(const struct c_arena *arena, uint64_t *out) {
    if (out != NULL) {
        *out = 0;
    }
    return is_handle(arena) && out != NULL ? C_ARENA_OK : C_ARENA_INVALID_ARGUMENT;
}

/* The getters of state a freed arena no longer has refuse a tombstone as well. */
static int begin_live(const struct c_arena *arena, uint64_t *out) {
    int status = begin(arena, out);
    if (status != C_ARENA_OK) {
        return status;
    }
    return arena->alive ? C_ARENA_OK : C_ARENA_USE_AFTER_FREE;
}

int c_arena_reservation(const struct c_arena *arena, uint64_t *out) {
    int status = begin(arena, out);
    if (status == C_ARENA_OK) {
        *out = arena->reservation;
    }
    return status;
}

int c_arena_container(const struct c_arena *arena, uint64_t *out) {
    int status = begin(arena, out);
    if (status == C_ARENA_OK) {
        *out = arena->container;
    }
    return status;
}

int c_arena_footer(const struct c_arena *arena, uint64_t *out) {
    int status = begin(arena, out);
    if (status == C_ARENA_OK) {
        *out = arena->footer;
    }
    return status;
}

int c_arena_start(const struct c_arena *arena, uint64_t *out) {
    int status = begin_live(arena, out);
    if (status == C_ARENA_OK) {
        *out = arena->start;
    }
    return status;
}

int c_arena_cursor(const struct c_arena *arena, uint64_t *out) {
    int status = begin_live(arena, out);
    if (status == C_ARENA_OK) {
        *out = arena->cursor;
    }
    return status;
}

int c_arena_committed_bytes(const struct c_arena *arena, uint64_t *out) {
    int status = begin_live(arena, out);
    if (status == C_ARENA_OK) {
        *out = arena->container_end - arena->start;
    }
    return status;
}
