/*
 * Process-wide hardening at start (main thread, before the loop and before
 * the configuration's secrets are read). systemd's unit adds LimitCORE=0;
 * this covers seedd started any other way.
 */
#include <errno.h>
#include <sys/prctl.h>

#include "harden.h"

int
harden_process(void)
{
	/*
	 * A non-dumpable process writes no core file (unless the host sets
	 * fs.suid_dumpable=2, and then one only root can read), and its /proc
	 * files and ptrace are denied to other processes of the same user.
	 */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return -errno;
	return 0;
}
