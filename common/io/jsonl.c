/* jsonl.c - JSON-lines writing helpers (see jsonl.h). */
#include "io/jsonl.h"

#include <errno.h>
#include <string.h>

#include "core/err.h"

FILE *jsonl_open(const char *path, int append, char *err)
{
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f)
        abc_errf(err, ABC_EIO, "%s: cannot open log: %s", path,
                 strerror(errno));
    return f;
}

void jsonl_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void jsonl_ints(FILE *f, const int *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++)
        fprintf(f, i ? ",%d" : "%d", v[i]);
    fputc(']', f);
}

int jsonl_end(FILE *f)
{
    fputc('\n', f);
    return fflush(f) == 0 && !ferror(f) ? 0 : ABC_EIO;
}
