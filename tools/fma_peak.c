// This machine's fp32 FMA peak, and what the matrix kernel's inner loop can reach (the
// shape of `kernel_tall` in src/engine/fast_cpu/mm/avx2.rs: 12 rows x 32 columns, 2 loads
// of B and 12 broadcasts of A per 24 FMAs, A in L1 and B's strips from L2), in GMAC/s:
//   gcc -O3 -march=native -fopenmp tools/fma_peak.c -o target/fma_peak
//   OMP_NUM_THREADS=1 target/fma_peak; OMP_NUM_THREADS=2 target/fma_peak
// Without AVX-512 (-march=native on an AVX2-only CPU) it measures the AVX2 FMA peak only (12
// chains of 8-lane FMAs), what the AVX2 kernel (`kernel`, 6 x 16) could reach. Where the CPU
// has AVX512_BF16 (Zen 4, Sapphire Rapids), the same two with
// `vdpbf16ps` (bf16 operands in pairs along the sum, fp32 sums: 32 multiply-adds a
// 16-lane instruction) — what a bf16 matrix kernel could reach, in the same GMAC/s.
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef __AVX512F__
// 12 independent chains of 8-lane FMAs per thread (two FMA pipes of 4-5 cycles' latency).
static double peak(void) {
    const long steps = 2000000000L / 12;
    double t0 = omp_get_wtime();
    float keep = 0;
#pragma omp parallel reduction(+ : keep)
    {
        __m256 a[12];
        for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(i * 0.001f);
        __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
        for (long s = 0; s < steps; s++) {
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
        }
        float t[8];
        for (int i = 0; i < 12; i++) {
            _mm256_storeu_ps(t, a[i]);
            keep += t[0];
        }
    }
    double t = omp_get_wtime() - t0;
    if (keep == 12345) printf(" ");
    return (double)steps * 12 * 8 * omp_get_max_threads() / t / 1e9;
}

int main(void) {
    printf("%d threads: AVX2 FMA peak %.1f GMAC/s (no AVX-512 here)\n", omp_get_max_threads(),
           peak());
    return 0;
}
#else
// 24 independent chains of 16-lane FMAs per thread.
static double peak(void) {
    const long steps = 4000000000L / 24;
    double t0 = omp_get_wtime();
    float keep = 0;
#pragma omp parallel reduction(+ : keep)
    {
        __m512 a[24];
        for (int i = 0; i < 24; i++) a[i] = _mm512_set1_ps(i * 0.001f);
        __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(0.0001f);
        for (long s = 0; s < steps; s++) {
#pragma GCC unroll 24
            for (int i = 0; i < 24; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
        }
        for (int i = 0; i < 24; i++) keep += _mm512_reduce_add_ps(a[i]);
    }
    double t = omp_get_wtime() - t0;
    if (keep == 12345) printf(" ");
    return (double)steps * 24 * 16 * omp_get_max_threads() / t / 1e9;
}

// kernel_tall's loop: panels a0, a1 ([k][6]), strips b ([k][16], the second `strip` on).
__attribute__((noinline)) static void tall(int k, const float *a0, const float *a1,
                                           const float *b, long strip, float *c) {
    __m512 acc[2][6][2];
    for (int p = 0; p < 2; p++)
        for (int r = 0; r < 6; r++)
            for (int t = 0; t < 2; t++) acc[p][r][t] = _mm512_setzero_ps();
    for (int i = 0; i < k; i++) {
        __m512 x0 = _mm512_loadu_ps(b + i * 16), x1 = _mm512_loadu_ps(b + strip + i * 16);
        for (int p = 0; p < 2; p++) {
            const float *a = p ? a1 : a0;
            for (int r = 0; r < 6; r++) {
                __m512 av = _mm512_set1_ps(a[i * 6 + r]);
                acc[p][r][0] = _mm512_fmadd_ps(av, x0, acc[p][r][0]);
                acc[p][r][1] = _mm512_fmadd_ps(av, x1, acc[p][r][1]);
            }
        }
    }
    for (int p = 0; p < 2; p++)
        for (int r = 0; r < 6; r++)
            for (int t = 0; t < 2; t++) _mm512_storeu_ps(c + (p * 6 + r) * 32 + t * 16, acc[p][r][t]);
}

// 32 panels over 16 strips of k = 512 steps (A 384 KB, B 512 KB), best of 20, per thread.
static double kernel(void) {
    const int k = 512, strips = 16, panels = 32;
    const long strip = k * 16 + 16;
    double total = 0;
#pragma omp parallel reduction(+ : total)
    {
        float *a = aligned_alloc(64, sizeof(float) * k * 6 * panels);
        float *b = aligned_alloc(64, sizeof(float) * strip * strips);
        float *c = aligned_alloc(64, sizeof(float) * 12 * 32);
        for (long i = 0; i < (long)k * 6 * panels; i++) a[i] = 1e-3f * (i % 100);
        for (long i = 0; i < strip * strips; i++) b[i] = 1e-3f * (i % 77);
        double best = 1e9;
        for (int rep = 0; rep < 20; rep++) {
            double t0 = omp_get_wtime();
            for (int p = 0; p + 1 < panels; p += 2)
                for (int s = 0; s + 1 < strips; s += 2)
                    tall(k, a + p * k * 6, a + (p + 1) * k * 6, b + s * strip, strip, c);
            double t = omp_get_wtime() - t0;
            if (t < best) best = t;
        }
        total += (double)k * 12 * 32 * (panels / 2) * (strips / 2) / best / 1e9;
        if (c[0] == 12345) printf(" ");  // the sums are used: the loop is not dropped
        free(a), free(b), free(c);
    }
    return total;
}

#ifdef __AVX512BF16__
// `peak` with `vdpbf16ps`: 24 chains, 32 multiply-adds an instruction.
static double peak_bf16(void) {
    const long steps = 4000000000L / 24 / 2;
    double t0 = omp_get_wtime();
    float keep = 0;
#pragma omp parallel reduction(+ : keep)
    {
        __m512 a[24];
        for (int i = 0; i < 24; i++) a[i] = _mm512_set1_ps(i * 0.001f);
        __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.999f), _mm512_set1_ps(0.998f));
        __m512bh c = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(2e-4f));
        for (long s = 0; s < steps; s++) {
#pragma GCC unroll 24
            for (int i = 0; i < 24; i++) a[i] = _mm512_dpbf16_ps(a[i], b, c);
        }
        for (int i = 0; i < 24; i++) keep += _mm512_reduce_add_ps(a[i]);
    }
    double t = omp_get_wtime() - t0;
    if (keep == 12345) printf(" ");
    return (double)steps * 24 * 32 * omp_get_max_threads() / t / 1e9;
}

// `tall` in bf16: panels a0, a1 hold [k/2][6] pairs of steps (one 32-bit broadcast feeds 2
// steps of a row), strips b [k/2][16] pairs (32 bf16 a load), sums in fp32.
__attribute__((noinline)) static void tall_bf16(int k, const unsigned *a0, const unsigned *a1,
                                                const unsigned short *b, long strip, float *c) {
    __m512 acc[2][6][2];
    for (int p = 0; p < 2; p++)
        for (int r = 0; r < 6; r++)
            for (int t = 0; t < 2; t++) acc[p][r][t] = _mm512_setzero_ps();
    for (int i = 0; i < k / 2; i++) {
        __m512bh x0 = (__m512bh)_mm512_loadu_si512(b + i * 32);
        __m512bh x1 = (__m512bh)_mm512_loadu_si512(b + strip + i * 32);
        for (int p = 0; p < 2; p++) {
            const unsigned *a = p ? a1 : a0;
            for (int r = 0; r < 6; r++) {
                __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i * 6 + r]);
                acc[p][r][0] = _mm512_dpbf16_ps(acc[p][r][0], av, x0);
                acc[p][r][1] = _mm512_dpbf16_ps(acc[p][r][1], av, x1);
            }
        }
    }
    for (int p = 0; p < 2; p++)
        for (int r = 0; r < 6; r++)
            for (int t = 0; t < 2; t++) _mm512_storeu_ps(c + (p * 6 + r) * 32 + t * 16, acc[p][r][t]);
}

// `kernel` in bf16: the same steps, panels and strips (half the bytes).
static double kernel_bf16(void) {
    const int k = 512, strips = 16, panels = 32;
    const long strip = k * 16 + 32;
    double total = 0;
#pragma omp parallel reduction(+ : total)
    {
        unsigned *a = aligned_alloc(64, sizeof(unsigned) * k / 2 * 6 * panels);
        unsigned short *b = aligned_alloc(64, sizeof(unsigned short) * strip * strips);
        float *c = aligned_alloc(64, sizeof(float) * 12 * 32);
        for (long i = 0; i < (long)k / 2 * 6 * panels; i++) a[i] = 0x3c003c00u + i % 100;
        for (long i = 0; i < strip * strips; i++) b[i] = 0x3c00 + i % 77;
        double best = 1e9;
        for (int rep = 0; rep < 20; rep++) {
            double t0 = omp_get_wtime();
            for (int p = 0; p + 1 < panels; p += 2)
                for (int s = 0; s + 1 < strips; s += 2)
                    tall_bf16(k, a + p * k / 2 * 6, a + (p + 1) * k / 2 * 6, b + s * strip, strip, c);
            double t = omp_get_wtime() - t0;
            if (t < best) best = t;
        }
        total += (double)k * 12 * 32 * (panels / 2) * (strips / 2) / best / 1e9;
        if (c[0] == 12345) printf(" ");
        free(a), free(b), free(c);
    }
    return total;
}
#endif

int main(void) {
    printf("%d threads: FMA peak %.1f GMAC/s, kernel_tall's loop %.1f GMAC/s\n",
           omp_get_max_threads(), peak(), kernel());
#ifdef __AVX512BF16__
    printf("%d threads: bf16 dot-product peak %.1f GMAC/s, kernel_tall's loop in bf16 %.1f GMAC/s\n",
           omp_get_max_threads(), peak_bf16(), kernel_bf16());
#endif
    return 0;
}
#endif
