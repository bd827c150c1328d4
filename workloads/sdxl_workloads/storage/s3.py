"""The `s3://bucket/prefix` backend, through fsspec/s3fs.

Credentials come from the standard AWS chain (IRSA in a cluster) and the endpoint from
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (MinIO, moto). An S3 object is written whole or not at all
by the store itself; what is read is mirrored into the local cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from sdxl_contract.uris import S3_SCHEME
from sdxl_workloads.protocol import WorkloadError
from sdxl_workloads.storage.atomic_write import write_then_rename
from sdxl_workloads.storage.cache_dir import cache_root
from sdxl_workloads.storage.errors import storage_error
from sdxl_workloads.storage.local import join_inside, safe_relpath

# How long a reader waits for another process's download of the same prefix to finish.
CONCURRENT_DOWNLOAD_WAIT_SECONDS = 30


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


class _CachedMeanwhile(Exception):
    """Another process (e.g. another GPU's rank) finished the same download first."""


def download_s3(uri: str) -> Path:
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
        raise storage_error(uri, "list the objects", err) from err
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

    single = "" in listing  # one object is cached as a file, a prefix as a folder

    def download_into(temp: Path) -> None:
        for rel, info in listing.items():
            source = info.get("name") or (f"{remote}/{rel}" if rel else remote)
            dest = join_inside(temp, rel, uri)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(source, str(dest))
        if cached():
            raise _CachedMeanwhile
        if not single and target.exists():
            # A stale folder: move it aside (one rename) rather than delete it in place, so the new
            # one can take its name.
            doomed = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
            with contextlib.suppress(FileNotFoundError):  # another process moved it aside first
                os.rename(target, doomed)
                shutil.rmtree(doomed, ignore_errors=True)

    if cached():
        return target
    try:
        write_then_rename(target, download_into, folder=not single)
    except _CachedMeanwhile:
        return target
    except FileExistsError as err:
        # Another process renamed its own copy into place between our check and our rename; its
        # manifest follows at once. Use that copy rather than fail.
        deadline = time.monotonic() + CONCURRENT_DOWNLOAD_WAIT_SECONDS
        while not cached():
            if time.monotonic() > deadline:
                raise WorkloadError("StorageError", f"{uri}: another process is writing the cached copy "
                                                    f"at {target} and has not finished; retry") from err
            time.sleep(0.1)
        return target
    except WorkloadError:
        raise
    except Exception as err:
        raise storage_error(uri, "download it", err) from err
    try:
        # Readers never see half a manifest.
        write_then_rename(manifest_file, lambda temp: temp.write_text(json.dumps(manifest)), folder=False)
    except OSError as err:
        raise storage_error(uri, "download it", err) from err
    return target


def check_s3_writable(uri: str) -> None:
    """Fail now if objects could not be written under `uri`: write and remove a probe object."""
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
        raise storage_error(uri, "write a test object", err) from err
