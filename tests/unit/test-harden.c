/* harden_process(): the process is no longer dumpable (no core file). */
#include <sys/prctl.h>

#include "harden.h"
#include "test.h"

int
main(void)
{
	check_int(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
	check_int(harden_process(), 0);
	check_int(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	return 0;
}
