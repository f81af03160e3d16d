/* err.h - the project's error convention.
 * Library functions return 0 on success or a negative ABC_E* code, and on
 * failure write a one-line message into a caller-owned `char *err` buffer of
 * ABC_ERRLEN bytes (err may be NULL). Only main() prints it and exits. */
#ifndef ABC_ERR_H
#define ABC_ERR_H

#include <stddef.h>

#define ABC_ERRLEN 512

enum abc_error {
    ABC_OK = 0,
    ABC_EIO = -1,      /* file could not be opened, read or written */
    ABC_EFORMAT = -2,  /* input is malformed: file, message, checkpoint */
    ABC_EVALUE = -3,   /* a value is out of range or inconsistent */
    ABC_ENOMEM = -4,   /* allocation failed */
    ABC_ENUMERIC = -5, /* NaN/Inf during training */
    ABC_EUSAGE = -6,   /* bad command-line usage */
    ABC_ESTOPPED = -7, /* stopped by a signal (SIGTERM/SIGUSR1) */
    ABC_EMPI = -8,     /* an MPI call failed (err has MPI's message) */
    ABC_ETIMEOUT = -9, /* a worker gave no answer in time */
};

/* Formats a message into err (when err is not NULL) and returns code.
 * Use as: return abc_errf(err, ABC_EVALUE, "%s: bad %s", file, key); */
int abc_errf(char *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to the message already in err. Returns code. */
int abc_errprefix(char *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
