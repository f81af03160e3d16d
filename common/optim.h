/* optim.h - SGD with momentum (optionally Nesterov) and weight decay over
 * the model's one flat parameter array, with PyTorch's update rule, and the
 * learning-rate schedules: constant, step (milestones x gamma), cosine, each
 * with an optional linear warm-up. */
#ifndef ABC_OPTIM_H
#define ABC_OPTIM_H

#include <stddef.h>

#include "config.h"

struct sgd {
    size_t n;
    float momentum, weight_decay;
    int nesterov;
    float *velocity;     /* n floats, zero-initialised */
};

/* Allocates the momentum buffer. Returns 0 or ABC_ENOMEM. */
int sgd_init(struct sgd *o, size_t n, float momentum, float weight_decay,
             int nesterov, char *err);
void sgd_free(struct sgd *o);

/* One update (PyTorch SGD, dampening 0):
 *   d = g + wd*p;  v = mu*v + d;  d = nesterov ? d + mu*v : v;  p -= lr*d */
void sgd_step(struct sgd *o, float *params, const float *grads, float lr);

/* Learning rate at fractional epoch t in [0, epochs] for schedule tc:
 * warm-up ramps linearly from ~0 to lr over warmup_epochs (cosine then
 * spans the remaining epochs); then constant / step (lr * gamma^(number
 * of milestones <= t)) / cosine (0.5*lr*(1+cos(pi*u))). */
float lr_at(const struct train_config *tc, double t);

#endif
