"""A fault-injecting FUSE file system for the drive fault tests: a
passthrough over a backing directory that, when its control file says so,
fails writes with EIO once N more bytes have been written (a disk that
develops a bad sector in the middle of a copy), or answers every operation
with ENODEV (a disk pulled out while mounted).

    /usr/bin/python3 faultfs.py BACKING MOUNTPOINT CONTROL LOG

CONTROL holds JSON, read again whenever its mtime changes:
  {"mode": "ok"}                       plain passthrough (also: no file)
  {"mode": "eio", "after": N}          writes fail with EIO after N bytes
  {"mode": "vanished"}                 every call fails with ENODEV
  {"mode": "vanished", "after": N}     the same once N more bytes are written
  {"mode": "pause", "after": N}        writes wait, once N more bytes are
                                       written, until the mode changes
LOG gets one line per write-open ("open-w PATH"), per rename ("rename A B")
and per fault answered ("fault ERRNO OP PATH"), so a test can tell what was
written when. Uses Debian's python3-fusepy (libfuse2); runs in the
foreground until unmounted or killed. Test-only.
"""
import errno
import json
import os
import sys
import threading
import time

from fusepy import FUSE, FuseOSError, Operations


class FaultFS(Operations):
    def __init__(self, root, control, log):
        self.root = os.path.realpath(root)
        self.control = control
        self.log = open(log, "a", buffering=1)
        self.mu = threading.Lock()
        self.mtime = None
        self.mode = {"mode": "ok"}
        self.written = 0  # bytes written since the mode was last read

    def _mode(self):
        try:
            mtime = os.stat(self.control).st_mtime_ns
        except OSError:
            mtime = None
        with self.mu:
            if mtime != self.mtime:
                self.mtime = mtime
                try:
                    with open(self.control) as f:
                        self.mode = json.load(f)
                except (OSError, ValueError):
                    self.mode = {"mode": "ok"}
                self.written = 0
                self.log.write("mode %s\n" % json.dumps(self.mode, sort_keys=True))
            return self.mode

    def _fault(self, err, op, path):
        self.log.write("fault %s %s %s\n" % (errno.errorcode[err], op, path))
        raise FuseOSError(err)

    def _over(self, m, n):
        """Count n bytes written; whether the mode's byte budget is spent."""
        with self.mu:
            self.written += n
            return self.written > int(m.get("after", 0))

    def __call__(self, op, path, *args):
        m = self._mode()
        if m.get("mode") == "vanished" and op not in ("init", "destroy") and \
                self._over(m, len(args[0]) if op == "write" else 0):
            self._fault(errno.ENODEV, op, path)
        return super().__call__(op, path, *args)

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    # --- passthrough ---------------------------------------------------------
    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        return {k: getattr(st, k) for k in (
            "st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size",
            "st_uid", "st_blocks")}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def readlink(self, path):
        return os.readlink(self._full(path))

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        os.rmdir(self._full(path))

    def unlink(self, path):
        os.unlink(self._full(path))

    def symlink(self, target, source):
        os.symlink(source, self._full(target))

    def rename(self, old, new):
        os.rename(self._full(old), self._full(new))
        self.log.write("rename %s %s\n" % (old, new))

    def link(self, target, source):
        os.link(self._full(source), self._full(target))

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._full(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._full(path), times)

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        return {k: getattr(st, k) for k in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}

    def open(self, path, flags):
        fd = os.open(self._full(path), flags & ~os.O_DIRECT)
        if flags & (os.O_WRONLY | os.O_RDWR):
            self.log.write("open-w %s\n" % path)
        return fd

    def create(self, path, mode, fi=None):
        fd = os.open(self._full(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self.log.write("open-w %s\n" % path)
        return fd

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        m = self._mode()
        if m.get("mode") == "eio" and self._over(m, len(data)):
            self._fault(errno.EIO, "write", path)
        if m.get("mode") == "pause" and self._over(m, len(data)):
            self.log.write("paused write %s\n" % path)
            while self._mode() is m:
                time.sleep(0.01)
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._full(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        return 0


def main():
    backing, mountpoint, control, log = sys.argv[1:5]
    FUSE(FaultFS(backing, control, log), mountpoint, foreground=True, nothreads=False,
         allow_other=True, default_permissions=False)


if __name__ == "__main__":
    main()
