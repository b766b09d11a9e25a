/*
 * Name lint for imports: container names, blob names and BlobPath. Pure code
 * with no state; the staging scan (worker thread) and the method handlers
 * (loop thread) call it.
 *
 * Every rule carries the tag of its source in shared/reference/drive-format
 * (README §7, SOURCES.md): [DOC S32] is Azure's "Naming and Referencing
 * Containers, Blobs, and Metadata", [DOC S51] the MSDN naming notes, [DOC S43]
 * ntfs-3g(8) -o windows_names (the blob name is also the file's path on the
 * NTFS drive), [INFERRED] our own deduction.
 *
 * Length unit: S32 says "1,024 characters" without a unit. A Microsoft
 * engineer's test against the service (Azure/azure-storage-cpp issue #291)
 * found the limit is 1,024 UTF-16 code units: 512 emoji fit, 513 do not. So
 * we count UTF-16 units (a code point above U+FFFF counts twice). That is
 * never looser than counting code points, and bytes would wrongly reject
 * 1,024 two-byte characters.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "util.h"
#include "lint.h"

static bool
fail(const char **reason, const char *why)
{
	if (reason != NULL)
		*reason = why;
	return false;
}

/* [DOC S32] container rules; "$root" is not an import target [DOC S1, S5]. */
bool
lint_container_name(const char *name, const char **reason)
{
	size_t n;

	if (name == NULL || *name == '\0')
		return fail(reason, "container name is empty");
	if (strcmp(name, "$root") == 0)
		return fail(reason, "the root container ($root) is not supported for imports");
	n = strlen(name);
	if (n < LINT_CONTAINER_MIN)
		return fail(reason, "container name shorter than 3 characters");
	if (n > LINT_CONTAINER_MAX)
		return fail(reason, "container name longer than 63 characters");
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (c >= 'A' && c <= 'Z')
			return fail(reason, "container name has upper-case letters");
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return fail(reason, "container name may only contain a-z, 0-9 and '-'");
		if (c == '-' && i > 0 && name[i - 1] == '-')
			return fail(reason, "container name has consecutive hyphens");
	}
	if (name[0] == '-' || name[n - 1] == '-')
		return fail(reason, "container name must start and end with a letter or digit");
	return true;
}

/*
 * Decode one UTF-8 sequence at p (n > 0 bytes left). Returns its length, or 0
 * for anything invalid: stray continuation bytes, truncation, overlong forms,
 * surrogates, values past U+10FFFF.
 */
static size_t
utf8_decode(const unsigned char *p, size_t n, uint32_t *ret_cp)
{
	uint32_t cp;
	size_t len;

	if (p[0] < 0x80) {
		*ret_cp = p[0];
		return 1;
	} else if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	*ret_cp = cp;
	return len;
}

/* The reason a single code point is refused, or NULL. */
static const char *
check_code_point(uint32_t cp)
{
	/* [DOC S32] "control characters (0x00-0x1F, \u0081, etc.)": C0, DEL, C1. */
	if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
		return "blob name contains a control character";
	/* [DOC S32] "\uE000 ... isn't a valid Unicode character": private use. */
	if ((cp >= 0xe000 && cp <= 0xf8ff) || cp >= 0xf0000)
		return "blob name contains a private-use code point";
	/* [INFERRED] noncharacters are "not valid Unicode" in the same sense. */
	if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
		return "blob name contains a Unicode noncharacter";
	/* [DOC S51] avoid '\' in blob names; it is NTFS's separator [DOC S43]. */
	if (cp == '\\')
		return "blob name contains a backslash";
	/* [DOC S43] windows_names refuses " * : < > ? | ('/' separates segments). */
	if (cp < 0x80 && strchr("\"*:<>?|", (int)cp) != NULL)
		return "blob name contains a character Windows cannot store (\" * : < > ? |)";
	return NULL;
}

/* Characters of a valid UTF-8 string in UTF-16 code units. */
static size_t
utf16_units(const unsigned char *p, size_t n)
{
	size_t units = 0;

	for (size_t i = 0; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			units++;
		if ((p[i] & 0xf8) == 0xf0)
			units++; /* 4-byte form: a surrogate pair */
	}
	return units;
}

static bool
ascii_ieq(const unsigned char *p, const char *word, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (c >= 'a' && c <= 'z')
			c -= 'a' - 'A';
		if (c != (unsigned char)word[i])
			return false;
	}
	return true;
}

/*
 * [DOC S43] windows_names: CON, PRN, AUX, NUL, COM1-9, LPT1-9, alone or
 * followed by a dot (an extension), in any case.
 */
static bool
is_device_name(const unsigned char *s, size_t n)
{
	static const char *const three[] = {"CON", "PRN", "AUX", "NUL"};

	if (n >= 3 && (n == 3 || s[3] == '.')) {
		for (size_t i = 0; i < ELEMENTSOF(three); i++)
			if (ascii_ieq(s, three[i], 3))
				return true;
	}
	if (n >= 4 && (n == 4 || s[4] == '.') && s[3] >= '1' && s[3] <= '9')
		return ascii_ieq(s, "COM", 3) || ascii_ieq(s, "LPT", 3);
	return false;
}

/* Rules for one '/'-separated segment (a file or directory name on NTFS). */
static const char *
check_segment(const unsigned char *s, size_t n)
{
	/* [INFERRED] "a//b" or a leading '/' has no file path on the drive. */
	if (n == 0)
		return "blob name has an empty path segment";
	/* [INFERRED] URL paths collapse dot segments; NTFS cannot hold them. */
	if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return "blob name has a '.' or '..' path segment";
	/* [DOC S51] segments ending in '.'; [DOC S43] trailing dot or space. */
	if (s[n - 1] == '.' || s[n - 1] == ' ')
		return "path segment ends with '.' or space (Windows cannot store it)";
	/* [INFERRED] NTFS names are at most 255 UTF-16 units (README §7). */
	if (utf16_units(s, n) > LINT_SEGMENT_MAX)
		return "path segment longer than 255 characters";
	if (is_device_name(s, n))
		return "path segment is a reserved Windows device name (CON, NUL, COM1, ...)";
	/*
	 * seedd's own: copies are written under this suffix and renamed, and
	 * properties files live in <job>/.seedd-tmp/. In any case: Windows reads
	 * the drive's NTFS case-insensitively, so ".SEEDD-TMP" would collide.
	 */
	if (n >= sizeof(LINT_TMP_SUFFIX) - 1 &&
	    strncasecmp((const char *)s + n - (sizeof(LINT_TMP_SUFFIX) - 1), LINT_TMP_SUFFIX,
			sizeof(LINT_TMP_SUFFIX) - 1) == 0)
		return "path segment ends in " LINT_TMP_SUFFIX ", which seedd uses for its "
		       "temporary files";
	return NULL;
}

bool
lint_blob_name(const char *name, size_t len, const char **reason)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t units = 0, segments = 1;
	const char *why;

	/* [DOC S32] at least one character. */
	if (name == NULL || len == 0)
		return fail(reason, "blob name is empty");
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n;

		/* [DOC S32] names travel as UTF-8 in the URL; invalid Unicode fails. */
		if ((n = utf8_decode(p + i, len - i, &cp)) == 0)
			return fail(reason, "blob name is not valid UTF-8");
		if ((why = check_code_point(cp)) != NULL)
			return fail(reason, why);
		units += cp > 0xffff ? 2 : 1;
		if (cp == '/')
			segments++;
		i += n;
	}
	/* [DOC S32] at most 1,024 characters (UTF-16 units, see the top comment). */
	if (units > LINT_BLOB_NAME_MAX)
		return fail(reason, "blob name longer than 1024 characters");
	/* [DOC S32] more than 254 path segments is an error. */
	if (segments > LINT_BLOB_SEGMENTS_MAX)
		return fail(reason, "blob name has more than 254 path segments");
	/* [DOC S32] avoid names ending in '.', '/' or a mix of the two. */
	if (p[len - 1] == '/')
		return fail(reason, "blob name ends with '/'");
	if (p[len - 1] == '.')
		return fail(reason, "blob name ends with '.'");
	for (size_t start = 0, end; start < len; start = end + 1) {
		const unsigned char *slash = memchr(p + start, '/', len - start);

		end = slash != NULL ? (size_t)(slash - p) : len;
		if ((why = check_segment(p + start, end - start)) != NULL)
			return fail(reason, why);
	}
	return true;
}

char *
lint_blob_path(const char *container, const char *job_prefix, const char *rel_path)
{
	if (job_prefix == NULL || *job_prefix == '\0')
		return xprintf("%s/%s", container, rel_path);
	return xprintf("%s/%s/%s", container, job_prefix, rel_path);
}
