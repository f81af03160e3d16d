/* groups.c - evaluation groups (see groups.h). */
#include "groups.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "transport.h"

int eval_groups_size(const struct config *c, int nranks, int *g, char *err)
{
    int workers = nranks > 1 ? nranks - 1 : 1;
    int want = c->search.ranks_per_eval;
    if (want == 0) { /* auto: every candidate of a phase in flight at once */
        want = workers / (c->search.sn > 0 ? c->search.sn : 1);
        if (want < 1) want = 1;
    }
    if (nranks > 1 && want > workers)
        return abc_errf(err, ABC_EVALUE,
                        "%s: search.ranks_per_eval %d, but the job has %d "
                        "worker rank%s: give at most %d, or 0 (auto)",
                        c->path, want, workers, workers == 1 ? "" : "s",
                        workers);
    *g = want;
    return 0;
}

int eval_groups_make(MPI_Comm world, const struct config *c,
                     struct eval_groups *gr, char *err)
{
    memset(gr, 0, sizeof *gr);
    gr->comm = MPI_COMM_NULL;
    gr->group = -1;
    int rank = 0, nranks = 1;
    int rc = proto_comm_info(world, &rank, &nranks, err);
    if (rc) return rc;
    if ((rc = eval_groups_size(c, nranks, &gr->g, err))) return rc;
    int workers = nranks > 1 ? nranks - 1 : 0;
    gr->ngroups = nranks > 1 ? workers / gr->g : 1;
    gr->idle = workers - gr->ngroups * gr->g;
    if (nranks == 1) gr->g = 1; /* in-process: no groups to form */
    gr->leaders = malloc(sizeof(int) * (size_t)gr->ngroups);
    if (!gr->leaders) return abc_errf(err, ABC_ENOMEM, "out of memory");
    for (int k = 0; k < gr->ngroups; k++)
        gr->leaders[k] = 1 + k * gr->g;
    if (nranks == 1 || gr->g == 1) { /* one rank per evaluation */
        if (rank > 0 && rank <= gr->ngroups) {
            gr->group = rank - 1;
            gr->is_leader = 1;
        }
        return 0;
    }
    if (rank > 0 && rank - 1 < gr->ngroups * gr->g) {
        gr->group = (rank - 1) / gr->g;
        gr->is_leader = (rank - 1) % gr->g == 0;
    }
    int mpirc = MPI_Comm_split(
        world, gr->group >= 0 ? gr->group : MPI_UNDEFINED, rank, &gr->comm);
    if (mpirc != MPI_SUCCESS) {
        eval_groups_free(gr);
        return abc_errf(err, ABC_EMPI, "rank %d: MPI_Comm_split of the groups",
                        rank);
    }
    if (gr->comm != MPI_COMM_NULL &&
        MPI_Comm_set_errhandler(gr->comm, MPI_ERRORS_RETURN) != MPI_SUCCESS) {
        eval_groups_free(gr);
        return abc_errf(err, ABC_EMPI,
                        "rank %d: MPI_Comm_set_errhandler of its group", rank);
    }
    return 0;
}

void eval_groups_free(struct eval_groups *gr)
{
    if (gr->comm != MPI_COMM_NULL) MPI_Comm_free(&gr->comm);
    gr->comm = MPI_COMM_NULL;
    free(gr->leaders);
    gr->leaders = NULL;
}
