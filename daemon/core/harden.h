/*
 * Process-wide hardening applied once at start, before any secret is read.
 */
#ifndef SEEDD_HARDEN_H
#define SEEDD_HARDEN_H

/*
 * No core dump and no ptrace by other processes of the same user: the
 * process holds tokens, the client secret and BitLocker recovery passwords.
 * 0, or a negative errno (the caller logs it; seedd runs on).
 */
int harden_process(void);

#endif
