// How long one pass that reads an activation and writes another of the same size takes on
// this machine (both threads, medians of 7), with plain and with streaming stores: the floor
// under a memory-bound kernel such as batch norm's, for docs/BENCHMARKS.md.
//   gcc -O3 -march=native -fopenmp tools/copy_bandwidth.c -o target/copy_bandwidth
//   OMP_NUM_THREADS=2 target/copy_bandwidth 154140672   # Lite0's 112x112x96 at batch 32, bytes
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t bytes = argc > 1 ? strtoull(argv[1], NULL, 10) : 154140672;
    size_t n = bytes / sizeof(float);
    // 64-byte aligned: streaming stores write whole aligned vectors.
    float *a = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    float *c = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    const __m256 two = _mm256_set1_ps(2.0f), one = _mm256_set1_ps(1.0f);
    if (!a || !c) return 1;
    memset(a, 1, n * sizeof(float));
    memset(c, 1, n * sizeof(float));
    // Plain stores, then streaming (non-temporal) stores, which skip reading each line
    // before writing it (docs/BENCHMARKS.md: tried for Graft's training passes, not kept).
    for (int streaming = 0; streaming < 2; streaming++) {
        double ms[7];
        for (int r = 0; r < 7; r++) {
            double t = now();
            if (streaming) {
                size_t body = n / 8 * 8;
#pragma omp parallel for
                for (size_t i = 0; i < body; i += 8)
                    _mm256_stream_ps(&c[i], _mm256_fmadd_ps(_mm256_load_ps(&a[i]), two, one));
                for (size_t i = body; i < n; i++) c[i] = a[i] * 2.0f + 1.0f;
                _mm_sfence();
            } else {
#pragma omp parallel for
                for (size_t i = 0; i < n; i++) c[i] = a[i] * 2.0f + 1.0f;
            }
            ms[r] = (now() - t) * 1e3;
        }
        qsort(ms, 7, sizeof(double), cmp);
        printf("%zu bytes read and %zu written, %s stores: %.1f ms (median of 7), %.1f GB/s moved\n",
               bytes, bytes, streaming ? "streaming" : "plain", ms[3], 2.0 * bytes / ms[3] / 1e6);
    }
    return c[n / 2] == 0.0f;
}
