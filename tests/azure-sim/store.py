"""The simulator's state: configuration, Entra clients and tokens, jobs of
both APIs, long-running operations, faults and the request log.

One re-entrant lock guards everything; handlers take it for the whole of
their work on the state (never while sleeping).  Everything except faults
and the request log is written to the --state-file as JSON after each
change (write to a temporary file, fsync, rename), so a restarted simulator
keeps its jobs, clients and unexpired tokens.
"""

import copy
import json
import os
import threading
import time

LOG_LIMIT = 20000

DEFAULT_CONFIG = {
    # DataBox api-versions accepted (README §1 of the reference).
    "databoxApiVersions": ["2025-02-01", "2025-07-01"],
    # Microsoft.ImportExport api-versions accepted.
    "importExportApiVersions": ["2016-11-01", "2020-08-01", "2021-01-01"],
    # LRO: polls answered 202 + operationResults Location before the 202
    # that points at the job (create: 1 in both customer-disk recordings).
    "lroPolls": 1,
    # An LRO also completes once this many seconds passed since it started,
    # even if nobody polls it.
    "lroSeconds": 30,
    # Retry-After (seconds) on LRO 202 answers; null = none, like the
    # recordings.
    "lroRetryAfter": None,
    # Emit Location URLs with long signed t/c/s/h parameters (~3.2 KB),
    # like the real service.
    "longLocation": True,
    # Items per list page before a nextLink is emitted.
    "pageSize": 50,
    # Status of a customer-disk job once its create LRO is done
    # ("AwaitingShipmentDetails" in 2025 recordings, "Created" in 2023).
    "initialStatus": "AwaitingShipmentDetails",
    # Reject manifestHash values that are not 32 hex digits and bitLockerKey
    # values that are not 8 groups of 6 digits.  The real service accepted
    # "xxxx"/"xxx" [rec], so this is off by default; it is always reported
    # as a warning in the request log.
    "strict": False,
    # Move jobs one status forward every N seconds after shipping (0 = only
    # through the control API).
    "autoAdvanceSeconds": 0,
    # Default lifetime of issued tokens, seconds (recorded: 3599).
    "tokenLifetime": 3599,
    # validateInputs: validationType -> forced status ("Invalid", "Skipped").
    "validationOverrides": {},
    # Switches for the plausible alternatives to [inferred] behaviour
    # (README "Switches"); all off = the simulator's default reading.
    # Every re-PUT of an existing job is 409, even with an identical body.
    "rePutConflict": False,
    # GET finds a DataBox job while its create operation still runs.
    "getWhileCreating": False,
    # A DataBox create is answered 202 without Location (and without
    # Azure-AsyncOperation).
    "createNoLocation": False,
    # A DataBox create's 202 also carries Azure-AsyncOperation.
    "createAsyncOperation": False,
    # A hostile Resource Manager: operation URLs (Location,
    # Azure-AsyncOperation) on this base ("http://127.0.0.1:PORT") instead of
    # the simulator's own; "" = its own.  A client must not follow them.
    "operationBase": "",
    # ImportExport: for this many seconds after the PUT the job shows
    # provisioningState "Creating" (0: "Succeeded" at once, as recorded).
    "provisioningSeconds": 0,
    # Retry-After on LRO answers as an HTTP-date instead of seconds.
    "lroRetryAfterDate": False,
    # ImportExport: copyStatus of a drive the simulator completes (free text
    # [spec]; "Completed" is [inferred]).
    "copyStatusCompleted": "Completed",
    # ImportExport: the job's state may run ahead of its drives' states
    # (entering Packaging does not complete the drives).
    "jobAheadOfDrives": False,
    # resources.py: paths of subscriptions, resource groups and storage
    # accounts that do not exist (404), and the subscriptions' state.
    "missingResources": [],
    "subscriptionState": "Enabled",
}

_CURRENT = None


def current():
    """The Store of this process (the simulator runs one), or None."""
    return _CURRENT


class Store:
    def __init__(self, path):
        global _CURRENT
        _CURRENT = self
        self.path = path
        self.lock = threading.RLock()
        self.log = []
        self.log_seq = 0
        self.faults = []
        self.fault_seq = 0
        self.lro_failures = []
        self.reset()
        if path and os.path.exists(path):
            self._load()

    def reset(self):
        with self.lock:
            self.config = copy.deepcopy(DEFAULT_CONFIG)
            self.clients = {}
            self.tokens = {}
            self.jobs = {}
            self.ops = {}
            self.counters = {}
            self.log = []
            self.faults = []
            self.lro_failures = []

    def _load(self):
        with open(self.path, encoding="utf-8") as f:
            data = json.load(f)
        self.config.update(data.get("config", {}))
        self.clients = data.get("clients", {})
        self.jobs = data.get("jobs", {})
        self.ops = data.get("ops", {})
        now = time.time()
        self.tokens = {k: v for k, v in data.get("tokens", {}).items()
            if v["expiresAt"] > now}

    def save(self):
        """Write the persistent part of the state.  Call with the lock
        held, after every change."""
        if not self.path:
            return
        data = {"version": 1, "config": self.config, "clients": self.clients,
            "tokens": self.tokens, "jobs": self.jobs, "ops": self.ops}
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # -- request log ------------------------------------------------------

    def log_append(self, entry):
        with self.lock:
            self.log_seq += 1
            entry["seq"] = self.log_seq
            self.log.append(entry)
            if len(self.log) > LOG_LIMIT:
                del self.log[:len(self.log) - LOG_LIMIT]
            return entry

    # -- faults -----------------------------------------------------------

    def add_fault(self, fault):
        with self.lock:
            self.fault_seq += 1
            fault["id"] = self.fault_seq
            self.faults.append(fault)
            return fault

    def take_fault(self, method, path):
        """Consume one use of the first fault matching this request."""
        with self.lock:
            for fault in self.faults:
                if fault["remaining"] <= 0:
                    continue
                if not fault["match"](method, path):
                    continue
                fault["remaining"] -= 1
                return fault
            return None

    # -- rate-limit counters ----------------------------------------------

    def remaining(self, name, start):
        """Decrement and return a 'remaining requests' counter that refills
        every hour, for the x-ms-ratelimit-remaining-* headers."""
        with self.lock:
            now = time.time()
            value, since = self.counters.get(name, (start, now))
            if now - since > 3600:
                value, since = start, now
            value = max(0, value - 1)
            self.counters[name] = (value, since)
            return value
