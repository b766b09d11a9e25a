/*
 * Schema migrations of the job store, run by db_open() on the loop thread.
 *
 * Migrations are data: migrations[] lists {version, sql} steps, one per
 * schema version, in order, with no gaps. PRAGMA user_version holds the
 * version of the file (0: fresh). Each step runs in its own BEGIN IMMEDIATE
 * transaction that also writes the new user_version, so a crash leaves the
 * file at a consistent intermediate version and the next open resumes.
 * Policy: an older file is migrated; a newer one is refused by db_open()
 * (the schema is not promised to be forward compatible).
 */
#include <errno.h>
#include <stdio.h>

#include "db-internal.h"
#include "util.h"

struct migration {
	int version;
	const char *sql;
};

#define JOB_STATES                                                                                 \
	"'staging','drive_prep','shipped','imported','vault_copy','cleanup','done','failed',"      \
	"'cancelled'"
#define ACTIVE_STATES "'staging','drive_prep','shipped','imported','vault_copy','cleanup'"
#define FILE_STATES "'indexed','invalid','skipped','planned','verified'"
#define DRIVE_STATES "'attached','copying','copied','manifest-written','full'"
#define AZURE_APIS "'DataBox','ImportExport'"

/* Version 1: the whole store sketched in DESIGN.md §5. Times are UNIX seconds. */
/* clang-format off */
static const char schema_v1[] =
	/* One row per job; state changes only through db.c's transition functions. */
	"CREATE TABLE jobs ("
	" id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE,"
	" state TEXT NOT NULL CHECK (state IN (" JOB_STATES ")),"
	" failed_state TEXT CHECK (failed_state IS NULL OR failed_state IN (" ACTIVE_STATES ")),"
	" phase TEXT NOT NULL DEFAULT '',"             /* free-text detail of the state */
	" staging_path TEXT NOT NULL,"
	" container TEXT,"                             /* destination (vault) container */
	" files INTEGER NOT NULL DEFAULT 0,"           /* indexed in staging */
	" bytes INTEGER NOT NULL DEFAULT 0,"
	" copied_files INTEGER NOT NULL DEFAULT 0,"
	" copied_bytes INTEGER NOT NULL DEFAULT 0,"
	" verified_files INTEGER NOT NULL DEFAULT 0,"
	" azure_job_name TEXT,"
	/* The API the Azure job was created with. */
	" azure_api TEXT CHECK (azure_api IS NULL OR azure_api IN (" AZURE_APIS ")),"
	" azure_state TEXT,"                           /* as Azure last reported it */
	/* When Azure confirmed the job, 0: not yet. */
	" azure_created INTEGER NOT NULL DEFAULT 0 CHECK (azure_created >= 0),"
	" shipped_at INTEGER NOT NULL DEFAULT 0 CHECK (shipped_at >= 0)," /* 0: not shipped */
	/* The smallest days-before-deadline threshold already warned (7, 3, 1), 0: none. */
	" deadline_warned INTEGER NOT NULL DEFAULT 0 CHECK (deadline_warned >= 0),"
	/* 1 once the "not received by Azure yet" warning was given. */
	" receive_warned INTEGER NOT NULL DEFAULT 0 CHECK (receive_warned IN (0, 1)),"
	" carrier TEXT,"
	" tracking_number TEXT UNIQUE,"
	" ship_deadline INTEGER NOT NULL DEFAULT 0,"   /* 0: none */
	" error TEXT,"                                 /* NULL unless failed */
	" attempts INTEGER NOT NULL DEFAULT 0,"        /* retries so far */
	" next_attempt_at INTEGER NOT NULL DEFAULT 0," /* backoff: not before, 0: now */
	" created INTEGER NOT NULL,"
	" updated INTEGER NOT NULL"
	") STRICT;"
	"CREATE INDEX jobs_state ON jobs (state);"

	/*
	 * One row per staging entry the scanner saw. Blocks exist only for a
	 * planned file (blocks 0 .. checkpoint-1) or a verified one (all of them).
	 */
	"CREATE TABLE files ("
	" id INTEGER PRIMARY KEY,"
	" job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
	" rel_path TEXT NOT NULL,"                     /* '/'-separated, relative to the staging path */
	" size INTEGER NOT NULL,"
	" mtime_ns INTEGER NOT NULL,"
	" blob_name TEXT NOT NULL,"                    /* <container>/<job>/<rel_path> */
	" drive_id INTEGER REFERENCES drives (id) ON DELETE SET NULL," /* planned or copied onto */
	" state TEXT NOT NULL DEFAULT 'indexed' CHECK (state IN (" FILE_STATES ")),"
	" reason TEXT,"                                /* why invalid or skipped, else NULL */
	" md5 BLOB CHECK (md5 IS NULL OR length(md5) = 16)," /* of the whole file, once verified */
	/* Blocks durably copied: the resume point. */
	" checkpoint INTEGER NOT NULL DEFAULT 0 CHECK (checkpoint >= 0),"
	" reread INTEGER NOT NULL DEFAULT 0,"          /* 1 if verified by re-reading the drive copy */
	/* After Azure's import: what the import container holds (reconcile, repair). */
	" import_state TEXT CHECK (import_state IS NULL OR import_state IN"
	"  ('ok','missing','corrupt','renamed','failed','repaired')),"
	" import_detail TEXT,"                         /* Azure's status or what differed */
	" vault_state TEXT CHECK (vault_state IS NULL OR vault_state IN ('copying','verified')),"
	" cleanup_state TEXT CHECK (cleanup_state IS NULL OR cleanup_state IN"
	"  ('blob-deleted','staging-deleted','staging-kept')),"
	" UNIQUE (job_id, rel_path),"
	" CHECK (reason IS NULL OR state IN ('invalid','skipped')),"
	" CHECK (drive_id IS NULL OR state IN ('planned','verified'))"
	") STRICT;"
	"CREATE INDEX files_job_state ON files (job_id, state, id);"
	/* Partial: only files the reconcile found wanting. */
	"CREATE INDEX files_job_not_ok ON files (job_id, id) "
	"WHERE import_state IS NOT NULL AND import_state != 'ok';"
	/* Partial: the scan inserts rows without a drive, which need no entry. */
	"CREATE INDEX files_drive_state ON files (drive_id, state, id) WHERE drive_id IS NOT NULL;"

	/* Per-block MD5s of a file (Azure block blobs). */
	"CREATE TABLE blocks ("
	" file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,"
	" idx INTEGER NOT NULL,"
	" \"offset\" INTEGER NOT NULL,"
	" length INTEGER NOT NULL,"
	" md5 BLOB NOT NULL CHECK (length(md5) = 16),"
	" PRIMARY KEY (file_id, idx)"
	") STRICT, WITHOUT ROWID;"

	/* Drives attached to a job. */
	"CREATE TABLE drives ("
	" id INTEGER PRIMARY KEY,"
	" job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
	" serial TEXT NOT NULL,"
	" path TEXT NOT NULL,"                         /* mount point */
	" uuid TEXT NOT NULL,"                         /* random id in seedd's marker file on it */
	" capacity INTEGER NOT NULL,"
	" free_bytes INTEGER NOT NULL DEFAULT 0,"      /* free when attached */
	" used_bytes INTEGER NOT NULL DEFAULT 0,"      /* sum of the sizes of its verified files */
	" files INTEGER NOT NULL DEFAULT 0,"           /* number of its verified files */
	" state TEXT NOT NULL DEFAULT 'attached' CHECK (state IN (" DRIVE_STATES ")),"
	" manifest_hash TEXT,"                         /* NULL until the manifest is written */
	/* As the Azure job last reported the drive; NULL/0 until it does. */
	" azure_status TEXT,"
	" azure_bytes INTEGER NOT NULL DEFAULT 0 CHECK (azure_bytes >= 0),"   /* bytes imported */
	" azure_total INTEGER NOT NULL DEFAULT 0 CHECK (azure_total >= 0),"   /* bytes to import */
	" azure_files_errored INTEGER NOT NULL DEFAULT 0 CHECK (azure_files_errored >= 0),"
	" error_log TEXT,"                             /* Azure's error log (URI) */
	" verbose_log TEXT,"                           /* Azure's verbose log (URI) */
	" UNIQUE (job_id, serial)"
	") STRICT;"

	/*
	 * BitLocker keys and the like. Kept apart so that no listing statement
	 * can select a secret by accident; the file is mode 0600.
	 */
	"CREATE TABLE secrets ("
	" id INTEGER PRIMARY KEY,"
	" job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
	" drive_id INTEGER REFERENCES drives (id) ON DELETE CASCADE,"
	" kind TEXT NOT NULL,"
	" value BLOB NOT NULL"
	") STRICT;"
	"CREATE INDEX secrets_job ON secrets (job_id);"
	"CREATE INDEX secrets_drive ON secrets (drive_id);"

	/* The job's history: one row per transition, phase change or note. */
	"CREATE TABLE events ("
	" id INTEGER PRIMARY KEY,"
	" job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
	" time INTEGER NOT NULL,"
	" kind TEXT NOT NULL,"
	" state TEXT CHECK (state IS NULL OR state IN (" JOB_STATES "))," /* the job's state after */
	" text TEXT NOT NULL DEFAULT ''"
	") STRICT;"
	"CREATE INDEX events_job ON events (job_id, id);";
/* clang-format on */

/*
 * v2: what the drive takes of O_DIRECT (COPY_DIRECT_* of copy.h: 1 writes, 2
 * reads), from the probe at AddDrive, lowered when the drive refuses O_DIRECT
 * at run time. Drives attached before keep trying it (3), with the fallback.
 */
static const char schema_v2_direct_io[] =
    "ALTER TABLE drives ADD COLUMN direct_io INTEGER NOT NULL DEFAULT 3 "
    "CHECK (direct_io BETWEEN 0 AND 3);";

/*
 * v3: what the real service and real drives taught (issue 9). One step for
 * the whole change; each block below is one part of it.
 */
/* clang-format off */
static const char schema_v3_real_world[] =
	/* BitLocker: the volume the recovery password was checked against. */
	"ALTER TABLE drives ADD COLUMN bitlocker_device TEXT;" /* NULL: none (RequireBitLocker=no) */
	"ALTER TABLE drives ADD COLUMN bitlocker_guid TEXT;"   /* the volume's GUID */
	"ALTER TABLE drives ADD COLUMN bitlocker_cipher TEXT;" /* e.g. aes-xts-plain64 */
	/* Import verification (reconcile). */
	"ALTER TABLE files ADD COLUMN import_method TEXT;" /* content-md5, block-list, ... */
	"ALTER TABLE drives ADD COLUMN log_status TEXT;"   /* DriveLog/Status of Azure's log */
	/* 1 once the operator's `job retry` agreed to upload a drive Azure could not import. */
	"ALTER TABLE drives ADD COLUMN network_repair INTEGER NOT NULL DEFAULT 0"
	" CHECK (network_repair IN (0, 1));"
	/* Azure control plane. */
	"";
/* clang-format on */

/*
 * v4: hardening (issues 11 and 12). One step for the whole change; each
 * helper's part has its own comment line and adds its statements below it.
 */
/* clang-format off */
static const char schema_v4_hardening[] =
	/* -- secrets */
	/* BitLocker recovery passwords of jobs already done or cancelled leave, said in their log. */
	"INSERT INTO events (job_id, time, kind, state, text)"
	" SELECT j.id, CAST(strftime('%s', 'now') AS INTEGER), 'secrets-deleted', j.state,"
	"  count(*) || ' BitLocker recovery password(s) deleted from the database'"
	" FROM jobs j JOIN secrets s ON s.job_id = j.id"
	" WHERE j.state IN ('done', 'cancelled') GROUP BY j.id;"
	"DELETE FROM secrets WHERE job_id IN (SELECT id FROM jobs WHERE state IN ('done', 'cancelled'));"
	/* A staging file's link count when indexed; above 1 it is named as a problem. */
	"ALTER TABLE files ADD COLUMN links INTEGER NOT NULL DEFAULT 1 CHECK (links >= 1);"
	"CREATE INDEX files_job_linked ON files (job_id, id) WHERE links > 1;"
	/* -- peers */
	/* -- operator */
	/* -- planning */
	"";
/* clang-format on */

/*
 * v5: the operator's day (issue 12). One step for the whole change; each
 * helper's part has its own comment line and adds its statements below it.
 */
/* clang-format off */
static const char schema_v5_operator[] =
	/* -- plan */
	/* The job's --exclude patterns as a JSON array of strings; NULL: none. */
	"ALTER TABLE jobs ADD COLUMN excludes TEXT;"
	/* 1 once `job retry --skip-refused` let the job go on without the names Azure refuses. */
	"ALTER TABLE jobs ADD COLUMN skip_refused INTEGER NOT NULL DEFAULT 0"
	" CHECK (skip_refused IN (0, 1));"
	/* The --exclude pattern that left this entry out (state skipped); NULL: none did. */
	"ALTER TABLE files ADD COLUMN excluded_by TEXT"
	" CHECK (excluded_by IS NULL OR state = 'skipped');"
	/* -- drives */
	/*
	 * A drive that received nothing ends 'unused'. A flag, not a new value
	 * in the CHECK of drives.state: changing that CHECK means rebuilding
	 * the table, and dropping the old one would fire the foreign keys of
	 * files and secrets. DRIVE_COLUMNS (db-stmts.c) shows it as the state.
	 */
	"ALTER TABLE drives ADD COLUMN unused INTEGER NOT NULL DEFAULT 0 CHECK (unused IN (0, 1));"
	/*
	 * A purged job (PurgeJob): gone for every reader at once, renamed '#ID' so
	 * that its name and tracking number are free; the purger (core/purger.c)
	 * then deletes its files in small transactions and last the row itself.
	 */
	"ALTER TABLE jobs ADD COLUMN purged INTEGER NOT NULL DEFAULT 0 CHECK (purged IN (0, 1));"
	"CREATE INDEX jobs_purged ON jobs (id) WHERE purged = 1;"
	"";
/* clang-format on */

static const struct migration migrations[] = {
    {1, schema_v1},
    {2, schema_v2_direct_io},
    {3, schema_v3_real_world},
    {4, schema_v4_hardening},
    {5, schema_v5_operator},
};

_Static_assert(ELEMENTSOF(migrations) == DB_SCHEMA_VERSION,
               "one migration step per schema version");

/*
 * Run one step in its own transaction unless the file is already at or past
 * it. On failure *ret_err gets a message and the step is rolled back.
 */
static int
migrate_step(struct db *db, const struct migration *m, char **ret_err)
{
	char set_version[64];
	int64_t v;
	int r, rc;

	if ((r = db_tx_begin(db)) < 0)
		goto fail;
	if ((r = db_pragma_int(db, "user_version", &v)) < 0)
		goto rollback;
	if (v >= m->version) {
		db_tx_rollback(db);
		return 0;
	}
	if ((rc = sqlite3_exec(db->sqlite, m->sql, NULL, NULL, NULL)) != SQLITE_OK) {
		r = db_error(db, rc);
		goto rollback;
	}
	(void)snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %d", m->version);
	if ((rc = sqlite3_exec(db->sqlite, set_version, NULL, NULL, NULL)) != SQLITE_OK) {
		r = db_error(db, rc);
		goto rollback;
	}
	if ((r = db_tx_commit(db)) < 0)
		goto fail;
	return 0;

rollback:
	db_tx_rollback(db);
fail:
	xasprintf(ret_err, "migrating the database to schema version %d: %s", m->version,
	          db_errmsg(db));
	return r;
}

int
db_migrate(struct db *db, char **ret_err)
{
	int r;

	for (size_t i = 0; i < ELEMENTSOF(migrations); i++) {
		if (migrations[i].version != (int)i + 1)
			fatalx("db: migration %zu has version %d", i, migrations[i].version);
		if ((r = migrate_step(db, &migrations[i], ret_err)) < 0)
			return r;
	}
	return 0;
}
