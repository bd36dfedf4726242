/*
 * guest_mem — the guest's memory as miosa-vsock sees it: the regions the
 * vhost-user frontend (QEMU) shared with SET_MEM_TABLE, each a shared
 * mapping of a file descriptor, and the translation of guest-physical (GPA)
 * and frontend-virtual (UVA) addresses into pointers into those mappings.
 *
 * Every address in a descriptor or a ring address is chosen by the guest or
 * the frontend; this module is the only place that turns one into a pointer.
 * A translation succeeds only when the whole range [addr, addr + len) lies in
 * one region; the checks compare lengths against what is left of the region
 * and never add guest values, so they cannot overflow.
 *
 * Contract:
 *   - A struct guest_mem is caller-owned and zero-initialised means "no
 *     regions".  guest_mem_map() maps a region from an fd (it does not take
 *     the fd: the caller closes it; the mapping stays valid without it).
 *   - guest_mem_unmap_all() unmaps every region; pointers obtained earlier
 *     dangle afterwards, so the caller (single-threaded) holds none across a
 *     memory-table change.
 *   - guest_mem_add_buffer() registers caller memory as a region (no mmap,
 *     never unmapped by this module): unit tests and fuzzers lay rings out
 *     in ordinary buffers with it.
 *   - Pure apart from mmap/munmap; -errno returns; ret_* written on success.
 */
#ifndef MIOSA_GUEST_MEM_H
#define MIOSA_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>

/* The vhost-user baseline (VHOST_MEMORY_BASELINE_NREGIONS); QEMU sends 2. */
#define GUEST_MEM_MAX_REGIONS 8u

struct guest_mem_region {
	uint64_t gpa;       /* guest-physical start */
	uint64_t size;      /* bytes */
	uint64_t uva;       /* frontend-virtual start */
	uint8_t *host;      /* our pointer to gpa */
	void *map_base;     /* what mmap returned (NULL for a caller buffer) */
	size_t map_len;
};

struct guest_mem {
	unsigned n;
	struct guest_mem_region r[GUEST_MEM_MAX_REGIONS];
};

/*
 * Maps size bytes of fd at mmap_offset (shared, read-write) as the region
 * [gpa, gpa + size) / [uva, uva + size).  -E2BIG when the table is full,
 * -EINVAL for a zero size or a range that wraps, -ERANGE when fd is not a
 * regular file holding mmap_offset + size bytes (touching a mapping past
 * its file's end is SIGBUS), -errno from fstat/mmap.  A frontend that
 * truncates the file afterwards can still cause SIGBUS: the frontend is
 * the VMM, trusted that far.
 */
__attribute__((warn_unused_result))
int guest_mem_map(struct guest_mem *m, int fd, uint64_t gpa, uint64_t size, uint64_t uva,
		  uint64_t mmap_offset);

__attribute__((warn_unused_result))
int guest_mem_add_buffer(struct guest_mem *m, void *buf, uint64_t gpa, uint64_t size,
			 uint64_t uva);

void guest_mem_unmap_all(struct guest_mem *m);

/* Pointer to [gpa, gpa + len) if it lies in one region, else NULL. */
void *guest_mem_gpa(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* The same for a frontend-virtual address (vring addresses). */
void *guest_mem_uva(const struct guest_mem *m, uint64_t uva, uint64_t len);

#endif
