/* The greedy fill of the exposure policy (step 4 of recommender/ranking/policy.py), in C.
 *
 * policy._fill keeps the reference implementation in numpy and calls this one when the
 * extension is built: the same picks and reason codes from the same float arrays (the MMR
 * penalty table is computed by numpy and passed in, so no rounding differs). The Python
 * loop spent ~5 numpy calls a position; here a position is one pass over a few dozen rows.
 *
 * fill(adj, tail, never, explore, table, pen, lam, share, start, slots, tail_count)
 *   adj      float64[m]   policy scores of the pool, sorted best first
 *   tail     bool[m]      tail item
 *   never    bool[m]      never shown
 *   explore  bool[e]      explore[p] marks list position p as an exploration position
 *   table    float32[m*m] or None: -lam * max(0, cosine) between pool rows (None: lam == 0)
 *   pen      float32[m]   or None: -lam * max(0, max cosine to the pins)
 *   lam, share           MMR strength (0 without table), minimum tail share
 *   start, slots         first position to fill (the pins placed), positions to fill (<= m)
 *   tail_count           tail items among the pins
 * returns a list of (row in the pool, reason bits), bits: 1 tail quota, 2 exploration,
 * 4 diversity.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-9
#define WHY_QUOTA 1
#define WHY_EXPLORATION 2
#define WHY_DIVERSITY 4

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static int get_buf(PyObject *obj, Buf *b, Py_ssize_t itemsize, Py_ssize_t n, const char *name)
{
    b->held = 0;
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    b->held = 1;
    if (b->view.itemsize != itemsize || (n >= 0 && b->view.len != n * itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes, got %zd bytes",
                     name, n, itemsize, b->view.len);
        return -1;
    }
    return 0;
}

static void release(Buf *b)
{
    if (b->held)
        PyBuffer_Release(&b->view);
    b->held = 0;
}

static PyObject *fill(PyObject *self, PyObject *args)
{
    PyObject *adj_o, *tail_o, *never_o, *explore_o, *table_o, *pen_o;
    double lam, share;
    Py_ssize_t start, slots, tail_count;
    if (!PyArg_ParseTuple(args, "OOOOOOddnnn", &adj_o, &tail_o, &never_o, &explore_o, &table_o,
                          &pen_o, &lam, &share, &start, &slots, &tail_count))
        return NULL;

    Buf adj_b = {0}, tail_b = {0}, never_b = {0}, explore_b = {0}, table_b = {0}, pen_b = {0};
    PyObject *out = NULL;
    double *base = NULL, *mmr = NULL;
    float *pen = NULL;
    char *taken = NULL;
    Py_ssize_t *tail_at = NULL;

    if (get_buf(adj_o, &adj_b, sizeof(double), -1, "adj") < 0)
        goto done;
    const Py_ssize_t m = adj_b.view.len / (Py_ssize_t)sizeof(double);
    if (get_buf(tail_o, &tail_b, 1, m, "tail") < 0 || get_buf(never_o, &never_b, 1, m, "never") < 0
        || get_buf(explore_o, &explore_b, 1, -1, "explore") < 0)
        goto done;
    const int mmr_on = table_o != Py_None;
    if (mmr_on && (get_buf(table_o, &table_b, sizeof(float), m * m, "table") < 0
                   || get_buf(pen_o, &pen_b, sizeof(float), m, "pen") < 0))
        goto done;
    if (slots < 0 || slots > m || start < 0) {
        PyErr_Format(PyExc_ValueError, "slots (%zd) must be in [0, %zd] and start (%zd) >= 0",
                     slots, m, start);
        goto done;
    }
    const double *adj = adj_b.view.buf;
    const char *tail = tail_b.view.buf, *never = never_b.view.buf, *explore = explore_b.view.buf;
    const Py_ssize_t n_explore = explore_b.view.len;
    const float *table = mmr_on ? table_b.view.buf : NULL;

    taken = PyMem_Calloc(m ? m : 1, 1);
    tail_at = PyMem_Malloc((m ? m : 1) * sizeof(Py_ssize_t));
    if (mmr_on) {
        base = PyMem_Malloc((m ? m : 1) * sizeof(double));
        mmr = PyMem_Malloc((m ? m : 1) * sizeof(double));
        pen = PyMem_Malloc((m ? m : 1) * sizeof(float));
    }
    out = PyList_New(slots);
    if (!taken || !tail_at || (mmr_on && (!base || !mmr || !pen)) || !out) {
        Py_CLEAR(out);
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n_tail = 0;
    for (Py_ssize_t i = 0; i < m; i++)
        if (tail[i])
            tail_at[n_tail++] = i;
    Py_ssize_t tail_left = n_tail, first = 0, first_tail = 0;
    if (mmr_on) {
        memcpy(pen, pen_b.view.buf, m * sizeof(float));
        for (Py_ssize_t i = 0; i < m; i++) {
            base[i] = (1.0 - lam) * adj[i];
            mmr[i] = base[i] + (double)pen[i];
        }
    }

    for (Py_ssize_t s = 0; s < slots; s++) {
        const Py_ssize_t pos = start + s;
        long why = 0;
        const int forced = tail_left > 0 && (double)tail_count < floor(share * (double)(pos + 1) + EPS);
        while (taken[first])
            first++;
        if (forced)
            while (taken[tail_at[first_tail]])
                first_tail++;
        const Py_ssize_t best = forced ? tail_at[first_tail] : first;
        Py_ssize_t j = -1, free_pick;
        if (pos < n_explore && explore[pos]) {
            for (Py_ssize_t i = 0; i < m; i++)
                if (!taken[i] && never[i] && (!forced || tail[i])) {
                    j = i;
                    why |= WHY_EXPLORATION;
                    break;
                }
        }
        if (mmr_on) {
            /* argmax: the first row with the largest value, as numpy's (taken rows are -inf) */
            free_pick = 0;
            for (Py_ssize_t i = 1; i < m; i++)
                if (mmr[i] > mmr[free_pick])
                    free_pick = i;
            if (j < 0) {
                if (forced) {
                    j = best;
                    for (Py_ssize_t i = 0; i < m; i++)
                        if (tail[i] && mmr[i] > mmr[j])
                            j = i;
                    /* numpy takes the first of equal maxima: an earlier tail row tying j */
                    for (Py_ssize_t i = 0; i < j; i++)
                        if (tail[i] && mmr[i] == mmr[j]) {
                            j = i;
                            break;
                        }
                }
                else
                    j = free_pick;
                if (j != best)
                    why |= WHY_DIVERSITY;
            }
        }
        else {
            free_pick = first;
            if (j < 0)
                j = best;
        }
        if (forced && !tail[free_pick])
            why |= WHY_QUOTA;
        PyObject *pick = Py_BuildValue("(nl)", j, why);
        if (!pick) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, s, pick);
        taken[j] = 1;
        if (tail[j]) {
            tail_count++;
            tail_left--;
        }
        if (mmr_on && s + 1 < slots) {
            base[j] = -INFINITY;
            const float *row = table + j * m;
            for (Py_ssize_t i = 0; i < m; i++) {
                if (row[i] < pen[i])
                    pen[i] = row[i];
                mmr[i] = base[i] + (double)pen[i];
            }
        }
    }

done:
    PyMem_Free(taken);
    PyMem_Free(tail_at);
    PyMem_Free(base);
    PyMem_Free(mmr);
    PyMem_Free(pen);
    release(&adj_b);
    release(&tail_b);
    release(&never_b);
    release(&explore_b);
    release(&table_b);
    release(&pen_b);
    return out;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS, "The exposure policy's greedy fill; see recommender/ranking/_greedy.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_greedy", "The exposure policy's greedy fill, in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__greedy(void)
{
    return PyModule_Create(&module);
}
