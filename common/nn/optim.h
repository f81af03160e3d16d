/* optim.h - SGD with momentum (optionally Nesterov) and weight decay over
 * the model's one flat parameter array, with PyTorch's update rule. The
 * learning-rate schedules belong to the training loop (train/train.h). */
#ifndef ABC_OPTIM_H
#define ABC_OPTIM_H

#include <stddef.h>

struct sgd {
    size_t n;
    float momentum, weight_decay;
    int nesterov;
    float *velocity; /* n floats, zero-initialised */
};

/* Allocates the momentum buffer. Returns 0 or ABC_ENOMEM. */
int sgd_init(struct sgd *o, size_t n, float momentum, float weight_decay,
             int nesterov, char *err);
void sgd_free(struct sgd *o);

/* One update (PyTorch SGD, dampening 0):
 *   d = g + wd*p;  v = mu*v + d;  d = nesterov ? d + mu*v : v;  p -= lr*d */
void sgd_step(struct sgd *o, float *params, const float *grads, float lr);

#endif
