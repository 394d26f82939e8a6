// Memory bandwidth of a streaming loop on every core: b[i] = a[i] * 1.5 + 0.5 over two 200 MB
// arrays, five rounds, reads and writes counted (not the read a plain store makes of each
// line first). The ceiling the large-map depthwise passes are measured against
// (docs/BENCHMARKS.md, fifty-sixth stop):
//   gcc -O3 -march=native -fopenmp tools/stream_bw.c -o target/stream_bw && target/stream_bw
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    size_t n = (size_t)50 << 20;
    float *a = aligned_alloc(64, n * sizeof(float)), *b = aligned_alloc(64, n * sizeof(float));
    memset(a, 1, n * sizeof(float));
    memset(b, 0, n * sizeof(float));
    for (int round = 0; round < 5; round++) {
        double t = omp_get_wtime();
#pragma omp parallel for
        for (size_t i = 0; i < n; i++) b[i] = a[i] * 1.5f + 0.5f;
        double dt = omp_get_wtime() - t;
        printf("scale: %.1f GB/s read + written (%d threads)\n", 2.0 * n * sizeof(float) / dt / 1e9,
               omp_get_max_threads());
    }
    // Read the result, so the loop is not dropped as dead (and fail if it never ran).
    return b[n - 1] == 0.0f;
}
