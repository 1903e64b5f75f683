/*
 * _identity_speedups: the optional compiled half of identity.core.UnionFind.union_pairs.
 *
 * Built by setuptools when a C compiler and the Python headers are there (the extension is
 * optional: without them the install goes on, and identity.core runs its pure-Python code,
 * which gives the same results).  Two functions, both over the structures that core.py owns:
 *
 *   intern_pairs(index, pairs) -> bytes
 *       For every item of every pair, in order: its slot in `index` (a dict of item -> slot),
 *       a new item getting the next slot, len(index), exactly as core._Interner.__missing__
 *       does.  Returns the slots as native int64, two per pair.  A pair that is not a
 *       sequence raises TypeError; one without exactly two items, ValueError; an unhashable
 *       item, TypeError.  On an error the items interned so far stay in `index`: the caller
 *       removes them (as it does for the pure-Python path).
 *
 *   merge_slots(parent, slots) -> int
 *       Union the slot pairs of `slots` (int64, as intern_pairs returns) in the forest
 *       `parent` (a writable buffer of int64: a parent slot, or minus the size at a root),
 *       by size with path halving, exactly as core.UnionFind._merge_slots does, so that the
 *       two give the same forest.  Returns the number of successful links.  A slot or a
 *       parent outside the forest is refused before anything changes; a cycle in the forest
 *       (which UnionFind never makes) raises ValueError instead of looping.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static const char TWO_ITEMS[] = "every pair must have exactly two items";

/* The slot of `x` in `index`, adding it with the next slot when it is absent; -1 on error. */
static int64_t
slot_of(PyObject *index, PyObject *x)
{
    PyObject *found = PyDict_GetItemWithError(index, x); /* borrowed */
    if (found != NULL) {
        long long slot = PyLong_AsLongLong(found);
        if (slot == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (slot < 0) {
            PyErr_SetString(PyExc_ValueError, "a slot in the index is negative");
            return -1;
        }
        return (int64_t)slot;
    }
    if (PyErr_Occurred()) {
        return -1; /* unhashable, or __eq__ raised */
    }
    Py_ssize_t next = PyDict_GET_SIZE(index);
    PyObject *value = PyLong_FromSsize_t(next);
    if (value == NULL) {
        return -1;
    }
    int failed = PyDict_SetItem(index, x, value);
    Py_DECREF(value);
    return failed ? -1 : (int64_t)next;
}

static PyObject *
intern_pairs(PyObject *module, PyObject *args)
{
    PyObject *index, *pairs;
    if (!PyArg_ParseTuple(args, "O!O:intern_pairs", &PyDict_Type, &index, &pairs)) {
        return NULL;
    }
    if (!PyList_CheckExact(pairs) && !PyTuple_CheckExact(pairs)) {
        PyErr_SetString(PyExc_TypeError, "pairs must be a list or a tuple");
        return NULL;
    }
    Py_INCREF(pairs);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(pairs);
    if (n > PY_SSIZE_T_MAX / 16) {
        Py_DECREF(pairs);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 2 * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) {
        Py_DECREF(pairs);
        return NULL;
    }
    int64_t *slots = (int64_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        /* an item's __eq__ or __hash__ may run any code, even shrink a list of pairs */
        if (i >= PySequence_Fast_GET_SIZE(pairs)) {
            PyErr_SetString(PyExc_RuntimeError, "the pairs changed size during union_pairs");
            goto fail;
        }
        PyObject *pair = PySequence_Fast_GET_ITEM(pairs, i);
        if (!PySequence_Check(pair)) { /* an iterator could be read only once, as the pure path */
            PyErr_SetString(PyExc_TypeError, "every pair must be a sequence of two items");
            goto fail;
        }
        Py_INCREF(pair); /* reading a pair that is not a list or tuple runs its code */
        PyObject *items = PySequence_Fast(pair, "every pair must be a sequence of two items");
        Py_DECREF(pair);
        if (items == NULL) {
            goto fail;
        }
        if (PySequence_Fast_GET_SIZE(items) != 2) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_ValueError, TWO_ITEMS);
            goto fail;
        }
        PyObject *a = PySequence_Fast_GET_ITEM(items, 0);
        PyObject *b = PySequence_Fast_GET_ITEM(items, 1);
        Py_INCREF(a);
        Py_INCREF(b);
        Py_DECREF(items);
        int64_t sa = slot_of(index, a);
        int64_t sb = sa < 0 ? -1 : slot_of(index, b);
        Py_DECREF(a);
        Py_DECREF(b);
        if (sb < 0) {
            goto fail;
        }
        slots[2 * i] = sa;
        slots[2 * i + 1] = sb;
    }
    Py_DECREF(pairs);
    return out;
fail:
    Py_DECREF(pairs);
    Py_DECREF(out);
    return NULL;
}

/* The root of slot `a`, halving the path on the way; *minus_size = parent[root] = -size.
 * -1 when the walk takes more than `n` steps: the forest has a cycle. */
static inline int64_t
root_of(int64_t *parent, int64_t n, int64_t a, int64_t *minus_size)
{
    int64_t p = parent[a], g, steps = 0;
    while (p >= 0) {
        if (++steps > n) {
            return -1;
        }
        g = parent[p];
        if (g < 0) {
            a = p;
            p = g;
            break;
        }
        parent[a] = g;
        a = g;
        p = parent[g];
    }
    *minus_size = p;
    return a;
}

static PyObject *
merge_slots(PyObject *module, PyObject *args)
{
    PyObject *parent_obj, *slots_obj;
    if (!PyArg_ParseTuple(args, "OO:merge_slots", &parent_obj, &slots_obj)) {
        return NULL;
    }
    Py_buffer pb, sb;
    if (PyObject_GetBuffer(parent_obj, &pb, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(slots_obj, &sb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&pb);
        return NULL;
    }
    PyObject *result = NULL;
    if (pb.itemsize != 8 || pb.format == NULL || (strcmp(pb.format, "q") && strcmp(pb.format, "l"))) {
        PyErr_SetString(PyExc_TypeError, "parent must be an array of signed 64-bit integers");
        goto done;
    }
    if (sb.len % (2 * (Py_ssize_t)sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "slots must hold whole pairs of 64-bit integers");
        goto done;
    }
    int64_t *parent = (int64_t *)pb.buf;
    const int64_t *slots = (const int64_t *)sb.buf;
    int64_t n = (int64_t)(pb.len / 8);
    Py_ssize_t m = sb.len / 8;
    for (Py_ssize_t k = 0; k < m; k++) { /* checked first: a bad slot changes nothing */
        if (slots[k] < 0 || slots[k] >= n) {
            PyErr_Format(PyExc_ValueError, "slot %lld is not in the forest of %lld",
                         (long long)slots[k], (long long)n);
            goto done;
        }
    }
    for (int64_t i = 0; i < n; i++) { /* the forest too: every parent is a slot of it */
        if (parent[i] >= n) {
            PyErr_Format(PyExc_ValueError, "the parent of slot %lld, %lld, is not in the forest",
                         (long long)i, (long long)parent[i]);
            goto done;
        }
    }
    Py_ssize_t links = 0;
    for (Py_ssize_t k = 0; k < m; k += 2) {
        int64_t p, q;
        int64_t a = root_of(parent, n, slots[k], &p);
        int64_t b = a < 0 ? -1 : root_of(parent, n, slots[k + 1], &q);
        if (b < 0) { /* links made so far stay made: the forest is no worse than it came */
            PyErr_SetString(PyExc_ValueError, "the forest has a cycle");
            goto done;
        }
        if (a == b) {
            continue;
        }
        if (p <= q) { /* union by size: a is the root of the larger set */
            parent[a] = p + q;
            parent[b] = a;
        }
        else {
            parent[b] = p + q;
            parent[a] = b;
        }
        links++;
    }
    result = PyLong_FromSsize_t(links);
done:
    PyBuffer_Release(&sb);
    PyBuffer_Release(&pb);
    return result;
}

static PyMethodDef methods[] = {
    {"intern_pairs", intern_pairs, METH_VARARGS,
     "intern_pairs(index, pairs) -> bytes: the int64 slot of every item of every pair."},
    {"merge_slots", merge_slots, METH_VARARGS,
     "merge_slots(parent, slots) -> int: union the slot pairs in the forest; links made."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_identity_speedups",
    "The optional compiled half of identity.core.UnionFind.union_pairs.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__identity_speedups(void)
{
    return PyModule_Create(&module);
}
