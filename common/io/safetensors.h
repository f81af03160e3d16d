/* safetensors.h - the safetensors file format (what PyTorch users write with
 * safetensors.torch.save_file): an 8-byte little-endian header length N, N
 * bytes of JSON (tensor name -> {"dtype", "shape", "data_offsets": [begin,
 * end]}, offsets relative to the first byte after the header, and an
 * optional "__metadata__" object of string -> string), then the raw
 * little-endian tensor data. The reader validates every field (cJSON parses
 * the header) and never trusts a length; the writer emits float32 and int64
 * tensors. Pure functions: files in and out, errors in err. */
#ifndef ABC_SAFETENSORS_H
#define ABC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* Largest header the reader accepts (the reference implementation's cap). */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Largest file the reader loads: well above any model abcprune builds. */
#define ST_MAX_FILE ((size_t)2 << 30)
/* Most dimensions a tensor may have. */
#define ST_MAX_DIMS 8

/* The dtypes of the format. Every one is parsed and its length checked;
 * st_tensor_f32 converts only the floating ones. */
enum st_dtype {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_I64,
    ST_U64,
    ST_F64,
    ST_DTYPE_COUNT
};

/* "F32", "BF16", ... ("?" for a value out of range). */
const char *st_dtype_name(enum st_dtype d);
/* Bytes per element of d (0 for a value out of range). */
size_t st_dtype_size(enum st_dtype d);

/* One tensor of a parsed file. name points into the parsed header; data
 * into the file's bytes (nbytes = numel * itemsize, not aligned). */
struct st_tensor {
    const char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    const unsigned char *data;
    size_t nbytes;
};

/* A parsed file: its tensors in header order and its metadata. */
struct st_file {
    char name[256]; /* the path (or what the bytes are), for messages */
    int ntensors;
    struct st_tensor *tensors;
    int nmeta;
    const char **meta_keys, **meta_vals;
    void *json;          /* the parsed header (cJSON) */
    unsigned char *file; /* the bytes, when st_read read them */
};

/* Parses the safetensors bytes buf[0..len). name (a path, or what the bytes
 * are) is copied into f->name and starts every message. Checks: the length
 * prefix (at least 8 bytes, header length <= ST_MAX_HEADER and inside the
 * buffer), the header (JSON, an object, only whitespace after it), every
 * entry (an object with exactly "dtype" a known dtype string, "shape" an
 * array of at most ST_MAX_DIMS integers >= 0, "data_offsets" two integers
 * begin <= end; the shape's element count times the item size, checked for
 * overflow, equal to end - begin; end inside the data section), no name
 * twice, no two tensors' bytes overlapping, "__metadata__" (optional) an
 * object of strings. buf must outlive f (tensors point into it) and is not
 * freed by st_free. Returns 0, or ABC_EFORMAT naming f->name and the tensor
 * or field (ABC_ENOMEM), leaving f empty (st_free is still safe). */
int st_parse(struct st_file *f, const char *name, const unsigned char *buf,
             size_t len, char *err);

/* Reads path (a regular file of at most ST_MAX_FILE bytes) and st_parse's
 * it; f owns the bytes. Returns 0 or ABC_EIO / ABC_EFORMAT / ABC_ENOMEM
 * naming path. */
int st_read(struct st_file *f, const char *path, char *err);

/* Frees what st_parse / st_read allocated; f is empty afterwards. */
void st_free(struct st_file *f);

/* The tensor called name, or NULL. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);

/* The metadata value of key, or NULL. */
const char *st_meta(const struct st_file *f, const char *key);

/* Converts tensor t of f to t->numel host floats in out: F32 as is, F64,
 * F16 and BF16 converted (F64 rounds to nearest; values beyond float's
 * range become infinite). Returns 0, or ABC_EFORMAT naming the file, the
 * tensor and its dtype for any other dtype. */
int st_tensor_f32(const struct st_file *f, const struct st_tensor *t,
                  float *out, char *err);

/* One tensor to write: host values (float for ST_F32, int64_t for ST_I64,
 * the only dtypes written), row-major, of the given shape (ndim 0 is a
 * scalar). */
struct st_out {
    const char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
};

/* Serialises tensors t[0..n) (in that order, packed back to back) and the
 * metadata pairs keys[i] -> vals[i], i < nmeta (may be 0), into *buf,
 * malloc'ed (caller frees), *len bytes. The header is padded with spaces to
 * a multiple of 8 bytes so that the data is aligned. Returns 0, or
 * ABC_EVALUE (another dtype, a bad shape, a name given twice or named
 * "__metadata__") or ABC_ENOMEM. */
int st_pack(const struct st_out *t, int n, const char *const *keys,
            const char *const *vals, int nmeta, unsigned char **buf,
            size_t *len, char *err);

/* st_pack written to path atomically (core/fileio.h). */
int st_write(const char *path, const struct st_out *t, int n,
             const char *const *keys, const char *const *vals, int nmeta,
             char *err);

#endif
