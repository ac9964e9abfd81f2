/*
 * replay.c: runs one fuzz target over every file of its corpus directory
 * (tests/fuzz/corpus/<name>/), so that make check exercises the corpora
 * without libFuzzer.  A crash or sanitizer report fails the test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
main(int argc, char **argv)
{
	const char	*root = argc > 1 ? argv[1] : FUZZ_CORPUS_ROOT "/" FUZZ_NAME;
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir(root)) == NULL) {
		perror(root);
		return (1);
	}
	while ((de = readdir(d)) != NULL) {
		char		 path[4096];
		FILE		*f;
		uint8_t		*buf;
		long		 len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		fseek(f, 0, SEEK_SET);
		buf = malloc(len > 0 ? (size_t)len : 1);
		if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
			fclose(f);
			free(buf);
			return (1);
		}
		fclose(f);
		LLVMFuzzerTestOneInput(buf, (size_t)len);
		free(buf);
		n++;
	}
	closedir(d);
	printf("%s: %d passed, 0 failed\n", FUZZ_NAME, n);
	return (0);
}
