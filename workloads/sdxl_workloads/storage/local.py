"""The local-filesystem backend: plain paths and `file://` URIs (a `pvc://` claim is one once mounted).

Paths inside a folder come from object keys and specs; `safe_relpath` keeps every one of them inside
the folder it is joined to, whichever backend it came from.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.storage.atomic_write import write_then_rename


def local_path(uri: str) -> Path:
    """A local path or `file://` URI as an absolute Path."""
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return Path(uri).expanduser().absolute()


def safe_relpath(relpath: str, what: str) -> str:
    """`relpath` with its `.` and empty segments dropped, refusing anything that leaves its folder.

    Object keys come from the store and paths from specs: an S3 key such as `photos/../../x` or
    `photos//etc/x` is a legal object name, but joined to a local folder it would land outside it.
    `what` names the thing in the error (the URI, the listed key).
    """
    if relpath.startswith("/"):
        raise WorkloadError("InvalidInput", f"{what}: {relpath!r} is an absolute path where a path inside its "
                                            "folder was expected; rename the object or choose another prefix")
    parts = [part for part in relpath.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise WorkloadError("InvalidInput", f"{what}: {relpath!r} leaves its folder ('..'); object keys and paths "
                                            "must stay inside the prefix they were listed under")
    return "/".join(parts)


def join_inside(folder: Path, relpath: str, what: str) -> Path:
    """`folder / relpath`, once `relpath` is known to stay inside `folder`."""
    rel = safe_relpath(relpath, what)
    return folder / rel if rel else folder


def check_local_writable(uri: str, path: Path) -> None:
    """Fail now if `path` (the destination of `uri`) could not be written: probe its nearest existing
    folder with a temp file, leaving nothing behind and creating no folder."""
    if path.exists() and not path.is_dir():
        raise WorkloadError("InvalidInput", f"output {uri}: {path} is a file, not a folder; choose a folder")
    probe_dir = path
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise WorkloadError(
            "InvalidInput", f"output {uri}: cannot create a folder under {probe_dir}, which is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sdxl-write-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise WorkloadError(
            "InvalidInput",
            f"output {uri}: {probe_dir} is not writable ({err.strerror}); "
            "choose another output or fix the folder's permissions",
        ) from err


def copy_file_atomically(source: Path, dest: Path) -> None:
    """Copy `source` onto `dest`, replacing it whole."""
    write_then_rename(dest, lambda temp: shutil.copyfile(source, temp), folder=False)


def copy_folder_atomically(source: Path, dest: Path) -> None:
    """Copy the folder `source` to `dest`, which appears all at once.

    FileExistsError when another writer's folder is at `dest` already; theirs is kept whole.
    """
    if dest.exists():
        raise FileExistsError(str(dest))
    write_then_rename(dest, lambda temp: shutil.copytree(source, temp, dirs_exist_ok=True), folder=True)
