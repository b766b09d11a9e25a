/*
 * bitlocker.c: recovery-key syntax (8 groups of 6 digits, each a multiple of
 * 11 below 720896), the operator-message mask, and the volume check with
 * libcryptsetup on the two Windows-made BitLocker volumes of
 * ../shared/reference/bitlocker/ (unpacked into a temporary directory; the
 * volume tests are skipped, saying why, only if the archive cannot be found or
 * unpacked).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "bitlocker.h"
#include "proto/util.h"

/* The key in the official REST samples (examples/rest-drivelist-*.json). */
#define SAMPLE_KEY "238810-662376-448998-450120-652806-203390-606320-483076"

static void
test_valid(void)
{
	static const char *const good[] = {
	    SAMPLE_KEY,
	    "000000-000000-000000-000000-000000-000000-000000-000000",
	    "720885-720885-720885-720885-720885-720885-720885-720885", /* 11 * 65535 */
	    "000011-000022-000033-000044-000055-000066-000077-000088",
	    "123453-000000-720885-654324-111111-222222-333333-444444",
	};

	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		if (!bitlocker_key_valid(good[i]))
			fprintf(stderr, "refused: %s\n", good[i]);
		check(bitlocker_key_valid(good[i]));
	}
}

static void
test_invalid(void)
{
	static const char *const bad[] = {
	    "",
	    /* group count */
	    "238810-662376-448998-450120-652806-203390-606320",
	    "238810-662376-448998-450120-652806-203390-606320-483076-000000",
	    /* group width */
	    "23881-662376-448998-450120-652806-203390-606320-4830760",
	    "2388100-662376-448998-450120-652806-203390-606320-48307",
	    /* not a multiple of 11 */
	    "238811-662376-448998-450120-652806-203390-606320-483076",
	    "238810-662376-448998-450120-652806-203390-606320-483077",
	    /* multiples of 11 at or above 720896 */
	    "720896-662376-448998-450120-652806-203390-606320-483076",
	    "238810-662376-448998-450120-652806-203390-606320-720907",
	    "238810-662376-448998-999999-652806-203390-606320-483076",
	    /* non-digits */
	    "23881a-662376-448998-450120-652806-203390-606320-483076",
	    "238810-662376-448998-450120-652806-203390-606320-48307 ",
	    "+38810-662376-448998-450120-652806-203390-606320-483076",
	    "238810-662376-448998-450120-652806-203390-606320-4830\xd9\xa6", /* Arabic digit */
	    /* separators */
	    "238810 662376 448998 450120 652806 203390 606320 483076",
	    "238810:662376-448998-450120-652806-203390-606320-483076",
	    "238810-662376-448998-450120-652806-203390-606320_483076",
	    "238810662376448998450120652806203390606320483076",
	    "238810--62376-448998-450120-652806-203390-606320-483076",
	    "-238810-662376-448998-450120-652806-203390-606320-48307",
	    /* whitespace is not trimmed: callers strip it */
	    " 238810-662376-448998-450120-652806-203390-606320-483076",
	    "238810-662376-448998-450120-652806-203390-606320-483076\n",
	};

	check(!bitlocker_key_valid(NULL));
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		if (bitlocker_key_valid(bad[i]))
			fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
		check(!bitlocker_key_valid(bad[i]));
	}
}

/* Every single-digit change breaks a group's divisibility by 11. */
static void
test_single_digit_errors(void)
{
	char key[] = SAMPLE_KEY;

	for (size_t i = 0; i < strlen(key); i++) {
		char orig = key[i];

		if (orig == '-')
			continue;
		for (char d = '0'; d <= '9'; d++) {
			if (d == orig)
				continue;
			key[i] = d;
			check(!bitlocker_key_valid(key));
		}
		key[i] = orig;
	}
	check(bitlocker_key_valid(key));
}

/* A pseudo-random valid key (xorshift, deterministic). */
static void
random_key(uint32_t *state, char out[56])
{
	for (int g = 0; g < 8; g++) {
		uint32_t x = *state;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		*state = x;
		snprintf(out + g * 7, 8, "%06u%s", (unsigned)(11 * (x % 65536)), g < 7 ? "-" : "");
	}
}

static void
test_mask(void)
{
	char mask[56], key[56];
	uint32_t state = 2463534242u;

	bitlocker_key_mask(SAMPLE_KEY, mask);
	check_str(mask, "XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-483076");

	/* Invalid keys are masked completely. */
	bitlocker_key_mask("238811-662376-448998-450120-652806-203390-606320-483076", mask);
	check_str(mask, "XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX");
	bitlocker_key_mask(NULL, mask);
	check_str(mask, "XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX");
	bitlocker_key_mask("short", mask);
	check(strchr(mask, 's') == NULL);

	/* Random valid keys: only the last group's digits ever show. */
	for (int n = 0; n < 1000; n++) {
		random_key(&state, key);
		check(bitlocker_key_valid(key));
		bitlocker_key_mask(key, mask);
		check_int(strlen(mask), 55);
		check(strncmp(mask + 49, key + 49, 6) == 0);
		for (int i = 0; i < 49; i++)
			check(mask[i] == (i % 7 == 6 ? '-' : 'X'));
		for (int g = 0; g < 7; g++) {
			char group[7];

			memcpy(group, key + g * 7, 6);
			group[6] = '\0';
			if (strcmp(group, key + 49) != 0)
				check(strstr(mask, group) == NULL);
		}
	}
}

/* ---- the volumes -------------------------------------------------------------- */

#define IMAGE_MAX 2

struct image {
	char name[64];
	char rp[64], guid[64], cipher[64];
};

/* The archive: $SEEDD_BITLOCKER_IMAGES, else shared/reference next to the tree (or its parent). */
static bool
find_archive(char *out, size_t size)
{
	const char *env = getenv("SEEDD_BITLOCKER_IMAGES"), *root = getenv("SOURCE_ROOT");
	static const char *const rel[] = {
	    "/../shared/reference/bitlocker/bitlocker-images.tar.xz",
	    "/../../shared/reference/bitlocker/bitlocker-images.tar.xz"};

	if (env != NULL) {
		snprintf(out, size, "%s", env);
		return access(out, R_OK) == 0;
	}
	for (size_t i = 0; root != NULL && i < ELEMENTSOF(rel); i++) {
		snprintf(out, size, "%s%s", root, rel[i]);
		if (access(out, R_OK) == 0)
			return true;
	}
	return false;
}

/* images.conf: "[name]" sections with RP=, GUID=, CIPHER= (reference/bitlocker/README.md). */

/* A field of the images' README, whole or the test fails (no silent cut). */
static void
copy_field(char *dst, size_t size, const char *src)
{
	check((size_t)snprintf(dst, size, "%s", src) < size);
}

static size_t
read_images_conf(const char *path, struct image img[IMAGE_MAX])
{
	char line[256];
	size_t n = 0;
	FILE *f = fopen(path, "re");

	check(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		struct image *cur = n > 0 ? &img[n - 1] : NULL;

		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '[' && n < IMAGE_MAX) {
			memset(&img[n], 0, sizeof(img[n]));
			int len = (int)strcspn(line + 1, "]");
			check(snprintf(img[n].name, sizeof(img[n].name), "%.*s", len, line + 1) <
			      (int)sizeof(img[n].name));
			n++;
		} else if (cur != NULL && strncmp(line, "RP=", 3) == 0)
			copy_field(cur->rp, sizeof(cur->rp), line + 3);
		else if (cur != NULL && strncmp(line, "GUID=", 5) == 0)
			copy_field(cur->guid, sizeof(cur->guid), line + 5);
		else if (cur != NULL && strncmp(line, "CIPHER=", 7) == 0)
			copy_field(cur->cipher, sizeof(cur->cipher), line + 7);
	}
	fclose(f);
	return n;
}

static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The right password opens; the other image's (well-formed) password does not. */
static void
check_image(const char *dir, const struct image *im, const struct image *other)
{
	struct bitlocker_volume v = {0};
	char path[512];
	double t0, t1;

	snprintf(path, sizeof(path), "%s/bitlocker/%s.img", dir, im->name);
	check(bitlocker_key_valid(im->rp) && bitlocker_key_valid(other->rp));

	check_int(bitlocker_volume_load(path, &v), 0);
	check_str(v.guid, im->guid);
	check_str(v.cipher, im->cipher);
	check(bitlocker_cipher_is_cbc(v.cipher) == (strstr(im->cipher, "cbc") != NULL));
	bitlocker_volume_done(&v);

	t0 = now_sec();
	check_int(bitlocker_volume_check(path, im->rp, &v), 0);
	t1 = now_sec();
	check_str(v.guid, im->guid);
	check_str(v.cipher, im->cipher);
	bitlocker_volume_done(&v);
	printf("%s: %s, %s, the recovery password checked in %.3f s\n", im->name, im->guid,
	       im->cipher, t1 - t0);

	check_int(bitlocker_volume_check(path, other->rp, &v), -EPERM);
	check_str(v.guid, im->guid); /* filled all the same: the refusal names the volume */
	bitlocker_volume_done(&v);
	check_int(bitlocker_volume_check(path, SAMPLE_KEY, &v), -EPERM);
	bitlocker_volume_done(&v);
	/* Its password ("PW=") is no recovery password: refused before libcryptsetup. */
	check_int(bitlocker_volume_check(path, "anaconda", &v), -EINVAL);
	check(v.guid == NULL);
}

/* A file without BitLocker's signature is no BitLocker volume, whatever the password. */
static void
check_not_bitlocker(const char *dir, const struct image *im)
{
	struct bitlocker_volume v = {0};
	char path[512];
	static char buf[1 << 20];
	int fd;

	snprintf(path, sizeof(path), "%s/plain.img", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	check(fd >= 0);
	memset(buf, 0, sizeof(buf));
	memcpy(buf + 3, "NTFS    ", 8); /* an unencrypted NTFS's OEM id */
	check(write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
	close(fd);
	check_int(bitlocker_volume_load(path, &v), -EMEDIUMTYPE);
	check_int(bitlocker_volume_check(path, im->rp, &v), -EMEDIUMTYPE);
	check(v.guid == NULL && v.cipher == NULL);
	snprintf(path, sizeof(path), "%s/missing.img", dir);
	check_int(bitlocker_volume_load(path, &v), -ENOENT);
}

static void
test_volumes(void)
{
	char archive[512], dir[] = "/tmp/seedd-test-bitlocker-XXXXXX", cmd[1200], conf[600];
	struct image img[IMAGE_MAX];
	size_t n;

	if (!find_archive(archive, sizeof(archive))) {
		printf("SKIP volume tests: no bitlocker-images.tar.xz "
		       "(SOURCE_ROOT/../shared/reference/"
		       "bitlocker or $SEEDD_BITLOCKER_IMAGES)\n");
		return;
	}
	check(mkdtemp(dir) != NULL);
	snprintf(cmd, sizeof(cmd), "tar -xJf '%s' -C '%s'", archive, dir);
	if (system(cmd) != 0) {
		printf("SKIP volume tests: cannot unpack %s (tar with xz?)\n", archive);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		check(system(cmd) == 0);
		return;
	}
	snprintf(conf, sizeof(conf), "%s/bitlocker/images.conf", dir);
	n = read_images_conf(conf, img);
	check_int(n, 2);
	check_image(dir, &img[0], &img[1]);
	check_image(dir, &img[1], &img[0]);
	check_not_bitlocker(dir, &img[0]);
	check(!bitlocker_cipher_is_cbc("aes-xts-plain64") &&
	      bitlocker_cipher_is_cbc("aes-cbc-elephant"));
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	check(system(cmd) == 0);
}

int
main(void)
{
	test_valid();
	test_invalid();
	test_single_digit_errors();
	test_mask();
	test_volumes();
	return 0;
}
