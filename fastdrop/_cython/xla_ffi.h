/*
 * xla_ffi.h: XLA FFI handlers (typed custom calls) over fastdrop's CPU
 * kernels, for fastdrop.jax (fastdrop/adapters/jax.py).
 *
 * Plain C against the XLA FFI C API (third_party/xla/ffi/api/c_api.h, a
 * vendored copy: the package builds without jax or jaxlib).  _kernels.pyx
 * includes this header and hands out the handlers as PyCapsules
 * (_kernels.xla_handlers()); fastdrop.jax registers them with
 * jax.ffi.register_ffi_target(..., platform="cpu") on first use.
 *
 * The handlers and what they take (names are the custom call targets):
 *
 *   fastdrop_select(x, key) -> y   the affine select (docs/spec.md §4):
 *                                  kept x * a + b, dropped c; decisions from
 *                                  the mask stream at (seed, offset), threshold T
 *   fastdrop_noise(x, key) -> y    Gaussian dropout / noise (§11): t = b * z + a,
 *                                  y = x * t (add = false) or x + t (add = true)
 *   fastdrop_mask(key) -> keep     the keep decisions as PRED (bool) bytes
 *   fastdrop_apply(x, mask) -> y   the affine select with a stored PRED mask
 *
 *   x, y: F16, F32, F64 or BF16, the same dtype and dims, row-major.
 *   key: U32 [..., 4] = (seed lo, seed hi, offset lo, offset hi): an operand,
 *        so a new seed never means a new compilation.
 *   Attributes (static): a, b, c (F64 scalars), threshold (U64 or S64
 *   scalar, T = rint(p * 2**32) in [0, 2**32]), add (PRED scalar),
 *   mstrides (S64 array: the mask strides of x's own axes, docs/spec.md §2),
 *   draw (PRED scalar, fastdrop_select only, optional, 0 when absent: draw
 *   each key's mask positions once, then apply them).
 *
 * Batching (jax.vmap with vmap_method="expand_dims"): x, y and key may carry
 * leading batch axes, the same number m on each (key has rank m + 1; x has
 * rank m + len(mstrides); a batch axis of x or key may have extent 1: that
 * operand is shared along it).  Along a batch axis where key has y's extent
 * each index uses its own key; along one where key has extent 1 every index
 * uses the same key, hence the same mask: a mask depends on (seed, offset)
 * alone, never on how x is batched (so the backward pass, whose cotangent
 * may be batched differently from x, regenerates the forward's masks).
 * fastdrop_apply's mask has x's rank, each axis 1 (shared) or y's extent.
 *
 * Protocol: every handler answers XLA's metadata query (the
 * XLA_FFI_Metadata extension: the API version of the header it was built
 * with, no traits, no state), returns success without doing anything in
 * the stages other than execute, checks the call frame (sizes, counts,
 * types, dtypes, ranks, dims, attribute names and types) and the stream
 * bounds before it writes anything, and reports anything unexpected as an
 * XLA_FFI_Error made with the API's XLA_FFI_Error_Create.
 *
 * Floating-point environment: XLA runs its CPU computations with
 * flush-to-zero (MXCSR FTZ/DAZ on x86, FPCR FZ on AArch64), on its own
 * threads and on the caller's; the kernels must not flush (docs/spec.md
 * §4).  The worker pool (pool.h) runs every task, on the calling thread
 * and on its workers, in the kernels' own environment (fpenv.h) and
 * restores the caller's afterwards.
 *
 * Threads: the package's worker pool, fd_xla_threads threads (0: the
 * default, threads.h: a threadpoolctl limit as the handler runs, else
 * fd_xla_unlimited, the OMP_NUM_THREADS / CPU count read when Python last
 * configured the handlers: no getenv on XLA's threads), the work cut into
 * tasks of fd_xla_chunk elements as the Python-level drivers do; results
 * never depend on it.
 */
#ifndef FASTDROP_XLA_FFI_H
#define FASTDROP_XLA_FFI_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#include "pool.h"
#include "threads.h"
#include "third_party/xla/ffi/api/c_api.h"

/* Settings pushed from Python (_kernels.xla_configure). */
static int fd_xla_threads = 0;           /* 0: the default (fd_xla_nthreads) */
static int fd_xla_unlimited = 1;         /* fd_threads_unlimited() when configured */
static int64_t fd_xla_chunk = 1 << 14;   /* elements per task (as _kernels' tasks) */
static int64_t fd_xla_serial = 1 << 16;  /* fewer elements: the calling thread alone */

static void fd_xla_configure(int threads, int64_t chunk, int64_t serial, int unlimited)
{
    fd_xla_threads = threads < 0 ? 0 : threads;
    fd_xla_unlimited = unlimited < 1 ? 1 : unlimited;
    if (chunk >= 256) fd_xla_chunk = chunk;
    if (serial >= 0) fd_xla_serial = serial;
}

/* The floating-point environment: fpenv.h (the pool sets it for every task). */

/* Output memory: fd_advise_output (pool.h) asks for transparent huge pages
 * on a large result before the handlers write it. */

/* ------------------------------------------------------------- errors */
static XLA_FFI_Error *fd_xla_error(const XLA_FFI_Api *api, XLA_FFI_Error_Code code,
                                   const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    XLA_FFI_Error_Create_Args args;
    memset(&args, 0, sizeof args);
    args.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
    args.extension_start = NULL;
    args.message = msg;   /* copied by XLA */
    args.errc = code;
    return api->XLA_FFI_Error_Create(&args);
}

#define FD_XLA_INVALID XLA_FFI_Error_Code_INVALID_ARGUMENT

/* ----------------------------------------------------------- metadata */
/* The answer to XLA's metadata query, as XLA_FFI_DEFINE_HANDLER's handlers
 * give it: the FFI API version of the header this was built with, no
 * traits, no state type. */
static XLA_FFI_Error *fd_xla_metadata(const XLA_FFI_Api *api, XLA_FFI_Metadata_Extension *ext)
{
    if (ext->extension_base.struct_size < XLA_FFI_Metadata_Extension_STRUCT_SIZE)
        return fd_xla_error(api, FD_XLA_INVALID,
                            "fastdrop: unexpected XLA_FFI_Metadata_Extension size %zu "
                            "(expected at least %zu)", ext->extension_base.struct_size,
                            (size_t)XLA_FFI_Metadata_Extension_STRUCT_SIZE);
    XLA_FFI_Metadata *md = ext->metadata;
    if (md == NULL || md->struct_size < XLA_FFI_Metadata_STRUCT_SIZE)
        return fd_xla_error(api, FD_XLA_INVALID,
                            "fastdrop: unexpected XLA_FFI_Metadata size %zu (expected at "
                            "least %zu)", md ? md->struct_size : (size_t)0,
                            (size_t)XLA_FFI_Metadata_STRUCT_SIZE);
    md->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
    md->api_version.extension_start = NULL;
    md->api_version.major_version = XLA_FFI_API_MAJOR;
    md->api_version.minor_version = XLA_FFI_API_MINOR;
    md->traits = 0;
    /* state_type_id lies past the size the header promises: written only
     * when the caller's struct has room for it */
    if (md->struct_size >= offsetof(XLA_FFI_Metadata, state_type_id) + sizeof(XLA_FFI_TypeId))
        md->state_type_id.type_id = 0;   /* XLA_FFI_UNKNOWN_TYPE_ID: stateless */
    return NULL;
}

/* The common prologue.  Returns 1 with *err set when the call is answered
 * here (an error, the metadata query, or a stage other than execute: NULL,
 * success), 0 when the handler must execute. */
static int fd_xla_prologue(XLA_FFI_CallFrame *cf, const char *op, XLA_FFI_Error **err)
{
    *err = NULL;
    if (cf == NULL || cf->api == NULL)
        return 1;  /* no API to report through: nothing can be done */
    if (cf->struct_size < XLA_FFI_CallFrame_STRUCT_SIZE) {
        *err = fd_xla_error(cf->api, FD_XLA_INVALID,
                            "%s: unexpected XLA_FFI_CallFrame size %zu (expected at least "
                            "%zu): check installed software versions", op, cf->struct_size,
                            (size_t)XLA_FFI_CallFrame_STRUCT_SIZE);
        return 1;
    }
    for (XLA_FFI_Extension_Base *e = cf->extension_start; e != NULL; e = e->next)
        if (e->type == XLA_FFI_Extension_Metadata) {
            *err = fd_xla_metadata(cf->api, (XLA_FFI_Metadata_Extension *)e);
            return 1;
        }
    if (cf->stage != XLA_FFI_ExecutionStage_EXECUTE)
        return 1;  /* instantiate / prepare / initialize: nothing to do */
    return 0;
}

/* --------------------------------------------------- buffers, attributes */
static const char *fd_xla_dtype_name(XLA_FFI_DataType t)
{
    switch (t) {
    case XLA_FFI_DataType_PRED: return "pred";
    case XLA_FFI_DataType_S8: return "s8";
    case XLA_FFI_DataType_S16: return "s16";
    case XLA_FFI_DataType_S32: return "s32";
    case XLA_FFI_DataType_S64: return "s64";
    case XLA_FFI_DataType_U8: return "u8";
    case XLA_FFI_DataType_U16: return "u16";
    case XLA_FFI_DataType_U32: return "u32";
    case XLA_FFI_DataType_U64: return "u64";
    case XLA_FFI_DataType_F16: return "f16";
    case XLA_FFI_DataType_F32: return "f32";
    case XLA_FFI_DataType_F64: return "f64";
    case XLA_FFI_DataType_BF16: return "bf16";
    case XLA_FFI_DataType_C64: return "c64";
    case XLA_FFI_DataType_C128: return "c128";
    default: return "another type";
    }
}

/* The kernels' dtype code of a float buffer, or -1. */
static int fd_xla_float_code(XLA_FFI_DataType t)
{
    switch (t) {
    case XLA_FFI_DataType_F16: return FD_F16;
    case XLA_FFI_DataType_F32: return FD_F32;
    case XLA_FFI_DataType_F64: return FD_F64;
    case XLA_FFI_DataType_BF16: return FD_BF16;
    default: return -1;
    }
}

static XLA_FFI_Error *fd_xla_check_buffer(const XLA_FFI_Api *api, const char *op,
                                          const char *what, XLA_FFI_Buffer *b)
{
    if (b == NULL)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: %s: no buffer", op, what);
    if (b->struct_size < XLA_FFI_Buffer_STRUCT_SIZE)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: %s: unexpected XLA_FFI_Buffer size %zu",
                            op, what, b->struct_size);
    if (b->rank < 0 || b->rank > FD_MAXDIM || (b->rank > 0 && b->dims == NULL))
        return fd_xla_error(api, FD_XLA_INVALID, "%s: %s: rank %lld not supported (at most %d)",
                            op, what, (long long)b->rank, FD_MAXDIM);
    for (int64_t k = 0; k < b->rank; k++)
        if (b->dims[k] < 0)
            return fd_xla_error(api, FD_XLA_INVALID, "%s: %s: negative extent", op, what);
    return NULL;
}

/* Operand i of the call frame as a buffer (the counts were checked). */
static XLA_FFI_Error *fd_xla_arg(const XLA_FFI_CallFrame *cf, const char *op, int64_t i,
                                 const char *what, XLA_FFI_Buffer **out)
{
    if (cf->args.types == NULL || cf->args.args == NULL
            || cf->args.types[i] != XLA_FFI_ArgType_BUFFER)
        return fd_xla_error(cf->api, FD_XLA_INVALID, "%s: operand %lld (%s) is not a buffer",
                            op, (long long)i, what);
    *out = (XLA_FFI_Buffer *)cf->args.args[i];
    return fd_xla_check_buffer(cf->api, op, what, *out);
}

static XLA_FFI_Error *fd_xla_ret(const XLA_FFI_CallFrame *cf, const char *op, int64_t i,
                                 const char *what, XLA_FFI_Buffer **out)
{
    if (cf->rets.types == NULL || cf->rets.rets == NULL
            || cf->rets.types[i] != XLA_FFI_RetType_BUFFER)
        return fd_xla_error(cf->api, FD_XLA_INVALID, "%s: result %lld (%s) is not a buffer",
                            op, (long long)i, what);
    *out = (XLA_FFI_Buffer *)cf->rets.rets[i];
    return fd_xla_check_buffer(cf->api, op, what, *out);
}

static XLA_FFI_Error *fd_xla_counts(const XLA_FFI_CallFrame *cf, const char *op, int64_t nargs,
                                    int64_t nrets)
{
    if (cf->args.size != nargs || cf->rets.size != nrets)
        return fd_xla_error(cf->api, FD_XLA_INVALID,
                            "%s: expected %lld operand(s) and %lld result(s), got %lld and %lld",
                            op, (long long)nargs, (long long)nrets, (long long)cf->args.size,
                            (long long)cf->rets.size);
    return NULL;
}

enum { FD_ATTR_F64, FD_ATTR_THRESHOLD, FD_ATTR_PRED, FD_ATTR_I64_ARRAY };

typedef struct {
    const char *name;
    int kind;
    int found;           /* set 0 (required) or -1 (optional: u = 0 when absent); 1 found */
    double f;            /* FD_ATTR_F64 */
    uint64_t u;          /* FD_ATTR_THRESHOLD, FD_ATTR_PRED (0 / 1) */
    const int64_t *arr;  /* FD_ATTR_I64_ARRAY */
    int64_t len;
} fd_xla_attr_t;

static int fd_xla_name_is(const XLA_FFI_ByteSpan *s, const char *name)
{
    const size_t n = strlen(name);
    return s != NULL && s->len == n && (n == 0 || memcmp(s->ptr, name, n) == 0);
}

/* Decode the call frame's attributes into spec[0 .. nspec): exactly these
 * names, each of its kind. */
static XLA_FFI_Error *fd_xla_attrs(const XLA_FFI_CallFrame *cf, const char *op,
                                   fd_xla_attr_t *spec, int nspec)
{
    const XLA_FFI_Attrs *at = &cf->attrs;
    if (at->size > 0 && (at->types == NULL || at->names == NULL || at->attrs == NULL))
        return fd_xla_error(cf->api, FD_XLA_INVALID, "%s: malformed attributes", op);
    for (int64_t i = 0; i < at->size; i++) {
        const XLA_FFI_ByteSpan *nm = at->names[i];
        int k = 0;
        while (k < nspec && !fd_xla_name_is(nm, spec[k].name)) k++;
        if (k == nspec)
            return fd_xla_error(cf->api, FD_XLA_INVALID, "%s: unexpected attribute '%.*s'", op,
                                nm ? (int)nm->len : 0, nm ? nm->ptr : "");
        fd_xla_attr_t *s = &spec[k];
        if (s->found > 0)
            return fd_xla_error(cf->api, FD_XLA_INVALID, "%s: attribute '%s' given twice", op,
                                s->name);
        const XLA_FFI_AttrType type = at->types[i];
        if (s->kind == FD_ATTR_I64_ARRAY) {
            const XLA_FFI_Array *a = (const XLA_FFI_Array *)at->attrs[i];
            if (type != XLA_FFI_AttrType_ARRAY || a == NULL || a->dtype != XLA_FFI_DataType_S64
                    || (a->size > 0 && a->data == NULL))
                return fd_xla_error(cf->api, FD_XLA_INVALID,
                                    "%s: attribute '%s' must be an s64 array", op, s->name);
            s->arr = (const int64_t *)a->data;
            s->len = (int64_t)a->size;
        } else {
            const XLA_FFI_Scalar *v = (const XLA_FFI_Scalar *)at->attrs[i];
            if (type != XLA_FFI_AttrType_SCALAR || v == NULL || v->value == NULL)
                return fd_xla_error(cf->api, FD_XLA_INVALID,
                                    "%s: attribute '%s' must be a scalar", op, s->name);
            if (s->kind == FD_ATTR_F64) {
                if (v->dtype != XLA_FFI_DataType_F64)
                    return fd_xla_error(cf->api, FD_XLA_INVALID,
                                        "%s: attribute '%s' must be an f64 scalar, got %s", op,
                                        s->name, fd_xla_dtype_name(v->dtype));
                memcpy(&s->f, v->value, sizeof(double));
            } else if (s->kind == FD_ATTR_PRED) {
                if (v->dtype != XLA_FFI_DataType_PRED)
                    return fd_xla_error(cf->api, FD_XLA_INVALID,
                                        "%s: attribute '%s' must be a pred scalar, got %s", op,
                                        s->name, fd_xla_dtype_name(v->dtype));
                s->u = *(const uint8_t *)v->value != 0;
            } else {  /* threshold: u64 or s64, in [0, 2**32] */
                int64_t sv;
                if (v->dtype == XLA_FFI_DataType_U64) {
                    memcpy(&s->u, v->value, sizeof(uint64_t));
                } else if (v->dtype == XLA_FFI_DataType_S64) {
                    memcpy(&sv, v->value, sizeof(int64_t));
                    s->u = sv < 0 ? UINT64_MAX : (uint64_t)sv;
                } else {
                    return fd_xla_error(cf->api, FD_XLA_INVALID,
                                        "%s: attribute '%s' must be a u64 or s64 scalar, got %s",
                                        op, s->name, fd_xla_dtype_name(v->dtype));
                }
                if (s->u > UINT64_C(4294967296))
                    return fd_xla_error(cf->api, FD_XLA_INVALID,
                                        "%s: attribute '%s' must lie in [0, 2**32]", op, s->name);
            }
        }
        s->found = 1;
    }
    for (int k = 0; k < nspec; k++)
        if (spec[k].found == 0)
            return fd_xla_error(cf->api, FD_XLA_INVALID, "%s: attribute '%s' missing", op,
                                spec[k].name);
    return NULL;
}

/* --------------------------------------------------------- geometry */
/* One call, resolved: the template task over the axes that share a key
 * (its x, y, seed and offset are set per key), and the key-batched axes. */
typedef struct {
    fd_task_t g;
    int64_t per;                          /* tasks per key */
    int64_t nk;                           /* number of keys */
    int nkax;                             /* key-batched axes (outermost first) */
    int64_t kext[FD_MAXDIM], kks[FD_MAXDIM], kxs[FD_MAXDIM], kys[FD_MAXDIM];
    const uint32_t *key;                  /* NULL: no key (stored mask) */
    const uint8_t *drawn;                 /* non-NULL: key kb's keep bytes at kb * span */
    int64_t span;
    char *x0, *y0;
    int64_t elems;                        /* elements of y */
} fd_xla_run_t;

/* Row-major element strides of dims[0 .. rank). */
static void fd_xla_cstrides(const int64_t *dims, int64_t rank, int64_t *st)
{
    int64_t s = 1;
    for (int64_t k = rank - 1; k >= 0; k--) {
        st[k] = s;
        s *= dims[k] > 0 ? dims[k] : 1;
    }
}

/* The template task of the axes not in the key loop (skip[a] set for those
 * in it): extent-1 axes dropped, adjacent axes merged from the innermost
 * outwards (the logical-order walk of _kernels._geometry). */
static void fd_xla_template(fd_xla_run_t *r, int rank, const int64_t *dims,
                            const int64_t *xs, const int64_t *ys, const int64_t *ms,
                            const int *skip, int64_t item)
{
    fd_task_t *g = &r->g;
    int64_t sh[FD_MAXDIM], sx[FD_MAXDIM], sy[FD_MAXDIM], sm[FD_MAXDIM];
    int k = 0;
    for (int a = rank - 1; a >= 0; a--) {
        if (skip[a] || dims[a] == 1)
            continue;
        if (k > 0 && xs[a] == sx[k - 1] * sh[k - 1] && ys[a] == sy[k - 1] * sh[k - 1]
                && ms[a] == sm[k - 1] * sh[k - 1]) {
            sh[k - 1] *= dims[a];
            continue;
        }
        sh[k] = dims[a];
        sx[k] = xs[a];
        sy[k] = ys[a];
        sm[k] = ms[a];
        k++;
    }
    if (k == 0) {  /* one element per key */
        g->nd = 0;
        g->L = 1;
        g->xs = g->ys = item;
        g->ms = 1;
    } else {
        g->nd = k - 1;
        g->L = sh[0];
        g->xs = sx[0];
        g->ys = sy[0];
        g->ms = sm[0];
        for (int i = 1; i < k; i++) {
            g->oshape[k - 1 - i] = sh[i];
            g->oxs[k - 1 - i] = sx[i];
            g->oys[k - 1 - i] = sy[i];
            g->oms[k - 1 - i] = sm[i];
        }
    }
    g->chunk = fd_xla_chunk;
    g->cpr = (g->L + g->chunk - 1) / g->chunk;
    fd_task_rows(g, item, g->op == FD_OP_FORWARD);
    r->per = fd_task_count(g);
}

/* The scalar fields of a task (as _kernels._init_task fills them). */
static void fd_xla_init_task(fd_task_t *g, int op, int dtype, uint64_t T, double a, double b,
                             double c)
{
    memset(g, 0, sizeof *g);
    g->op = op;
    g->dtype = dtype;
    g->Th = (uint32_t)(T >> 16);
    g->Tl = (uint32_t)(T & 0xFFFFu);
    g->isa = op == FD_OP_FORWARD ? fd_isa_for(g->Th) : fd_isa();
    g->af.a = a;
    g->af.b = b;
    g->af.c = c;
    g->chunk = fd_xla_chunk;
}

/* Point the task at key number kb: its (seed, offset) and its x / y. */
static void fd_xla_at_key(const fd_xla_run_t *r, fd_task_t *g, int64_t kb)
{
    int64_t kidx = 0, dx = 0, dy = 0, q = kb;
    for (int a = r->nkax - 1; a >= 0; a--) {
        const int64_t i = q % r->kext[a];
        q /= r->kext[a];
        kidx += i * r->kks[a];
        dx += i * r->kxs[a];
        dy += i * r->kys[a];
    }
    if (r->key != NULL) {
        const uint32_t *w = r->key + 4 * kidx;
        g->seed = (uint64_t)w[0] | ((uint64_t)w[1] << 32);
        g->offset = (uint64_t)w[2] | ((uint64_t)w[3] << 32);
    }
    g->x = r->x0 + dx;
    g->y = r->y0 + dy;
    if (r->drawn != NULL)
        g->mkeep = r->drawn + kb * r->span;
}

static int fd_xla_nthreads(void)
{
    const int lim = fd_threads_limit;
    return fd_xla_threads > 0 ? fd_xla_threads : lim > 0 ? lim : fd_xla_unlimited;
}

/* Task t of a run: key t / per, that key's task t % per. */
static void fd_xla_task(const void *ctx, int64_t t)
{
    const fd_xla_run_t *r = (const fd_xla_run_t *)ctx;
    fd_task_t g = r->g;
    fd_xla_at_key(r, &g, t / r->per);
    fd_run_task(&g, t % r->per);
}

/* Run every task of every key on the worker pool (pool.h: each task in the
 * kernels' floating-point environment, never XLA's flush-to-zero), the
 * calling thread alone when there is little work. */
static void fd_xla_execute(const fd_xla_run_t *r)
{
    const int64_t total = r->nk * r->per;
    if (total <= 0)
        return;
    fd_pool_run(fd_xla_task, r, total, r->elems < fd_xla_serial ? 1 : fd_xla_nthreads());
}

/* Batch axes: the leading m of y's rank.  Checks x (may be NULL) and key
 * (may be NULL) against y, fills the byte strides xs / ys and, for the key,
 * which batch axes select a key (key extent > 1; the others share it: mask
 * stride 0).  Checks every key's stream range [offset, offset + n) against
 * 2**64. */
static XLA_FFI_Error *fd_xla_layout(const XLA_FFI_Api *api, const char *op, fd_xla_run_t *r,
                                    XLA_FFI_Buffer *x, XLA_FFI_Buffer *y, XLA_FFI_Buffer *key,
                                    int64_t m, int64_t item, int64_t *xs, int64_t *ys,
                                    int64_t *ms, int *skip, int64_t n)
{
    const int64_t R = y->rank;
    int64_t xc[FD_MAXDIM], yc[FD_MAXDIM], kc[FD_MAXDIM];
    fd_xla_cstrides(y->dims, R, yc);
    if (x != NULL) {
        if (x->rank != R)
            return fd_xla_error(api, FD_XLA_INVALID, "%s: x has rank %lld, the result %lld", op,
                                (long long)x->rank, (long long)R);
        fd_xla_cstrides(x->dims, R, xc);
        for (int64_t a = 0; a < R; a++)
            if (x->dims[a] != y->dims[a] && !(a < m && x->dims[a] == 1))
                return fd_xla_error(api, FD_XLA_INVALID,
                                    "%s: x's axis %lld has extent %lld, the result's %lld", op,
                                    (long long)a, (long long)x->dims[a], (long long)y->dims[a]);
    }
    if (key != NULL) {
        if (key->dtype != XLA_FFI_DataType_U32)
            return fd_xla_error(api, FD_XLA_INVALID, "%s: key must be u32, got %s", op,
                                fd_xla_dtype_name(key->dtype));
        if (key->rank != m + 1 || key->dims[m] != 4)
            return fd_xla_error(api, FD_XLA_INVALID,
                                "%s: key must have shape [%lld batch axes..., 4]", op,
                                (long long)m);
        for (int64_t a = 0; a < m; a++)
            if (key->dims[a] != 1 && key->dims[a] != y->dims[a])
                return fd_xla_error(api, FD_XLA_INVALID,
                                    "%s: key's batch axis %lld has extent %lld, the result's "
                                    "%lld", op, (long long)a, (long long)key->dims[a],
                                    (long long)y->dims[a]);
        fd_xla_cstrides(key->dims, m, kc);
    }
    r->nkax = 0;
    r->nk = 1;
    r->drawn = NULL;
    r->span = 0;
    for (int64_t a = R - 1; a >= 0; a--) {
        xs[a] = x == NULL ? 0 : (x->dims[a] == 1 ? 0 : xc[a] * item);
        ys[a] = yc[a] * item;
        skip[a] = 0;
        if (a >= m)
            continue;
        skip[a] = key != NULL && key->dims[a] != 1;  /* one key per index */
        ms[a] = 0;  /* otherwise: the key, hence the mask, is shared */
    }
    for (int64_t a = 0; a < m; a++)
        if (skip[a]) {
            r->kext[r->nkax] = y->dims[a];
            r->kks[r->nkax] = kc[a];
            r->kxs[r->nkax] = xs[a];
            r->kys[r->nkax] = ys[a];
            r->nkax++;
            r->nk *= y->dims[a];
        }
    if (key != NULL) {
        const uint64_t need = (uint64_t)n;
        const uint32_t *w = (const uint32_t *)key->data;
        int64_t nkeys = 1;
        for (int64_t a = 0; a < m; a++) nkeys *= key->dims[a];
        if (need > 0 && nkeys > 0 && w == NULL)
            return fd_xla_error(api, FD_XLA_INVALID, "%s: missing key data", op);
        for (int64_t k = 0; need > 0 && k < nkeys; k++) {
            const uint64_t off = (uint64_t)w[4 * k + 2] | ((uint64_t)w[4 * k + 3] << 32);
            if (off > UINT64_MAX - need + 1)
                return fd_xla_error(api, XLA_FFI_Error_Code_OUT_OF_RANGE,
                                    "%s: the stream ends at 2**64: offset %llu + %llu "
                                    "positions is past it", op, (unsigned long long)off,
                                    (unsigned long long)need);
        }
        r->key = w;
    } else {
        r->key = NULL;
    }
    return NULL;
}

/* The mask size of x's own axes and a check of the mstrides attribute: the
 * C-order strides of the mask shape, 0 on its broadcast axes. */
static XLA_FFI_Error *fd_xla_mask_strides(const XLA_FFI_Api *api, const char *op,
                                          const int64_t *dims, const int64_t *mst, int64_t r,
                                          int64_t *n)
{
    int64_t s = 1;
    for (int64_t k = r - 1; k >= 0; k--) {
        if (mst[k] != 0 && (mst[k] != s || dims[k] <= 1))
            return fd_xla_error(api, FD_XLA_INVALID,
                                "%s: mstrides are not the strides of a mask shape", op);
        if (mst[k] != 0) s *= dims[k];
    }
    *n = s;
    return NULL;
}

/* One task of fastdrop_mask (and of fastdrop_select's draw): chunk t % cpr
 * of batch element t / cpr. */
typedef struct {
    const fd_isa_t *isa;
    uint32_t Th, Tl;
    int64_t n, chunk, cpr, m;
    const int64_t *dims;
    const int *skip;
    const int64_t *kc;
    const uint32_t *kw;
    uint8_t *out;
} fd_xla_mask_run_t;

static void fd_xla_mask_task(const void *ctx, int64_t t)
{
    const fd_xla_mask_run_t *r = (const fd_xla_mask_run_t *)ctx;
    const int64_t b = t / r->cpr, start = (t % r->cpr) * r->chunk;
    const int64_t len = r->n - start < r->chunk ? r->n - start : r->chunk;
    int64_t q = b, kidx = 0;
    for (int64_t a = r->m - 1; a >= 0; a--) {
        const int64_t i = q % r->dims[a];
        q /= r->dims[a];
        if (r->skip[a]) kidx += i * r->kc[a];
    }
    const uint32_t *w = r->kw + 4 * kidx;
    const uint64_t seed = (uint64_t)w[0] | ((uint64_t)w[1] << 32);
    const uint64_t off = (uint64_t)w[2] | ((uint64_t)w[3] << 32);
    r->isa->mask(len, off + (uint64_t)start, seed, r->Th, r->Tl, r->out + b * r->n + start, NULL);
}

/* -------------------------------------------------------------- handlers */
/* fastdrop_select and fastdrop_noise: (x, key) -> y. */
static XLA_FFI_Error *fd_xla_x_key(XLA_FFI_CallFrame *cf, const char *op, int noise)
{
    XLA_FFI_Error *err;
    if (fd_xla_prologue(cf, op, &err))
        return err;
    const XLA_FFI_Api *api = cf->api;
    fd_xla_attr_t spec[6] = {
        {"a", FD_ATTR_F64, 0, 0, 0, NULL, 0},
        {"b", FD_ATTR_F64, 0, 0, 0, NULL, 0},
        {"mstrides", FD_ATTR_I64_ARRAY, 0, 0, 0, NULL, 0},
        {noise ? "add" : "c", noise ? FD_ATTR_PRED : FD_ATTR_F64, 0, 0, 0, NULL, 0},
        {"threshold", FD_ATTR_THRESHOLD, 0, 0, 0, NULL, 0},
        {"draw", FD_ATTR_PRED, -1, 0, 0, NULL, 0},
    };
    XLA_FFI_Buffer *x = NULL, *key = NULL, *y = NULL;
    if ((err = fd_xla_counts(cf, op, 2, 1)) || (err = fd_xla_arg(cf, op, 0, "x", &x))
            || (err = fd_xla_arg(cf, op, 1, "key", &key)) || (err = fd_xla_ret(cf, op, 0, "y", &y))
            || (err = fd_xla_attrs(cf, op, spec, noise ? 4 : 6)))
        return err;
    const int dtype = fd_xla_float_code(x->dtype);
    if (dtype < 0)
        return fd_xla_error(api, FD_XLA_INVALID,
                            "%s: x must be f16, f32, f64 or bf16, got %s", op,
                            fd_xla_dtype_name(x->dtype));
    if (y->dtype != x->dtype)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: the result must have x's dtype (%s), got %s",
                            op, fd_xla_dtype_name(x->dtype), fd_xla_dtype_name(y->dtype));
    const int64_t r = spec[2].len, m = key->rank - 1;
    if (m < 0 || y->rank != m + r)
        return fd_xla_error(api, FD_XLA_INVALID,
                            "%s: the result has rank %lld, expected %lld batch axes and %lld "
                            "mstrides", op, (long long)y->rank, (long long)m, (long long)r);
    int64_t elems = 1;
    for (int64_t a = 0; a < y->rank; a++) elems *= y->dims[a];
    int64_t n = 0;
    if ((err = fd_xla_mask_strides(api, op, y->dims + m, spec[2].arr, r, &n)))
        return err;
    fd_xla_run_t run;
    int64_t xs[FD_MAXDIM], ys[FD_MAXDIM], ms[FD_MAXDIM];
    int skip[FD_MAXDIM];
    const int64_t item = dtype == FD_F64 ? 8 : (dtype == FD_F32 ? 4 : 2);
    for (int64_t k = 0; k < r; k++) ms[m + k] = spec[2].arr[k];
    if ((err = fd_xla_layout(api, op, &run, x, y, key, m, item, xs, ys, ms, skip,
                             elems ? n : 0)))
        return err;
    if (elems == 0)
        return NULL;
    if (x->data == NULL || y->data == NULL || key->data == NULL)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: missing buffer data", op);
    uint8_t *drawn = NULL;
    if (noise) {
        fd_xla_init_task(&run.g, spec[3].u ? FD_OP_NOISE_ADD : FD_OP_NOISE_MUL, dtype, 0,
                         spec[0].f, spec[1].f, 0.0);
    } else if (spec[5].u) {
        /* draw: the plan asks for the n positions each key's mask reads to be
         * drawn once (they repeat along y: fastdrop._plan.span_to_draw), as
         * keep bytes, key kb's at kb * n, then applied as a stored mask */
        const uint32_t Th = (uint32_t)(spec[4].u >> 16), Tl = (uint32_t)(spec[4].u & 0xFFFFu);
        int ones[FD_MAXDIM];
        for (int a = 0; a < run.nkax; a++) ones[a] = 1;
        if ((drawn = (uint8_t *)malloc((size_t)(run.nk * n))) == NULL)
            return fd_xla_error(api, XLA_FFI_Error_Code_RESOURCE_EXHAUSTED,
                                "%s: no memory for a mask of %lld bytes", op,
                                (long long)(run.nk * n));
        const int64_t chunk = fd_xla_chunk, cpr = (n + chunk - 1) / chunk;
        fd_xla_mask_run_t mr = {fd_isa_for(Th), Th, Tl, n, chunk, cpr, run.nkax,
                                run.kext, ones, run.kks, run.key, drawn};
        fd_pool_run(fd_xla_mask_task, &mr, run.nk * cpr,
                    run.nk * n < fd_xla_serial ? 1 : fd_xla_nthreads());
        fd_xla_init_task(&run.g, FD_OP_APPLY, dtype, 0, spec[0].f, spec[1].f, spec[3].f);
        run.drawn = drawn;
        run.span = n;
    } else {
        fd_xla_init_task(&run.g, FD_OP_FORWARD, dtype, spec[4].u, spec[0].f, spec[1].f,
                         spec[3].f);
    }
    fd_xla_template(&run, (int)y->rank, y->dims, xs, ys, ms, skip, item);
    run.x0 = (char *)x->data;
    run.y0 = (char *)y->data;
    run.elems = elems;
    fd_advise_output(y->data, elems * item);
    fd_xla_execute(&run);
    free(drawn);
    return NULL;
}

static XLA_FFI_Error *fd_xla_select(XLA_FFI_CallFrame *cf)
{
    return fd_xla_x_key(cf, "fastdrop_select", 0);
}

static XLA_FFI_Error *fd_xla_noise(XLA_FFI_CallFrame *cf)
{
    return fd_xla_x_key(cf, "fastdrop_noise", 1);
}

/* fastdrop_apply: (x, mask) -> y, the mask PRED of x's rank, each axis 1
 * (shared) or y's extent; no key, no batch rule of its own (broadcasting). */
static XLA_FFI_Error *fd_xla_apply(XLA_FFI_CallFrame *cf)
{
    const char *op = "fastdrop_apply";
    XLA_FFI_Error *err;
    if (fd_xla_prologue(cf, op, &err))
        return err;
    const XLA_FFI_Api *api = cf->api;
    fd_xla_attr_t spec[3] = {
        {"a", FD_ATTR_F64, 0, 0, 0, NULL, 0},
        {"b", FD_ATTR_F64, 0, 0, 0, NULL, 0},
        {"c", FD_ATTR_F64, 0, 0, 0, NULL, 0},
    };
    XLA_FFI_Buffer *x = NULL, *mask = NULL, *y = NULL;
    if ((err = fd_xla_counts(cf, op, 2, 1)) || (err = fd_xla_arg(cf, op, 0, "x", &x))
            || (err = fd_xla_arg(cf, op, 1, "mask", &mask))
            || (err = fd_xla_ret(cf, op, 0, "y", &y)) || (err = fd_xla_attrs(cf, op, spec, 3)))
        return err;
    const int dtype = fd_xla_float_code(x->dtype);
    if (dtype < 0)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: x must be f16, f32, f64 or bf16, got %s",
                            op, fd_xla_dtype_name(x->dtype));
    if (y->dtype != x->dtype)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: the result must have x's dtype (%s), got %s",
                            op, fd_xla_dtype_name(x->dtype), fd_xla_dtype_name(y->dtype));
    if (mask->dtype != XLA_FFI_DataType_PRED)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: mask must be pred, got %s", op,
                            fd_xla_dtype_name(mask->dtype));
    const int64_t R = y->rank;
    if (mask->rank != R)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: mask has rank %lld, the result %lld", op,
                            (long long)mask->rank, (long long)R);
    int64_t mc[FD_MAXDIM], xs[FD_MAXDIM], ys[FD_MAXDIM], ms[FD_MAXDIM];
    int skip[FD_MAXDIM];
    fd_xla_cstrides(mask->dims, R, mc);
    for (int64_t a = 0; a < R; a++) {
        if (mask->dims[a] != y->dims[a] && mask->dims[a] != 1)
            return fd_xla_error(api, FD_XLA_INVALID,
                                "%s: mask's axis %lld has extent %lld, the result's %lld", op,
                                (long long)a, (long long)mask->dims[a], (long long)y->dims[a]);
        ms[a] = mask->dims[a] == 1 ? 0 : mc[a];
    }
    const int64_t item = dtype == FD_F64 ? 8 : (dtype == FD_F32 ? 4 : 2);
    fd_xla_run_t run;
    /* no batch axes of its own (m = 0): x has y's dims, the mask strides
     * are the mask's C strides (0 on its axes of extent 1) */
    if ((err = fd_xla_layout(api, op, &run, x, y, NULL, 0, item, xs, ys, ms, skip, 0)))
        return err;
    int64_t elems = 1;
    for (int64_t a = 0; a < R; a++) elems *= y->dims[a];
    if (elems == 0)
        return NULL;
    if (x->data == NULL || y->data == NULL || mask->data == NULL)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: missing buffer data", op);
    fd_xla_init_task(&run.g, FD_OP_APPLY, dtype, 0, spec[0].f, spec[1].f, spec[2].f);
    run.g.mkeep = (const uint8_t *)mask->data;
    fd_xla_template(&run, (int)R, y->dims, xs, ys, ms, skip, item);
    run.x0 = (char *)x->data;
    run.y0 = (char *)y->data;
    run.elems = elems;
    fd_advise_output(y->data, elems * item);
    fd_xla_execute(&run);
    return NULL;
}

/* fastdrop_mask: key [m batch axes..., 4] -> keep PRED [batch..., M...]:
 * batch element b (flat, C order) is the run of n bytes at b * n, stream
 * positions offset + i of its key. */
static XLA_FFI_Error *fd_xla_mask(XLA_FFI_CallFrame *cf)
{
    const char *op = "fastdrop_mask";
    XLA_FFI_Error *err;
    if (fd_xla_prologue(cf, op, &err))
        return err;
    const XLA_FFI_Api *api = cf->api;
    fd_xla_attr_t spec[1] = {{"threshold", FD_ATTR_THRESHOLD, 0, 0, 0, NULL, 0}};
    XLA_FFI_Buffer *key = NULL, *y = NULL;
    if ((err = fd_xla_counts(cf, op, 1, 1)) || (err = fd_xla_arg(cf, op, 0, "key", &key))
            || (err = fd_xla_ret(cf, op, 0, "keep", &y)) || (err = fd_xla_attrs(cf, op, spec, 1)))
        return err;
    if (y->dtype != XLA_FFI_DataType_PRED)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: the result must be pred, got %s", op,
                            fd_xla_dtype_name(y->dtype));
    const int64_t m = key->rank - 1;
    if (m < 0 || y->rank < m)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: the result has fewer axes than the key's "
                            "batch axes", op);
    int64_t n = 1, elems = 1;
    for (int64_t a = m; a < y->rank; a++) n *= y->dims[a];
    for (int64_t a = 0; a < y->rank; a++) elems *= y->dims[a];
    fd_xla_run_t run;
    int64_t xs[FD_MAXDIM], ys[FD_MAXDIM], ms[FD_MAXDIM];
    int skip[FD_MAXDIM];
    if ((err = fd_xla_layout(api, op, &run, NULL, y, key, m, 1, xs, ys, ms, skip,
                             elems ? n : 0)))
        return err;
    if (elems == 0)
        return NULL;
    if (y->data == NULL || key->data == NULL)
        return fd_xla_error(api, FD_XLA_INVALID, "%s: missing buffer data", op);
    const uint64_t T = spec[0].u;
    const uint32_t Th = (uint32_t)(T >> 16), Tl = (uint32_t)(T & 0xFFFFu);
    const fd_isa_t *isa = fd_isa_for(Th);
    int64_t nb = 1;
    for (int64_t a = 0; a < m; a++) nb *= y->dims[a];
    const int64_t chunk = fd_xla_chunk, cpr = (n + chunk - 1) / chunk, total = nb * cpr;
    const uint32_t *kw = (const uint32_t *)key->data;
    int64_t kc[FD_MAXDIM];
    fd_xla_cstrides(key->dims, m, kc);
    uint8_t *out = (uint8_t *)y->data;
    fd_advise_output(out, elems);
    fd_xla_mask_run_t mr = {isa, Th, Tl, n, chunk, cpr, m, y->dims, skip, kc, kw, out};
    fd_pool_run(fd_xla_mask_task, &mr, total, elems < fd_xla_serial ? 1 : fd_xla_nthreads());
    return NULL;
}

/* Any platform without a handler (CUDA, ROCm): a clear error. */
static XLA_FFI_Error *fd_xla_unsupported(XLA_FFI_CallFrame *cf)
{
    XLA_FFI_Error *err;
    if (fd_xla_prologue(cf, "fastdrop", &err))
        return err;
    return fd_xla_error(cf->api, XLA_FFI_Error_Code_UNIMPLEMENTED,
                        "fastdrop.jax has no GPU handler: its custom calls run on the CPU "
                        "only; put the arrays on a CPU device (jax.device_put(x, "
                        "jax.devices('cpu')[0])) or use fastdrop.dropout on a CuPy / torch "
                        "CUDA array");
}

/* The handlers by number, for _kernels.xla_handlers(): 0 select, 1 noise,
 * 2 mask, 3 apply, 4 the unsupported-platform handler. */
static void *fd_xla_handler(int which)
{
    switch (which) {
    case 0: return (void *)fd_xla_select;
    case 1: return (void *)fd_xla_noise;
    case 2: return (void *)fd_xla_mask;
    case 3: return (void *)fd_xla_apply;
    case 4: return (void *)fd_xla_unsupported;
    default: return NULL;
    }
}

#endif /* FASTDROP_XLA_FFI_H */
