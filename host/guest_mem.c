/* guest_mem — see guest_mem.h. */
#include "guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

static int add_region(struct guest_mem *m, const struct guest_mem_region *reg)
{
	if (m->n >= GUEST_MEM_MAX_REGIONS)
		return -E2BIG;
	/* Both address spaces must hold the whole region without wrapping. */
	if (reg->size == 0 || reg->gpa > UINT64_MAX - (reg->size - 1) ||
	    reg->uva > UINT64_MAX - (reg->size - 1))
		return -EINVAL;
	m->r[m->n++] = *reg;
	return 0;
}

int guest_mem_map(struct guest_mem *m, int fd, uint64_t gpa, uint64_t size, uint64_t uva,
		  uint64_t mmap_offset)
{
	struct guest_mem_region reg = { .gpa = gpa, .size = size, .uva = uva };
	struct stat st;
	void *base;
	int r;

	if (m->n >= GUEST_MEM_MAX_REGIONS)
		return -E2BIG;
	if (size == 0 || size > SIZE_MAX || mmap_offset > SIZE_MAX - size)
		return -EINVAL;
	/* Touching a shared mapping past the end of its file is SIGBUS: the file
	 * (memfd, hugetlbfs or shm file) must hold the whole region. */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size < mmap_offset + size)
		return -ERANGE;
	/* Map from offset 0 so mmap_offset need not be page aligned (QEMU's
	 * usually is, but the spec does not promise it). */
	base = mmap(NULL, (size_t)(mmap_offset + size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	reg.map_base = base;
	reg.map_len = (size_t)(mmap_offset + size);
	reg.host = (uint8_t *)base + mmap_offset;
	if ((r = add_region(m, &reg)) < 0) {
		munmap(base, reg.map_len);
		return r;
	}
	return 0;
}

int guest_mem_add_buffer(struct guest_mem *m, void *buf, uint64_t gpa, uint64_t size, uint64_t uva)
{
	const struct guest_mem_region reg = { .gpa = gpa, .size = size, .uva = uva, .host = buf };

	return add_region(m, &reg);
}

void guest_mem_unmap_all(struct guest_mem *m)
{
	for (unsigned i = 0; i < m->n; i++)
		if (m->r[i].map_base)
			munmap(m->r[i].map_base, m->r[i].map_len);
	memset(m, 0, sizeof(*m));
}

/* start is the region's base in the address space addr belongs to. */
static void *translate(const struct guest_mem_region *reg, uint64_t start, uint64_t addr,
		       uint64_t len)
{
	uint64_t off;

	if (addr < start)
		return NULL;
	off = addr - start;
	if (off >= reg->size || len > reg->size - off)
		return NULL;
	return reg->host + off;
}

void *guest_mem_gpa(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->n; i++) {
		void *p = translate(&m->r[i], m->r[i].gpa, gpa, len);
		if (p)
			return p;
	}
	return NULL;
}

void *guest_mem_uva(const struct guest_mem *m, uint64_t uva, uint64_t len)
{
	for (unsigned i = 0; i < m->n; i++) {
		void *p = translate(&m->r[i], m->r[i].uva, uva, len);
		if (p)
			return p;
	}
	return NULL;
}
