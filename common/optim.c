/* optim.c - SGD with momentum and learning-rate schedules (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

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

float lr_at(const struct train_config *tc, double t)
{
    double lr = tc->lr;
    if (tc->warmup_epochs > 0 && t < tc->warmup_epochs)
        return (float)(lr * (t + 1e-3) / (tc->warmup_epochs + 1e-3));
    if (strcmp(tc->schedule, "step") == 0) {
        for (int i = 0; i < tc->nmilestones; i++)
            if (t >= tc->milestones[i]) lr *= tc->gamma;
    } else if (strcmp(tc->schedule, "cosine") == 0) {
        double T = tc->epochs > tc->warmup_epochs
                       ? tc->epochs - tc->warmup_epochs
                       : 1;
        double u = (t - tc->warmup_epochs) / T;
        if (u > 1) u = 1;
        lr = 0.5 * lr * (1.0 + cos(3.14159265358979323846 * u));
    }
    return (float)lr;
}
