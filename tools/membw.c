/* This machine's memory bandwidth, the ceiling of the memory-bound training passes
 * (docs/BENCHMARKS.md): a 256 MB array read, copied with plain stores (which first read each
 * line they write) and copied with streaming stores, on OMP_NUM_THREADS threads, 5 rounds.
 *
 *   gcc -O3 -mavx512f -fopenmp tools/membw.c -o /tmp/membw && OMP_NUM_THREADS=2 /tmp/membw
 *
 * "copy" counts the bytes read and written (2 × the array), as a kernel's traffic is counted.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N (64L * 1024 * 1024)

int main(void) {
    float *a = aligned_alloc(64, N * 4), *b = aligned_alloc(64, N * 4);
    memset(a, 1, N * 4);
    memset(b, 1, N * 4);
    for (int round = 0; round < 5; round++) {
        double t = omp_get_wtime();
        float s = 0;
#pragma omp parallel for reduction(+ : s)
        for (long i = 0; i < N; i += 16) s += a[i] + a[i + 15];
        double read = omp_get_wtime() - t;
        t = omp_get_wtime();
#pragma omp parallel for
        for (long i = 0; i < N; i += 16) _mm512_store_ps(b + i, _mm512_load_ps(a + i));
        double copy = omp_get_wtime() - t;
        t = omp_get_wtime();
#pragma omp parallel for
        for (long i = 0; i < N; i += 16) _mm512_stream_ps(b + i, _mm512_load_ps(a + i));
        _mm_sfence();
        double stream = omp_get_wtime() - t;
        printf("read %.1f GB/s, copy %.1f GB/s, streaming copy %.1f GB/s (%g)\n",
               N * 4 / read / 1e9, 2 * N * 4 / copy / 1e9, 2 * N * 4 / stream / 1e9, s);
    }
    return 0;
}
