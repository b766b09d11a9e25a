/*
 * BitLocker recovery keys ("numerical passwords"): the 48-digit key Azure
 * needs per drive (driveList[].bitLockerKey).
 *
 * Pure functions, any thread. The key is exactly "DDDDDD-DDDDDD-...-DDDDDD":
 * 8 groups of 6 ASCII digits joined by '-', each group a multiple of 11 and
 * below 720896 (11 * 65536). Nothing is trimmed: surrounding whitespace makes
 * the key invalid, and callers (seedctl) strip it before sending the key.
 */
#ifndef SEEDD_BITLOCKER_H
#define SEEDD_BITLOCKER_H

#include <stdbool.h>

#define BITLOCKER_KEY_GROUPS 8
#define BITLOCKER_KEY_LEN 55         /* 8 * 6 digits + 7 dashes, without the NUL */
#define BITLOCKER_GROUP_LIMIT 720896 /* 11 * 65536; each group is 11 * a 16-bit word */

/* True if key (NUL-terminated, may be NULL) is a valid recovery key. */
bool bitlocker_key_valid(const char *key);

/*
 * Write a masked form for operator messages into out (56 bytes with the NUL):
 * "XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-XXXXXX-123456", only the last
 * group visible. For an invalid key every group is masked, so nothing of a
 * malformed (possibly mistyped) secret leaks either.
 */
void bitlocker_key_mask(const char *key, char out[static 56]);

#endif
