"""Write a file or folder so that it appears at its destination whole or not at all.

The one way the workloads put a result in place on a filesystem (published artifacts, checkpoints,
the cache of S3 downloads and of the embedded model and photos, a LoRA rewritten in place, generated
class images): write under a temp name beside the destination, flush it to disk, then rename it
onto the destination in one step. A reader (another pod, a resumed run) never sees half a file, and a
crash or a preempted node leaves only a hidden temp entry, removed on failure.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

# rename(2) of a folder onto a non-empty folder fails with one of these (Linux says ENOTEMPTY, others
# EEXIST); ENOTDIR when a file sits where the folder would go.
_TAKEN = (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)


def write_then_rename(dest: Path, write: Callable[[Path], object], *, folder: bool) -> Path:
    """Run ``write(temp)`` on a temp path beside ``dest``, flush it, and rename it to ``dest``.

    A file replaces whatever file was at ``dest``. A folder takes the place of an absent or empty
    folder only: when another writer's non-empty folder is there already (its rename won),
    ``FileExistsError`` is raised and that folder is kept whole, since rename(2) never merges folders.
    The temp path is removed whenever ``dest`` does not end up holding it.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        temp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        temp = Path(name)
    try:
        write(temp)
        fsync_tree(temp) if folder else fsync_file(temp)
        try:
            (os.rename if folder else os.replace)(temp, dest)
        except OSError as err:
            if folder and err.errno in _TAKEN:
                raise FileExistsError(errno.EEXIST, "already written by another writer", str(dest)) from err
            raise
        fsync_dir(dest.parent)  # the rename itself survives a crash
    except BaseException:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        raise
    return dest


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk, so a rename never publishes a folder whose
    files a node crash could still leave empty."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            fsync_file(path)
    for path in [*sorted(p for p in folder.rglob("*") if p.is_dir()), folder]:
        fsync_dir(path)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries; some filesystems (FUSE mounts) refuse fsync on folders, which only
    loses the durability they could not give anyway."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def cached_folder(target: Path, write: Callable[[Path], object], is_complete: Callable[[Path], bool]) -> Path:
    """``target``, written by ``write(folder)`` first unless ``is_complete(target)`` already.

    Concurrent callers are safe: each writes its own temp folder; the first rename wins and the
    others drop their copy and use the winner's.
    """
    if is_complete(target):
        return target
    try:
        write_then_rename(target, write, folder=True)
    except FileExistsError:
        if not is_complete(target):
            raise
    return target
