/*
 * c_arena.h - the C ABI of the native fixed-size arena.
 *
 * The same algorithm as impl/arena.py (docs/ARENA.md sections 2 and 3): a reservation of
 * RESERVED_SIZE bytes holds a container aligned on CONTAINER_ALIGN; the committed region
 * [S, C + CONTAINER_SIZE) starts as the top FIRST_COMMIT bytes and grows down by doubling,
 * capped at the container; allocations bump a cursor P down from the footer F.
 *
 * Any library exporting these functions with these meanings can stand in for this one:
 * the harness loads it with ctypes and model-checks it exactly like the Python arena.
 *
 * Conventions
 * -----------
 * - Every function but c_arena_abi_version returns an int status, one of enum
 *   c_arena_status, and delivers values through out-parameters. On any status other than
 *   C_ARENA_OK, the result out-parameters are set to 0 / NULL where the pointer itself is
 *   valid (c_arena_create's os_error, which explains a failure, aside), and the arena is
 *   exactly as it was before the call (a failed free leaves the arena alive; nothing fails
 *   half-way).
 * - Addresses and sizes are uint64_t. All address arithmetic is 64-bit and wraps modulo
 *   2^64, as in the Rust original; the ABI needs a 64-bit address space (a 6 GiB
 *   reservation would not fit in less).
 * - NULL where a pointer is required returns C_ARENA_INVALID_ARGUMENT and does nothing.
 *   A pointer that is not a handle from c_arena_create, or a handle already passed to
 *   c_arena_destroy, is undefined behaviour: the library checks a magic number to catch
 *   some such mistakes, but cannot catch them all.
 * - Not thread-safe: one arena must not be used by two threads at once. Different arenas
 *   are independent.
 *
 * Lifetime of a handle
 * --------------------
 *   c_arena_create  -> live handle (reservation held, first chunk committed, footer written)
 *   c_arena_free    -> the reservation is released; the handle stays allocated as a
 *                      tombstone, so that misuse is refused instead of being undefined:
 *                      a second c_arena_free returns C_ARENA_DOUBLE_FREE and every other
 *                      operation returns C_ARENA_USE_AFTER_FREE, both without any OS call
 *                      (the released range may already belong to another mapping).
 *   c_arena_destroy -> frees the handle itself (after releasing the reservation if the arena
 *                      is still live). The handle must not be used afterwards.
 * The identity getters (c_arena_reservation, c_arena_container, c_arena_footer,
 * c_arena_alive, c_arena_last_os_error) keep answering on a tombstone: they describe
 * where the arena was, not memory it still owns.
 */
#ifndef ARENACHECK_C_ARENA_H
#define ARENACHECK_C_ARENA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to the declarations below. */
#define C_ARENA_ABI_VERSION 1u

/* The first 8 bytes of the footer (little-endian); the next 8 hold R. */
#define C_ARENA_FOOTER_MAGIC UINT64_C(0xA4E7A4E7F007E400)

/* Bytes of a pool arena's block between its allocatable bytes and the footer:
 * 16 bytes of transfer metadata, then 8 bytes of pool metadata (docs/ARENA.md section 1). */
#define C_ARENA_TRANSFER_METADATA_SIZE 16u
#define C_ARENA_POOL_METADATA_SIZE 8u

/* Flags for c_arena_create. */
#define C_ARENA_POOL 1u /* a pool arena: P starts and resets at C + ACTIVE_SIZE, not at F */

enum c_arena_status {
    C_ARENA_OK = 0,
    /* alloc: the allocation does not fit even with the whole container committed. */
    C_ARENA_FULL = 1,
    /* alloc: (size, align) is not a Rust Layout: align must be a power of two <= 2^63 and
     * size rounded up to align must be <= 2^63 - 1. create: min_align is not 1, 2, 4, 8
     * or 16. */
    C_ARENA_INVALID_LAYOUT = 2,
    /* A NULL pointer where one is required, an unknown flag, an inconsistent geometry, a
     * VM table missing a required function, or a handle whose magic number is wrong. */
    C_ARENA_INVALID_ARGUMENT = 3,
    /* create: the VM's reserve failed; *os_error holds its code. Nothing is held. */
    C_ARENA_RESERVE_FAILED = 4,
    /* create: the first commit failed; the reservation was released again and *os_error
     * holds the commit's code. alloc: the grow's commit failed; the arena is unchanged
     * (the caller may treat this as "full"); c_arena_last_os_error has the code. */
    C_ARENA_COMMIT_FAILED = 5,
    /* free or destroy: the VM's release failed; the arena is still live and may be freed
     * again; c_arena_last_os_error has the code. */
    C_ARENA_RELEASE_FAILED = 6,
    /* free on an arena already freed. No OS call was made. */
    C_ARENA_DOUBLE_FREE = 7,
    /* alloc, reset, start, cursor or committed_bytes on a freed arena. No OS call. */
    C_ARENA_USE_AFTER_FREE = 8,
    /* create: the handle itself could not be allocated (malloc). Nothing is held. */
    C_ARENA_OUT_OF_MEMORY = 9
};

/*
 * The geometry (docs/ARENA.md section 1), fixed at creation. Derived sizes:
 *   CONTAINER_SIZE = block_size rounded up to page
 *   RESERVED_SIZE  = CONTAINER_SIZE + container_align
 *   F - C          = block_size - footer_size
 *   ACTIVE_SIZE    = block_size - footer_size - 24  (pool arenas' allocatable bytes)
 * Accepted only when: page and container_align are powers of two with
 * container_align >= page; footer_size >= 16 (the footer written at F is 16 bytes);
 * block_size > footer_size + 24; first_commit is a positive multiple of page, at most
 * CONTAINER_SIZE, and reaches down to F (CONTAINER_SIZE - first_commit <= F - C);
 * RESERVED_SIZE <= 2^63 - 1 (no Rust allocation is larger). Otherwise
 * C_ARENA_INVALID_ARGUMENT.
 */
struct c_arena_geometry {
    uint64_t page;            /* commit granularity (the OS page size) */
    uint64_t container_align; /* alignment of the container C */
    uint64_t block_size;      /* the arena's block, footer included */
    uint64_t first_commit;    /* bytes committed at creation, at the top of the container */
    uint64_t footer_size;     /* bytes at the top of the block that belong to the footer */
};

/*
 * The virtual-memory calls the arena makes, supplied by the caller. Each returns 0 on
 * success and a non-zero code on failure (an errno on POSIX, a last error on Windows; the
 * arena only passes it on). ctx is the vm_ctx given to c_arena_create, passed back as is.
 *   reserve(ctx, size, &base): reserve size bytes anywhere, inaccessible; store the base.
 *   commit(ctx, addr, size):   make [addr, addr + size) of a reservation read-write.
 *   decommit(ctx, addr, size): return [addr, addr + size) to reserved. This arena never
 *                              calls it (its commit only grows) and it may be NULL; it is
 *                              part of the table so that an arena which shrinks its commit
 *                              reports that through the same seam.
 *   release(ctx, base, size):  give the whole reservation back (base as reserve stored it,
 *                              size as reserve was asked for).
 * The arena calls reserve, commit and release with page-aligned addresses and non-zero
 * page-multiple sizes, and never from inside another VM call. The table is copied at
 * creation; the functions and ctx must stay valid until c_arena_destroy.
 */
struct c_arena_vm {
    int (*reserve)(void *ctx, uint64_t size, uint64_t *base);
    int (*commit)(void *ctx, uint64_t addr, uint64_t size);
    int (*decommit)(void *ctx, uint64_t addr, uint64_t size);
    int (*release)(void *ctx, uint64_t addr, uint64_t size);
};

struct c_arena; /* opaque */

/* C_ARENA_ABI_VERSION of the library actually loaded. */
uint32_t c_arena_abi_version(void);

/*
 * Create an arena (docs/ARENA.md 3 "new()"): reserve RESERVED_SIZE bytes, compute
 * C = R + ((-R) mod container_align), commit [S0, S0 + first_commit) with
 * S0 = C + CONTAINER_SIZE - first_commit, set P = F (pool: C + ACTIVE_SIZE), and write the
 * footer at F: C_ARENA_FOOTER_MAGIC then R, each as 8 little-endian bytes.
 *
 * vm == NULL selects the library's built-in calls (vm_ctx is ignored). On POSIX:
 * mmap(PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE) to reserve,
 * mprotect(PROT_READ|PROT_WRITE) to commit, munmap to release, the codes being errno
 * values. On Windows: VirtualAlloc(MEM_RESERVE, PAGE_NOACCESS) to reserve,
 * VirtualAlloc(MEM_COMMIT, PAGE_READWRITE) to commit, VirtualFree(base, 0, MEM_RELEASE)
 * to release, the codes being GetLastError values. Where the library was built without
 * built-in calls (c_arena.c on Windows), vm == NULL is C_ARENA_INVALID_ARGUMENT. A
 * non-NULL vm must have reserve, commit and release.
 *
 * min_align: 1, 2, 4, 8 or 16 (else C_ARENA_INVALID_LAYOUT). flags: 0 or C_ARENA_POOL.
 * out: receives the handle (owned by the caller; give it back with c_arena_destroy).
 * os_error: may be NULL; receives the VM's code on C_ARENA_RESERVE_FAILED or
 * C_ARENA_COMMIT_FAILED, else 0.
 * Returns C_ARENA_OK, C_ARENA_INVALID_ARGUMENT, C_ARENA_INVALID_LAYOUT,
 * C_ARENA_OUT_OF_MEMORY, C_ARENA_RESERVE_FAILED or C_ARENA_COMMIT_FAILED. On failure
 * nothing stays reserved, except when the release that undoes a failed first commit fails
 * too: that reservation cannot be given back, and the status still reports the commit.
 */
int c_arena_create(const struct c_arena_geometry *geometry, uint64_t min_align, uint32_t flags,
                   const struct c_arena_vm *vm, void *vm_ctx, struct c_arena **out,
                   int *os_error);

/*
 * Allocate size bytes aligned on max(align, min_align) (docs/ARENA.md 3 "alloc"):
 *   p = (P - size) & ~(a - 1), wrapping; if p - S <= 2^63 - 1 it fits: P = p.
 *   Else, if p - C > 2^63 - 1: C_ARENA_FULL. Else grow: commit [new_S, S) with
 *   new_S = min(max(S - committed, C), p rounded down to page), then S = new_S, P = p.
 * out_addr: receives p (0 on failure).
 * Checked in this order: a NULL arena or out_addr (C_ARENA_INVALID_ARGUMENT), a freed
 * arena (C_ARENA_USE_AFTER_FREE, even for a bad layout), the layout
 * (C_ARENA_INVALID_LAYOUT); then C_ARENA_OK, C_ARENA_FULL or C_ARENA_COMMIT_FAILED.
 * Only a grow makes an OS call, exactly one commit.
 */
int c_arena_alloc(struct c_arena *arena, uint64_t size, uint64_t align, uint64_t *out_addr);

/* Forget every allocation: P = F (pool: C + ACTIVE_SIZE). S is kept, memory not zeroed.
 * Returns C_ARENA_OK, C_ARENA_USE_AFTER_FREE or C_ARENA_INVALID_ARGUMENT. No OS call. */
int c_arena_reset(struct c_arena *arena);

/* Release the whole reservation: release(R, RESERVED_SIZE). The handle becomes a
 * tombstone (see above). Returns C_ARENA_OK, C_ARENA_RELEASE_FAILED (still live),
 * C_ARENA_DOUBLE_FREE (no OS call) or C_ARENA_INVALID_ARGUMENT. */
int c_arena_free(struct c_arena *arena);

/* Free the handle. A live arena is released first; if that fails, C_ARENA_RELEASE_FAILED
 * is returned and the handle is kept (still live). NULL is accepted and does nothing, as
 * with free(NULL). Returns C_ARENA_OK, C_ARENA_RELEASE_FAILED or C_ARENA_INVALID_ARGUMENT. */
int c_arena_destroy(struct c_arena *arena);

/*
 * Getters. Each stores one value in *out and returns C_ARENA_OK, or returns
 * C_ARENA_INVALID_ARGUMENT for a NULL arena or out.
 *   alive           1 until the arena is freed, then 0.
 *   reservation     R, the base the VM's reserve returned.
 *   container       C.
 *   footer          F = C + block_size - footer_size.
 *   start           S; C_ARENA_USE_AFTER_FREE on a freed arena.
 *   cursor          P; C_ARENA_USE_AFTER_FREE on a freed arena.
 *   committed_bytes C + CONTAINER_SIZE - S; C_ARENA_USE_AFTER_FREE on a freed arena.
 *   last_os_error   the code of the most recent failed VM call made for this arena after
 *                   creation (a grow's commit, a release), 0 if none failed.
 */
int c_arena_alive(const struct c_arena *arena, int *out);
int c_arena_reservation(const struct c_arena *arena, uint64_t *out);
int c_arena_container(const struct c_arena *arena, uint64_t *out);
int c_arena_footer(const struct c_arena *arena, uint64_t *out);
int c_arena_start(const struct c_arena *arena, uint64_t *out);
int c_arena_cursor(const struct c_arena *arena, uint64_t *out);
int c_arena_committed_bytes(const struct c_arena *arena, uint64_t *out);
int c_arena_last_os_error(const struct c_arena *arena, int *out);

#ifdef __cplusplus
}
#endif

#endif /* ARENACHECK_C_ARENA_H */
