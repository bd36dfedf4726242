/*
 * ctl_value — how miosactl takes a secret value: from a file or standard
 * input, never from argv (which every user on the host can read in
 * /proc/PID/cmdline) nor the environment.
 *
 * Contract:
 *   - The value lives only in sodium_malloc'd memory, read with read(2)
 *     (no stdio buffer keeps a copy); ctl_value_free() wipes and frees it.
 *   - Exactly one trailing "\n" or "\r\n" is stripped (what `echo` and
 *     editors add); every other byte is kept as is.
 *   - A terminal on standard input is read as one line with echo off (the
 *     prompt goes to stderr and names the secret, never the value); the
 *     terminal is restored on every exit, including SIGINT/SIGTERM/SIGHUP.
 *   - Errors (-errno, err gets one line that never quotes the value):
 *       -ENODATA  empty value (after stripping)
 *       -EFBIG    over CTL_VALUE_MAX bytes
 *       -EILSEQ   not valid UTF-8 (the API carries values in JSON strings)
 *       others    open/read failures
 *   - ret_value is written only on success.
 */
#ifndef MIOSA_CTL_VALUE_H
#define MIOSA_CTL_VALUE_H

#include <stddef.h>

#define CTL_VALUE_MAX 16384u

struct ctl_value {
	unsigned char *bytes; /* sodium_malloc'd; NUL-terminated for convenience */
	size_t len;
};

/*
 * Read the value from path ("-" or NULL: standard input).  name is the
 * secret's name, used in the terminal prompt only.
 */
__attribute__((warn_unused_result))
int ctl_value_read(const char *path, const char *name, struct ctl_value *ret_value, char *err,
		   size_t err_size);

/* The same from an open descriptor (left open); what names the secret in the prompt. */
__attribute__((warn_unused_result))
int ctl_value_read_fd(int fd, const char *what, struct ctl_value *ret_value, char *err,
		      size_t err_size);

/* Wipe and free; safe on a zeroed struct. */
void ctl_value_free(struct ctl_value *v);

#endif
