/*
 * atomic_file — replace a small file so readers see the old or the new
 * content, never a mix: write a temp file in the same directory, then
 * rename() over the target.
 *
 * Contract: 0 or negative errno; no logging.  No fsync: every file the agent
 * writes (runtime dir on tmpfs, trust store, profile, resolv.conf) is
 * rewritten from the broker's HelloAck after each boot, so durability buys
 * nothing and fsync would stall the loop.  Blocking, but on small files.
 */
#ifndef MIOSA_ATOMIC_FILE_H
#define MIOSA_ATOMIC_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Replaces path with len bytes of data, permissions mode. */
__attribute__((warn_unused_result))
int atomic_file_write(const char *path, const void *data, size_t len, mode_t mode);

/* Opens a temp file beside path for writing; commit or abort it after. */
struct atomic_file {
	int fd;
	char *tmp_path;
	char *path;
};

__attribute__((warn_unused_result))
int atomic_file_open(const char *path, struct atomic_file *ret_file);
/* write(2) all of it, retrying short writes and EINTR. */
__attribute__((warn_unused_result))
int atomic_file_append(struct atomic_file *f, const void *data, size_t len);
/* fchmod, close, rename; the temp file is removed on failure. */
__attribute__((warn_unused_result))
int atomic_file_commit(struct atomic_file *f, mode_t mode);
/* Closes and removes the temp file; safe after a failed commit. */
void atomic_file_abort(struct atomic_file *f);

/* write(2) all of len bytes to fd. */
__attribute__((warn_unused_result))
int atomic_file_write_all(int fd, const void *data, size_t len);

#endif
