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

/*
 * The BitLocker volume itself, read with libcryptsetup (BITLK): blocking, for
 * a worker thread (AddDrive's probe thread), never the loop. Nothing is
 * activated and nothing is written: the metadata is read, and the password is
 * checked by unwrapping the volume key in memory (CONTRACT §5, DESIGN §3a).
 */
struct bitlocker_volume {
	char *guid;   /* the volume GUID as bitlkDump shows it, e.g. "8f595209-f5b9-…" */
	char *cipher; /* "aes-xts-plain64", "aes-cbc-eboiv", "aes-cbc-elephant" */
};

/*
 * Load device (a block device, or an image file in tests) as BITLK. 0 and *ret
 * filled; -EMEDIUMTYPE if it is no BitLocker volume (libcryptsetup finds no
 * BITLK signature); else -errno (-ENOENT, -EACCES, ...).
 */
int bitlocker_volume_load(const char *device, struct bitlocker_volume *ret);

/*
 * Load device as bitlocker_volume_load() does and check that key (a valid
 * recovery password) unlocks its volume key. 0: it does, *ret filled;
 * -EPERM: it does not (*ret filled all the same); -EMEDIUMTYPE as above; else
 * -errno. Takes about a quarter of a second (BitLocker's key stretching).
 */
int bitlocker_volume_check(const char *device, const char *key, struct bitlocker_volume *ret);

/* True for a CBC cipher (AES-CBC, with or without the Elephant diffuser). */
bool bitlocker_cipher_is_cbc(const char *cipher);

/* Free what a volume holds; the struct is zeroed. Accepts a zeroed struct. */
void bitlocker_volume_done(struct bitlocker_volume *v);

#endif
