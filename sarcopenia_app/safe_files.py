"""Writes that a crash or a full disk cannot leave half done.

A reader (the server, a training subprocess, the next start after a kill) sees the old file or
the new one, never a truncated one: data go to a hidden temporary file in the same folder, are
flushed to disk, and replace the target with one ``os.replace`` (atomic on POSIX). JSON files
also keep the previous version as ``<name>.bak`` so that a file damaged by something else (an
older writer, a bad disk, a hand edit) is recovered instead of being read as empty.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Tuple, Union

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
TEMP_SUFFIX = ".tmp"  # never matches a datastore's "*.nii.gz" pattern, so file watchers ignore it
NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class StorageFullError(OSError):
    """The disk (or quota) is full: nothing was written, the previous file is intact."""


def write_atomically(path: PathLike, write: Callable[[BinaryIO], None], mode: int = 0o644) -> None:
    """``write(f)`` into a temporary file beside ``path``, then replace ``path`` with it.

    On any failure the temporary file is removed and ``path`` is untouched; a full disk
    raises StorageFullError with a message for the operator."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private; the server may run as another user
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
            raise StorageFullError(error.errno, f"no space left to write {path.name} in {path.parent}: "
                                                f"nothing was changed; free disk space and try again") from error
        raise


STALE_TEMP_AGE_S = 3600.0  # a live write keeps touching its file; one untouched for an hour was killed


def remove_stale_temp_files(folder: PathLike, older_than_s: float = STALE_TEMP_AGE_S, recursive: bool = True) -> int:
    """Delete what killed writers left: ``write_atomically``'s hidden temporary files not modified
    for ``older_than_s``. Younger ones may belong to a live writer (the server, or a train or
    scoring subprocess writing into the same folders) and are kept. Returns how many went."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now, removed = time.time(), 0
    for path in (folder.rglob if recursive else folder.glob)(f".*{TEMP_SUFFIX}"):
        try:
            if path.is_file() and now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed += 1
                logger.warning(f"removed {path.name}, left in {path.parent} by an interrupted write")
        except FileNotFoundError:  # another process swept it first
            pass
    return removed


def copy_atomically(source: PathLike, destination: PathLike) -> None:
    """Copy ``source`` over ``destination`` so that readers never see a partial copy."""
    with open(source, "rb") as src:
        write_atomically(destination, lambda dst: shutil.copyfileobj(src, dst, 1024 * 1024))


def backup_path(path: PathLike) -> Path:
    return Path(f"{path}.bak")


def write_json_atomically(path: PathLike, data: Any, keep_backup: bool = True) -> None:
    """Write ``data`` as JSON; the version it replaces (if it still parses) becomes ``<path>.bak``."""
    path = Path(path)
    text = json.dumps(data, indent=2, default=str).encode()
    if keep_backup and _parses(path):
        copy_atomically(path, backup_path(path))
    write_atomically(path, lambda f: f.write(text))


def read_json_recovering(path: PathLike) -> Tuple[Optional[Any], Optional[str]]:
    """(data, note). A missing file gives (None, None). A file that does not parse is moved
    aside as ``<path>.corrupt-<time>`` and the backup restored; the note says what happened.
    Raises ValueError when neither the file nor its backup can be read: starting empty would
    silently drop every label's and image's info."""
    path, backup = Path(path), backup_path(path)
    try:
        return json.loads(path.read_bytes()), None
    except FileNotFoundError:
        if not backup.exists():
            return None, None
        damage = "missing"
    except ValueError as error:
        damage = f"corrupt ({error})"
    try:
        data = json.loads(backup.read_bytes())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is {damage} and its backup {backup.name} cannot be read ({error}): "
                         "restore the file from a backup before starting the server") from error
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.corrupt-{int(time.time())}"))
    copy_atomically(backup, path)
    note = f"{path.name} was {damage}: recovered from {backup.name}"
    logger.error(note)
    return data, note


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
        return True
    except (OSError, ValueError):
        return False
