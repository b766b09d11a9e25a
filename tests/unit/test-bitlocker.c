/*
 * bitlocker.c: recovery-key syntax (8 groups of 6 digits, each a multiple of
 * 11 below 720896) and the operator-message mask.
 */
#include <stdio.h>
#include <string.h>

#include "test.h"
#include "daemon/bitlocker.h"
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

int
main(void)
{
	test_valid();
	test_invalid();
	test_single_digit_errors();
	test_mask();
	return 0;
}
