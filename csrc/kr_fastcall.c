/* kr_fastcall.c: the way from Python to a rung for the products of a training step.
 *
 * cffi's call into C is quick; getting there is not. Python checks the two arrays (type, dtype,
 * shape, flags), allocates C and makes a pointer for each array (ffi.from_buffer), which
 * together take several times what NumPy's `a @ b` spends doing the same work in C. A product
 * of the MLP's output layer (128 x 10 x 256) computes for only a few microseconds, so that
 * difference is a large share of its time. This one function does the common case in C,
 * through NumPy's own C API: two plain float32 arrays of any strides, a new C, one call of the
 * rung's function with the GIL released. Anything else it declines (it returns None, having
 * done nothing), and krypton.kernels takes the full path, with its checks and messages. It is
 * not a kernel: it computes nothing, and the rungs never see it.
 *
 *     fastcall(kernel, knobs, align_c_floats, a, b) -> C, or None
 *
 * kernel: (address of the rung's C function, the largest C in floats, 1 if B's columns must
 * be contiguous); knobs: the address of the kr_knobs the rung is called with. Both addresses
 * come from the rung's cffi module (krypton.kernels), which keeps what they point at alive.
 * Measure: time `kernel(a, b)` on 1 x 1 matrices against `a @ b` and against `kernel._call`.
 *
 * Only seam.compile_extension builds this file: it defines KR_CPYTHON_EXTENSION and passes
 * Python's and NumPy's include directories. A compiler run over csrc/ without them (a plain
 * `cc -Wall -c` of every file in csrc/, as for the rungs) compiles it to nothing.
 */
#ifdef KR_CPYTHON_EXTENSION
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include "krypton.h"

typedef int (*kr_sgemm)(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa,
                        int64_t csa, const float *B, int64_t rsb, int64_t csb, float *C,
                        int64_t ldc, const kr_knobs *knobs);

/* x as the rungs take an operand: a plain ndarray of float32 in this machine's byte order,
 * 2-D, aligned to a float, its strides a whole number of floats, which go to *rows and *cols
 * (in floats). NULL for anything else. */
static PyArrayObject *kr_operand(PyObject *x, int64_t *rows, int64_t *cols)
{
    if (!PyArray_CheckExact(x))   /* a subclass (a masked array, say) may mean other things */
        return NULL;
    PyArrayObject *array = (PyArrayObject *)x;
    if (PyArray_NDIM(array) != 2 || PyArray_TYPE(array) != NPY_FLOAT32
        || !PyArray_ISNOTSWAPPED(array) || !PyArray_ISALIGNED(array))
        return NULL;
    const npy_intp *strides = PyArray_STRIDES(array);
    if (strides[0] % (npy_intp)sizeof(float) != 0 || strides[1] % (npy_intp)sizeof(float) != 0)
        return NULL;
    *rows = strides[0] / (npy_intp)sizeof(float);
    *cols = strides[1] / (npy_intp)sizeof(float);
    return array;
}

static PyObject *kr_fastcall(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != 3) {
        PyErr_SetString(PyExc_TypeError, "fastcall(kernel, knobs, align_c_floats, a, b)");
        return NULL;
    }
    kr_sgemm function = (kr_sgemm)PyLong_AsVoidPtr(PyTuple_GET_ITEM(args[0], 0));
    const long long c_floats_max = PyLong_AsLongLong(PyTuple_GET_ITEM(args[0], 1));
    const int unit_stride_b = PyObject_IsTrue(PyTuple_GET_ITEM(args[0], 2));
    const kr_knobs *knobs = PyLong_AsVoidPtr(args[1]);
    const long long align_c_floats = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (function == NULL || knobs == NULL) {
        PyErr_SetString(PyExc_ValueError, "fastcall: a NULL function or knobs address");
        return NULL;
    }
    int64_t rsa, csa, rsb, csb;
    PyArrayObject *a = kr_operand(args[3], &rsa, &csa), *b = kr_operand(args[4], &rsb, &csb);
    if (a == NULL || b == NULL)
        Py_RETURN_NONE;
    const npy_intp M = PyArray_DIM(a, 0), K = PyArray_DIM(a, 1), N = PyArray_DIM(b, 1);
    /* Empty products and large ones (their C is aligned to a line, and may take another kc)
     * are the full path's; so is a strided B for the rungs that load its rows as vectors.
     * M * N is compared by division: a broadcast operand may have 2^40 rows. */
    if (PyArray_DIM(b, 0) != K || M == 0 || N == 0 || K == 0
        || align_c_floats < 1 || M > c_floats_max / N || M > (align_c_floats - 1) / N
        || (unit_stride_b && N > 1 && csb != 1))
        Py_RETURN_NONE;

    npy_intp shape[2] = {M, N};
    PyObject *c = PyArray_SimpleNew(2, shape, NPY_FLOAT32);
    if (c == NULL)
        return NULL;
    const float *A = PyArray_DATA(a), *B = PyArray_DATA(b);
    float *C = PyArray_DATA((PyArrayObject *)c);
    /* While the GIL is released, another thread may run Python: the references held here
     * keep a and b alive and unresizable (ndarray.resize refuses an array referenced
     * elsewhere). */
    Py_INCREF(a);
    Py_INCREF(b);
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = function(M, N, K, A, rsa, csa, B, rsb, csb, C, N, knobs);
    Py_END_ALLOW_THREADS
    Py_DECREF(a);
    Py_DECREF(b);
    if (status != KR_OK) {   /* the full path runs it again and raises the error it names */
        Py_DECREF(c);
        Py_RETURN_NONE;
    }
    return c;
}

static PyMethodDef kr_methods[] = {
    {"fastcall", (PyCFunction)(void (*)(void))kr_fastcall, METH_FASTCALL,
     "fastcall(kernel, knobs, align_c_floats, a, b) -> C = a @ b, or None (see kr_fastcall.c)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kr_module = {
    PyModuleDef_HEAD_INIT, "_kr_fastcall", "The short way from Python to a rung.", -1,
    kr_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kr_fastcall(void)
{
    import_array();   /* NumPy's C API: returns NULL from here if NumPy cannot be imported */
    return PyModule_Create(&kr_module);
}
#else
typedef int kr_fastcall_needs_python_headers;   /* ISO C wants a translation unit to hold one */
#endif
