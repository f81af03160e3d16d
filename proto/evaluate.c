/* evaluate.c - budgets and answering an eval_request (see evaluate.h). */
#include "evaluate.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

int proto_result_stopped(const struct proto_eval_result *res)
{
    return !res->ok && res->stopped;
}

void proto_budget_from_config(struct proto_budget *b,
                              const struct fitness_config *f)
{
    memset(b, 0, sizeof *b);
    /* the config's 0 ("all") travels as "as many as there are" */
    b->train_images = f->train_images > 0 ? f->train_images : INT32_MAX;
    b->val_images = f->val_images;
    b->epochs = f->epochs;
    b->steps = f->steps;
    b->batch = f->batch_size;
    b->lr = f->lr;
    b->momentum = f->momentum;
    b->weight_decay = f->weight_decay;
    b->proxy = f->proxy;
    b->bn_batches = f->bn_batches;
}

void proto_budget_to_config(struct fitness_config *f,
                            const struct proto_budget *b)
{
    memset(f, 0, sizeof *f);
    f->train_images = b->train_images;
    f->val_images = b->val_images;
    f->epochs = b->epochs;
    f->steps = b->steps;
    f->batch_size = b->batch;
    f->lr = (float)b->lr;
    f->momentum = (float)b->momentum;
    f->weight_decay = (float)b->weight_decay;
    f->proxy = b->proxy;
    f->bn_batches = b->bn_batches;
}

int proto_evaluate(const struct proto_eval_request *rq,
                   const struct model *pretrained, enum filter_init how,
                   const struct data_splits *d, struct train_dp *dp, int rank,
                   const volatile sig_atomic_t *stop,
                   struct proto_eval_result *res)
{
    char err[ABC_ERRLEN] = "";
    struct fitness_config f;
    struct fitness_result r;
    proto_budget_to_config(&f, &rq->budget);
    int rc = fitness_evaluate(pretrained, rq->structure, rq->nlayers, how, &f,
                              rq->seed, d, dp, stop, &r, NULL, err);
    memset(res, 0, sizeof *res);
    res->eval_id = rq->eval_id;
    res->worker = rank;
    res->wall_s = r.wall_s;
    if (rc == ABC_ESTOPPED) return rc;
    if (rc) {
        res->ok = 0;
        snprintf(res->error, sizeof res->error, "%s",
                 err[0] ? err : "evaluation failed");
        return 0;
    }
    res->ok = 1;
    res->val_acc = r.val_acc;
    res->val_loss = r.val_loss;
    res->images_per_s = r.images_per_s;
    res->flops = r.flops;
    res->params = r.params;
    return 0;
}
