"""What the artifact store raises: a refused read or write, and a folder another writer published first."""

from __future__ import annotations

from sdxl_workloads.protocol import WorkloadError


class AlreadyPublished(WorkloadError):
    """Another writer published this folder first (two compiles of one key, two trainers on one
    output); the folder at the destination is theirs, whole. The caller decides whether to reuse it."""

    def __init__(self, uri: str) -> None:
        super().__init__("StorageError", f"{uri}: already published by another writer while this one was "
                                         "publishing; its copy is whole and was kept, this one was dropped")
        self.uri = uri


def storage_error(uri: str, action: str, err: BaseException) -> WorkloadError:
    return WorkloadError("StorageError", f"{uri}: could not {action} ({type(err).__name__}: {err})")
