/* optim.c - SGD with momentum and learning-rate schedules (see optim.h). */
#include "nn/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

int sgd_init(struct sgd *o, size_t n, float momentum, float weight_decay,
             int nesterov, char *err)
{
    memset(o, 0, sizeof *o);
    o->velocity = calloc(n ? n : 1, sizeof(float));
    if (!o->velocity)
        return abc_errf(err, ABC_ENOMEM, "out of memory for %zu momenta", n);
    o->n = n;
    o->momentum = momentum;
    o->weight_decay = weight_decay;
    o->nesterov = nesterov;
    return 0;
}

void sgd_free(struct sgd *o)
{
    free(o->velocity);
    o->velocity = NULL;
}

void sgd_step(struct sgd *o, float *params, const float *grads, float lr)
{
    const float mu = o->momentum, wd = o->weight_decay;
    float *v = o->velocity;
    const long n = (long)o->n;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float d = grads[i] + wd * params[i];
        v[i] = mu * v[i] + d;
        d = o->nesterov ? d + mu * v[i] : v[i];
        params[i] -= lr * d;
    }
}
