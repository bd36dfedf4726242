/*
 * uds_path — making a Unix socket path free for bind(): the control socket,
 * the guest gateway's hybrid sockets (PATH_1024) and miosa-vsock's PATH all
 * claim their path the same way.
 *
 *   - nothing there: free;
 *   - a socket no one listens on (connect() refused: a process that died
 *     without unlinking it): removed, then free;
 *   - a socket someone listens on (connect() accepted, or EAGAIN: a full
 *     backlog is still a live listener): -EADDRINUSE;
 *   - anything else at the path (file, directory, symlink): -EEXIST, never
 *     replaced.
 *
 * Contract: plain syscalls, no allocation, no logging.  Returns 0 with
 * *ret_removed (true: a stale socket was unlinked), or a negative errno with
 * *ret_why, a static phrase completing "PATH ...", so the caller logs once
 * with its own context.  Racy by nature (a listener may appear
 * between the probe and bind); bind() then fails with EADDRINUSE.
 */
#ifndef MIOSA_UDS_PATH_H
#define MIOSA_UDS_PATH_H

#include <stdbool.h>
#include <sys/un.h>

/* 1: a listener is behind sun; 0: stale or absent; -errno. */
int uds_path_probe(const struct sockaddr_un *sun);

__attribute__((warn_unused_result))
int uds_path_clear(const struct sockaddr_un *sun, bool *ret_removed, const char **ret_why);

#endif
