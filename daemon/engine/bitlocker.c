/*
 * BitLocker recovery-key syntax check and masking (pure code with no state;
 * the method handlers call it on the loop thread before a key is stored), and
 * the volume itself read with libcryptsetup (blocking: the probe thread).
 *
 * The format is fixed by the contract (CONTRACT.md §5) and matches every key
 * in the official samples (drive-format README §1.3): 8 groups of 6 digits,
 * each group = 11 * w for a 16-bit word w, so a multiple of 11 below 720896.
 */
#include <errno.h>
#include <libcryptsetup.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "bitlocker.h"
#include "log.h"
#include "util.h"

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

/* ---- the volume, through libcryptsetup -------------------------------------------- */

/*
 * libcryptsetup's messages go to the debug log: what it says of a wrong
 * password or a foreign device the caller says better, and it never logs a
 * passphrase.
 */
static void
crypt_log_cb(int level, const char *msg, void *usrptr)
{
	size_t len = strlen(msg);

	(void)usrptr;
	if (level == CRYPT_LOG_DEBUG || level == CRYPT_LOG_DEBUG_JSON)
		return;
	while (len > 0 && msg[len - 1] == '\n')
		len--;
	log_debug("libcryptsetup: %.*s", (int)len, msg);
}

static void
crypt_log_setup(void)
{
	crypt_set_log_callback(NULL, crypt_log_cb, NULL); /* the default of every handle */
}

/*
 * crypt_init + crypt_load(CRYPT_BITLK): reads the BITLK metadata only. For an
 * image file crypt_init attaches no loop device until something is activated,
 * which seedd never does.
 */
static int
volume_open(const char *device, struct crypt_device **ret_cd, struct bitlocker_volume *ret)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct crypt_device *cd = NULL;
	const char *guid, *cipher, *mode;
	struct stat st;
	int r;

	(void)pthread_once(&once, crypt_log_setup);
	/* crypt_init says -ENOTBLK for a missing device too: say what is wrong first. */
	if (stat(device, &st) < 0)
		return -errno;
	if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode))
		return -ENOTBLK;
	if ((r = crypt_init(&cd, device)) < 0)
		return r;
	/* -EINVAL: no BITLK signature (any other errno is the device's). */
	if ((r = crypt_load(cd, CRYPT_BITLK, NULL)) < 0) {
		crypt_free(cd);
		return r == -EINVAL ? -EMEDIUMTYPE : r;
	}
	guid = crypt_get_uuid(cd);
	cipher = crypt_get_cipher(cd);
	mode = crypt_get_cipher_mode(cd);
	*ret = (struct bitlocker_volume){
	    .guid = xstrdup(guid != NULL ? guid : ""),
	    .cipher = xprintf("%s-%s", cipher != NULL ? cipher : "?", mode != NULL ? mode : "?"),
	};
	*ret_cd = cd;
	return 0;
}

/*
 * One libcryptsetup call at a time: its crypto backend is initialised lazily
 * without a lock, and two AddDrive probes may run at once. A check takes a
 * fraction of a second, and operators add drives one by one.
 */
static pthread_mutex_t crypt_lock = PTHREAD_MUTEX_INITIALIZER;

int
bitlocker_volume_load(const char *device, struct bitlocker_volume *ret)
{
	struct crypt_device *cd = NULL;
	int r;

	pthread_mutex_lock(&crypt_lock);
	if ((r = volume_open(device, &cd, ret)) >= 0)
		crypt_free(cd);
	pthread_mutex_unlock(&crypt_lock);
	return r < 0 ? r : 0;
}

int
bitlocker_volume_check(const char *device, const char *key, struct bitlocker_volume *ret)
{
	struct bitlocker_volume v = {0};
	struct crypt_device *cd = NULL;
	int r;

	if (!bitlocker_key_valid(key))
		return -EINVAL;
	pthread_mutex_lock(&crypt_lock);
	if ((r = volume_open(device, &cd, &v)) < 0) {
		pthread_mutex_unlock(&crypt_lock);
		return r;
	}
	/* A NULL name only checks the passphrase: no device-mapper, nothing written. */
	r = crypt_activate_by_passphrase(cd, NULL, CRYPT_ANY_SLOT, key, strlen(key),
	                                 CRYPT_ACTIVATE_READONLY);
	crypt_free(cd); /* wipes the volume key it unwrapped */
	pthread_mutex_unlock(&crypt_lock);
	*ret = v;
	/*
	 * No protector (VMK) unwrapped with it: -EPERM, or -EINVAL from the AES-CCM
	 * tag check of the last one tried (libcryptsetup 2.6.1 with both images of
	 * reference/bitlocker/). Either way the password does not open the volume.
	 * -ENOTSUP: protectors libcryptsetup cannot use; passed on.
	 */
	if (r == -EPERM || r == -EINVAL)
		return -EPERM;
	return r < 0 ? r : 0;
}

bool
bitlocker_cipher_is_cbc(const char *cipher)
{
	return cipher != NULL && strstr(cipher, "-cbc") != NULL;
}

void
bitlocker_volume_done(struct bitlocker_volume *v)
{
	free(v->guid);
	free(v->cipher);
	*v = (struct bitlocker_volume){0};
}
