/*
 * Replay driver for fuzz targets in ordinary builds: runs
 * LLVMFuzzerTestOneInput over every file of the directories (or files) given.
 * Fails when no input was found, so an empty corpus cannot pass silently.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_target.h"

#define REPLAY_MAX_INPUT (1u << 20)

static int replay_file(const char *path)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int fd, r = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "replay: open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || st.st_size < 0 || (size_t)st.st_size > REPLAY_MAX_INPUT) {
		fprintf(stderr, "replay: %s: unreadable or larger than %u bytes\n", path,
			REPLAY_MAX_INPUT);
		goto out;
	}
	/* +1 so a zero-length input still gets a valid, distinct pointer */
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		goto out;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0) {
			fprintf(stderr, "replay: read %s failed\n", path);
			goto out;
		}
		got += (size_t)n;
	}
	LLVMFuzzerTestOneInput(buf, got);
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}

int main(int argc, char **argv)
{
	unsigned inputs = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (replay_file(argv[i]) != 0)
				return 1;
			inputs++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		if (!d) {
			fprintf(stderr, "replay: opendir %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char path[4096];
			if (e->d_name[0] == '.')
				continue;
			if ((size_t)snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name) >=
			    sizeof(path)) {
				closedir(d);
				return 1;
			}
			if (replay_file(path) != 0) {
				closedir(d);
				return 1;
			}
			inputs++;
		}
		closedir(d);
	}
	if (inputs == 0) {
		fprintf(stderr, "replay: no input found\n");
		return 1;
	}
	printf("replay: %u inputs ran without a crash\n", inputs);
	return 0;
}
