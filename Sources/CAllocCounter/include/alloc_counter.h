// Counts heap allocations made by this process (malloc, calloc, realloc,
// posix_memalign, aligned_alloc, memalign), by interposing glibc's allocator.
// Linked only into the `palr` executable and the tests that measure allocations.
#ifndef PALR_ALLOC_COUNTER_H
#define PALR_ALLOC_COUNTER_H
#include <stdint.h>
// Allocation calls since the process started (all threads). 0 forever where
// interposition is unavailable; check palr_alloc_counter_active().
uint64_t palr_alloc_count(void);
// The same, for the calling thread only.
uint64_t palr_alloc_count_thread(void);
int palr_alloc_counter_active(void);
#endif
