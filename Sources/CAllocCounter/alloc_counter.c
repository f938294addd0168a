// Forwards to glibc's own entry points and counts the calls. Only an atomic
// increment is added per allocation.
#include "alloc_counter.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>   // defines __GLIBC__ on glibc

// A sanitizer brings its own allocator: forwarding to glibc's underneath it would mix
// the two (a crash at the first free). Then, and off glibc (musl has no __libc_*
// entry points), nothing is interposed and the counter reports itself inactive.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PALR_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define PALR_SANITIZED 1
#endif
#endif

#if defined(__GLIBC__) && !defined(PALR_SANITIZED)
#include <errno.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);

static _Atomic uint64_t count;
static _Thread_local uint64_t thread_count;
#define COUNT() (atomic_fetch_add_explicit(&count, 1, memory_order_relaxed), thread_count++)

void *malloc(size_t n) { COUNT(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { COUNT(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { COUNT(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t a, size_t n) { COUNT(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { COUNT(); return __libc_memalign(a, n); }
// The rest of glibc's replaceable set ("Replacing malloc" in its manual): obsolete, and
// nothing here calls them, but a library that did would otherwise go uncounted.
void *valloc(size_t n) { COUNT(); return __libc_valloc(n); }
void *pvalloc(size_t n) { COUNT(); return __libc_pvalloc(n); }
int posix_memalign(void **out, size_t a, size_t n) {
    COUNT();
    if (a < sizeof(void *) || (a & (a - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(a, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}

uint64_t palr_alloc_count(void) { return atomic_load_explicit(&count, memory_order_relaxed); }
uint64_t palr_alloc_count_thread(void) { return thread_count; }
int palr_alloc_counter_active(void) { return 1; }
#else
uint64_t palr_alloc_count(void) { return 0; }
uint64_t palr_alloc_count_thread(void) { return 0; }
int palr_alloc_counter_active(void) { return 0; }
#endif
