"""The simulated Azure datacenter: what happens to the shipped drives once
a job reaches the DC.  This is the seam for a later "datacenter import"
that reads a shipped drive directory and uploads its blobs into Azurite;
the API front ends (databox.py, importexport.py) only call the two hooks
below and never look inside a drive.

A drive, for the hooks, is a dict:
  serial            disk serial number (DataBox map key / ImportExport driveId)
  manifestFile      relative manifest path on the disk
  manifestHash      what the job was created with
  storageAccountId  destination account resource id
and the job is described by kind ("databox" | "importexport"), name and
the destination account.

ManualDataCenter, the only implementation today, copies nothing: copy
results come from the control API (POST /jobs/{name}/drive-status, or the
"disks"/"drives" member of POST /jobs/{name}/advance).  A drive nobody
reported on finishes as fully copied with whatever byte counts it had.
"""


class ManualDataCenter:
	name = "manual"

	def received(self, kind, job_name, drives):
		"""All drives of a job arrived at the DC.  Returns per-serial
		updates to merge into the progress records ({} = none)."""
		return {}

	def copy(self, kind, job_name, drives):
		"""The DC copies the drives.  Returns per-serial final results,
		each a dict of progress fields (copyStatus, bytesProcessed,
		totalBytesToProcess, filesProcessed, totalFilesToProcess,
		filesErroredOut, errorLogLink, verboseLogLink, error); {} means
		nothing beyond what the control API already reported."""
		return {}


_CURRENT = ManualDataCenter()


def current():
	return _CURRENT


def install(dc):
	"""Replace the datacenter (for a future Azurite-backed importer)."""
	global _CURRENT
	_CURRENT = dc
