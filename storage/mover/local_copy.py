"""The local→local fast path: os calls on raw bytes paths, one reused buffer, hash on the way.

Each regular file is read once into a reused buffer, hashed (xxh3_128) and written; its
metadata is set on the open descriptor (owner → xattrs → mode → times, the order that keeps
setuid/setgid bits and ACL masks right). The descriptor stays open until the verify pass
re-reads it (after `syncfs` + `POSIX_FADV_DONTNEED`, so a disk-backed destination is read
from the device, not from the page cache).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import mmap
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import xxhash

from storage.errors import CancelledError
from storage.mover.throttle import Pacer

BUF_SIZE = 1 << 20
STOP_CHECK_BYTES = 32 << 20
"""A large file checks `should_stop` (and the throttle) at least this often."""

MMAP_MIN = 8 << 20
"""Destination files at least this big are verified through a memory mapping (one copy into
a buffer less). Never the source: a source truncated under a mapping would raise SIGBUS."""
MMAP_WINDOW = 64 << 20
USE_MMAP_VERIFY = True
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_O_NOATIME = getattr(os, "O_NOATIME", 0)
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_EUID = os.geteuid()
_AS_ROOT = _EUID == 0
_ZEROS = memoryview(bytes(BUF_SIZE))
_EMPTY_DIGEST = xxhash.xxh3_128_hexdigest(b"")
R = TypeVar("R")


@contextlib.contextmanager
def _mapped(fd: int, offset: int, length: int) -> Iterator[memoryview]:
    """A read-only, pre-faulted mapping of part of a file (window-sized: RSS stays bounded)."""
    m = mmap.mmap(
        fd, length, flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=mmap.PROT_READ, offset=offset
    )
    try:
        view = memoryview(m)
        try:
            yield view
        finally:
            view.release()
    finally:
        m.close()


class SourceChanged(Exception):
    """The source file is not the one the plan saw (size/mtime differ, or it vanished)."""


@dataclass(slots=True)
class FileRow:
    id: int
    path: bytes
    kind: str
    size: int
    mtime_ns: int
    mode: int
    uid: int | None
    gid: int | None
    blocks: int
    rdev: int
    link_target: bytes | None
    attempts: int


_libc: ctypes.CDLL | None = None


def syncfs(fd: int) -> None:
    """Write back the filesystem holding `fd` (only that one, unlike `os.sync`)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@functools.cache
def process_umask() -> int:
    """This process's umask, read without changing it (`os.umask` would race other threads)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: every file gets its explicit fchmod


@functools.lru_cache(maxsize=64)
def ram_backed(path: bytes) -> bool:
    """True when `path` is on tmpfs/ramfs: its pages are the storage, there is no device to
    re-read from, so the verify pass skips `syncfs` and `POSIX_FADV_DONTNEED`."""
    real = os.path.realpath(path)
    best, fstype = b"", b""
    try:
        with open("/proc/self/mounts", "rb") as f:
            for line in f:
                fields = line.split()
                mnt = fields[1].replace(b"\\040", b" ")
                inside = real == mnt or real.startswith(mnt.rstrip(b"/") + b"/")
                if inside and len(mnt) >= len(best):
                    best, fstype = mnt, fields[2]
    except OSError:
        return False
    return fstype in (b"tmpfs", b"ramfs")


def remove_any(path: bytes) -> None:
    """Remove whatever is at `path` (file, link, special or directory tree)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _open_source(path: bytes) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | _O_NOATIME)
    except PermissionError:
        # O_NOATIME is only allowed on files we own (or as root).
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _retry_create(path: bytes, create: Callable[[], R]) -> R:
    """Run `create`; on a missing parent make it, on something in the way remove it, retry."""
    for _ in range(3):
        try:
            return create()
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        except FileExistsError:
            remove_any(path)
        except PermissionError:
            # A directory finished by an earlier run may be read-only; finish_copy resets it.
            parent = os.path.dirname(path)
            os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | 0o700)
    return create()


def copy_xattrs(src: int | bytes, dst: int | bytes, lost: dict[str, int]) -> bool:
    """Copy every extended attribute; True when the source had any."""
    follow = isinstance(src, int)
    try:
        names = os.listxattr(src, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return False
        raise
    for name in names:
        try:
            value = os.getxattr(src, name, follow_symlinks=follow)
            os.setxattr(dst, name, value, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.ENODATA):
                raise
            lost["xattr"] = lost.get("xattr", 0) + 1
    return bool(names)


def set_owner(
    dst: int | bytes, uid: int | None, gid: int | None, lost: dict[str, int], follow: bool
) -> None:
    if uid is None or gid is None:
        return
    if _AS_ROOT:
        os.chown(dst, uid, gid, follow_symlinks=follow)
    elif uid != os.geteuid():
        lost["owner"] = lost.get("owner", 0) + 1


_buffers = threading.local()


def _read_from_device(fd: int) -> None:
    """Make reads of `fd` come from the device: O_DIRECT (no page-cache fill and eviction,
    so less CPU), or where the filesystem refuses it, drop the file's cached pages."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
    except OSError:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _thread_buffer() -> memoryview:
    """This thread's copy buffer, allocated once (a batch is too short to pay for a new one)."""
    mv: memoryview | None = getattr(_buffers, "mv", None)
    if mv is None:
        # Page-aligned (an anonymous mapping), as O_DIRECT reads into it require. Private: a
        # shared mapping (mmap's default) would be one buffer for every worker forked later.
        buf = mmap.mmap(-1, BUF_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mv = _buffers.mv = memoryview(buf)
    return mv


class LocalCopier:
    """Copies entries of one batch between two local roots; one instance per thread."""

    def __init__(
        self,
        src_root: bytes,
        dst_root: bytes,
        *,
        throttle: Pacer | None = None,
        should_stop: Callable[[], bool] | None = None,
        verify_from_device: bool = True,
    ) -> None:
        self.src_root = src_root
        self.dst_root = dst_root
        self._src_prefix = src_root.rstrip(b"/") + b"/"
        self._dst_prefix = dst_root.rstrip(b"/") + b"/"
        self._umask = process_umask()
        self.mv = _thread_buffer()
        self.throttle = throttle
        self.should_stop = should_stop
        self.verify_from_device = verify_from_device
        self.lost: dict[str, int] = {}
        self._new_gid: dict[bytes, int] = {}

    def src(self, rel: bytes) -> bytes:
        return self._src_prefix + rel if rel else self.src_root

    def dst(self, rel: bytes) -> bytes:
        return self._dst_prefix + rel if rel else self.dst_root

    # -- regular files -------------------------------------------------------------
    def copy_file(self, row: FileRow) -> tuple[int, str]:
        """Copy one file with its metadata; returns the open destination fd and the hash."""
        try:
            sfd = _open_source(self.src(row.path))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise SourceChanged("vanished") from exc
        try:
            dpath = self.dst(row.path)
            mode = stat.S_IMODE(row.mode)
            # Created with its permission bits (the umask permitting), so most files need no
            # fchmod; the descriptor is read-write whatever the bits say.
            dfd = _retry_create(dpath, lambda: os.open(dpath, _CREATE, mode & 0o777))
            try:
                if row.size and row.blocks * 512 < row.size:
                    digest = self._copy_sparse(sfd, dfd, row.size)
                else:
                    digest = self._copy_dense(sfd, dfd, row.size)
                # One fstat, after the data: a source that is not the planned file, or that
                # changed while it was read, has another size or mtime by now.
                st = os.fstat(sfd)
                if st.st_size != row.size or st.st_mtime_ns != row.mtime_ns:
                    raise SourceChanged("changed since the plan or while being copied")
                if not self._owner_as_created(dpath, row):
                    set_owner(dfd, row.uid, row.gid, self.lost, True)
                # ACLs rewrite the group bits and chown clears setuid/setgid: then the mode is
                # set again, after them.
                if copy_xattrs(sfd, dfd, self.lost) or mode & ~0o777 or mode & self._umask:
                    os.fchmod(dfd, mode)
                os.utime(dfd, ns=(st.st_atime_ns, row.mtime_ns))
            except BaseException:
                os.close(dfd)
                raise
        finally:
            os.close(sfd)
        return dfd, digest

    def _owner_as_created(self, dpath: bytes, row: FileRow) -> bool:
        """True when a file this process just created at `dpath` already has the row's owner,
        so the `fchown` can be left out (most files of a share copied as root). A new file
        gets our uid and, under a setgid directory, the directory's gid, else our gid; the
        directory's answer is cached per copier (one batch): nothing changes a destination
        directory's owner or mode before `finish_copy`."""
        if row.uid != _EUID or not _AS_ROOT:
            return False
        parent = dpath.rpartition(b"/")[0] or b"/"
        gid = self._new_gid.get(parent)
        if gid is None:
            st = os.stat(parent)
            gid = st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()
            self._new_gid[parent] = gid
        return row.gid == gid

    def _write_all(self, dfd: int, view: memoryview) -> None:
        while view:
            view = view[os.write(dfd, view) :]

    def _checkpoint(self, nbytes: int) -> None:
        if self.should_stop is not None and self.should_stop():
            raise CancelledError("copy stopped on request")
        if self.throttle is not None:
            self.throttle.consume(nbytes)

    def _copy_dense(self, sfd: int, dfd: int, size: int) -> str:
        mv, buf = self.mv, [self.mv]
        if size == 0:
            return _EMPTY_DIGEST
        if size <= BUF_SIZE:
            # The common case: one read, one one-shot hash, one write.
            n = os.readv(sfd, buf)
            if n != size:
                raise SourceChanged("size changed while being copied")
            if n:
                self._write_all(dfd, mv[:n])
            if self.throttle is not None:
                self.throttle.consume(n)
            return xxhash.xxh3_128_hexdigest(mv[:n])
        h = xxhash.xxh3_128()
        total = since_check = 0
        if size >= 8 * BUF_SIZE:
            os.posix_fadvise(sfd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while total < size:
            n = os.readv(sfd, buf)
            if n == 0:
                raise SourceChanged("size changed while being copied")
            chunk = mv[:n]
            h.update(chunk)
            self._write_all(dfd, chunk)
            total += n
            since_check += n
            if since_check >= STOP_CHECK_BYTES:
                self._checkpoint(since_check)
                since_check = 0
        if since_check:
            self._checkpoint(since_check)
        return h.hexdigest()

    def _copy_sparse(self, sfd: int, dfd: int, size: int) -> str:
        """Copy only the data segments; holes are hashed as zeros and left as holes."""
        h = xxhash.xxh3_128()
        off = 0
        while off < size:
            try:
                data = os.lseek(sfd, off, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                data = size
            data = min(data, size)
            while off < data:
                step = min(BUF_SIZE, data - off)
                h.update(_ZEROS[:step])
                off += step
            if off >= size:
                break
            hole = min(os.lseek(sfd, off, os.SEEK_HOLE), size)
            while off < hole:
                n = os.preadv(sfd, [self.mv[: min(BUF_SIZE, hole - off)]], off)
                if n == 0:
                    raise SourceChanged("size changed while being copied")
                h.update(self.mv[:n])
                written = 0
                while written < n:
                    written += os.pwrite(dfd, self.mv[written:n], off + written)
                off += n
                self._checkpoint(n)
        os.ftruncate(dfd, size)
        return h.hexdigest()

    def hash_back(self, dfd: int, size: int, sparse: bool = False) -> str:
        """Re-read an open destination and hash it (the verify pass)."""
        if self.verify_from_device:
            _read_from_device(dfd)
        elif size >= MMAP_MIN and not sparse and USE_MMAP_VERIFY:
            # Not for sparse files: faulting a tmpfs hole through a mapping allocates it.
            return self._hash_mapped(dfd, size)
        mv = self.mv
        if size <= BUF_SIZE:
            n = os.preadv(dfd, [mv], 0)
            return xxhash.xxh3_128_hexdigest(mv[:n])
        h = xxhash.xxh3_128()
        off = 0
        while True:
            n = os.preadv(dfd, [mv], off)
            if n == 0:
                break
            h.update(mv[:n])
            off += n
            if off % STOP_CHECK_BYTES < BUF_SIZE and self.should_stop and self.should_stop():
                raise CancelledError("copy stopped on request")
        return h.hexdigest()

    def _hash_mapped(self, fd: int, size: int) -> str:
        h = xxhash.xxh3_128()
        real = os.fstat(fd).st_size
        for off in range(0, real, MMAP_WINDOW):
            with _mapped(fd, off, min(MMAP_WINDOW, real - off)) as view:
                h.update(view)
            if self.should_stop is not None and self.should_stop():
                raise CancelledError("copy stopped on request")
        return h.hexdigest()

    # -- everything that is not a regular file ----------------------------------------
    def make_dir(self, row: FileRow) -> None:
        path = self.dst(row.path)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                return
            os.unlink(path)
            os.mkdir(path, 0o700)
        except FileNotFoundError:
            os.makedirs(path, 0o700, exist_ok=True)

    def make_symlink(self, row: FileRow) -> None:
        path = self.dst(row.path)
        target = row.link_target or b""
        _retry_create(path, lambda: os.symlink(target, path))
        set_owner(path, row.uid, row.gid, self.lost, False)
        os.utime(path, ns=(row.mtime_ns, row.mtime_ns), follow_symlinks=False)

    def make_special(self, row: FileRow) -> str | None:
        """Recreate a FIFO, socket or device node; returns why it was skipped, if it was."""
        path = self.dst(row.path)
        fmt = stat.S_IFMT(row.mode)
        try:
            if fmt == stat.S_IFIFO:
                _retry_create(path, lambda: os.mkfifo(path, 0o600))
            else:
                _retry_create(path, lambda: os.mknod(path, fmt | 0o600, row.rdev))
        except OSError as exc:
            return f"cannot recreate {_kind_name(fmt)}: {exc.strerror}"
        set_owner(path, row.uid, row.gid, self.lost, False)
        with contextlib.suppress(OSError):
            copy_xattrs(self.src(row.path), path, self.lost)
        os.chmod(path, stat.S_IMODE(row.mode), follow_symlinks=True)
        os.utime(path, ns=(row.mtime_ns, row.mtime_ns), follow_symlinks=False)
        return None


def _kind_name(fmt: int) -> str:
    return {
        stat.S_IFIFO: "FIFO",
        stat.S_IFSOCK: "socket",
        stat.S_IFCHR: "character device",
        stat.S_IFBLK: "block device",
    }.get(fmt, "special file")
