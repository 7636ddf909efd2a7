/*
 * Bounds-checked rANS coder for slimcodec, reading and writing CompressAI's format exactly.
 *
 * The format is that of CompressAI's `RangeEncoder.encode_with_indexes` (cpp_exts/rans,
 * itself Fabian Giesen's 64-bit rANS, ryg_rans): 16-bit probabilities, 32-bit words written
 * little-endian, the final encoder state (two words) first. A symbol whose value lies
 * outside its CDF's range is coded as the CDF's last symbol, followed by a bypass run:
 * the run length in 4-bit nibbles (repeated 15s, then the rest) and the raw value's nibbles.
 *
 * Unlike CompressAI's decoder, which trusts its input, every read here is checked against
 * the end of the string, a bypass run longer than a 32-bit value is refused, and a string
 * must end exactly where its symbols do, in the encoder's initial state: any other string
 * is reported as corrupt, never read past. The GIL is released while coding.
 *
 * Python API (called by slimcodec/bitstream/rans.py, which validates the tables):
 *   encode(symbols, cdfs, lengths, offsets, plane[, indexes]) -> bytes
 *   decode(data, cdfs, lengths, offsets, plane, out[, indexes]) -> None
 * symbols/out: int32 (n,); cdfs: int32 (m, stride) C-contiguous; lengths, offsets: int32
 * (m,). Symbol i uses CDF i / plane (a channel-major latent: one CDF per channel), or,
 * given indexes ((n,), each in [0, m): a conditional model's table index per element),
 * CDF indexes[i]. Indexes are int32, or uint8 (a quarter of the memory: a latent's worth
 * of them is held whole while coding, and scale tables have far fewer than 256 entries).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION 16
#define BYPASS_BITS 4
#define BYPASS_MAX ((1 << BYPASS_BITS) - 1)
#define MAX_BYPASS_NIBBLES 8 /* a 32-bit raw value */
#define RANS_L (1ull << 31)

typedef struct {
    const int32_t *cdfs;
    Py_ssize_t stride;
    const int32_t *lengths;
    const int32_t *offsets;
    Py_ssize_t count;
} Tables;

/* Per-element table indexes: int32 or uint8, or neither (one CDF per plane). */
typedef struct {
    const int32_t *i32;
    const uint8_t *u8;
} Indexes;

static inline Py_ssize_t table_of(const Indexes *ix, Py_ssize_t i, Py_ssize_t plane) {
    return ix->u8 ? ix->u8[i] : ix->i32 ? ix->i32[i] : i / plane;
}

static uint32_t load_word(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void store_word(uint8_t *p, uint32_t w) {
    p[0] = (uint8_t)w;
    p[1] = (uint8_t)(w >> 8);
    p[2] = (uint8_t)(w >> 16);
    p[3] = (uint8_t)(w >> 24);
}

/* ---- decoder ------------------------------------------------------------------------- */

typedef struct {
    uint64_t x;
    const uint8_t *data;
    Py_ssize_t pos, words;
} Decoder;

/* Pull a word into the state when it fell below RANS_L; 0 when the string has none left. */
static int renormalize(Decoder *d) {
    if (d->x < RANS_L) {
        if (d->pos >= d->words) return 0;
        d->x = (d->x << 32) | load_word(d->data + 4 * d->pos);
        d->pos++;
    }
    return 1;
}

static int get_bits(Decoder *d, uint32_t *val) {
    *val = (uint32_t)(d->x & BYPASS_MAX);
    d->x >>= BYPASS_BITS;
    return renormalize(d);
}

/* Returns NULL on success, else a static message. */
static const char *decode_all(Decoder *d, const Tables *t, Py_ssize_t plane,
                              const Indexes *indexes, int32_t *out, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t k = table_of(indexes, i, plane);
        const int32_t *cdf = t->cdfs + k * t->stride;
        int32_t len = t->lengths[k];
        int32_t max_value = len - 2;
        uint32_t cum = (uint32_t)(d->x & ((1u << PRECISION) - 1));
        /* The s with cdf[s] <= cum < cdf[s + 1]; cdf[0] = 0 and cdf[len - 1] = 2^16. */
        int32_t lo = 0, hi = len - 1;
        while (hi - lo > 1) {
            int32_t mid = (lo + hi) / 2;
            if ((uint32_t)cdf[mid] <= cum) lo = mid;
            else hi = mid;
        }
        uint32_t start = (uint32_t)cdf[lo], freq = (uint32_t)cdf[lo + 1] - start;
        d->x = freq * (d->x >> PRECISION) + (d->x & ((1u << PRECISION) - 1)) - start;
        if (!renormalize(d)) return "entropy-coded string ends before its latent";
        int64_t value = lo;
        if (value == max_value) {
            uint32_t val, nibbles;
            if (!get_bits(d, &val)) return "entropy-coded string ends inside a bypass run";
            nibbles = val;
            while (val == BYPASS_MAX) {
                if (!get_bits(d, &val)) return "entropy-coded string ends inside a bypass run";
                nibbles += val;
                if (nibbles > MAX_BYPASS_NIBBLES) return "bypass run longer than a 32-bit value";
            }
            if (nibbles > MAX_BYPASS_NIBBLES) return "bypass run longer than a 32-bit value";
            uint64_t raw = 0;
            for (uint32_t j = 0; j < nibbles; j++) {
                if (!get_bits(d, &val)) return "entropy-coded string ends inside a bypass run";
                raw |= (uint64_t)val << (j * BYPASS_BITS);
            }
            value = (int64_t)(raw >> 1);
            value = (raw & 1) ? -value - 1 : value + max_value;
        }
        value += t->offsets[k];
        if (value < INT32_MIN || value > INT32_MAX) return "decoded symbol out of range";
        out[i] = (int32_t)value;
    }
    if (d->pos != d->words) return "entropy-coded string is longer than its latent";
    if (d->x != RANS_L) return "entropy-coded string does not end in the coder's initial state";
    return NULL;
}

/* ---- encoder ------------------------------------------------------------------------- */

typedef struct {
    uint64_t x;
    uint8_t *buf;     /* words are written backwards from the end */
    Py_ssize_t free;  /* words still free before the write position */
} Encoder;

static int emit(Encoder *e) {
    if (e->free <= 0) return 0;
    e->free--;
    store_word(e->buf + 4 * e->free, (uint32_t)e->x);
    e->x >>= 32;
    return 1;
}

static int put(Encoder *e, uint32_t start, uint32_t freq) {
    uint64_t x_max = ((RANS_L >> PRECISION) << 32) * freq;
    if (e->x >= x_max && !emit(e)) return 0;
    e->x = ((e->x / freq) << PRECISION) + (e->x % freq) + start;
    return 1;
}

static int put_bits(Encoder *e, uint32_t val, uint32_t nbits) {
    uint64_t x_max = ((RANS_L >> PRECISION) << 32) * (1u << (PRECISION - nbits));
    if (e->x >= x_max && !emit(e)) return 0;
    e->x = (e->x << nbits) | val;
    return 1;
}

static const char *encode_all(Encoder *e, const Tables *t, Py_ssize_t plane,
                              const Indexes *indexes, const int32_t *symbols, Py_ssize_t n) {
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        Py_ssize_t k = table_of(indexes, i, plane);
        const int32_t *cdf = t->cdfs + k * t->stride;
        int32_t max_value = t->lengths[k] - 2;
        int64_t value = (int64_t)symbols[i] - t->offsets[k];
        if (value < 0 || value >= max_value) {
            int64_t raw = value < 0 ? -2 * value - 1 : 2 * (value - max_value);
            if (raw > INT32_MAX) return "symbol too far outside its CDF's range";
            uint32_t nibbles = 0;
            while ((raw >> (nibbles * BYPASS_BITS)) != 0) nibbles++;
            for (int32_t j = (int32_t)nibbles - 1; j >= 0; j--)
                if (!put_bits(e, (uint32_t)(raw >> (j * BYPASS_BITS)) & BYPASS_MAX, BYPASS_BITS))
                    return "output buffer overflow";
            uint32_t rest = nibbles;
            while (rest >= BYPASS_MAX) {
                rest -= BYPASS_MAX;
                if (!put_bits(e, BYPASS_MAX, BYPASS_BITS)) return "output buffer overflow";
            }
            if (!put_bits(e, rest, BYPASS_BITS)) return "output buffer overflow";
            value = max_value;
        }
        uint32_t start = (uint32_t)cdf[value];
        if (!put(e, start, (uint32_t)cdf[value + 1] - start)) return "output buffer overflow";
    }
    /* Flush: the state's low word first, then its high word. */
    if (e->free < 2) return "output buffer overflow";
    e->free -= 2;
    store_word(e->buf + 4 * e->free, (uint32_t)e->x);
    store_word(e->buf + 4 * (e->free + 1), (uint32_t)(e->x >> 32));
    return NULL;
}

/* ---- Python glue --------------------------------------------------------------------- */

static int get_int32(PyObject *obj, Py_buffer *view, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != 4 || strcmp(view->format, "i") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous int32 buffer", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Tables from buffers; checks what the coder relies on, so that a bad table cannot make
 * it read outside them. */
static int get_tables(PyObject *cdfs, PyObject *lengths, PyObject *offsets, Py_buffer v[3],
                      Tables *t) {
    if (get_int32(cdfs, &v[0], 0, "cdfs") < 0) return -1;
    if (get_int32(lengths, &v[1], 0, "lengths") < 0) goto fail0;
    if (get_int32(offsets, &v[2], 0, "offsets") < 0) goto fail1;
    if (v[0].ndim != 2 || v[1].ndim != 1 || v[2].ndim != 1 || v[1].shape[0] != v[0].shape[0] ||
        v[2].shape[0] != v[0].shape[0] || v[0].shape[0] < 1) {
        PyErr_SetString(PyExc_ValueError, "cdfs must be (m, L), lengths and offsets (m,)");
        goto fail2;
    }
    t->cdfs = v[0].buf;
    t->count = v[0].shape[0];
    t->stride = v[0].shape[1];
    t->lengths = v[1].buf;
    t->offsets = v[2].buf;
    for (Py_ssize_t k = 0; k < t->count; k++) {
        int32_t len = t->lengths[k];
        const int32_t *cdf = t->cdfs + k * t->stride;
        if (len < 2 || len > t->stride || cdf[0] != 0 || cdf[len - 1] != (1 << PRECISION)) {
            PyErr_Format(PyExc_ValueError, "CDF %zd is not a valid 16-bit CDF", k);
            goto fail2;
        }
        for (int32_t j = 0; j + 1 < len; j++) {
            if (cdf[j + 1] <= cdf[j]) {
                PyErr_Format(PyExc_ValueError, "CDF %zd is not strictly increasing", k);
                goto fail2;
            }
        }
    }
    return 0;
fail2:
    PyBuffer_Release(&v[2]);
fail1:
    PyBuffer_Release(&v[1]);
fail0:
    PyBuffer_Release(&v[0]);
    return -1;
}

static void release(Py_buffer *v, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&v[i]);
}

static int check_plane(Py_ssize_t n, Py_ssize_t plane, const Tables *t) {
    if (plane < 1 || (n + plane - 1) / plane > t->count) {
        PyErr_SetString(PyExc_ValueError, "plane size does not fit the number of CDFs");
        return -1;
    }
    return 0;
}

/* The optional per-element table indexes, int32 or uint8: 0 where none were given (both
 * pointers NULL), 1 where the view holds them, -1 on error. */
static int get_indexes(PyObject *obj, Py_buffer *view, Py_ssize_t n, const Tables *t,
                       Indexes *indexes) {
    indexes->i32 = NULL;
    indexes->u8 = NULL;
    if (obj == NULL || obj == Py_None) return 0;
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    int wide = view->itemsize == 4 && strcmp(view->format, "i") == 0;
    int narrow = view->itemsize == 1 && strcmp(view->format, "B") == 0;
    if (!wide && !narrow) {
        PyErr_SetString(PyExc_TypeError, "indexes must be a C-contiguous int32 or uint8 buffer");
        PyBuffer_Release(view);
        return -1;
    }
    int bad = view->len / view->itemsize != n;
    for (Py_ssize_t i = 0; !bad && i < n; i++) {
        Py_ssize_t k = wide ? ((const int32_t *)view->buf)[i] : ((const uint8_t *)view->buf)[i];
        bad = k < 0 || k >= t->count;
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "indexes must be one table index per symbol");
        PyBuffer_Release(view);
        return -1;
    }
    if (wide) indexes->i32 = view->buf;
    else indexes->u8 = view->buf;
    return 1;
}

static PyObject *py_encode(PyObject *self, PyObject *args) {
    PyObject *symbols_obj, *cdfs, *lengths, *offsets, *index_obj = NULL;
    Py_ssize_t plane;
    Py_buffer v[5];
    Tables t;
    Indexes indexes;
    if (!PyArg_ParseTuple(args, "OOOOn|O", &symbols_obj, &cdfs, &lengths, &offsets, &plane,
                          &index_obj))
        return NULL;
    if (get_tables(cdfs, lengths, offsets, v, &t) < 0) return NULL;
    if (get_int32(symbols_obj, &v[3], 0, "symbols") < 0) {
        release(v, 3);
        return NULL;
    }
    Py_ssize_t n = v[3].len / 4;
    int held = get_indexes(index_obj, &v[4], n, &t, &indexes);
    if (held < 0) {
        release(v, 4);
        return NULL;
    }
    int views = 4 + held;
    if (!held && check_plane(n, plane, &t) < 0) {
        release(v, views);
        return NULL;
    }
    /* At most 16 + 4 * 10 bits per symbol, under two words, plus the two-word flush. */
    Py_ssize_t capacity = 2 * n + 2;
    uint8_t *buf = PyMem_RawMalloc((size_t)capacity * 4);
    if (!buf) {
        release(v, views);
        return PyErr_NoMemory();
    }
    Encoder e = {RANS_L, buf, capacity};
    const char *err;
    Py_BEGIN_ALLOW_THREADS
    err = encode_all(&e, &t, plane, &indexes, v[3].buf, n);
    Py_END_ALLOW_THREADS
    release(v, views);
    PyObject *result = NULL;
    if (err) PyErr_SetString(PyExc_ValueError, err);
    else result = PyBytes_FromStringAndSize((const char *)buf + 4 * e.free,
                                            (capacity - e.free) * 4);
    PyMem_RawFree(buf);
    return result;
}

static PyObject *py_decode(PyObject *self, PyObject *args) {
    Py_buffer data, v[5];
    PyObject *cdfs, *lengths, *offsets, *out_obj, *index_obj = NULL;
    Py_ssize_t plane;
    Tables t;
    Indexes indexes;
    if (!PyArg_ParseTuple(args, "y*OOOnO|O", &data, &cdfs, &lengths, &offsets, &plane,
                          &out_obj, &index_obj))
        return NULL;
    if (get_tables(cdfs, lengths, offsets, v, &t) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (get_int32(out_obj, &v[3], 1, "out") < 0) {
        release(v, 3);
        PyBuffer_Release(&data);
        return NULL;
    }
    Py_ssize_t n = v[3].len / 4;
    const char *err = NULL;
    int held = get_indexes(index_obj, &v[4], n, &t, &indexes);
    if (held < 0) {
        release(v, 4);
        PyBuffer_Release(&data);
        return NULL;
    }
    int views = 4 + held;
    if (!held && check_plane(n, plane, &t) < 0) {
        release(v, views);
        PyBuffer_Release(&data);
        return NULL;
    }
    if (data.len % 4 != 0) err = "entropy-coded string is not a whole number of 32-bit words";
    else if (data.len < 8) err = "entropy-coded string is shorter than the coder's state";
    if (!err) {
        Decoder d = {0, data.buf, 2, data.len / 4};
        d.x = (uint64_t)load_word(d.data) | ((uint64_t)load_word(d.data + 4) << 32);
        if (d.x < RANS_L) err = "entropy-coded string starts with an invalid coder state";
        else {
            Py_BEGIN_ALLOW_THREADS
            err = decode_all(&d, &t, plane, &indexes, v[3].buf, n);
            Py_END_ALLOW_THREADS
        }
    }
    release(v, views);
    PyBuffer_Release(&data);
    if (err) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS,
     "encode(symbols, cdfs, lengths, offsets, plane[, indexes]) -> bytes"},
    {"decode", py_decode, METH_VARARGS,
     "decode(data, cdfs, lengths, offsets, plane, out[, indexes]) -> None; ValueError if "
     "corrupt"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rans", "Bounds-checked rANS in CompressAI's format.", -1, methods,
};

PyMODINIT_FUNC PyInit__rans(void) { return PyModule_Create(&module); }
