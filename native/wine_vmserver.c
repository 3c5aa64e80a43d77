/*
 * wine_vmserver: kernel32's virtual-memory calls, served over stdin/stdout.
 *
 * Runs under Wine (built with x86_64-w64-mingw32-gcc) so that the Python harness can
 * hold Wine's VirtualAlloc, VirtualAlloc2, VirtualFree, VirtualProtect, VirtualQuery and
 * GetSystemInfo to the same model as real Windows. The memory those calls manage lives in this process, so reads
 * and writes of it are requests too.
 *
 * Protocol, all little-endian, one request answered by one response, in order:
 *
 *   request  (48 bytes): u32 op, u32 last_error, u64 arg[4], u32 payload_len, u32 zero,
 *                        then payload_len bytes
 *   response (16 bytes): u64 value, u32 last_error, u32 payload_len,
 *                        then payload_len bytes
 *
 * ``last_error`` in a request is the caller's private last-error value: it is installed
 * with SetLastError immediately before the kernel32 call, and the response carries
 * GetLastError() read immediately after it. That is what ctypes does for a function
 * loaded with use_last_error=True, so a successful call that leaves the last error alone
 * hands the caller's sentinel back unchanged, exactly as on Windows.
 *
 * VirtualAlloc2 (looked up in KernelBase, where Windows exports it) takes its process
 * handle and extended parameters as payload: u64 process, u32 count, u32 array_present,
 * then count entries of u64 type, u64 value, u64 lowest, u64 highest, u64 alignment,
 * u64 has_requirements. An entry with has_requirements points at a MEM_ADDRESS_REQUIREMENTS
 * built from its three fields; any other carries value in its union. VirtualProtect takes
 * the caller's DWORD as a 4-byte payload (absent: lpflOldProtect NULL) and sends it back.
 *
 * Reads and writes check with VirtualQuery that every page is committed and accessible
 * before touching it, and refuse (value 0, payload: the first offending page, its state
 * and protection) instead of faulting: a harness bug then fails one assertion rather
 * than killing the server and every test after it.
 */

#include <windows.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PROTOCOL_MAGIC 0x31534d56u /* "VMS1": protocol version 1 */
#define MAX_PAYLOAD (1u << 20)
#define SYSTEM_BUFFER_SIZE 48u

enum op {
    OP_HELLO = 0,
    OP_VIRTUAL_ALLOC = 1,
    OP_VIRTUAL_FREE = 2,
    OP_VIRTUAL_QUERY = 3,
    OP_GET_SYSTEM_INFO = 4,
    OP_READ = 5,
    OP_WRITE = 6,
    OP_EXIT = 7,
    OP_WINE_VERSION = 8,
    OP_VIRTUAL_PROTECT = 9,
    OP_VIRTUAL_ALLOC2 = 10,
};

#define MAX_EXTENDED 8

struct wire_extended {
    uint64_t type;
    uint64_t value;
    uint64_t lowest;
    uint64_t highest;
    uint64_t alignment;
    uint64_t has_requirements;
};

struct wire_alloc2 {
    uint64_t process;
    uint32_t count;
    uint32_t array_present;
};

/* The SDK's layouts, spelled out so that an older mingw-w64 header builds this too. */
struct address_requirements {
    void *lowest;
    void *highest;
    SIZE_T alignment;
};

struct extended_parameter {
    uint64_t type;
    uint64_t value;
};

typedef PVOID(WINAPI *virtual_alloc2_fn)(HANDLE, PVOID, SIZE_T, ULONG, ULONG,
                                         struct extended_parameter *, ULONG);

#pragma pack(push, 1)
struct request {
    uint32_t op;
    uint32_t last_error;
    uint64_t arg[4];
    uint32_t payload_len;
    uint32_t zero;
};

struct response {
    uint64_t value;
    uint32_t last_error;
    uint32_t payload_len;
};

struct refusal {
    uint64_t page;
    uint32_t state;
    uint32_t protect;
};
#pragma pack(pop)

_Static_assert(sizeof(struct request) == 48, "request header is 48 bytes");
_Static_assert(sizeof(struct response) == 16, "response header is 16 bytes");
_Static_assert(sizeof(MEMORY_BASIC_INFORMATION) == SYSTEM_BUFFER_SIZE, "x64 layout");
_Static_assert(sizeof(SYSTEM_INFO) == SYSTEM_BUFFER_SIZE, "x64 layout");
_Static_assert(sizeof(struct wire_extended) == 48, "wire entry is 48 bytes");
_Static_assert(sizeof(struct extended_parameter) == 16, "MEM_EXTENDED_PARAMETER is 16 bytes");
_Static_assert(sizeof(struct address_requirements) == 24, "MEM_ADDRESS_REQUIREMENTS is 24");

static HANDLE in_handle;
static HANDLE out_handle;
static unsigned char payload[MAX_PAYLOAD];
static unsigned char reply[sizeof(struct response) + MAX_PAYLOAD];

static void die(const char *what, DWORD code)
{
    fprintf(stderr, "wine_vmserver: %s (code %lu)\n", what, (unsigned long)code);
    fflush(stderr);
    ExitProcess(2);
}

static LONG WINAPI on_crash(EXCEPTION_POINTERS *info)
{
    EXCEPTION_RECORD *rec = info->ExceptionRecord;
    fprintf(stderr, "wine_vmserver: unhandled exception %#lx at %p",
            (unsigned long)rec->ExceptionCode, rec->ExceptionAddress);
    if (rec->NumberParameters >= 2)
        fprintf(stderr, " (access %llu at %#llx)", (unsigned long long)rec->ExceptionInformation[0],
                (unsigned long long)rec->ExceptionInformation[1]);
    fprintf(stderr, "\n");
    fflush(stderr);
    ExitProcess(3);
    return EXCEPTION_EXECUTE_HANDLER;
}

/* Fills buf completely; false on a clean end of input before the first byte. */
static BOOL read_exact(void *buf, DWORD len)
{
    DWORD done = 0;
    while (done < len) {
        DWORD got = 0;
        if (!ReadFile(in_handle, (unsigned char *)buf + done, len - done, &got, NULL)) {
            DWORD err = GetLastError();
            if (err == ERROR_BROKEN_PIPE && done == 0)
                return FALSE;
            die("reading a request failed", err);
        }
        if (got == 0) {
            if (done == 0)
                return FALSE;
            die("input ended inside a request", 0);
        }
        done += got;
    }
    return TRUE;
}

static void write_exact(const void *buf, DWORD len)
{
    DWORD done = 0;
    while (done < len) {
        DWORD put = 0;
        if (!WriteFile(out_handle, (const unsigned char *)buf + done, len - done, &put, NULL))
            die("writing a response failed", GetLastError());
        done += put;
    }
}

static void respond(uint64_t value, uint32_t last_error, const void *data, uint32_t len)
{
    struct response head = {value, last_error, len};
    memcpy(reply, &head, sizeof head);
    if (len)
        memcpy(reply + sizeof head, data, len);
    write_exact(reply, (DWORD)(sizeof head + len));
}

static BOOL readable(DWORD protect)
{
    switch (protect) {
    case PAGE_READONLY:
    case PAGE_READWRITE:
    case PAGE_EXECUTE_READ:
    case PAGE_EXECUTE_READWRITE:
        return TRUE;
    default:
        return FALSE;
    }
}

static BOOL writable(DWORD protect)
{
    return protect == PAGE_READWRITE || protect == PAGE_EXECUTE_READWRITE;
}

/*
 * Whether every page of [addr, addr + len) is committed with a protection that allows
 * the access and no guard bit (touching a guard page would change its state). On
 * refusal, *why describes the first page that fails.
 */
static BOOL accessible(uint64_t addr, uint64_t len, BOOL write, struct refusal *why)
{
    uint64_t end = addr + len;
    uint64_t at = addr;
    if (end < addr) {
        why->page = addr;
        why->state = 0;
        why->protect = 0;
        return FALSE;
    }
    while (at < end) {
        MEMORY_BASIC_INFORMATION mbi;
        if (VirtualQuery((LPCVOID)(uintptr_t)at, &mbi, sizeof mbi) != sizeof mbi) {
            why->page = at & ~(uint64_t)0xfff;
            why->state = 0;
            why->protect = 0;
            return FALSE;
        }
        if (mbi.State != MEM_COMMIT || (write ? !writable(mbi.Protect) : !readable(mbi.Protect))) {
            why->page = (uint64_t)(uintptr_t)mbi.BaseAddress;
            why->state = mbi.State;
            why->protect = mbi.Protect;
            return FALSE;
        }
        at = (uint64_t)(uintptr_t)mbi.BaseAddress + mbi.RegionSize;
    }
    return TRUE;
}

int main(void)
{
    struct request req;

    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
    SetUnhandledExceptionFilter(on_crash);
    in_handle = GetStdHandle(STD_INPUT_HANDLE);
    out_handle = GetStdHandle(STD_OUTPUT_HANDLE);
    if (in_handle == INVALID_HANDLE_VALUE || out_handle == INVALID_HANDLE_VALUE)
        die("no standard handles", GetLastError());

    while (read_exact(&req, sizeof req)) {
        if (req.payload_len > MAX_PAYLOAD || req.zero != 0)
            die("malformed request header", req.op);
        if (req.payload_len && !read_exact(payload, req.payload_len))
            die("input ended inside a payload", req.op);

        switch (req.op) {
        case OP_HELLO:
            respond(PROTOCOL_MAGIC, req.last_error, NULL, 0);
            break;

        case OP_VIRTUAL_ALLOC: {
            LPVOID ret;
            DWORD err;
            SetLastError(req.last_error);
            ret = VirtualAlloc((LPVOID)(uintptr_t)req.arg[0], (SIZE_T)req.arg[1],
                               (DWORD)req.arg[2], (DWORD)req.arg[3]);
            err = GetLastError();
            respond((uint64_t)(uintptr_t)ret, err, NULL, 0);
            break;
        }

        case OP_VIRTUAL_FREE: {
            BOOL ret;
            DWORD err;
            SetLastError(req.last_error);
            ret = VirtualFree((LPVOID)(uintptr_t)req.arg[0], (SIZE_T)req.arg[1], (DWORD)req.arg[2]);
            err = GetLastError();
            respond((uint64_t)(uint32_t)ret, err, NULL, 0);
            break;
        }

        case OP_VIRTUAL_QUERY: {
            /*
             * The caller's structure travels both ways, so whatever VirtualQuery writes
             * (or leaves alone, on failure) is what the caller's structure ends up
             * holding. The slack keeps a caller-supplied length above 48 harmless:
             * VirtualQuery never writes more than sizeof(MEMORY_BASIC_INFORMATION).
             */
            union {
                MEMORY_BASIC_INFORMATION mbi;
                unsigned char bytes[256];
            } buf;
            SIZE_T ret;
            DWORD err;
            if (req.payload_len != SYSTEM_BUFFER_SIZE)
                die("VirtualQuery request without a 48-byte buffer", req.payload_len);
            memset(&buf, 0, sizeof buf);
            memcpy(&buf, payload, SYSTEM_BUFFER_SIZE);
            SetLastError(req.last_error);
            ret = VirtualQuery((LPCVOID)(uintptr_t)req.arg[0], &buf.mbi, (SIZE_T)req.arg[1]);
            err = GetLastError();
            respond((uint64_t)ret, err, &buf, SYSTEM_BUFFER_SIZE);
            break;
        }

        case OP_GET_SYSTEM_INFO: {
            SYSTEM_INFO si;
            DWORD err;
            if (req.payload_len != SYSTEM_BUFFER_SIZE)
                die("GetSystemInfo request without a 48-byte buffer", req.payload_len);
            memcpy(&si, payload, SYSTEM_BUFFER_SIZE);
            SetLastError(req.last_error);
            GetSystemInfo(&si);
            err = GetLastError();
            respond(0, err, &si, SYSTEM_BUFFER_SIZE);
            break;
        }

        case OP_READ: {
            struct refusal why;
            uint64_t len = req.arg[1];
            if (len > MAX_PAYLOAD)
                die("read larger than the payload limit", (DWORD)(len >> 20));
            if (!accessible(req.arg[0], len, FALSE, &why)) {
                respond(0, req.last_error, &why, sizeof why);
                break;
            }
            memcpy(payload, (const void *)(uintptr_t)req.arg[0], (size_t)len);
            respond(len, req.last_error, payload, (uint32_t)len);
            break;
        }

        case OP_WRITE: {
            struct refusal why;
            if (req.arg[1] != req.payload_len)
                die("write length differs from its payload", req.payload_len);
            if (!accessible(req.arg[0], req.payload_len, TRUE, &why)) {
                respond(0, req.last_error, &why, sizeof why);
                break;
            }
            memcpy((void *)(uintptr_t)req.arg[0], payload, req.payload_len);
            respond(req.payload_len, req.last_error, NULL, 0);
            break;
        }

        case OP_VIRTUAL_PROTECT: {
            DWORD old = 0;
            BOOL ret;
            DWORD err;
            if (req.payload_len != 0 && req.payload_len != sizeof old)
                die("VirtualProtect request with a payload that is not a DWORD", req.payload_len);
            if (req.payload_len)
                memcpy(&old, payload, sizeof old);
            SetLastError(req.last_error);
            ret = VirtualProtect((LPVOID)(uintptr_t)req.arg[0], (SIZE_T)req.arg[1],
                                 (DWORD)req.arg[2], req.payload_len ? &old : NULL);
            err = GetLastError();
            respond((uint64_t)(uint32_t)ret, err, &old, req.payload_len);
            break;
        }

        case OP_VIRTUAL_ALLOC2: {
            /* Value 0 with error 0xffffffff: KernelBase has no VirtualAlloc2 to call. */
            static struct extended_parameter params[MAX_EXTENDED];
            static struct address_requirements reqs[MAX_EXTENDED];
            struct wire_alloc2 head;
            HMODULE kernelbase = GetModuleHandleA("kernelbase.dll");
            virtual_alloc2_fn alloc2 =
                kernelbase ? (virtual_alloc2_fn)(void (*)(void))GetProcAddress(kernelbase,
                                                                             "VirtualAlloc2")
                           : NULL;
            LPVOID ret;
            DWORD err;
            uint32_t i;
            if (req.payload_len < sizeof head)
                die("VirtualAlloc2 request without its header", req.payload_len);
            memcpy(&head, payload, sizeof head);
            if (head.count > MAX_EXTENDED ||
                req.payload_len != sizeof head + head.count * sizeof(struct wire_extended))
                die("VirtualAlloc2 request with a malformed parameter list", head.count);
            if (!alloc2) {
                respond(0, 0xffffffffu, NULL, 0);
                break;
            }
            for (i = 0; i < head.count; i++) {
                struct wire_extended e;
                memcpy(&e, payload + sizeof head + i * sizeof e, sizeof e);
                params[i].type = e.type;
                params[i].value = e.value;
                if (e.has_requirements) {
                    reqs[i].lowest = (void *)(uintptr_t)e.lowest;
                    reqs[i].highest = (void *)(uintptr_t)e.highest;
                    reqs[i].alignment = (SIZE_T)e.alignment;
                    params[i].value = (uint64_t)(uintptr_t)&reqs[i];
                }
            }
            SetLastError(req.last_error);
            ret = alloc2((HANDLE)(uintptr_t)head.process, (PVOID)(uintptr_t)req.arg[0],
                         (SIZE_T)req.arg[1], (ULONG)req.arg[2], (ULONG)req.arg[3],
                         head.array_present ? params : NULL, head.count);
            err = GetLastError();
            respond((uint64_t)(uintptr_t)ret, err, NULL, 0);
            break;
        }

        case OP_EXIT:
            respond(0, req.last_error, NULL, 0);
            return 0;

        case OP_WINE_VERSION: {
            /* Asked of ntdll, as any Windows program would: Wine's exports it, Windows' not. */
            typedef const char *(CDECL *wine_get_version_fn)(void);
            HMODULE ntdll = GetModuleHandleA("ntdll.dll");
            wine_get_version_fn get_version =
                ntdll ? (wine_get_version_fn)(void (*)(void))GetProcAddress(ntdll, "wine_get_version")
                      : NULL;
            const char *version = get_version ? get_version() : NULL;
            size_t len = version ? strlen(version) : 0;
            if (len > MAX_PAYLOAD)
                len = MAX_PAYLOAD;
            respond(version != NULL, req.last_error, version, (uint32_t)len);
            break;
        }

        default:
            die("unknown request", req.op);
        }
    }
    return 0;
}
