/*
 * Fuzz target: the naming rules of daemon/engine/lint.c, which judge every path of
 * a staging tree. A blob name lint_blob_name() accepts must be valid UTF-8
 * without NUL or backslash, at most 1024 UTF-16 units, end in neither '.'
 * nor '/', and have no empty, "." or ".." segment; checked here with our
 * own decoder. lint_container_name() must agree with config.c's
 * config_container_valid(), and a NULL reason must not change a verdict.
 */
#include <stdbool.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "lint.h"

/* Length of the strict UTF-8 sequence at p and its code point; 0 if invalid. */
static size_t
utf8_seq(const uint8_t *p, size_t n, uint32_t *cp)
{
	size_t len = 0;
	static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};

	if (p[0] < 0x80)
		len = 1;
	else if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	if (len == 0 || len > n)
		return 0;
	*cp = len == 1 ? p[0] : p[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		*cp = *cp << 6 | (p[i] & 0x3f);
	}
	if (*cp < min[len] || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return len;
}

/* The invariants of an accepted name. */
static void
check_accepted_blob(const uint8_t *p, size_t len)
{
	size_t units = 0, seg = 0, n;
	uint32_t cp;

	fuzz_check(len > 0 && p[len - 1] != '.' && p[len - 1] != '/');
	for (size_t i = 0; i < len; i += n) {
		n = utf8_seq(p + i, len - i, &cp);
		fuzz_check(n > 0);
		fuzz_check(cp >= 0x20 && !(cp >= 0x7f && cp <= 0x9f) && cp != '\\');
		units += cp > 0xffff ? 2 : 1;
		if (cp != '/') {
			seg += n;
			continue;
		}
		fuzz_check(seg > 0); /* no empty segment */
		fuzz_check(!(seg == 1 && p[i - 1] == '.'));
		fuzz_check(!(seg == 2 && p[i - 1] == '.' && p[i - 2] == '.'));
		seg = 0;
	}
	fuzz_check(units <= LINT_BLOB_NAME_MAX);
}

static void
check_container(const char *name, size_t n)
{
	const char *why = NULL;
	bool ok = lint_container_name(name, &why);

	fuzz_check(ok == lint_container_name(name, NULL));
	fuzz_check(ok == config_container_valid(name));
	fuzz_check(ok || (why != NULL && *why != '\0'));
	if (!ok)
		return;
	fuzz_check(n >= LINT_CONTAINER_MIN && n <= LINT_CONTAINER_MAX);
	fuzz_check(strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") == n);
	fuzz_check(name[0] != '-' && name[n - 1] != '-' && strstr(name, "--") == NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *name = (const char *)data, *why = NULL;
	char *str;
	bool ok;

	ok = lint_blob_name(name, size, &why);
	fuzz_check(ok == lint_blob_name(name, size, NULL));
	fuzz_check(ok || (why != NULL && *why != '\0'));
	if (ok) {
		fuzz_check(memchr(data, '\0', size) == NULL);
		check_accepted_blob(data, size);
	}
	/* A container name is a C string: up to the first NUL. */
	str = strndup(name, size);
	fuzz_check(str != NULL);
	check_container(str, strlen(str));
	free(str);
	return 0;
}
