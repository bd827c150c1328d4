"""Artifact URIs: where models and photos come from and where results go.

Four kinds of reference, one meaning everywhere (DESIGN.md, "Artifact store"):
- a local path (or `file://` URI);
- `pvc://claim/path`: a PersistentVolumeClaim the operator mounts at `$SDXL_PVC_ROOT/<claim>`
  (default /mnt/pvc), so it is a local path inside the pod;
- `s3://bucket/prefix` through fsspec/s3fs, credentials from the standard AWS chain (IRSA in a
  cluster) and the endpoint from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (MinIO, moto);
- `builtin:` references to the embedded model and photos (tiny_model.py, sample_images.py).

Outputs are staged in a local folder and published file by file; every published file appears at
its destination whole or not at all (temp name + rename locally; S3 objects are atomic), so a
preempted run never leaves a truncated LoRA or checkpoint behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sdxl_contract.compiled_artifacts import COMPLETE_MARKER
from sdxl_contract.uris import PVC_SCHEME, S3_SCHEME, scheme_of
from sdxl_contract.workload_protocol import PVC_ROOT, PVC_ROOT_ENV
from sdxl_workloads.protocol import WorkloadError

# `builtin:` model references -> (size, seed) of the embedded pipeline.
BUILTIN_MODELS = {"builtin:tiny": ("tiny", 0), "builtin:tiny-mid": ("mid", 0)}
# Pretrained and shipped in the package (builtin/world_pretraining.py), not built from a seed.
WORLD_MODEL = "builtin:world"
BUILTIN_INPUTS = ("builtin:sample-subject", "builtin:world-subject")


# A Hugging Face repo id: "name" or "org/name" (letters, digits, '-', '_', '.').
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# --------------------------------------------------------------------------------------------
# Parsing


def pvc_root() -> Path:
    return Path(os.environ.get(PVC_ROOT_ENV, PVC_ROOT))


def pvc_path(uri: str) -> Path:
    """`pvc://claim/some/path` -> `$SDXL_PVC_ROOT/claim/some/path`, refusing an unmounted claim."""
    rest = uri[len(PVC_SCHEME):].strip("/")
    claim, _, inner = rest.partition("/")
    if not claim or ".." in Path(rest).parts:
        raise WorkloadError("InvalidInput", f"{uri}: not a valid pvc:// URI; write pvc://<claim>/<path>")
    mount = pvc_root() / claim
    if not mount.is_dir():
        raise WorkloadError(
            "InvalidInput",
            f"{uri}: the volume claim {claim!r} is not mounted (expected at {mount}); "
            "check the claim name, or set SDXL_PVC_ROOT to where claims are mounted",
        )
    return mount / inner if inner else mount


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


def _join_inside(folder: Path, relpath: str, what: str) -> Path:
    """`folder / relpath`, once `relpath` is known to stay inside `folder`."""
    rel = safe_relpath(relpath, what)
    return folder / rel if rel else folder


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/key/prefix` -> ('bucket', 'key/prefix'), the key normalised (see safe_relpath)."""
    rest = uri[len(S3_SCHEME):]
    bucket, _, key = rest.partition("/")
    if not bucket or bucket in (".", ".."):
        raise WorkloadError("InvalidInput", f"{uri}: not a valid s3:// URI; write s3://<bucket>/<prefix>")
    return bucket, safe_relpath(key.lstrip("/"), uri)


def s3_filesystem() -> Any:
    """An s3fs filesystem honouring AWS_ENDPOINT_URL(_S3) (S3-compatible stores, moto in tests).

    A fresh instance each time: fsspec's instance cache would keep an old endpoint or listing.
    """
    import fsspec

    options: dict[str, Any] = {"skip_instance_cache": True}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return fsspec.filesystem("s3", **options)


class AlreadyPublished(WorkloadError):
    """Another writer published this folder first (two compiles of one key, two trainers on one
    output); the folder at the destination is theirs, whole. The caller decides whether to reuse it."""

    def __init__(self, uri: str) -> None:
        super().__init__("StorageError", f"{uri}: already published by another writer while this one was "
                                         "publishing; its copy is whole and was kept, this one was dropped")
        self.uri = uri


def _storage_error(uri: str, action: str, err: BaseException) -> WorkloadError:
    return WorkloadError("StorageError", f"{uri}: could not {action} ({type(err).__name__}: {err})")


# --------------------------------------------------------------------------------------------
# Inputs


def cache_root() -> Path:
    from sdxl_workloads.tiny_model import cache_root as root

    return root()


def resolve_model(ref: str) -> str:
    """What `from_pretrained` should load for `spec.baseModel` (or `spec.vae`).

    builtin:tiny / builtin:tiny-mid -> the embedded pipeline's folder; s3:// -> downloaded to the
    cache; pvc:// -> the mounted folder; an existing local folder -> itself; a Hugging Face repo id
    -> unchanged (the library downloads it).
    """
    ref = ref.strip()
    kind = scheme_of(ref)
    if kind == "builtin":
        if ref == WORLD_MODEL:
            from sdxl_workloads.builtin.world_pretraining import WORLD_MODEL_DIR

            return str(WORLD_MODEL_DIR)
        if ref not in BUILTIN_MODELS:
            raise WorkloadError(
                "InvalidInput",
                f"unknown built-in model {ref!r}; choose one of {', '.join([*BUILTIN_MODELS, WORLD_MODEL])}",
            )
        from sdxl_workloads.tiny_model import ensure_tiny_model

        size, seed = BUILTIN_MODELS[ref]
        return str(ensure_tiny_model(size, seed=seed))
    if kind in ("s3", "pvc"):
        return str(local_input(ref))
    path = local_path(ref)
    if path.exists():
        return str(path)
    if _HF_ID.match(ref) and not ref.startswith((".", "~")):
        return ref
    raise WorkloadError(
        "InvalidInput",
        f"model {ref!r} not found: it is neither an existing local folder nor a Hugging Face repo id "
        "(org/name); use builtin:tiny, a pvc:// or s3:// URI, or a folder in diffusers layout",
    )


def local_input(uri: str) -> Path:
    """A local file or folder holding the input named by `uri` (s3 is downloaded to the cache)."""
    uri = uri.strip()
    kind = scheme_of(uri)
    if kind == "builtin":
        if uri not in BUILTIN_INPUTS:
            raise WorkloadError("InvalidInput",
                                f"unknown built-in input {uri!r}; choose one of {', '.join(BUILTIN_INPUTS)}")
        if uri == "builtin:world-subject":
            from sdxl_workloads.builtin.world_subject import ensure_world_subject_images

            return ensure_world_subject_images()
        from sdxl_workloads.sample_images import ensure_sample_images

        return ensure_sample_images()
    if kind == "s3":
        return _download_s3(uri)
    path = pvc_path(uri) if kind == "pvc" else local_path(uri)
    if not path.exists():
        raise WorkloadError("InvalidInput", f"{uri}: no such file or folder ({path})")
    return path


def _download_s3(uri: str) -> Path:
    """Mirror an S3 object or prefix into `$SDXL_CACHE_DIR/s3/…`, reusing the copy while every
    object's size and ETag are unchanged (a base model is gigabytes; a re-run should not refetch)."""
    bucket, key = split_s3(uri)
    fs = s3_filesystem()
    remote = f"{bucket}/{key}".rstrip("/")
    try:
        if fs.isfile(remote):
            listing = {"": fs.info(remote)}
        else:
            found = fs.find(remote, detail=True)
            listing = {name[len(remote) + 1:]: info for name, info in found.items() if info["type"] == "file"}
    except FileNotFoundError:
        listing = {}
    except Exception as err:
        raise _storage_error(uri, "list the objects", err) from err
    # Every listed key must land inside the cache folder: refuse the whole input otherwise.
    listing = {safe_relpath(name, f"{uri}: object {name!r}") if name else "": info for name, info in listing.items()}
    if not listing:
        raise WorkloadError("InvalidInput", f"{uri}: no such object or prefix (or no permission to list it)")
    manifest = {name: [info.get("size"), str(info.get("ETag", ""))] for name, info in sorted(listing.items())}
    digest = hashlib.sha256(f"s3://{remote}".encode()).hexdigest()[:16]
    name = Path(key).name or bucket
    target = cache_root() / "s3" / f"{name}-{digest}"
    manifest_file = target.parent / f"{target.name}.manifest.json"

    def cached() -> bool:
        return target.exists() and manifest_file.is_file() and json.loads(manifest_file.read_text()) == manifest

    if cached():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for rel, info in listing.items():
            source = info.get("name") or (f"{remote}/{rel}" if rel else remote)
            dest = _join_inside(staging / "object", rel, uri)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(source, str(dest))
        if cached():
            # Another process (e.g. another GPU's rank) finished the same download first.
            return target
        if target.exists():
            # A stale copy: move it aside (one rename) rather than delete it in place.
            with contextlib.suppress(FileNotFoundError):  # another process moved it aside first
                os.rename(target, staging / "stale")
        try:
            os.rename(staging / "object", target)
        except OSError as err:
            # Another process renamed its own copy into place between our check and our rename; its
            # manifest follows at once. Use that copy rather than fail.
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                raise
            deadline = time.monotonic() + 30
            while not cached():
                if time.monotonic() > deadline:
                    raise WorkloadError("StorageError", f"{uri}: another process is writing the cached copy "
                                                        f"at {target} and has not finished; retry") from err
                time.sleep(0.1)
            return target
        (staging / "manifest.json").write_text(json.dumps(manifest))
        os.replace(staging / "manifest.json", manifest_file)  # readers never see half a manifest
    except WorkloadError:
        raise
    except Exception as err:
        raise _storage_error(uri, "download it", err) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------
# Outputs


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
        _check_s3_writable(uri)
        return
    path = pvc_path(uri) if kind == "pvc" else local_path(uri)
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


def _check_s3_writable(uri: str) -> None:
    bucket, key = split_s3(uri)
    fs = s3_filesystem()
    probe = f"{bucket}/{key}/.sdxl-write-probe-{os.getpid()}".replace("//", "/")
    try:
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except FileNotFoundError as err:
        raise WorkloadError(
            "InvalidInput", f"output {uri}: bucket {bucket!r} does not exist; create it or choose another output"
        ) from err
    except PermissionError as err:
        raise WorkloadError(
            "InvalidInput", f"output {uri}: no permission to write to bucket {bucket!r} ({err}); "
            "grant s3:PutObject and s3:DeleteObject to the workload's service account or choose another output"
        ) from err
    except Exception as err:
        raise _storage_error(uri, "write a test object", err) from err


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
            self._bucket, self._key = split_s3(self.uri)
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
        fs = s3_filesystem()
        try:
            return bool(fs.exists(self._remote(relpath)))
        except Exception as err:
            raise _storage_error(self.uri_of(relpath), "check it", err) from err

    def listdir(self, relpath: str = "") -> list[str]:
        """Names directly under `relpath` at the destination (sorted; [] if absent)."""
        relpath = self._rel(relpath)
        if self._dest is not None:
            folder = self._dest / relpath
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        fs = s3_filesystem()
        try:
            return sorted(Path(entry).name for entry in fs.ls(self._remote(relpath), detail=False))
        except FileNotFoundError:
            return []
        except Exception as err:
            raise _storage_error(self.uri_of(relpath), "list it", err) from err

    def read_bytes(self, relpath: str) -> bytes:
        """The content of a published file, read without staging a copy (small files: records,
        markers). InvalidInput when it is not there."""
        relpath = self._rel(relpath)
        if self._dest is not None:
            try:
                return (self._dest / relpath).read_bytes()
            except (FileNotFoundError, IsADirectoryError) as err:
                raise WorkloadError("InvalidInput", f"{self.uri_of(relpath)}: no such file") from err
        fs = s3_filesystem()
        try:
            return bytes(fs.cat_file(self._remote(relpath)))
        except FileNotFoundError as err:
            raise WorkloadError("InvalidInput", f"{self.uri_of(relpath)}: no such object") from err
        except Exception as err:
            raise _storage_error(self.uri_of(relpath), "read it", err) from err

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
        fs = s3_filesystem()
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
            planned = [(name, _join_inside(target, name[len(remote) + 1:],
                                           f"{self.uri_of(relpath)}: object {name!r}")) for name in found]
            for name, dest in planned:
                dest.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(name, str(dest))
        except WorkloadError:
            raise
        except Exception as err:
            raise _storage_error(self.uri_of(relpath), "download it", err) from err
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
                fs = s3_filesystem()
                for path, rel in zip(files, rels, strict=True):
                    fs.put_file(str(path), self._remote(rel))
            elif relpath and source.is_dir() and not (self._dest / relpath).exists():
                _copy_folder_atomically(source, self._dest / relpath)
            else:
                for path, rel in zip(files, rels, strict=True):
                    _copy_file_atomically(path, self._dest / rel)
        except OSError as err:
            raise _storage_error(self.uri_of(relpath), "publish it", err) from err
        except Exception as err:
            if isinstance(err, WorkloadError):
                raise
            raise _storage_error(self.uri_of(relpath), "upload it", err) from err
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
                raise _storage_error(self.uri_of(relpath), "delete it", err) from err
            return
        fs = s3_filesystem()
        try:
            if fs.exists(self._remote(relpath)):
                fs.rm(self._remote(relpath), recursive=True)
        except Exception as err:
            raise _storage_error(self.uri_of(relpath), "delete it", err) from err

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


def _copy_file_atomically(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under `folder` to disk, so a rename never publishes a folder whose
    files a node crash could still leave empty."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [*sorted(p for p in folder.rglob("*") if p.is_dir()), folder]:
        _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
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


def _copy_folder_atomically(source: Path, dest: Path) -> None:
    """Copy under a temp name, flush, and rename onto `dest` (which must not exist).

    When `dest` appears meanwhile (another writer's rename won), raises AlreadyPublished and keeps
    the winner's folder: rename(2) of a folder never merges into or replaces a non-empty one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        _fsync_tree(tmp)
        if dest.exists():
            raise AlreadyPublished(str(dest))
        try:
            os.rename(tmp, dest)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise AlreadyPublished(str(dest)) from err
            raise
        _fsync_dir(dest.parent)  # the rename itself survives a crash
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
