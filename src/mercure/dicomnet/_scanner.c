/* The dataset scanner of mercure.dicomnet.scanner, compiled: the receiver's per-instance walk
 * over the element headers of every dataset it receives.
 *
 * It behaves exactly as PythonScanner in scanner.py (same values, same errors, same messages,
 * fed in any chunks): that class is the reference, tests/dicomnet feed both the same streams and
 * compare. Deflated transfer syntaxes are left to the Python class (new_scanner picks it), so
 * there is no inflater here. Only headers are read; values are skipped or, for the few wanted
 * top-level tags, copied into ``values``.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define UNDEFINED 0xFFFFFFFFu
#define MAX_DEPTH 64
#define MAX_CAPTURE 65536
#define F_IMPLICIT 1u
#define F_ITEM 2u
#define MAX_CARRY 12

typedef struct {
    PyObject_HEAD
    PyObject *values;   /* dict: tag -> raw value bytes */
    PyObject *error;    /* None or str */
    char done;
    char check;
    char searching;
    char implicit;
    char checked_vr;
    char big;
    uint32_t *wanted;
    Py_ssize_t n_wanted;
    uint32_t last;
    long long limit;
    long long seen;
    unsigned char carry[MAX_CARRY];
    Py_ssize_t carry_len;
    uint64_t skip;
    uint32_t open_tag;
    unsigned char *capture;
    Py_ssize_t capture_len;
    uint64_t capture_left;
    uint32_t capture_tag;
    uint64_t stack[MAX_DEPTH];
    int depth;
} Scanner;

static inline uint16_t rd16(const unsigned char *p, int big) {
    return big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static inline uint32_t rd32(const unsigned char *p, int big) {
    if (big)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Header size of a VR in explicit VR syntaxes (PS3.5 7.1.2): 12 with a 4-byte length, 8 with a
 * 2-byte one, 0 for what is not a VR of the standard. */
static int vr_header(unsigned char a, unsigned char b) {
    switch (a << 8 | b) {
    case 'O' << 8 | 'B': case 'O' << 8 | 'D': case 'O' << 8 | 'F': case 'O' << 8 | 'L':
    case 'O' << 8 | 'V': case 'O' << 8 | 'W': case 'S' << 8 | 'Q': case 'S' << 8 | 'V':
    case 'U' << 8 | 'C': case 'U' << 8 | 'N': case 'U' << 8 | 'R': case 'U' << 8 | 'T':
    case 'U' << 8 | 'V':
        return 12;
    case 'A' << 8 | 'E': case 'A' << 8 | 'S': case 'A' << 8 | 'T': case 'C' << 8 | 'S':
    case 'D' << 8 | 'A': case 'D' << 8 | 'S': case 'D' << 8 | 'T': case 'F' << 8 | 'D':
    case 'F' << 8 | 'L': case 'I' << 8 | 'S': case 'L' << 8 | 'O': case 'L' << 8 | 'T':
    case 'P' << 8 | 'N': case 'S' << 8 | 'H': case 'S' << 8 | 'L': case 'S' << 8 | 'S':
    case 'S' << 8 | 'T': case 'T' << 8 | 'M': case 'U' << 8 | 'I': case 'U' << 8 | 'L':
    case 'U' << 8 | 'S':
        return 8;
    default:
        return 0;
    }
}

static inline int is_wanted(const Scanner *s, uint32_t tag) {
    for (Py_ssize_t i = 0; i < s->n_wanted; i++)
        if (s->wanted[i] == tag)
            return 1;
    return 0;
}

static void tag_text(char *out, size_t size, uint32_t tag) {
    snprintf(out, size, "(%04X,%04X)", tag >> 16, tag & 0xFFFF);
}

/* Stop with ``message`` (a new reference or NULL for None); -1 only when Python failed. */
static int stop_with(Scanner *s, PyObject *message) {
    s->done = 1;
    s->searching = 0;
    s->carry_len = 0;
    PyObject *old = s->error;
    if (message == NULL) {
        Py_INCREF(Py_None);
        s->error = Py_None;
    } else {
        s->error = message;
    }
    Py_XDECREF(old);
    return 0;
}

static int stop_text(Scanner *s, const char *text) {
    PyObject *message = PyUnicode_FromString(text);
    if (message == NULL)
        return -1;
    return stop_with(s, message);
}

static int end_search(Scanner *s) {
    if (s->check) {
        s->searching = 0;
        return 0;
    }
    return stop_with(s, NULL);
}

static int store_value(Scanner *s, uint32_t tag, const unsigned char *data, Py_ssize_t size) {
    PyObject *key = PyLong_FromUnsignedLong(tag);
    if (key == NULL)
        return -1;
    PyObject *value = PyBytes_FromStringAndSize((const char *)data, size);
    if (value == NULL) {
        Py_DECREF(key);
        return -1;
    }
    int rc = PyDict_SetItem(s->values, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return rc;
}

static int all_found(Scanner *s) { return PyDict_GET_SIZE(s->values) == s->n_wanted; }

static int captured(Scanner *s) {
    int rc = store_value(s, s->capture_tag, s->capture, s->capture_len);
    PyMem_Free(s->capture);
    s->capture = NULL;
    s->capture_len = 0;
    if (rc < 0)
        return -1;
    if (all_found(s))
        return end_search(s);
    return 0;
}

/* While searching, an element the general walk must see: a wanted one, the last wanted or
 * past it, or pixel data and beyond. */
static inline int ends_flat_walk(const Scanner *s, uint16_t group, uint16_t element) {
    uint32_t tag = (uint32_t)group << 16 | element;
    return tag >= s->last || group >= 0x7FE0 || is_wanted(s, tag);
}

/* The common case, most of every dataset: top-level little endian elements with a defined
 * length, each whole in this chunk and of no interest to the search (PythonScanner._skip_flat). */
static Py_ssize_t skip_flat(const Scanner *s, const unsigned char *d, Py_ssize_t pos,
                            Py_ssize_t size) {
    const int searching = s->searching;
    if (s->implicit) {
        while (size - pos >= 8) {
            uint16_t group = rd16(d + pos, 0), element = rd16(d + pos + 2, 0);
            uint32_t length = rd32(d + pos + 4, 0);
            int64_t end = (int64_t)pos + 8 + length;
            if (group == 0xFFFE || length == UNDEFINED || end > size)
                return pos;
            if (searching && ends_flat_walk(s, group, element))
                return pos;
            pos = (Py_ssize_t)end;
        }
        return pos;
    }
    while (size - pos >= 12) {
        const unsigned char *h = d + pos;
        uint16_t group = rd16(h, 0), element = rd16(h + 2, 0);
        if (group == 0xFFFE)
            return pos;
        int header = vr_header(h[4], h[5]);
        uint32_t length;
        if (header == 12) {
            length = rd32(h + 8, 0);
            if (length == UNDEFINED)
                return pos;
        } else if (!header) {
            return pos;
        } else {
            length = rd16(h + 6, 0);
        }
        int64_t end = (int64_t)pos + header + length;
        if (end > size)
            return pos;
        if (searching && ends_flat_walk(s, group, element))
            return pos;
        pos = (Py_ssize_t)end;
    }
    return pos;
}

static int keep_carry(Scanner *s, const unsigned char *d, Py_ssize_t pos, Py_ssize_t size) {
    /* Only ever an element header cut by the chunk's end: fewer than 12 bytes. */
    s->carry_len = size - pos;
    memcpy(s->carry, d + pos, (size_t)s->carry_len);
    return 0;
}

/* PythonScanner._scan without the inflater: walk ``d[0:size]``; -1 only when Python failed. */
static int scan(Scanner *s, const unsigned char *d, Py_ssize_t size) {
    char t1[16], t2[16], text[200];
    Py_ssize_t pos = 0;
    const int big = s->big;
    if (s->capture_left) {
        Py_ssize_t take = s->capture_left < (uint64_t)size ? (Py_ssize_t)s->capture_left : size;
        memcpy(s->capture + s->capture_len, d, (size_t)take);
        s->capture_len += take;
        s->capture_left -= (uint64_t)take;
        pos = take;
        if (s->capture_left)
            return 0;
        if (captured(s) < 0)
            return -1;
        if (s->done)
            return 0;
    } else if (s->skip) {
        pos = s->skip < (uint64_t)size ? (Py_ssize_t)s->skip : size;
        s->skip -= (uint64_t)pos;
        if (s->skip)
            return 0;
    }
    for (;;) {
        if (!s->depth && !big && s->checked_vr)
            pos = skip_flat(s, d, pos, size);
        if (size - pos < 8)
            return keep_carry(s, d, pos, size);
        uint16_t group = rd16(d + pos, big), element = rd16(d + pos + 2, big);
        if (group == 0xFFFE) {
            uint32_t length = rd32(d + pos + 4, big);
            pos += 8;
            if (!s->depth) {
                snprintf(text, sizeof text, "item or delimiter (FFFE,%04X) outside a sequence",
                         element);
                return stop_text(s, text);
            }
            uint64_t top = s->stack[s->depth - 1];
            if (element == 0xE000) {
                if (s->check && (top & F_ITEM)) {
                    tag_text(t1, sizeof t1, (uint32_t)(top >> 2));
                    snprintf(text, sizeof text, "item inside an item of %s without a sequence",
                             t1);
                    return stop_text(s, text);
                }
                if (length == UNDEFINED) {
                    if (s->depth >= MAX_DEPTH)
                        return stop_text(s, "sequences nested too deeply");
                    s->stack[s->depth++] = top | F_ITEM;
                } else if ((int64_t)pos + length > size) {
                    s->skip = (uint64_t)((int64_t)pos + length - size);
                    s->open_tag = 0xFFFEE000u;
                    return 0;
                } else {
                    pos += length;
                }
            } else if (element == 0xE00D) {
                if (s->check && !(top & F_ITEM)) {
                    tag_text(t1, sizeof t1, (uint32_t)(top >> 2));
                    snprintf(text, sizeof text, "item delimiter in %s outside an item", t1);
                    return stop_text(s, text);
                }
                s->depth--;
            } else if (element == 0xE0DD) {
                if (s->check && (top & F_ITEM)) {
                    tag_text(t1, sizeof t1, (uint32_t)(top >> 2));
                    snprintf(text, sizeof text,
                             "sequence delimiter inside an unclosed item of %s", t1);
                    return stop_text(s, text);
                }
                s->depth--;
            } else if (s->check) {
                snprintf(text, sizeof text, "unknown item tag (FFFE,%04X)", element);
                return stop_text(s, text);
            }
            continue;
        }
        uint32_t tag = (uint32_t)group << 16 | element;
        int implicit;
        if (s->depth) {
            uint64_t top = s->stack[s->depth - 1];
            if (s->check && !(top & F_ITEM)) {
                tag_text(t1, sizeof t1, tag);
                tag_text(t2, sizeof t2, (uint32_t)(top >> 2));
                snprintf(text, sizeof text,
                         "element %s inside sequence %s but outside an item", t1, t2);
                return stop_text(s, text);
            }
            implicit = (top & F_IMPLICIT) != 0;
        } else {
            implicit = s->implicit;
        }
        if (!implicit && !s->checked_vr) {
            s->checked_vr = 1;
            unsigned char vr0 = d[pos + 4], vr1 = d[pos + 5];
            if (!(vr0 >= 'A' && vr0 <= 'Z' && vr1 >= 'A' && vr1 <= 'Z')) {
                /* Some senders write implicit VR under an explicit transfer syntax. */
                s->implicit = implicit = 1;
            }
        }
        uint32_t length;
        int header;
        int is_un = 0;
        if (implicit) {
            length = rd32(d + pos + 4, big);
            header = 8;
        } else {
            unsigned char vr0 = d[pos + 4], vr1 = d[pos + 5];
            is_un = vr0 == 'U' && vr1 == 'N';
            header = vr_header(vr0, vr1);
            if (header == 12) {
                if (size - pos < 12)
                    return keep_carry(s, d, pos, size);
                length = rd32(d + pos + 8, big);
            } else if (header) {
                length = rd16(d + pos + 6, big);
            } else if (s->check) {
                PyObject *vr = PyBytes_FromStringAndSize((const char *)d + pos + 4, 2);
                if (vr == NULL)
                    return -1;
                tag_text(t1, sizeof t1, tag);
                PyObject *message = PyUnicode_FromFormat(
                    "element %s has no valid VR (%R) in an explicit VR transfer syntax", t1, vr);
                Py_DECREF(vr);
                if (message == NULL)
                    return -1;
                return stop_with(s, message);
            } else {
                length = rd16(d + pos + 6, big);
                header = 8;
            }
        }
        if (s->searching && !s->depth && (tag > s->last || group >= 0x7FE0)) {
            if (end_search(s) < 0)
                return -1;
            if (s->done)
                return 0;
        }
        pos += header;
        if (length == UNDEFINED) {
            if (s->depth >= MAX_DEPTH)
                return stop_text(s, "sequences nested too deeply");
            s->stack[s->depth++] =
                (uint64_t)tag << 2 | ((implicit || is_un) ? F_IMPLICIT : 0);
            continue;
        }
        if (s->searching && !s->depth && length <= MAX_CAPTURE && is_wanted(s, tag)) {
            int64_t end = (int64_t)pos + length;
            if (end <= size) {
                if (store_value(s, tag, d + pos, (Py_ssize_t)length) < 0)
                    return -1;
                pos = (Py_ssize_t)end;
                if (all_found(s)) {
                    if (end_search(s) < 0)
                        return -1;
                    if (s->done)
                        return 0;
                }
                continue;
            }
            s->capture_tag = tag;
            s->capture = PyMem_Malloc(length ? length : 1);
            if (s->capture == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            s->capture_len = size - pos;
            memcpy(s->capture, d + pos, (size_t)s->capture_len);
            s->capture_left = (uint64_t)(end - size);
            return 0;
        }
        if ((int64_t)pos + length > size) {
            s->skip = (uint64_t)((int64_t)pos + length - size);
            s->open_tag = tag;
            return 0;
        }
        pos += length;
    }
}

static int Scanner_init(Scanner *s, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"tags", "limit", "check_structure", "implicit", "big_endian",
                               NULL};
    PyObject *tags;
    long long limit;
    int check, implicit, big;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OL$ppp", keywords, &tags, &limit,
                                     &check, &implicit, &big))
        return -1;
    PyObject *sequence = PySequence_Fast(tags, "tags must be iterable");
    if (sequence == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    uint32_t *wanted = PyMem_Malloc(sizeof(uint32_t) * (size_t)(n ? n : 1));
    if (wanted == NULL) {
        Py_DECREF(sequence);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t count = 0;
    uint32_t last = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long tag = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(sequence, i));
        if (PyErr_Occurred() || tag > 0xFFFFFFFFul) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_OverflowError, "a tag has 32 bits");
            PyMem_Free(wanted);
            Py_DECREF(sequence);
            return -1;
        }
        int seen = 0;
        for (Py_ssize_t j = 0; j < count; j++)
            seen |= wanted[j] == tag;
        if (!seen)
            wanted[count++] = (uint32_t)tag;
        if (tag > last)
            last = (uint32_t)tag;
    }
    Py_DECREF(sequence);
    if (!count) {
        PyMem_Free(wanted);
        PyErr_SetString(PyExc_ValueError, "DatasetScanner needs at least one tag to look for");
        return -1;
    }
    PyMem_Free(s->wanted);
    s->wanted = wanted;
    s->n_wanted = count;
    s->last = last;
    Py_XSETREF(s->values, PyDict_New());
    if (s->values == NULL)
        return -1;
    Py_INCREF(Py_None);
    Py_XSETREF(s->error, Py_None);
    PyMem_Free(s->capture);
    s->capture = NULL;
    s->capture_len = 0;
    s->capture_left = 0;
    s->capture_tag = 0;
    s->done = 0;
    s->check = (char)check;
    s->searching = 1;
    s->implicit = (char)implicit;
    s->checked_vr = (char)implicit;
    s->big = (char)big;
    s->limit = limit;
    s->seen = 0;
    s->carry_len = 0;
    s->skip = 0;
    s->open_tag = 0;
    s->depth = 0;
    return 0;
}

static void Scanner_dealloc(Scanner *s) {
    Py_XDECREF(s->values);
    Py_XDECREF(s->error);
    PyMem_Free(s->wanted);
    PyMem_Free(s->capture);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static int initialised(Scanner *s) {
    if (s->values != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "CompiledScanner.__init__ was not called");
    return 0;
}

static PyObject *Scanner_feed(Scanner *s, PyObject *chunk) {
    if (!initialised(s))
        return NULL;
    if (s->done)
        Py_RETURN_TRUE;
    Py_buffer view;
    if (PyObject_GetBuffer(chunk, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t size = view.len;
    s->seen += size;
    int rc = 0;
    if (s->skip > (uint64_t)size && !s->searching) {
        /* Inside a long value (pixel data) with nothing left to find: only count it. */
        s->skip -= (uint64_t)size;
        PyBuffer_Release(&view);
        Py_RETURN_FALSE;
    }
    if (s->carry_len) {
        Py_ssize_t total = s->carry_len + size;
        unsigned char *joined = PyMem_Malloc((size_t)total);
        if (joined == NULL) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        memcpy(joined, s->carry, (size_t)s->carry_len);
        memcpy(joined + s->carry_len, view.buf, (size_t)size);
        s->carry_len = 0;
        rc = scan(s, joined, total);
        PyMem_Free(joined);
    } else {
        rc = scan(s, view.buf, size);
    }
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    if (s->searching && s->seen > s->limit && !s->done) {
        if (s->check) {
            s->searching = 0;
        } else {
            PyObject *message = PyUnicode_FromFormat("gave up after %lld bytes", s->limit);
            if (message == NULL)
                return NULL;
            stop_with(s, message);
        }
    }
    return PyBool_FromLong(s->done);
}

static PyObject *Scanner_finish(Scanner *s, PyObject *Py_UNUSED(ignored)) {
    char t1[16], text[200];
    if (!initialised(s))
        return NULL;
    if (!s->done) {
        int rc = 0;
        if (s->capture_left || s->skip) {
            uint32_t tag = s->capture_left ? s->capture_tag : s->open_tag;
            unsigned long long missing =
                s->capture_left ? (unsigned long long)s->capture_left : (unsigned long long)s->skip;
            tag_text(t1, sizeof t1, tag);
            snprintf(text, sizeof text,
                     "dataset ends inside element %s: %llu bytes of its declared length are "
                     "missing",
                     t1, missing);
            rc = stop_text(s, text);
        } else if (s->carry_len) {
            snprintf(text, sizeof text, "dataset ends inside an element header (%zd bytes)",
                     s->carry_len);
            rc = stop_text(s, text);
        } else if (s->depth) {
            uint64_t entry = s->stack[s->depth - 1];
            tag_text(t1, sizeof t1, (uint32_t)(entry >> 2));
            snprintf(text, sizeof text,
                     "dataset ends inside %s of undefined length %s that was never closed",
                     (entry & F_ITEM) ? "an item" : "a sequence", t1);
            rc = stop_text(s, text);
        }
        if (rc < 0)
            return NULL;
    }
    s->done = 1;
    Py_RETURN_NONE;
}

static PyObject *Scanner_text(Scanner *s, PyObject *tag) {
    if (!initialised(s))
        return NULL;
    PyObject *raw = PyDict_GetItemWithError(s->values, tag);
    if (raw == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    if (!PyBytes_Check(raw)) {  /* ``values`` is a plain dict its user could change */
        PyErr_SetString(PyExc_TypeError, "a scanned value is not bytes");
        return NULL;
    }
    const char *bytes = PyBytes_AS_STRING(raw);
    Py_ssize_t start = 0, end = PyBytes_GET_SIZE(raw);
    while (start < end && (bytes[start] == '\0' || bytes[start] == ' '))
        start++;
    while (end > start && (bytes[end - 1] == '\0' || bytes[end - 1] == ' '))
        end--;
    /* Stripping the bytes first is the same as Python's decode, then strip("\0 "): the ASCII
     * codec replaces each other byte by one U+FFFD, which is never stripped. */
    return PyUnicode_DecodeASCII(bytes + start, end - start, "replace");
}

static PyMethodDef Scanner_methods[] = {
    {"feed", (PyCFunction)Scanner_feed, METH_O,
     "Scan the next chunk of the dataset; True once nothing more needs to be fed."},
    {"finish", (PyCFunction)Scanner_finish, METH_NOARGS,
     "Tell the scanner the dataset ended (all wanted tags that exist have been seen)."},
    {"text", (PyCFunction)Scanner_text, METH_O,
     "The value of ``tag`` as text without padding, or None when it was not found."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Scanner_members[] = {
    {"values", T_OBJECT_EX, offsetof(Scanner, values), READONLY,
     "Each wanted tag found at the top level -> its raw value bytes."},
    {"error", T_OBJECT, offsetof(Scanner, error), READONLY,
     "Why scanning stopped early, or None."},
    {"done", T_BOOL, offsetof(Scanner, done), READONLY, "True once nothing more is needed."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mercure.dicomnet._scanner.CompiledScanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The dataset scanner in C; see mercure.dicomnet.scanner.PythonScanner.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
    .tp_members = Scanner_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mercure.dicomnet._scanner",
    .m_doc = "The receiver's dataset scanner, compiled (mercure.dicomnet.scanner).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__scanner(void) {
    if (PyType_Ready(&ScannerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "CompiledScanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
