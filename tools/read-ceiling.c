// How fast can this machine stream a model file's bytes through a dot product?
// The ceiling for decode speed that no kernel arrangement beats: every weight
// byte is read once per token. Maps FILE like Wren does (page cache, no copy)
// and reads all of it with 1..T threads, each thread one contiguous half,
// 21 times; prints best and median GB/s for
//   read: plain 32-byte loads XORed together (no arithmetic to speak of),
//   f16:  rows of 576 f16 values dotted with an f32 vector (F16C + FMA, two
//         accumulators: Wren's f16 decode kernel),
// and the tokens/s that the median allows for BYTES_PER_TOKEN (default: the
// file size).
//
//   cc -O2 -o .build/read-ceiling tools/read-ceiling.c -lpthread
//   .build/read-ceiling models/bench/smol-f16.wren [threads=2] [bytes_per_token]
#define _GNU_SOURCE
#include <fcntl.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { ROW = 576, REPS = 21 };
static const uint8_t *base;
static size_t len;
static int nthreads, mode;
static float xv[ROW];
static volatile float sink;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx2,fma,f16c"))) static float dot_f16(const uint8_t *r, const float *x) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int j = 0; j < ROW; j += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 2 * j))), _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 2 * j + 16))), _mm256_loadu_ps(x + j + 8), a1);
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(a0, a1));
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

__attribute__((target("avx2"))) static void *work(void *arg) {
    size_t chunk = len / nthreads, id = (size_t)arg;
    const uint8_t *p = base + id * chunk;
    if (mode == 0) {
        __m256i acc = _mm256_setzero_si256();
        for (size_t i = 0; i + 128 <= chunk; i += 128)
            for (int k = 0; k < 4; k++) acc = _mm256_xor_si256(acc, _mm256_loadu_si256((const __m256i *)(p + i + 32 * k)));
        sink = (float)_mm256_extract_epi32(acc, 0);
    } else {
        float s = 0;
        for (size_t r = 0; r < chunk / (2 * ROW); r++) s += dot_f16(p + r * 2 * ROW, xv);
        sink = s;
    }
    return NULL;
}

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s FILE [threads] [bytes_per_token]\n", argv[0]); return 2; }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror(argv[1]); return 1; }
    int maxThreads = argc > 2 ? atoi(argv[2]) : 2;
    double perToken = argc > 3 ? atof(argv[3]) : (double)st.st_size;
    if (maxThreads < 1 || maxThreads > 64 || perToken <= 0) { fprintf(stderr, "bad threads or bytes_per_token\n"); return 2; }
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c")) {
        fprintf(stderr, "needs AVX2, FMA and F16C\n"); return 1;
    }
    len = (size_t)st.st_size & ~(size_t)4095;
    base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    for (int i = 0; i < ROW; i++) xv[i] = 1.0f / (i + 1);
    printf("%s: %.1f MB, %.1f MB per token\n", argv[1], st.st_size / 1e6, perToken / 1e6);
    for (mode = 0; mode < 2; mode++) {
        for (nthreads = 1; nthreads <= maxThreads; nthreads++) {
            double t[REPS];
            for (int rep = 0; rep < REPS; rep++) {
                pthread_t th[64];
                double t0 = now();
                for (long i = 0; i < nthreads; i++) pthread_create(&th[i], NULL, work, (void *)i);
                for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
                t[rep] = now() - t0;
            }
            qsort(t, REPS, sizeof t[0], cmp);
            double best = len / t[0] / 1e9, med = len / t[REPS / 2] / 1e9;
            printf("%-4s %d thread%s: best %5.2f GB/s, median %5.2f GB/s -> at most %.1f tokens/s\n", mode ? "f16" : "read",
                   nthreads, nthreads > 1 ? "s" : " ", best, med, med * 1e9 / perToken);
        }
    }
    return 0;
}
