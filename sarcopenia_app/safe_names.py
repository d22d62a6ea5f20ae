"""Image ids, label tags and upload file names become file names in the datastore: refuse any
that could point outside it (path traversal) before anything is read or written."""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 255  # the longest file name most file systems take
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeNameError(ValueError):
    """The name could address a file outside the datastore; the message says what to send."""


def check_safe_name(value: str, what: str) -> str:
    """``value`` if it is one plain file-name component; UnsafeNameError otherwise."""
    problem = None
    if not value or value.strip() in (".", ".."):
        problem = "is empty or a relative folder"
    elif "/" in value or "\\" in value:
        problem = "contains a path separator"
    elif _CONTROL.search(value):
        problem = "contains control characters"
    elif len(value) > MAX_NAME_LENGTH:
        problem = f"is longer than {MAX_NAME_LENGTH} characters"
    elif value.startswith(".."):
        problem = "starts with '..'"
    if problem:
        raise UnsafeNameError(f"{what} {value[:80]!r} {problem}: use the plain id the datastore lists "
                              "(GET /datastore/?output=all), without folders")
    return value


def check_upload_file_name(value: str, what: str = "file name") -> str:
    """The plain name of an uploaded file. Clients send their local path as the multipart file
    name (MONAI Label's own client, hence 3D Slicer, does: ``/tmp/tmpab12.nrrd``, ``C:\\...``);
    only the last component is used, and only for its suffix. A '..' component is a traversal
    attempt and is refused."""
    parts = re.split(r"[\\/]", value or "")
    if any(part.strip() == ".." for part in parts):
        raise UnsafeNameError(f"{what} {value[:80]!r} contains a '..' path component: "
                              "send the file under its plain name")
    return check_safe_name(parts[-1], what)
