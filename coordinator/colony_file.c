/* colony_file.c - the colony checkpoint: colony_save and colony_load (see
 * colony.h).
 *
 * Checkpoint format, version 3 (sync; version 4, async, below): exactly
 * one msgpack map, nothing after it,
 * str keys, each key below required, none twice, unknown keys are errors:
 *
 *   "format"       str    "abcprune-colony"
 *   "version"      uint   3
 *   "params"       map    "nlayers", "k", "sn", "limit", "change_dims",
 *                         "max_cycles": uint; "seed": uint64;
 *                         "redraw_same": bool; optional "random", "crn":
 *                         bool (written, true, only when set)
 *   "phase"        str    "init", "employed", "onlooker", "scout", "done"
 *   "cycle"        uint   0 in init, max_cycles when done, else below it
 *   "evaluations"  uint   fitnesses applied so far
 *   "next_eval_id" uint   >= evaluations
 *   "foods"        array  empty in init, else sn maps: "code" (array of
 *                         nlayers uints in 1..k), "fitness" (float64,
 *                         finite), "trial" (uint)
 *   "final"        optional, only when done: "code", "fitness" (float64),
 *                  "seed" (uint64), "candidates", "seeds" (uint >= 1): the
 *                  structure chosen by re-evaluating the top codes
 *   "best"         nil in init, else a map: "code", "fitness" (at least
 *                         every source's), "eval_id" (< next_eval_id)
 *   "batch"        nil when no batch was made in this phase, else an array
 *                         of maps: "index", "source", "partner" (int, -1
 *                         for none), "code", "seed", "eval_id", "fitness"
 *                         (nil until recorded, else float64). On load the
 *                         batch is generated again from the state and must
 *                         equal this one; only the fitnesses are taken.
 *   "crc32"        map    last: for every key above except "format" and
 *                         "version" (the sections), zlib's CRC-32 of the
 *                         section's bytes (its key and value as written), a
 *                         uint; a mismatch is an error naming the file and
 *                         the section, checked before any field is read
 *                         (mpread_check_sections, io/mpread.h)
 *
 * Version 4 is written by a colony in the async schedule (version 3 readers
 * refuse it by its version): the same keys plus one, and
 *
 *   "phase"        str    "async", or "done" once every role is applied
 *   "cycle"        uint   the cycle of the oldest role not applied
 *   "batch"        nil
 *   "async"        map    "next_role" (uint, roles issued, at most
 *                         max_cycles*(2sn+1)), "walk" (uint < sn, where the
 *                         next onlooker walk starts), "redo" (array of
 *                         increasing role numbers below next_role: the
 *                         roles in flight at the save, made again first
 *                         after a load). The roles applied (below
 *                         next_role, not in redo) account for the
 *                         evaluations: sn + their moves + up to one per
 *                         scout role.
 *
 * Versions 1 (sync) and 2 (async), written before the checksums, are the
 * same without "crc32" and still load, unchecked, so a search started by
 * an older build resumes; its next save writes version 3 or 4. A "crc32"
 * key in them is an unknown key.
 *
 * Writers emit keys in this order. Floats are float64, so a loaded colony
 * is bit-identical to the saved one. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "colony.h"
#include "colony_internal.h"
#include "core/err.h"
#include "core/fileio.h"
#include "io/mpread.h"
#include "io/mpwrite.h"

/* Largest colony file colony_load reads (a 4096-layer, 65536-source colony
 * is about 0.6 GB; real ones are kilobytes). */
#define COLONY_MAX_BYTES ((size_t)1 << 30)

/* Largest sn x nlayers a file may ask for (a resnet110 search has 54
 * layers: 300000 sources would fit). */
#define COLONY_FILE_MAX_CELLS (1 << 24)

/* The versions written before the section checksums: still read. */
#define COLONY_VERSION_OLD 1
#define COLONY_VERSION_OLD_ASYNC 2

/* ---------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Packs the "async" key and map: the roles in flight join the ones still
 * to make again, sorted. Returns 0 or -1. */
static int pack_async(msgpack_packer *pk, const struct colony *c)
{
    size_t n = (size_t)c->nredo + (size_t)c->ninflight;
    uint64_t *redo = malloc((n ? n : 1) * sizeof *redo);
    if (!redo) return -1;
    for (int i = 0; i < c->nredo; i++)
        redo[i] = c->redo[i];
    for (int i = 0; i < c->ninflight; i++)
        redo[c->nredo + i] = c->slots[i]->role;
    qsort(redo, n, sizeof *redo, cmp_u64);
    int rc = mpw_str(pk, "async") != 0 || msgpack_pack_map(pk, 3) != 0 ||
             mpw_kv_u64(pk, "next_role", c->role_next) != 0 ||
             mpw_kv_int(pk, "walk", c->walk) != 0 || mpw_str(pk, "redo") != 0 ||
             msgpack_pack_array(pk, n) != 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = msgpack_pack_uint64(pk, redo[i]) != 0;
    free(redo);
    return rc ? -1 : 0;
}

/* Serialises c into sb. Returns 0 or -1 (out of memory). */
static int pack_colony(msgpack_sbuffer *sb, const struct colony *c)
{
    const struct colony_params *p = &c->p;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    /* + "crc32", packed by colony_save after the rest */
    if (msgpack_pack_map(&pk,
                         11 + (c->async ? 1 : 0) + (c->has_final ? 1 : 0)) != 0)
        return -1;
    if (mpw_str(&pk, "format") != 0 || mpw_str(&pk, COLONY_FORMAT) != 0)
        return -1;
    if (mpw_kv_int(&pk, "version",
                   c->async ? COLONY_VERSION_ASYNC : COLONY_VERSION) != 0)
        return -1;

    if (mpw_str(&pk, "params") != 0 ||
        msgpack_pack_map(&pk, 8 + (p->random ? 1 : 0) + (p->crn ? 1 : 0)) !=
            0 ||
        mpw_kv_int(&pk, "nlayers", p->nlayers) != 0 ||
        mpw_kv_int(&pk, "k", p->K) != 0 || mpw_kv_int(&pk, "sn", p->sn) != 0 ||
        mpw_kv_int(&pk, "limit", p->limit) != 0 ||
        mpw_kv_int(&pk, "change_dims", p->change_dims) != 0 ||
        mpw_kv_int(&pk, "max_cycles", p->max_cycles) != 0 ||
        mpw_kv_u64(&pk, "seed", p->seed) != 0 ||
        mpw_str(&pk, "redraw_same") != 0 ||
        (p->redraw_same ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk)))
        return -1;
    if (p->random && (mpw_str(&pk, "random") != 0 || msgpack_pack_true(&pk)))
        return -1;
    if (p->crn && (mpw_str(&pk, "crn") != 0 || msgpack_pack_true(&pk)))
        return -1;

    if (mpw_str(&pk, "phase") != 0 ||
        mpw_str(&pk, colony_phase_name(c->phase)) != 0)
        return -1;
    if (mpw_kv_int(&pk, "cycle", c->cycle) != 0 ||
        mpw_kv_u64(&pk, "evaluations", c->evaluations) != 0 ||
        mpw_kv_u64(&pk, "next_eval_id", c->next_eval_id) != 0)
        return -1;

    int nfoods = c->phase == COLONY_INIT ? 0 : p->sn;
    if (mpw_str(&pk, "foods") != 0 ||
        msgpack_pack_array(&pk, (size_t)nfoods) != 0)
        return -1;
    for (int i = 0; i < nfoods; i++) {
        const struct colony_food *f = &c->foods[i];
        if (msgpack_pack_map(&pk, 3) != 0 || mpw_str(&pk, "code") != 0 ||
            mpw_ints(&pk, f->code, p->nlayers) != 0 ||
            mpw_kv_double(&pk, "fitness", f->fitness) != 0 ||
            mpw_kv_int(&pk, "trial", f->trial) != 0)
            return -1;
    }

    if (mpw_str(&pk, "best") != 0) return -1;
    if (!c->has_best) {
        if (msgpack_pack_nil(&pk) != 0) return -1;
    } else if (msgpack_pack_map(&pk, 4) != 0 || mpw_str(&pk, "code") != 0 ||
               mpw_ints(&pk, c->best_code, p->nlayers) != 0 ||
               mpw_kv_double(&pk, "fitness", c->best_fitness) != 0 ||
               mpw_kv_u64(&pk, "eval_id", c->best_eval_id) != 0 ||
               mpw_kv_u64(&pk, "seed", c->best_seed) != 0) {
        return -1;
    }

    if (c->has_final &&
        (mpw_str(&pk, "final") != 0 || msgpack_pack_map(&pk, 5) != 0 ||
         mpw_str(&pk, "code") != 0 ||
         mpw_ints(&pk, c->final_code, p->nlayers) != 0 ||
         mpw_kv_double(&pk, "fitness", c->final_fitness) != 0 ||
         mpw_kv_u64(&pk, "seed", c->final_seed) != 0 ||
         mpw_kv_int(&pk, "candidates", c->final_candidates) != 0 ||
         mpw_kv_int(&pk, "seeds", c->final_seeds) != 0))
        return -1;

    if (mpw_str(&pk, "batch") != 0) return -1;
    if (c->async)
        return msgpack_pack_nil(&pk) != 0 || pack_async(&pk, c) != 0 ? -1 : 0;
    if (!c->batch_ready) return msgpack_pack_nil(&pk) != 0 ? -1 : 0;
    if (msgpack_pack_array(&pk, (size_t)c->nbatch) != 0) return -1;
    for (int i = 0; i < c->nbatch; i++) {
        const struct candidate *cd = &c->batch[i];
        if (msgpack_pack_map(&pk, 7) != 0 ||
            mpw_kv_int(&pk, "index", cd->index) != 0 ||
            mpw_kv_int(&pk, "source", cd->source) != 0 ||
            mpw_kv_int(&pk, "partner", cd->partner) != 0 ||
            mpw_str(&pk, "code") != 0 ||
            mpw_ints(&pk, cd->code, p->nlayers) != 0 ||
            mpw_kv_u64(&pk, "seed", cd->seed) != 0 ||
            mpw_kv_u64(&pk, "eval_id", cd->eval_id) != 0 ||
            mpw_str(&pk, "fitness") != 0)
            return -1;
        if (c->have[i] ? msgpack_pack_double(&pk, c->results[i]) != 0
                       : msgpack_pack_nil(&pk) != 0)
            return -1;
    }
    return 0;
}

int colony_save(const struct colony *c, const char *path, char *err)
{
    if (!c || !path || !*path)
        return abc_errf(err, ABC_EVALUE, "colony_save: no %s",
                        !c ? "colony" : "path");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc;
    if (pack_colony(&sb, c) != 0 || mpw_section_crcs(&sb, 0, "crc32") != 0)
        rc = abc_errf(err, ABC_ENOMEM,
                      "%s: out of memory serialising the colony", path);
    else
        rc = file_write_atomic(path, sb.data, sb.size, err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* ---------------------------------------------------------------------
 * Loading: msgpack helpers
 * ------------------------------------------------------------------- */

/* Sorts the entries of map o into vals[] by keys[] and checks that every
 * key is known, none appears twice and all are present. where names the
 * map in messages. */
/* mpread_get_int into an int. */
static int get_i32(const char *path, const char *field, const msgpack_object *o,
                   int64_t lo, int64_t hi, int *out, char *err)
{
    int64_t v = 0;
    int rc = mpread_get_int(path, field, o, lo, hi, &v, err);
    if (!rc) *out = (int)v;
    return rc;
}

/* Reads a finite float (float64, or float32). */
static int get_double(const char *path, const char *field,
                      const msgpack_object *o, double *out, char *err)
{
    if (o->type != MSGPACK_OBJECT_FLOAT64 && o->type != MSGPACK_OBJECT_FLOAT32)
        return abc_errf(err, ABC_EFORMAT, "%s: %s: expected a float, got %s",
                        path, field, mpread_type_name(o->type));
    if (!isfinite(o->via.f64))
        return abc_errf(err, ABC_EVALUE, "%s: %s: %g is not finite", path,
                        field, o->via.f64);
    *out = o->via.f64;
    return 0;
}

/* Reads a code: an array of nlayers integers in 1..K. */
static int get_code(const char *path, const char *field,
                    const msgpack_object *o, const struct colony_params *p,
                    int *code, char *err)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT, "%s: %s: expected an array, got %s",
                        path, field, mpread_type_name(o->type));
    if (o->via.array.size != (uint32_t)p->nlayers)
        return abc_errf(err, ABC_EVALUE,
                        "%s: %s: %u entries, expected nlayers = %d", path,
                        field, o->via.array.size, p->nlayers);
    for (int j = 0; j < p->nlayers; j++) {
        char f[160];
        snprintf(f, sizeof f, "%s[%d]", field, j);
        int rc = get_i32(path, f, &o->via.array.ptr[j], 1, p->K, &code[j], err);
        if (rc) return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Loading: the colony
 * ------------------------------------------------------------------- */

static int load_params(const char *path, const msgpack_object *o,
                       struct colony_params *p, char *err)
{
    static const char *const keys[] = {
        "nlayers",    "k",    "sn",          "limit",  "change_dims",
        "max_cycles", "seed", "redraw_same", "random", "crn"};
    const msgpack_object *v[10] = {0};
    /* "random" and "crn" (bools) are written only when true: without, 0 */
    const msgpack_object *unk;
    int rc = mpread_map_fields(path, "params", o, keys, 10, v, &unk, err);
    if (rc) return rc;
    if (unk) return mpread_err_unknown_key(path, "params", unk, err);
    for (int i = 0; i < 8; i++)
        if (!v[i]) return mpread_err_missing_key(path, "params", keys[i], err);
    if (rc) return rc;
    memset(p, 0, sizeof *p);
    if ((rc = get_i32(path, "params.nlayers", v[0], 1, COLONY_MAX_LAYERS,
                      &p->nlayers, err)) ||
        (rc = get_i32(path, "params.k", v[1], 1, 10, &p->K, err)) ||
        (rc =
             get_i32(path, "params.sn", v[2], 2, COLONY_MAX_SN, &p->sn, err)) ||
        (rc =
             get_i32(path, "params.limit", v[3], 0, INT_MAX, &p->limit, err)) ||
        (rc = get_i32(path, "params.change_dims", v[4], 1, COLONY_MAX_LAYERS,
                      &p->change_dims, err)) ||
        (rc = get_i32(path, "params.max_cycles", v[5], 0, COLONY_MAX_CYCLES,
                      &p->max_cycles, err)) ||
        (rc = mpread_get_u64(path, "params.seed", v[6], &p->seed, err)))
        return rc;
    if (v[7]->type != MSGPACK_OBJECT_BOOLEAN)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: params.redraw_same: expected bool, got %s", path,
                        mpread_type_name(v[7]->type));
    p->redraw_same = v[7]->via.boolean ? 1 : 0;
    for (int i = 8; i < 10; i++) {
        if (!v[i]) continue;
        if (v[i]->type != MSGPACK_OBJECT_BOOLEAN)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: params.%s: expected bool, got %s", path,
                            keys[i], mpread_type_name(v[i]->type));
        *(i == 8 ? &p->random : &p->crn) = v[i]->via.boolean ? 1 : 0;
    }
    /* refused before colony_create allocates sn codes several times over */
    if ((uint64_t)p->sn * (uint64_t)p->nlayers > COLONY_FILE_MAX_CELLS)
        return abc_errf(err, ABC_EVALUE,
                        "%s: params.sn x params.nlayers: %d x %d code entries, "
                        "more than the limit %d",
                        path, p->sn, p->nlayers, COLONY_FILE_MAX_CELLS);
    rc = colony_params_check(p, err);
    if (rc) return abc_errprefix(err, rc, "%s", path);
    return 0;
}

/* Reads "phase" into *ph: init..done in a sync (version 1) file, async or
 * done in an async one. */
static int load_phase(const char *path, const msgpack_object *o, int async,
                      enum colony_phase *ph, char *err)
{
    char show[64];
    if (o->type != MSGPACK_OBJECT_STR)
        return abc_errf(err, ABC_EFORMAT, "%s: phase: expected str, got %s",
                        path, mpread_type_name(o->type));
    for (int i = COLONY_INIT; i <= COLONY_ASYNC; i++) {
        if ((async ? i < COLONY_DONE : i == COLONY_ASYNC)) continue;
        if (mpread_str_eq(o, colony_phase_name((enum colony_phase)i))) {
            *ph = (enum colony_phase)i;
            return 0;
        }
    }
    if (async)
        return abc_errf(err, ABC_EVALUE,
                        "%s: phase: \"%s\", expected async or done in an "
                        "async colony (version %d)",
                        path, mpread_str_show(o, show, sizeof show),
                        COLONY_VERSION_ASYNC);
    return abc_errf(err, ABC_EVALUE,
                    "%s: phase: \"%s\", expected init, employed, onlooker, "
                    "scout or done",
                    path, mpread_str_show(o, show, sizeof show));
}

/* Checks cycle and evaluations against the phase: each cycle applies 2*sn
 * neighbours and at most one scout. */
static int check_progress(const char *path, const struct colony *c, char *err)
{
    const struct colony_params *p = &c->p;
    int lo_cycle = 0, hi_cycle = p->max_cycles - 1;
    if (c->phase == COLONY_INIT) hi_cycle = 0;
    /* async: the evaluations are checked against the roles (load_async) */
    int async_run = c->phase == COLONY_ASYNC;
    if (c->phase == COLONY_DONE) lo_cycle = hi_cycle = p->max_cycles;
    if (c->cycle < lo_cycle || c->cycle > hi_cycle)
        return abc_errf(
            err, ABC_EVALUE,
            "%s: cycle: %d, expected %d..%d in phase %s (max_cycles "
            "%d)",
            path, c->cycle, lo_cycle, hi_cycle, colony_phase_name(c->phase),
            p->max_cycles);
    uint64_t sn = (uint64_t)p->sn, lo = 0, hi = 0;
    if (c->phase != COLONY_INIT) {
        lo = sn + (uint64_t)c->cycle * 2 * sn;
        if (c->phase == COLONY_ONLOOKER) lo += sn;
        if (c->phase == COLONY_SCOUT) lo += 2 * sn;
        hi = lo + (uint64_t)c->cycle;
    }
    if (!async_run && (c->evaluations < lo || c->evaluations > hi))
        return abc_errf(err, ABC_EVALUE,
                        "%s: evaluations: %llu, expected %llu..%llu in phase "
                        "%s of cycle %d",
                        path, (unsigned long long)c->evaluations,
                        (unsigned long long)lo, (unsigned long long)hi,
                        colony_phase_name(c->phase), c->cycle);
    if (c->next_eval_id < c->evaluations ||
        c->next_eval_id > UINT64_MAX - (uint64_t)p->sn)
        return abc_errf(err, ABC_EVALUE,
                        "%s: next_eval_id: %llu, expected %llu or more (the "
                        "evaluations)",
                        path, (unsigned long long)c->next_eval_id,
                        (unsigned long long)c->evaluations);
    return 0;
}

static int load_foods(const char *path, const msgpack_object *o,
                      struct colony *c, char *err)
{
    static const char *const keys[] = {"code", "fitness", "trial"};
    uint32_t want = c->phase == COLONY_INIT ? 0 : (uint32_t)c->p.sn;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: foods: expected an array, got %s", path,
                        mpread_type_name(o->type));
    if (o->via.array.size != want)
        return abc_errf(err, ABC_EVALUE,
                        "%s: foods: %u sources, expected %u (sn = %d, phase "
                        "%s)",
                        path, o->via.array.size, want, c->p.sn,
                        colony_phase_name(c->phase));
    for (uint32_t i = 0; i < want; i++) {
        const msgpack_object *v[3];
        char where[64], f[96];
        struct colony_food *fd = &c->foods[i];
        snprintf(where, sizeof where, "foods[%u]", i);
        int rc =
            mpread_get_map(path, where, &o->via.array.ptr[i], keys, 3, v, err);
        if (rc) return rc;
        snprintf(f, sizeof f, "%s.code", where);
        if ((rc = get_code(path, f, v[0], &c->p, fd->code, err))) return rc;
        snprintf(f, sizeof f, "%s.fitness", where);
        if ((rc = get_double(path, f, v[1], &fd->fitness, err))) return rc;
        snprintf(f, sizeof f, "%s.trial", where);
        if ((rc = get_i32(path, f, v[2], 0, INT_MAX, &fd->trial, err)))
            return rc;
    }
    return 0;
}

static int load_best(const char *path, const msgpack_object *o,
                     struct colony *c, char *err)
{
    static const char *const keys[] = {"code", "fitness", "eval_id", "seed"};
    const msgpack_object *v[4];
    if (c->phase == COLONY_INIT) {
        if (o->type != MSGPACK_OBJECT_NIL)
            return abc_errf(err, ABC_EVALUE,
                            "%s: best: a %s, expected nil before init is "
                            "applied",
                            path, mpread_type_name(o->type));
        return 0;
    }
    int rc = mpread_get_map(path, "best", o, keys, 4, v, err);
    if (rc) return rc;
    if ((rc = get_code(path, "best.code", v[0], &c->p, c->best_code, err)) ||
        (rc = get_double(path, "best.fitness", v[1], &c->best_fitness, err)) ||
        (rc = mpread_get_u64(path, "best.eval_id", v[2], &c->best_eval_id,
                             err)) ||
        (rc = mpread_get_u64(path, "best.seed", v[3], &c->best_seed, err)))
        return rc;
    if (c->best_eval_id >= c->next_eval_id)
        return abc_errf(err, ABC_EVALUE,
                        "%s: best.eval_id: %llu, but only ids below "
                        "next_eval_id %llu were evaluated",
                        path, (unsigned long long)c->best_eval_id,
                        (unsigned long long)c->next_eval_id);
    for (int i = 0; i < c->p.sn; i++)
        if (c->foods[i].fitness > c->best_fitness)
            return abc_errf(err, ABC_EVALUE,
                            "%s: best.fitness: %.17g is below foods[%d]."
                            "fitness %.17g (the best is the best ever)",
                            path, c->best_fitness, i, c->foods[i].fitness);
    c->has_best = 1;
    return 0;
}

/* Reads the optional "final" map: only in a done colony. */
static int load_final(const char *path, const msgpack_object *o,
                      struct colony *c, char *err)
{
    static const char *const keys[] = {"code", "fitness", "seed", "candidates",
                                       "seeds"};
    const msgpack_object *v[5];
    if (c->phase != COLONY_DONE)
        return abc_errf(err, ABC_EVALUE,
                        "%s: final: a final choice in a colony that is not "
                        "done (phase %s)",
                        path, colony_phase_name(c->phase));
    int rc = mpread_get_map(path, "final", o, keys, 5, v, err);
    if (rc) return rc;
    if ((rc = get_code(path, "final.code", v[0], &c->p, c->final_code, err)) ||
        (rc =
             get_double(path, "final.fitness", v[1], &c->final_fitness, err)) ||
        (rc = mpread_get_u64(path, "final.seed", v[2], &c->final_seed, err)) ||
        (rc = get_i32(path, "final.candidates", v[3], 1, INT_MAX,
                      &c->final_candidates, err)) ||
        (rc = get_i32(path, "final.seeds", v[4], 1, INT_MAX, &c->final_seeds,
                      err)))
        return rc;
    c->has_final = 1;
    return 0;
}

/* Reads the "async" map (next_role, walk, redo) and checks it against
 * cycle, phase and evaluations: cycle is the oldest role not applied, and
 * the applied roles account for the evaluations. */
static int load_async(const char *path, const msgpack_object *o,
                      struct colony *c, char *err)
{
    static const char *const keys[] = {"next_role", "walk", "redo"};
    const msgpack_object *v[3];
    const struct colony_params *p = &c->p;
    uint64_t total = roles_total(p), R = roles_per_cycle(p);
    int rc = mpread_get_map(path, "async", o, keys, 3, v, err);
    if (rc) return rc;
    if ((rc = mpread_get_u64(path, "async.next_role", v[0], &c->role_next,
                             err)) ||
        (rc = get_i32(path, "async.walk", v[1], 0, p->sn - 1, &c->walk, err)))
        return rc;
    if (c->role_next > total)
        return abc_errf(err, ABC_EVALUE,
                        "%s: async.next_role: %llu, expected at most %llu "
                        "(max_cycles %d x %llu roles)",
                        path, (unsigned long long)c->role_next,
                        (unsigned long long)total, p->max_cycles,
                        (unsigned long long)R);
    const msgpack_object *rd = v[2];
    if (rd->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: async.redo: expected an array, got %s", path,
                        mpread_type_name(rd->type));
    uint32_t n = rd->via.array.size;
    if (n > COLONY_MAX_INFLIGHT || n > c->role_next)
        return abc_errf(err, ABC_EVALUE,
                        "%s: async.redo: %u roles, expected at most %llu "
                        "(next_role) and %d",
                        path, n, (unsigned long long)c->role_next,
                        COLONY_MAX_INFLIGHT);
    c->redo = malloc((n ? n : 1) * sizeof *c->redo);
    if (!c->redo) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    c->cap_redo = (int)(n ? n : 1);
    uint64_t moves, scouts, rm = 0, rs = 0;
    for (uint32_t i = 0; i < n; i++) {
        char f[64];
        snprintf(f, sizeof f, "async.redo[%u]", i);
        uint64_t role = 0;
        if ((rc = mpread_get_u64(path, f, &rd->via.array.ptr[i], &role, err)))
            return rc;
        if (role >= c->role_next || (i > 0 && role <= c->redo[i - 1]))
            return abc_errf(err, ABC_EVALUE,
                            "%s: %s: %llu, expected roles below next_role "
                            "%llu in increasing order",
                            path, f, (unsigned long long)role,
                            (unsigned long long)c->role_next);
        c->redo[c->nredo++] = role;
        if (role % R == R - 1)
            rs++;
        else
            rm++;
    }
    /* the oldest role not applied gives cycle and phase */
    uint64_t low = n ? c->redo[0] : c->role_next;
    int done = low >= total;
    if (done != (c->phase == COLONY_DONE))
        return abc_errf(err, ABC_EVALUE,
                        "%s: phase: %s, but %s (next_role %llu of %llu, %u "
                        "to make again)",
                        path, colony_phase_name(c->phase),
                        done ? "every role is applied" : "roles remain",
                        (unsigned long long)c->role_next,
                        (unsigned long long)total, n);
    int want_cycle = done ? p->max_cycles : (int)(low / R);
    if (c->cycle != want_cycle)
        return abc_errf(err, ABC_EVALUE,
                        "%s: cycle: %d, but the oldest role not applied "
                        "(%llu) is in cycle %d",
                        path, c->cycle, (unsigned long long)low, want_cycle);
    role_counts(p, c->role_next, &moves, &scouts);
    moves -= rm, scouts -= rs;
    uint64_t lo = (uint64_t)p->sn + moves, hi = lo + scouts;
    if (c->evaluations < lo || c->evaluations > hi)
        return abc_errf(err, ABC_EVALUE,
                        "%s: evaluations: %llu, expected %llu..%llu (sn + "
                        "%llu moves + up to %llu scouts applied)",
                        path, (unsigned long long)c->evaluations,
                        (unsigned long long)lo, (unsigned long long)hi,
                        (unsigned long long)moves, (unsigned long long)scouts);
    c->async = 1;
    return 0;
}

/* Reads the saved batch: generates the phase's batch from the state,
 * checks that the file's equals it, and takes the recorded fitnesses. */
static int load_batch(const char *path, const msgpack_object *o,
                      struct colony *c, char *err)
{
    static const char *const keys[] = {"index", "source",  "partner", "code",
                                       "seed",  "eval_id", "fitness"};
    if (o->type == MSGPACK_OBJECT_NIL) return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: batch: expected nil or an array, got %s", path,
                        mpread_type_name(o->type));
    if (c->phase == COLONY_DONE || c->async)
        return abc_errf(err, ABC_EVALUE, "%s: batch: present, but %s", path,
                        c->async ? "the colony is in the async schedule"
                                 : "the search is done");
    generate_batch(c);
    if (o->via.array.size != (uint32_t)c->nbatch)
        return abc_errf(err, ABC_EVALUE,
                        "%s: batch: %u candidates, but this colony state "
                        "makes a %s batch of %d (file from another build, or "
                        "corrupted)",
                        path, o->via.array.size, colony_phase_name(c->phase),
                        c->nbatch);
    int *code = malloc((size_t)c->p.nlayers * sizeof *code);
    if (!code) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    int rc = 0;
    for (int i = 0; i < c->nbatch && !rc; i++) {
        const struct candidate *cd = &c->batch[i];
        const msgpack_object *v[7];
        char where[64], f[96];
        int index, source, partner;
        uint64_t seed = 0, eval_id = 0;
        snprintf(where, sizeof where, "batch[%d]", i);
        rc = mpread_get_map(path, where, &o->via.array.ptr[i], keys, 7, v, err);
        if (rc) break;
        char fi[96], fs[96], fp[96], fc[96], fe[96], fd[96];
        snprintf(fi, sizeof fi, "%s.index", where);
        snprintf(fs, sizeof fs, "%s.source", where);
        snprintf(fp, sizeof fp, "%s.partner", where);
        snprintf(fc, sizeof fc, "%s.code", where);
        snprintf(fe, sizeof fe, "%s.seed", where);
        snprintf(fd, sizeof fd, "%s.eval_id", where);
        if ((rc = get_i32(path, fi, v[0], 0, COLONY_MAX_SN, &index, err)) ||
            (rc = get_i32(path, fs, v[1], 0, c->p.sn - 1, &source, err)) ||
            (rc = get_i32(path, fp, v[2], -1, c->p.sn - 1, &partner, err)) ||
            (rc = get_code(path, fc, v[3], &c->p, code, err)) ||
            (rc = mpread_get_u64(path, fe, v[4], &seed, err)) ||
            (rc = mpread_get_u64(path, fd, v[5], &eval_id, err)))
            break;
        const char *differs =
            index != cd->index       ? "index"
            : source != cd->source   ? "source"
            : partner != cd->partner ? "partner"
            : memcmp(code, cd->code, (size_t)c->p.nlayers * sizeof *code)
                ? "code"
            : seed != cd->seed       ? "seed"
            : eval_id != cd->eval_id ? "eval_id"
                                     : NULL;
        if (differs) {
            rc = abc_errf(err, ABC_EVALUE,
                          "%s: %s.%s: differs from the candidate this colony "
                          "state makes (file from another build, or "
                          "corrupted)",
                          path, where, differs);
            break;
        }
        if (v[6]->type != MSGPACK_OBJECT_NIL) {
            snprintf(f, sizeof f, "%s.fitness", where);
            rc = get_double(path, f, v[6], &c->results[i], err);
            if (rc) break;
            c->have[i] = 1;
        }
    }
    free(code);
    return rc;
}

/* Validates the top-level object o, whose encoding is buf[0..len), and
 * builds the colony. */
static int load_object(const char *path, const char *buf, size_t len,
                       const msgpack_object *o, struct colony **out, char *err)
{
    enum {
        K_FORMAT,
        K_VERSION,
        K_PARAMS,
        K_PHASE,
        K_CYCLE,
        K_EVALS,
        K_NEXT,
        K_FOODS,
        K_BEST,
        K_BATCH,
        K_ASYNC, /* version 2 only */
        K_FINAL, /* optional: once the final choice is made */
        K_CRC,   /* versions 3 and 4 */
        K_N
    };
    static const char *const keys[K_N] = {
        "format",      "version",      "params", "phase", "cycle",
        "evaluations", "next_eval_id", "foods",  "best",  "batch",
        "async",       "final",        "crc32"};
    const msgpack_object *v[K_N] = {0};
    int rc;

    int64_t ver = 0;
    if ((rc = mpread_header(path, "colony checkpoint", o, COLONY_FORMAT, &ver,
                            err)))
        return rc;
    if (ver < COLONY_VERSION_OLD || ver > COLONY_VERSION_ASYNC)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: version: unsupported colony checkpoint version "
                        "%lld (this build reads %d to %d)",
                        path, (long long)ver, COLONY_VERSION_OLD,
                        COLONY_VERSION_ASYNC);
    int async = ver == COLONY_VERSION_ASYNC || ver == COLONY_VERSION_OLD_ASYNC;
    int checked = ver >= COLONY_VERSION;
    /* a damaged file is reported as damaged, naming the section, before a
     * field of it is read */
    if (checked &&
        (rc = mpread_check_sections(path, buf, len, o, "crc32", err)))
        return rc;
    if (async) {
        int has = 0;
        for (uint32_t j = 0; j < o->via.map.size; j++)
            has |= mpread_str_eq(&o->via.map.ptr[j].key, "async");
        if (!has)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: version %d (an async colony) without an "
                            "\"async\" key",
                            path, (int)ver);
    }
    /* a sync file has no "async" key: it is unknown there; "final" is
     * optional in both */
    {
        const msgpack_object *unk;
        if ((rc = mpread_map_fields(path, "top level", o, keys, K_N, v, &unk,
                                    err)))
            return rc;
        if (unk) return mpread_err_unknown_key(path, "top level", unk, err);
        if (!async && v[K_ASYNC])
            return abc_errf(err, ABC_EFORMAT,
                            "%s: top level: unknown key \"async\" (version "
                            "%d is a sync colony)",
                            path, (int)ver);
        if (!checked && v[K_CRC])
            return abc_errf(err, ABC_EFORMAT,
                            "%s: top level: unknown key \"crc32\" (version "
                            "%d has no checksums)",
                            path, (int)ver);
        for (int i = 0; i < K_ASYNC + async; i++)
            if (!v[i])
                return mpread_err_missing_key(path, "top level", keys[i], err);
    }

    struct colony_params p;
    if ((rc = load_params(path, v[K_PARAMS], &p, err))) return rc;
    struct colony *c;
    if ((rc = colony_create(&c, &p, err)))
        return abc_errprefix(err, rc, "%s", path);

    if ((rc = load_phase(path, v[K_PHASE], async, &c->phase, err)) ||
        (rc = get_i32(path, "cycle", v[K_CYCLE], 0, COLONY_MAX_CYCLES,
                      &c->cycle, err)) ||
        (rc = mpread_get_u64(path, "evaluations", v[K_EVALS], &c->evaluations,
                             err)) ||
        (rc = mpread_get_u64(path, "next_eval_id", v[K_NEXT], &c->next_eval_id,
                             err)) ||
        (rc = check_progress(path, c, err)) ||
        (async && (rc = load_async(path, v[K_ASYNC], c, err))) ||
        (rc = load_foods(path, v[K_FOODS], c, err)) ||
        (rc = load_best(path, v[K_BEST], c, err)) ||
        (v[K_FINAL] && (rc = load_final(path, v[K_FINAL], c, err))) ||
        (rc = load_batch(path, v[K_BATCH], c, err))) {
        colony_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

int colony_load_mem(const char *name, const char *buf, size_t len,
                    struct colony **out, char *err)
{
    if (out) *out = NULL;
    if (!name || !out || (!buf && len))
        return abc_errf(err, ABC_EVALUE, "colony_load_mem: no %s",
                        !name  ? "name"
                        : !out ? "output"
                               : "bytes");
    if (len == 0)
        return abc_errf(err, ABC_EFORMAT, "%s: empty, not a colony checkpoint",
                        name);
    if (len > COLONY_MAX_BYTES)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %zu bytes, larger than any colony checkpoint "
                        "(%zu)",
                        name, len, COLONY_MAX_BYTES);
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE))
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory", name);
    msgpack_object obj;
    int rc =
        mpread_unpack(name, "colony checkpoint", buf, len, &zone, &obj, err);
    if (rc && err) {
        /* a cut or damaged file: say in which section it stops */
        char sec[64];
        mpread_cut_section(buf, len, sec, sizeof sec);
        size_t at = strlen(err);
        if (sec[0] && at < ABC_ERRLEN)
            snprintf(err + at, ABC_ERRLEN - at, " (in section \"%s\")", sec);
    }
    /* load_object copies all it keeps before zone and buf go */
    if (!rc) rc = load_object(name, buf, len, &obj, out, err);
    msgpack_zone_destroy(&zone);
    return rc;
}

int colony_load(const char *path, struct colony **out, char *err)
{
    if (out) *out = NULL;
    if (!path || !out)
        return abc_errf(err, ABC_EVALUE, "colony_load: no %s",
                        !path ? "path" : "output");
    char *buf;
    size_t len;
    int rc = file_read_all(path, "colony checkpoint", COLONY_MAX_BYTES, &buf,
                           &len, err);
    if (rc) return rc;
    rc = colony_load_mem(path, buf, len, out, err);
    free(buf);
    return rc;
}
