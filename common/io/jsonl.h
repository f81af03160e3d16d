/* jsonl.h - JSON-lines event logs: one JSON object per line, appended and
 * flushed per event so a killed run keeps every finished line. */
#ifndef ABC_JSONL_H
#define ABC_JSONL_H

#include <stdio.h>

/* Opens path for appending (append != 0) or truncating. NULL + err on
 * failure. */
FILE *jsonl_open(const char *path, int append, char *err);
/* Writes s as a JSON string literal (quotes and escapes included). */
void jsonl_string(FILE *f, const char *s);
/* Writes an int array as a JSON array. */
void jsonl_ints(FILE *f, const int *v, int n);
/* Ends the current line and flushes. Returns 0 or ABC_EIO. */
int jsonl_end(FILE *f);

#endif
