/* err.c - formatting of error messages into caller buffers (see err.h). */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int abc_errf(char *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, ABC_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

int abc_errprefix(char *err, int code, const char *fmt, ...)
{
    if (err) {
        char prefix[ABC_ERRLEN], old[ABC_ERRLEN];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        snprintf(old, sizeof old, "%s", err);
        if (snprintf(err, ABC_ERRLEN, "%s: %s", prefix, old) >= ABC_ERRLEN)
            memcpy(err + ABC_ERRLEN - 4, "...", 4); /* mark the cut */
    }
    return code;
}
