/* The greedy fill of the exposure policy (step 4 of recommender/ranking/policy.py) and the
 * selection of the candidates it ranks (steps 0-1), in C.
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
#include <stdint.h>
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

/* select(order, cand, raw, active, in_stock, impressions, cap, cap_items, cap_values, codes,
 *        category, price, price_filter, min_price, max_price, buried, exclude, bought, out) -> k
 *
 * Steps 0-1 of rerank: the rows of the candidates to keep, in the order rerank ranks them
 * (score best first, ties by row), first occurrence of each item only, hard filters passed.
 * The numpy reference is policy._select_rows (the tests compare the two).
 *   order       int64[n]    the rows by score, best first, ties by row (numpy's stable argsort
 *                           of -raw: its sort beats qsort's comparator calls on big pools)
 *   cand        int64[n]    item indices (-1: none); every other one in [0, n_items)
 *   raw         float64[n]  model scores (non-finite: dropped)
 *   active      bool[N] or None       eligible items (None: all)
 *   in_stock    bool[N] or None       in stock (None: the request takes any)
 *   impressions int64[N]    today's impressions; cap float64: default daily cap (inf: none)
 *   cap_items   int64[c]    sorted items with caps of their own, cap_values float64[c]
 *   codes       int64[a] sorted or None: allowed category codes; category int64[N]
 *   price       float64[N]; price_filter: whether min_price/max_price apply (NaN fails them)
 *   buried, exclude int64 sorted; bought int64 in any order
 *   out         int64[n]    writable: the rows, out[:k]
 */
static int by_value(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : (x > y);
}

/* Adds item (>= 0) to an open-addressing set of 2^bits slots (-1: empty); 0 if it was there.
 * Sized by the candidates, not the catalog: no per-call cost that grows with the catalog. */
static int set_add(int64_t *slots, int bits, int64_t item)
{
    const uint64_t mask = ((uint64_t)1 << bits) - 1;
    uint64_t at = ((uint64_t)item * 0x9E3779B97F4A7C15ULL) >> (64 - bits);
    while (slots[at] >= 0) {
        if (slots[at] == item)
            return 0;
        at = (at + 1) & mask;
    }
    slots[at] = item;
    return 1;
}

/* Position of v in sorted a[0..n), or -1. */
static Py_ssize_t find_sorted(const int64_t *a, Py_ssize_t n, int64_t v)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == v ? lo : -1;
}

static PyObject *select_rows(PyObject *self, PyObject *args)
{
    PyObject *order_o, *cand_o, *raw_o, *active_o, *stock_o, *imp_o, *cap_items_o, *cap_values_o, *codes_o;
    PyObject *category_o, *price_o, *buried_o, *exclude_o, *bought_o, *out_o;
    double cap, min_price, max_price;
    int price_filter;
    if (!PyArg_ParseTuple(args, "OOOOOOdOOOOOpddOOOO", &order_o, &cand_o, &raw_o, &active_o, &stock_o, &imp_o,
                          &cap, &cap_items_o, &cap_values_o, &codes_o, &category_o, &price_o,
                          &price_filter, &min_price, &max_price, &buried_o, &exclude_o, &bought_o,
                          &out_o))
        return NULL;

    Buf order_b = {0}, cand_b = {0}, raw_b = {0}, active_b = {0}, stock_b = {0}, imp_b = {0}, cap_items_b = {0};
    Buf cap_values_b = {0}, codes_b = {0}, category_b = {0}, price_b = {0}, buried_b = {0};
    Buf exclude_b = {0}, bought_b = {0}, out_b = {0};
    PyObject *result = NULL;
    int64_t *bought = NULL;
    int64_t *seen = NULL;

    if (get_buf(cand_o, &cand_b, 8, -1, "cand") < 0)
        goto done;
    const Py_ssize_t n = cand_b.view.len / 8;
    if (get_buf(order_o, &order_b, 8, n, "order") < 0 || get_buf(raw_o, &raw_b, 8, n, "raw") < 0
        || get_buf(imp_o, &imp_b, 8, -1, "impressions") < 0)
        goto done;
    const Py_ssize_t n_items = imp_b.view.len / 8;
    if ((active_o != Py_None && get_buf(active_o, &active_b, 1, n_items, "active") < 0)
        || (stock_o != Py_None && get_buf(stock_o, &stock_b, 1, n_items, "in_stock") < 0)
        || get_buf(cap_items_o, &cap_items_b, 8, -1, "cap_items") < 0
        || get_buf(cap_values_o, &cap_values_b, 8, cap_items_b.view.len / 8, "cap_values") < 0
        || (codes_o != Py_None && get_buf(codes_o, &codes_b, 8, -1, "codes") < 0)
        || get_buf(category_o, &category_b, 8, n_items, "category") < 0
        || get_buf(price_o, &price_b, 8, n_items, "price") < 0
        || get_buf(buried_o, &buried_b, 8, -1, "buried") < 0
        || get_buf(exclude_o, &exclude_b, 8, -1, "exclude") < 0
        || get_buf(bought_o, &bought_b, 8, -1, "bought") < 0)
        goto done;
    if (PyObject_GetBuffer(out_o, &out_b.view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        goto done;
    out_b.held = 1;
    if (out_b.view.itemsize != 8 || out_b.view.len < n * 8) {
        PyErr_SetString(PyExc_ValueError, "out: expected a writable int64 array as long as cand");
        goto done;
    }

    const int64_t *order = order_b.view.buf, *cand = cand_b.view.buf, *imp = imp_b.view.buf, *cap_items = cap_items_b.view.buf;
    const double *raw = raw_b.view.buf, *cap_values = cap_values_b.view.buf, *price = price_b.view.buf;
    const char *active = active_o != Py_None ? active_b.view.buf : NULL;
    const char *stock = stock_o != Py_None ? stock_b.view.buf : NULL;
    const int64_t *codes = codes_o != Py_None ? codes_b.view.buf : NULL, *category = category_b.view.buf;
    const Py_ssize_t n_caps = cap_items_b.view.len / 8, n_codes = codes_b.held ? codes_b.view.len / 8 : 0;
    const int64_t *buried = buried_b.view.buf, *exclude = exclude_b.view.buf;
    const Py_ssize_t n_buried = buried_b.view.len / 8, n_exclude = exclude_b.view.len / 8;
    const Py_ssize_t n_bought = bought_b.view.len / 8;
    int64_t *out = out_b.view.buf;

    bought = PyMem_Malloc((n_bought ? n_bought : 1) * sizeof(int64_t));
    int bits = 1;
    while (((Py_ssize_t)1 << bits) < 2 * n)
        bits++; /* at most half full */
    seen = PyMem_Malloc(((size_t)1 << bits) * sizeof(int64_t));
    if (!bought || !seen) {
        PyErr_NoMemory();
        goto done;
    }
    memset(seen, 0xff, ((size_t)1 << bits) * sizeof(int64_t)); /* every slot -1: empty */
    memcpy(bought, bought_b.view.buf, n_bought * sizeof(int64_t));
    qsort(bought, n_bought, sizeof(int64_t), by_value);

    Py_ssize_t k = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        const int64_t row = order[r];
        if (row < 0 || row >= n) {
            PyErr_SetString(PyExc_ValueError, "order: expected a permutation of the rows");
            goto done;
        }
        const int64_t item = cand[row];
        if (item < 0 || !isfinite(raw[row]))
            continue; /* no item, or no usable score */
        if (item >= n_items) {
            PyErr_Format(PyExc_ValueError, "candidate item index %lld is outside the catalog",
                         (long long)item);
            goto done;
        }
        if (!set_add(seen, bits, item))
            continue; /* a later copy of an item: the first one decides */
        if (active && !active[item])
            continue;
        if (stock && !stock[item])
            continue;
        if (codes && find_sorted(codes, n_codes, category[item]) < 0)
            continue;
        if (price_filter && !(price[item] >= min_price && price[item] <= max_price))
            continue; /* NaN fails; an open bound is -inf or inf */
        double item_cap = cap;
        if (n_caps) {
            Py_ssize_t at = find_sorted(cap_items, n_caps, item);
            if (at >= 0)
                item_cap = cap_values[at];
        }
        if (!((double)imp[item] < item_cap))
            continue;
        if (find_sorted(buried, n_buried, item) >= 0 || find_sorted(exclude, n_exclude, item) >= 0
            || find_sorted(bought, n_bought, item) >= 0)
            continue;
        out[k++] = row;
    }
    result = PyLong_FromSsize_t(k);

done:
    PyMem_Free(bought);
    PyMem_Free(seen);
    release(&order_b);
    release(&cand_b);
    release(&raw_b);
    release(&active_b);
    release(&stock_b);
    release(&imp_b);
    release(&cap_items_b);
    release(&cap_values_b);
    release(&codes_b);
    release(&category_b);
    release(&price_b);
    release(&buried_b);
    release(&exclude_b);
    release(&bought_b);
    release(&out_b);
    return result;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS, "The exposure policy's greedy fill; see recommender/ranking/_greedy.c."},
    {"select", select_rows, METH_VARARGS, "The rows rerank keeps, ranked; see recommender/ranking/_greedy.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_greedy", "The exposure policy's greedy fill, in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__greedy(void)
{
    return PyModule_Create(&module);
}
