/*
 * kmod — the kernel modules the agent loads itself as PID 1.
 *
 * miosa-init is /init of the initramfs (vm-images/build-initramfs): no
 * shell, no udev and no modprobe run before it, so the virtio and vsock
 * modules the transport needs are loaded here, with finit_module(2), in
 * the order a file of the image lists them (KMOD_ORDER_FILE).  The image
 * ships no modules.dep: the order file is the dependency order.
 *
 * Order file (written by vm-images/, read from the image, so a mistake in
 * it is a build bug, reported with its line number rather than guessed at):
 *   - at most KMOD_ORDER_MAX bytes, one entry per line ('\n'; the last line
 *     may lack it); empty lines and lines starting with '#' are skipped;
 *   - an entry is the path of an uncompressed module, relative to the order
 *     file's directory or absolute: bytes [A-Za-z0-9._+-] and '/', at most
 *     KMOD_PATH_MAX bytes, ending in ".ko", no empty, "." or ".." component,
 *     no spaces, tabs or CR anywhere;
 *   - at most KMOD_MAX_MODULES entries, no entry twice.
 *
 * Contract: pure parser (no I/O, no allocation); kmod_order_read() and
 * kmod_load() are blocking file I/O, run once at start before the loop.
 * No logging: pid1_load_modules() logs each result.  0 or negative errno.
 */
#ifndef MIOSA_KMOD_H
#define MIOSA_KMOD_H

#include <stddef.h>

#define KMOD_ORDER_FILE "/lib/modules/miosa/load-order"
#define KMOD_ORDER_MAX 4096u
#define KMOD_PATH_MAX 255u
#define KMOD_MAX_MODULES 64u

/* An entry of the order file: text[off .. off+len), not NUL-terminated. */
struct kmod_entry {
	size_t off, len;
};

struct kmod_order {
	size_t count;
	struct kmod_entry entry[KMOD_MAX_MODULES];
};

/*
 * Parses the order file's text (len bytes, NUL bytes are invalid).
 * -EINVAL for a bad entry or a duplicate, -E2BIG for more than
 * KMOD_MAX_MODULES entries, -EFBIG for more than KMOD_ORDER_MAX bytes; on
 * failure *err_line (if not NULL) is the 1-based line at fault (0 for
 * -EFBIG).  *ret_order is written only on success.
 */
__attribute__((warn_unused_result))
int kmod_order_parse(const char *text, size_t len, struct kmod_order *ret_order,
		     size_t *err_line);

/*
 * Reads the order file at path into buf (cap >= KMOD_ORDER_MAX + 1 bytes):
 * -EFBIG when it is longer than KMOD_ORDER_MAX, -ENOENT when absent, other
 * open/read errors as -errno.  *ret_len written only on success.
 */
__attribute__((warn_unused_result))
int kmod_order_read(const char *path, char *buf, size_t cap, size_t *ret_len);

/*
 * finit_module(2) of path (relative to dirfd unless absolute), no
 * parameters: 0 loaded, 1 already loaded or built in (EEXIST), or -errno
 * (-ENOENT: no such file, or, from the kernel, an unknown symbol: a module
 * it depends on is not loaded yet; -ENOEXEC: not a module for this kernel).
 */
__attribute__((warn_unused_result))
int kmod_load(int dirfd, const char *path);

#endif
