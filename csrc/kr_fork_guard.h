/* kr_fork_guard.h: may this process start a team of OpenMP threads? Included by every file
 * that starts one (parallel.c, small.c through it, fused.c); each compiled module keeps its own
 * flag.
 *
 * GCC's OpenMP runtime keeps its threads between calls, and they do not survive fork(): in a
 * child forked after the parent ran a parallel region (what Python's multiprocessing does by
 * default on Linux), the next parallel region waits forever for them. So the child marks itself
 * at fork and computes on its calling thread only: the same results, no hang. The flag only
 * ever goes from 0 to 1. Test: tests/test_reliability.py forks after a threaded call. */
#ifndef KR_FORK_GUARD_H
#define KR_FORK_GUARD_H
#ifdef _OPENMP
#include <pthread.h>

static int kr_threads_lost_to_fork;
static pthread_once_t kr_fork_watch_once = PTHREAD_ONCE_INIT;
static void kr_note_fork_in_child(void) { kr_threads_lost_to_fork = 1; }
static void kr_watch_fork(void) { pthread_atfork(NULL, NULL, kr_note_fork_in_child); }

/* 1 if a team may start (the fork watch is set before the first one); 0 in a child forked
 * after a team ran. */
static inline int kr_teams_allowed(void)
{
    if (kr_threads_lost_to_fork)
        return 0;
    pthread_once(&kr_fork_watch_once, kr_watch_fork);
    return 1;
}
#endif
#endif
