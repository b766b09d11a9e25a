/*
 * BitLocker recovery-key syntax check and masking. Pure code with no state;
 * the method handlers (loop thread) call it before a key is stored.
 *
 * The format is fixed by the contract (CONTRACT.md §5) and matches every key
 * in the official samples (drive-format README §1.3): 8 groups of 6 digits,
 * each group = 11 * w for a 16-bit word w, so a multiple of 11 below 720896.
 */
#include <string.h>

#include "bitlocker.h"

/* The value of the 6 digits at p, or -1 if one of them is not a digit. */
static long
group_value(const char *p)
{
	long v = 0;

	for (int i = 0; i < 6; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

bool
bitlocker_key_valid(const char *key)
{
	if (key == NULL || strlen(key) != BITLOCKER_KEY_LEN)
		return false;
	for (int g = 0; g < BITLOCKER_KEY_GROUPS; g++) {
		const char *p = key + g * 7;
		long v;

		if (g > 0 && p[-1] != '-')
			return false;
		if ((v = group_value(p)) < 0 || v % 11 != 0 || v >= BITLOCKER_GROUP_LIMIT)
			return false;
	}
	return true;
}

void
bitlocker_key_mask(const char *key, char out[static 56])
{
	static const char masked[] = "XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX";

	memcpy(out, masked, sizeof(masked));
	if (bitlocker_key_valid(key))
		memcpy(out + BITLOCKER_KEY_LEN - 6, key + BITLOCKER_KEY_LEN - 6, 6);
}
