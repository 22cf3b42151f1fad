/* Randomness from the kernel (getrandom). */
#pragma once

#include <stddef.h>
#include <stdint.h>

void random_bytes(void *p, size_t n);
uint64_t random_u64(void);
/* n random lower-case hex digits into out (n+1 bytes). */
void random_hex(char *out, size_t n);
/* A version-4 UUID, 36 characters plus NUL. */
void random_uuid(char out[37]);
