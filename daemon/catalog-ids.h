/*
 * MESSAGE_ID values of catalogued events. Each has an entry in
 * systemd/seedd.catalog; a test keeps the two in step.
 */
#ifndef SEEDD_CATALOG_IDS_H
#define SEEDD_CATALOG_IDS_H

#define SEEDD_MESSAGE_STARTED "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a01"
#define SEEDD_MESSAGE_STOPPED "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a02"
#define SEEDD_MESSAGE_JOB_CREATED "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a03"
#define SEEDD_MESSAGE_JOB_STATE "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a04"
#define SEEDD_MESSAGE_JOB_FAILED "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a05"
#define SEEDD_MESSAGE_JOB_CANCELLED "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a06"
#define SEEDD_MESSAGE_DRIVE_DONE "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a07"
#define SEEDD_MESSAGE_DEADLINE_NEAR "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a08"
#define SEEDD_MESSAGE_PERMISSION_DENIED "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a09"
#define SEEDD_MESSAGE_CONFIG_RELOADED "b0b6a2a1c6e34b7e9a3f1d2c4e5f6a0a"

#endif
