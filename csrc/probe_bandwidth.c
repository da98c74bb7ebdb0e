/* probe_bandwidth.c: how many bytes per second can this machine move between memory and cores?
 *
 * The STREAM "triad" a[i] = b[i] + s * c[i] (McCalpin): two streams read, one written, almost
 * no arithmetic, so the time is the time to move the data. Arrays much larger than the last-level
 * cache measure main memory; small ones measure a cache level. Returns the bytes counted as
 * moved (12 per element: STREAM's convention, which does not count the write-allocate read).
 */
#include "krypton.h"

double kr_probe_triad(float *restrict a, const float *restrict b, const float *restrict c,
                      int64_t n, int64_t repeats, int64_t threads)
{
    const float s = 3.0f;
#ifndef _OPENMP
    (void)threads;   /* one thread: the loop below is plain C */
#endif
    for (int64_t rep = 0; rep < repeats; ++rep) {
#ifdef _OPENMP
#  pragma omp parallel for num_threads((int)(threads > 0 ? threads : 1)) schedule(static)
#endif
        for (int64_t i = 0; i < n; ++i)
            a[i] = b[i] + s * c[i];
        /* Tell the compiler memory changed: without this (and without OpenMP, where the loop
         * above is plain C) it may see that every repeat stores the same values and do one. */
        __asm__ __volatile__("" ::: "memory");
    }
    return 12.0 * (double)n * (double)repeats;
}
