/* Fused random kernels for activation noise and DropConnect (see _fused.py).
 *
 * Each kernel draws its random numbers and applies them in one pass over memory, on several
 * threads. The numbers come from Philox4x32-10 (Salmon et al., "Parallel random numbers: as
 * easy as 1, 2, 3", SC 2011), a counter-based generator: value i of a call depends only on
 * the call's 64-bit key and i, so the result is the same whatever the number of threads.
 *
 * Layout of a call's stream: elements come in blocks of 32. Block b evaluates Philox at the
 * LANES counters (b * LANES + l, 0, 0, 0), l < LANES, and turns the 4 * LANES words into 32
 * values (four words per lane; see fill_normal and fill_keep).
 *
 * Threads come from OpenMP. The library links libgomp.so.1 by that name, so in a process
 * where torch (which ships and loads its own libgomp.so.1) is already imported it shares
 * torch's OpenMP runtime and thread pool: no second pool of threads competes with torch's
 * for the cores.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LANES 8
#define BLOCK (4 * LANES)
#define MIN_PER_THREAD 32768 /* below this many elements a thread costs more than it saves */

static const uint32_t PHILOX_M0 = 0xD2511F53u, PHILOX_M1 = 0xCD9E8D57u;
static const uint32_t PHILOX_W0 = 0x9E3779B9u, PHILOX_W1 = 0xBB67AE85u;

int64_t dl_abi_version(void) { return 3; }

/* Philox4x32-10 on LANES counters at once; c0..c3 hold the counters in and the words out. */
static inline void philox_lanes(uint32_t c0[LANES], uint32_t c1[LANES], uint32_t c2[LANES],
                                uint32_t c3[LANES], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0[l], p1 = (uint64_t)PHILOX_M1 * c2[l];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
            c0[l] = n0;
            c1[l] = (uint32_t)p1;
            c2[l] = n2;
            c3[l] = (uint32_t)p0;
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

/* One Philox4x32-10 evaluation, for the known-answer test. */
void dl_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0[LANES] = {ctr[0]}, c1[LANES] = {ctr[1]}, c2[LANES] = {ctr[2]},
             c3[LANES] = {ctr[3]};
    philox_lanes(c0, c1, c2, c3, key[0], key[1]);
    out[0] = c0[0];
    out[1] = c1[0];
    out[2] = c2[0];
    out[3] = c3[0];
}

/* The 4 * LANES Philox words of block b, lane-major per word: w[k * LANES + l] is word k of
 * lane l. */
static inline void block_words(int64_t b, uint64_t key, uint32_t w[BLOCK]) {
    uint32_t c0[LANES], c1[LANES], c2[LANES], c3[LANES];
    for (int l = 0; l < LANES; l++) {
        uint64_t counter = (uint64_t)b * LANES + (uint64_t)l;
        c0[l] = (uint32_t)counter;
        c1[l] = (uint32_t)(counter >> 32);
        c2[l] = 0;
        c3[l] = 0;
    }
    philox_lanes(c0, c1, c2, c3, (uint32_t)key, (uint32_t)(key >> 32));
    memcpy(w, c0, sizeof c0);
    memcpy(w + LANES, c1, sizeof c1);
    memcpy(w + 2 * LANES, c2, sizeof c2);
    memcpy(w + 3 * LANES, c3, sizeof c3);
}

/* 32 standard normal values of block b, by Box-Muller on 24-bit uniforms: words 0 and 2 of a
 * lane give the radii (uniform in (0, 1]), words 1 and 3 the angles (uniform in [0, 1)). */
static inline void fill_normal(int64_t b, uint64_t key, float z[BLOCK]) {
    uint32_t w[BLOCK], rw[2 * LANES], aw[2 * LANES];
    float r[2 * LANES], a[2 * LANES];
    block_words(b, key, w);
    memcpy(rw, w, LANES * sizeof(uint32_t));                     /* word 0 */
    memcpy(rw + LANES, w + 2 * LANES, LANES * sizeof(uint32_t)); /* word 2 */
    memcpy(aw, w + LANES, LANES * sizeof(uint32_t));             /* word 1 */
    memcpy(aw + LANES, w + 3 * LANES, LANES * sizeof(uint32_t)); /* word 3 */
    const float inv = 1.0f / 16777216.0f;
#pragma omp simd
    for (int l = 0; l < 2 * LANES; l++) r[l] = sqrtf(-2.0f * logf((float)((rw[l] >> 8) + 1) * inv));
#pragma omp simd
    for (int l = 0; l < 2 * LANES; l++) a[l] = 6.28318530718f * ((float)(aw[l] >> 8) * inv);
    /* cos and sin in separate loops: together the compiler fuses them into a sincos call
     * that it cannot vectorize. */
#pragma omp simd
    for (int l = 0; l < 2 * LANES; l++) z[l] = r[l] * cosf(a[l]);
#pragma omp simd
    for (int l = 0; l < 2 * LANES; l++) z[2 * LANES + l] = r[l] * sinf(a[l]);
}

/* 32 keep flags of block b: word k of lane l is kept when its top 24 bits, as a uniform in
 * [0, 1), are >= p, that is when (word >> 8) >= threshold = ceil(p * 2^24). */
static inline void fill_keep(int64_t b, uint64_t key, uint32_t threshold, uint32_t keep[BLOCK]) {
    uint32_t w[BLOCK];
    block_words(b, key, w);
#pragma omp simd
    for (int i = 0; i < BLOCK; i++) keep[i] = (w[i] >> 8) >= threshold ? 0xFFFFFFFFu : 0u;
}

/* The 32 keep flags of a block (all-ones or zero words) as the bits of one word. */
static inline uint32_t pack(const uint32_t keep[BLOCK]) {
    uint32_t bits = 0;
    for (int i = 0; i < BLOCK; i++) bits |= (keep[i] & 1u) << i;
    return bits;
}

static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) { /* round to nearest even, as torch does */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0; /* NaN stays NaN */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

enum kind { NORMAL_F32, NORMAL_BF16, KEEP_F32, KEEP_BF16, SELECT_F32, SELECT_BF16 };

struct job {
    enum kind kind;
    void *out;
    const void *x;
    uint32_t *mask; /* keep: where to record the keep flags, or NULL; select: the flags to
                       apply. One word per block: bit i is element i of the block, 1 kept. */
    int64_t n;
    float scale;        /* normal: the standard deviation */
    uint32_t threshold; /* keep: ceil(p * 2^24) */
    uint64_t key;
    int64_t first, last; /* the blocks this thread handles */
};

static void run_blocks(const struct job *j) {
    float z[BLOCK];
    uint32_t keep[BLOCK];
    for (int64_t b = j->first; b < j->last; b++) {
        int64_t start = b * BLOCK, count = j->n - start < BLOCK ? j->n - start : BLOCK;
        switch (j->kind) {
        case NORMAL_F32: {
            float *out = (float *)j->out + start;
            const float *x = (const float *)j->x + start;
            fill_normal(b, j->key, z);
            for (int64_t i = 0; i < count; i++) out[i] = x[i] + j->scale * z[i];
            break;
        }
        case NORMAL_BF16: {
            uint16_t *out = (uint16_t *)j->out + start;
            const uint16_t *x = (const uint16_t *)j->x + start;
            fill_normal(b, j->key, z);
            for (int64_t i = 0; i < count; i++)
                out[i] = float_to_bf16(bf16_to_float(x[i]) + j->scale * z[i]);
            break;
        }
        case KEEP_F32: {
            uint32_t *out = (uint32_t *)j->out + start;
            const uint32_t *x = (const uint32_t *)j->x + start;
            fill_keep(b, j->key, j->threshold, keep);
            for (int64_t i = 0; i < count; i++) out[i] = x[i] & keep[i];
            if (j->mask) j->mask[b] = pack(keep);
            break;
        }
        case KEEP_BF16: {
            uint16_t *out = (uint16_t *)j->out + start;
            const uint16_t *x = (const uint16_t *)j->x + start;
            fill_keep(b, j->key, j->threshold, keep);
            for (int64_t i = 0; i < count; i++) out[i] = x[i] & (uint16_t)keep[i];
            if (j->mask) j->mask[b] = pack(keep);
            break;
        }
        case SELECT_F32: {
            uint32_t *out = (uint32_t *)j->out + start;
            const uint32_t *x = (const uint32_t *)j->x + start;
            uint32_t m = j->mask[b];
            for (int64_t i = 0; i < count; i++) out[i] = x[i] & (0u - ((m >> i) & 1u));
            break;
        }
        case SELECT_BF16: {
            uint16_t *out = (uint16_t *)j->out + start;
            const uint16_t *x = (const uint16_t *)j->x + start;
            uint32_t m = j->mask[b];
            for (int64_t i = 0; i < count; i++) out[i] = x[i] & (uint16_t)(0u - ((m >> i) & 1u));
            break;
        }
        }
    }
}

/* Split the blocks over up to `threads` threads and run them. */
static void run(struct job base, int threads) {
    int64_t blocks = (base.n + BLOCK - 1) / BLOCK;
    int64_t useful = base.n / MIN_PER_THREAD;
    if (threads > useful) threads = (int)useful;
    if (threads < 1) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; t++) {
        struct job j = base;
        j.first = blocks * t / threads;
        j.last = blocks * (t + 1) / threads;
        run_blocks(&j);
    }
}

/* out = x + std * N(0, 1) element-wise. */
void dl_normal_f32(float *out, const float *x, int64_t n, float std, uint64_t key, int threads) {
    struct job j = {NORMAL_F32, out, x, NULL, n, std, 0, key, 0, 0};
    run(j, threads);
}

void dl_normal_bf16(uint16_t *out, const uint16_t *x, int64_t n, float std, uint64_t key,
                    int threads) {
    struct job j = {NORMAL_BF16, out, x, NULL, n, std, 0, key, 0, 0};
    run(j, threads);
}

/* out = x where the draw keeps the element, +0 where it drops it (x's bits and-ed with the
 * keep mask); the keep flags go to mask (one bit each, a word per block of 32) unless it is
 * NULL. */
void dl_keep_f32(float *out, const float *x, uint32_t *mask, int64_t n, uint32_t threshold,
                 uint64_t key, int threads) {
    struct job j = {KEEP_F32, out, x, mask, n, 0.0f, threshold, key, 0, 0};
    run(j, threads);
}

void dl_keep_bf16(uint16_t *out, const uint16_t *x, uint32_t *mask, int64_t n,
                  uint32_t threshold, uint64_t key, int threads) {
    struct job j = {KEEP_BF16, out, x, mask, n, 0.0f, threshold, key, 0, 0};
    run(j, threads);
}

/* out = x where the mask bit is 1, +0 where it is 0 (the backward pass of dl_keep_*). */
void dl_select_f32(float *out, const float *x, const uint32_t *mask, int64_t n, int threads) {
    struct job j = {SELECT_F32, out, x, (uint32_t *)mask, n, 0.0f, 0, 0, 0, 0};
    run(j, threads);
}

void dl_select_bf16(uint16_t *out, const uint16_t *x, const uint32_t *mask, int64_t n,
                    int threads) {
    struct job j = {SELECT_BF16, out, x, (uint32_t *)mask, n, 0.0f, 0, 0, 0, 0};
    run(j, threads);
}
