/* kr_workspace.h: each thread's packing buffers, kept from call to call.
 *
 * Allocating (and page-faulting) a few MB on every call would cost more than a small matmul
 * itself, so the buffers live on. Each thread keeps its own, so calls from several Python
 * threads at once never share one; they are freed when the thread ends (and at exit for the
 * main thread, whose thread destructors never run). */
#ifndef KR_WORKSPACE_H
#define KR_WORKSPACE_H
#include <pthread.h>
#include "kr_common.h"

enum { KR_BUFFER_A = 0, KR_BUFFER_B = 1, KR_BUFFERS = 2 };
typedef struct kr_workspace { float *data[KR_BUFFERS]; int64_t capacity[KR_BUFFERS]; } kr_workspace;

static pthread_key_t kr_workspace_key;
static pthread_once_t kr_workspace_once = PTHREAD_ONCE_INIT;

static void kr_workspace_free(void *opaque)
{
    kr_workspace *ws = opaque;
    for (int i = 0; i < KR_BUFFERS; ++i)
        free(ws->data[i]);
    free(ws);
}

static void kr_workspace_release_main_thread(void)
{
    kr_workspace *ws = pthread_getspecific(kr_workspace_key);
    if (ws) {
        pthread_setspecific(kr_workspace_key, NULL);
        kr_workspace_free(ws);
    }
}

static void kr_workspace_create_key(void)
{
    pthread_key_create(&kr_workspace_key, kr_workspace_free);
    atexit(kr_workspace_release_main_thread);
}

/* This thread's buffer `which`, grown to hold at least rows x cols floats; NULL if out of
 * memory. A zero-stride NumPy view can make K as large as 2^61 with no memory behind it, so the
 * product is checked: wrapped around, it would hand back a buffer far too small. */
static inline float *kr_thread_buffer(int which, int64_t rows, int64_t cols)
{
    int64_t count;
    if (__builtin_mul_overflow(rows, cols, &count) || count > INT64_MAX / 8)
        return NULL;
    pthread_once(&kr_workspace_once, kr_workspace_create_key);
    kr_workspace *ws = pthread_getspecific(kr_workspace_key);
    if (!ws) {
        if (!(ws = calloc(1, sizeof *ws)))
            return NULL;
        pthread_setspecific(kr_workspace_key, ws);
    }
    if (ws->capacity[which] < count) {
        free(ws->data[which]);
        ws->data[which] = kr_alloc_floats(count);
        ws->capacity[which] = ws->data[which] ? count : 0;
    }
    return ws->data[which];
}

#endif
