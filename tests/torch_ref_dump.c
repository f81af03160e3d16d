/* torch_ref_dump.c - helper of the PyTorch reference test (torch_ref.py):
 * builds a model, initialises it, runs one training forward/backward on a
 * seeded batch and writes (1) the model as an abcprune checkpoint and (2) a
 * msgpack map with the batch, logits, loss, every parameter gradient and
 * the BN running statistics after the step. torch_ref.py rebuilds the same
 * network in PyTorch from (1) and compares against (2).
 * usage: torch_ref_dump ARCH H CKPT OUT [c1,c2,...] */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "nn/model.h"

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pack_floats(msgpack_packer *pk, const float *v, size_t n)
{
    msgpack_pack_bin(pk, n * sizeof(float));
    msgpack_pack_bin_body(pk, v, n * sizeof(float));
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s ARCH H CKPT OUT [c1,c2,...]\n", argv[0]);
        return 2;
    }
    enum arch a;
    if (arch_parse(argv[1], &a)) {
        fprintf(stderr, "unknown arch %s\n", argv[1]);
        return 2;
    }
    int H = atoi(argv[2]);
    int ch[64], nch = 0;
    if (argc > 5)
        for (char *t = strtok(argv[5], ","); t && nch < 64;
             t = strtok(NULL, ","))
            ch[nch++] = atoi(t);
    char err[ABC_ERRLEN];
    struct model *m;
    if (model_create(&m, a, nch ? ch : NULL, 1, H, H, 10, err) ||
        model_reserve(m, 8, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    model_init_weights(m, 42);
    struct rng r;
    rng_seed(&r, 9);
    /* Non-trivial BN affine parameters and running statistics. */
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        if (ti->ndim != 1 || strncmp(ti->name, "fc.", 3) == 0) continue;
        float *d = model_tensor_data(m, ti);
        const char *suf = strrchr(ti->name, '.') + 1;
        for (size_t j = 0; j < ti->numel; j++) {
            double u = rng_uniform(&r);
            if (!strcmp(suf, "weight"))
                d[j] = (float)(0.5 + u);
            else if (!strcmp(suf, "running_var"))
                d[j] = (float)(0.5 + u);
            else
                d[j] = (float)(u - 0.5);
        }
    }
    if (checkpoint_save(argv[3], m, NULL, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const int B = 8;
    size_t xn = (size_t)B * H * H;
    float *x = malloc(xn * sizeof(float));
    int y[8];
    for (size_t i = 0; i < xn; i++)
        x[i] = (float)rng_normal(&r);
    for (int i = 0; i < B; i++)
        y[i] = (int)rng_below(&r, 10);

    /* Eval-mode logits (running statistics) first, then one training step. */
    model_forward(m, x, NULL, B, 0, NULL);
    float *eval_logits = malloc(sizeof(float) * B * 10);
    memcpy(eval_logits, model_logits(m), sizeof(float) * B * 10);
    model_zero_grad(m);
    float loss = model_forward(m, x, y, B, 1, NULL);
    model_backward(m);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    pack_str(&pk, "x");
    pack_floats(&pk, x, xn);
    pack_str(&pk, "y");
    msgpack_pack_array(&pk, B);
    for (int i = 0; i < B; i++)
        msgpack_pack_int(&pk, y[i]);
    pack_str(&pk, "eval_logits");
    pack_floats(&pk, eval_logits, (size_t)B * 10);
    pack_str(&pk, "logits");
    pack_floats(&pk, model_logits(m), (size_t)B * 10);
    pack_str(&pk, "loss");
    msgpack_pack_double(&pk, loss);
    int ngrad = 0, nbuf = 0;
    for (int t = 0; t < m->ntensors; t++)
        m->tensors[t].is_buffer ? nbuf++ : ngrad++;
    pack_str(&pk, "grads");
    msgpack_pack_map(&pk, ngrad);
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        if (ti->is_buffer) continue;
        pack_str(&pk, ti->name);
        pack_floats(&pk, m->grads + ti->offset, ti->numel);
    }
    pack_str(&pk, "buffers_after");
    msgpack_pack_map(&pk, nbuf);
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        if (!ti->is_buffer) continue;
        pack_str(&pk, ti->name);
        pack_floats(&pk, model_tensor_data(m, ti), ti->numel);
    }
    FILE *f = fopen(argv[4], "wb");
    int ok = f && fwrite(sb.data, 1, sb.size, f) == sb.size;
    if (f && fclose(f) != 0) ok = 0;
    msgpack_sbuffer_destroy(&sb);
    free(x);
    free(eval_logits);
    model_destroy(m);
    if (!ok) {
        fprintf(stderr, "cannot write %s\n", argv[4]);
        return 1;
    }
    return 0;
}
