/* safetensors_tool.c - helper of test_safetensors.sh: runs our engine where
 * the script needs numbers from it.
 *   safetensors_tool logits CKPT IN.f32 B OUT.f32
 *       eval-mode logits of B images (raw float32, B x C x H x W, the
 *       checkpoint's input shape) -> raw float32 (B x classes)
 *   safetensors_tool slice CKPT c1,c2,... OUT.ckpt
 *       prune_slice (L1 filters) of CKPT to that structure
 *   safetensors_tool same A.ckpt B.ckpt
 *       exit 0 when both have the same architecture, shapes, structure and
 *       bit-identical tensors; else prints the first difference, exit 1 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "io/checkpoint.h"
#include "nn/model.h"
#include "prune/prune.h"

static int logits(const char *ckpt, const char *in, int B, const char *out)
{
    char err[ABC_ERRLEN];
    struct model *m;
    if (checkpoint_load(ckpt, &m, NULL, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t n = (size_t)B * m->in_c * m->in_h * m->in_w, len;
    char *x = NULL;
    int rc = 1;
    if (file_read_all(in, "input", 1 << 30, &x, &len, err) ||
        len != n * sizeof(float)) {
        fprintf(stderr, "%s: %s (expected %zu floats)\n", in, err, n);
        goto out;
    }
    if (model_reserve(m, B, err)) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    model_forward(m, (const float *)x, NULL, B, 0, NULL);
    if (file_write_atomic(out, model_logits(m),
                          sizeof(float) * (size_t)B * m->num_classes, err)) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    rc = 0;
out:
    free(x);
    model_destroy(m);
    return rc;
}

static int slice(const char *ckpt, const char *list, const char *out)
{
    char err[ABC_ERRLEN];
    struct model *m, *p = NULL;
    if (checkpoint_load(ckpt, &m, NULL, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int *ch = calloc((size_t)m->nprunable, sizeof(int)), n = 0;
    for (const char *s = list; ch && *s && n < m->nprunable; n++) {
        char *end;
        ch[n] = (int)strtol(s, &end, 10);
        s = *end == ',' ? end + 1 : end;
    }
    int rc = !ch || n != m->nprunable ||
             prune_slice(m, ch, FILTER_L1, 1, &p, err) ||
             checkpoint_save(out, p, NULL, err);
    if (rc) fprintf(stderr, "slice: %s\n", ch ? err : "out of memory");
    free(ch);
    model_destroy(p);
    model_destroy(m);
    return rc;
}

static int same(const char *a, const char *b)
{
    char err[ABC_ERRLEN];
    struct model *x, *y;
    if (checkpoint_load(a, &x, NULL, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (checkpoint_load(b, &y, NULL, err)) {
        fprintf(stderr, "%s\n", err);
        model_destroy(x);
        return 1;
    }
    int rc = checkpoint_check_compatible(x, y, err) != 0;
    if (rc) fprintf(stderr, "%s\n", err);
    for (int t = 0; !rc && t < x->ntensors; t++) {
        const struct tensor_info *tx = &x->tensors[t];
        const struct tensor_info *ty = model_find_tensor(y, tx->name);
        if (!ty || ty->numel != tx->numel ||
            memcmp(model_tensor_data(x, tx), model_tensor_data(y, ty),
                   tx->numel * sizeof(float)) != 0) {
            fprintf(stderr, "tensor %s differs\n", tx->name);
            rc = 1;
        }
    }
    if (!rc) printf("%s and %s: %d tensors bit-identical\n", a, b, x->ntensors);
    model_destroy(x);
    model_destroy(y);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "logits") == 0)
        return logits(argv[2], argv[3], (int)strtol(argv[4], NULL, 10),
                      argv[5]);
    if (argc == 5 && strcmp(argv[1], "slice") == 0)
        return slice(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "same") == 0)
        return same(argv[2], argv[3]);
    fprintf(stderr, "usage: safetensors_tool logits CKPT IN.f32 B OUT.f32 | "
                    "slice CKPT c1,c2,... OUT.ckpt | same A.ckpt B.ckpt\n");
    return 2;
}
