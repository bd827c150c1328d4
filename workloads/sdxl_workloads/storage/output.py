"""Where a run's results go: staged in a local folder, then published to the destination URI.

Every published file appears at its destination whole or not at all (temp name + rename locally;
S3 objects are atomic), so a preempted run never leaves a truncated LoRA or checkpoint behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from sdxl_contract.compiled_artifacts import COMPLETE_MARKER
from sdxl_contract.uris import scheme_of
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.storage import local, s3
from sdxl_workloads.storage.errors import AlreadyPublished, storage_error
from sdxl_workloads.storage.local import join_inside, local_path, safe_relpath
from sdxl_workloads.storage.pvc import pvc_path


def check_writable(uri: str) -> None:
    """Fail now, before any training, if results could not be written to `uri`.

    Writes and removes a probe file (object) at the destination and leaves nothing behind; a
    local destination folder that does not exist yet is not created, only its nearest existing
    parent is probed.
    """
    uri = uri.strip()
    kind = scheme_of(uri)
    if kind == "builtin":
        raise WorkloadError("InvalidInput", f"{uri}: built-in references are read-only; choose a path or URI")
    if kind == "s3":
        s3.check_s3_writable(uri)
        return
    local.check_local_writable(uri, pvc_path(uri) if kind == "pvc" else local_path(uri))


class Output:
    """A destination for a run's artifacts, written through a local staging folder.

    Write files under `local_dir`, then `publish()` (everything) or `publish("checkpoints/x")`
    (one file or folder) to copy them to the destination. Publishing is atomic per file;
    within a folder, a file named COMPLETE is published last, so a reader seeing it may trust the
    folder. For local/pvc destinations a folder that is not at the destination yet is copied
    under a temp name and renamed, so it appears all at once.
    """

    def __init__(self, uri: str, staging_root: str | os.PathLike[str] | None = None) -> None:
        self.uri = uri.strip().rstrip("/")
        self.kind = scheme_of(self.uri)
        if self.kind == "builtin":
            raise WorkloadError("InvalidInput", f"{uri}: built-in references are read-only; choose a path or URI")
        if self.kind == "s3":
            self._bucket, self._key = s3.split_s3(self.uri)
            self.uri = f"s3://{self._bucket}/{self._key}".rstrip("/")  # the URIs reported are the keys written
            self._dest: Path | None = None
        else:
            self._dest = pvc_path(self.uri) if self.kind == "pvc" else local_path(self.uri)
        self.local_dir = Path(tempfile.mkdtemp(prefix="sdxl-output-", dir=staging_root))

    # -- addressing --------------------------------------------------------------------------

    def _rel(self, relpath: str) -> str:
        """`relpath` normalised; refused if it would leave the output's folder."""
        return safe_relpath(relpath, f"{self.uri}: path")

    def uri_of(self, relpath: str = "") -> str:
        """The URI a published file will have (what goes into the result's `artifacts`)."""
        relpath = self._rel(relpath)
        if self.kind == "local":
            assert self._dest is not None
            return str(self._dest / relpath) if relpath else str(self._dest)
        return f"{self.uri}/{relpath}" if relpath else self.uri

    def _remote(self, relpath: str) -> str:
        return "/".join(part for part in (self._bucket, self._key, self._rel(relpath)) if part)

    # -- reading the destination (resume) -----------------------------------------------------

    def exists(self, relpath: str) -> bool:
        """Whether `relpath` (file or folder) is already published at the destination."""
        relpath = self._rel(relpath)
        if self._dest is not None:
            return (self._dest / relpath).exists()
        fs = s3.s3_filesystem()
        try:
            return bool(fs.exists(self._remote(relpath)))
        except Exception as err:
            raise storage_error(self.uri_of(relpath), "check it", err) from err

    def listdir(self, relpath: str = "") -> list[str]:
        """Names directly under `relpath` at the destination (sorted; [] if absent)."""
        relpath = self._rel(relpath)
        if self._dest is not None:
            folder = self._dest / relpath
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        fs = s3.s3_filesystem()
        try:
            return sorted(Path(entry).name for entry in fs.ls(self._remote(relpath), detail=False))
        except FileNotFoundError:
            return []
        except Exception as err:
            raise storage_error(self.uri_of(relpath), "list it", err) from err

    def read_bytes(self, relpath: str) -> bytes:
        """The content of a published file, read without staging a copy (small files: records,
        markers). InvalidInput when it is not there."""
        relpath = self._rel(relpath)
        if self._dest is not None:
            try:
                return (self._dest / relpath).read_bytes()
            except (FileNotFoundError, IsADirectoryError) as err:
                raise WorkloadError("InvalidInput", f"{self.uri_of(relpath)}: no such file") from err
        fs = s3.s3_filesystem()
        try:
            return bytes(fs.cat_file(self._remote(relpath)))
        except FileNotFoundError as err:
            raise WorkloadError("InvalidInput", f"{self.uri_of(relpath)}: no such object") from err
        except Exception as err:
            raise storage_error(self.uri_of(relpath), "read it", err) from err

    def download(self, relpath: str) -> Path:
        """A local copy of a published file or folder, placed at the same relpath in local_dir.

        Every object key under an S3 prefix must stay inside it (no `..`, no absolute remainder):
        a planted key such as `checkpoints/../../../x` is refused, never written outside local_dir.
        """
        relpath = self._rel(relpath)
        target = self.local_dir / relpath
        if self._dest is not None:
            source = self._dest / relpath
            if not source.exists():
                raise WorkloadError("InvalidInput", f"{self.uri_of(relpath)}: no such file or folder")
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
            return target
        fs = s3.s3_filesystem()
        remote = self._remote(relpath)
        try:
            if fs.isfile(remote):
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(target))
                return target
            found = fs.find(remote)
            if not found:
                raise WorkloadError("InvalidInput", f"{self.uri_of(relpath)}: no such object or prefix")
            # Check every key before writing any file, so a refused listing leaves nothing behind.
            planned = [(name, join_inside(target, name[len(remote) + 1:],
                                           f"{self.uri_of(relpath)}: object {name!r}")) for name in found]
            for name, dest in planned:
                dest.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(name, str(dest))
        except WorkloadError:
            raise
        except Exception as err:
            raise storage_error(self.uri_of(relpath), "download it", err) from err
        return target

    # -- writing the destination --------------------------------------------------------------

    def publish(self, relpath: str = "") -> list[str]:
        """Copy staged `relpath` (file or folder; default everything) to the destination.

        Returns the URIs written. Raises StorageError when the destination refuses, and
        AlreadyPublished when a new folder was published under the same name by another writer
        between the check and the rename (local/pvc; the other writer's whole folder is kept).
        """
        relpath = self._rel(relpath)
        source = self.local_dir / relpath if relpath else self.local_dir
        if not source.exists():
            raise FileNotFoundError(f"nothing staged at {source}")
        files = [source] if source.is_file() else _publish_order(source)
        rels = [str(path.relative_to(self.local_dir)) for path in files]
        try:
            if self._dest is None:
                fs = s3.s3_filesystem()
                for path, rel in zip(files, rels, strict=True):
                    fs.put_file(str(path), self._remote(rel))
            elif relpath and source.is_dir() and not (self._dest / relpath).exists():
                try:
                    local.copy_folder_atomically(source, self._dest / relpath)
                except FileExistsError as err:
                    raise AlreadyPublished(str(self._dest / relpath)) from err
            else:
                for path, rel in zip(files, rels, strict=True):
                    local.copy_file_atomically(path, self._dest / rel)
        except OSError as err:
            raise storage_error(self.uri_of(relpath), "publish it", err) from err
        except Exception as err:
            if isinstance(err, WorkloadError):
                raise
            raise storage_error(self.uri_of(relpath), "upload it", err) from err
        return [self.uri_of(rel) for rel in rels]

    def delete(self, relpath: str) -> None:
        """Remove a published file or folder (e.g. a checkpoint superseded by a newer one).

        Another writer deleting the same thing at the same time is not an error: it is gone either way.
        """
        relpath = self._rel(relpath)
        if not relpath:
            raise ValueError("refusing to delete the whole output")
        if self._dest is not None:
            target = self._dest / relpath
            try:
                if target.is_dir():
                    # Rename first so a reader never sees a half-deleted folder under its real name. The
                    # name is unique per call: two pods can share a PID (each its own PID namespace).
                    doomed = target.with_name(f".{target.name}.deleting-{uuid.uuid4().hex}")
                    os.rename(target, doomed)
                    shutil.rmtree(doomed, ignore_errors=True)
                else:
                    target.unlink()
            except FileNotFoundError:
                pass  # already gone: deleted by another writer between our check and our call
            except OSError as err:
                raise storage_error(self.uri_of(relpath), "delete it", err) from err
            return
        fs = s3.s3_filesystem()
        try:
            if fs.exists(self._remote(relpath)):
                fs.rm(self._remote(relpath), recursive=True)
        except Exception as err:
            raise storage_error(self.uri_of(relpath), "delete it", err) from err

    def close(self) -> None:
        """Remove the staging folder (published files stay at the destination)."""
        shutil.rmtree(self.local_dir, ignore_errors=True)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _publish_order(folder: Path) -> list[Path]:
    """Every file under `folder`, sorted, with COMPLETE markers after everything else."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [p for p in files if p.name != COMPLETE_MARKER] + [p for p in files if p.name == COMPLETE_MARKER]
