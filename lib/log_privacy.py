"""Server logs carry no patient identifiers.

MONAI Label logs image ids (file names, which sites often build from patient names or record
numbers, or DICOM UIDs) in its own messages, and uvicorn logs every URL with its query string
(``?image=<id>``). A filter on every log handler replaces each id the datastore knows, every
DICOM UID and every query string with a short pseudonym (the same id always gets the same one,
so a log can still be followed) before anything is written.
"""

import hashlib
import logging
import os
import re
import threading
import time
from typing import Callable, Iterable, List, Optional, Pattern, Set

DICOM_UID = re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?![\w.])")
QUERY = re.compile(r"\?[^\s\"']*")


def pseudonym(value: str, kind: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:8]}"


class RedactIdentifiers(logging.Filter):
    """``known_ids()``: the datastore's image ids now (asked again when their number changes)."""

    def __init__(self, known_ids: Callable[[], Iterable[str]], refresh_s: float = 2.0):
        super().__init__()
        self.known_ids = known_ids
        self.refresh_s = refresh_s
        self._pattern: Optional[Pattern] = None
        self._ids: Set[str] = set()
        self._asked_at = -float("inf")
        self._asking = threading.Lock()  # a datastore that logs while listing must not recurse here

    def _ids_pattern(self) -> Optional[Pattern]:
        if time.monotonic() - self._asked_at < self.refresh_s or not self._asking.acquire(blocking=False):
            return self._pattern
        try:
            ids = {str(i) for i in self.known_ids()}
        except Exception:  # noqa: BLE001 - a datastore that cannot list keeps the previous list
            ids = self._ids
        finally:
            self._asked_at = time.monotonic()
            self._asking.release()
        if ids != self._ids:
            self._ids = ids
            longest_first: List[str] = sorted((i for i in ids if len(i) >= 3), key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(i) for i in longest_first)) if longest_first else None
        return self._pattern

    def redact(self, text: str) -> str:
        text = QUERY.sub("?<query>", text)
        pattern = self._ids_pattern()
        if pattern is not None:
            text = pattern.sub(lambda m: pseudonym(m.group(0), "image"), text)
        return DICOM_UID.sub(lambda m: pseudonym(m.group(0), "uid"), text)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            # its formatter unpacks (client, method, path, version, status): redact the path only
            client, method, path, version, status = record.args
            record.args = (client, method, self.redact(str(path)), version, status)
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def ids_in_folder(studies: str, datastore: Callable[[], Iterable[str]]) -> Callable[[], Iterable[str]]:
    """Image ids from the datastore once it exists, and from the folder's file names before
    (the datastore logs each file it finds while it is being built)."""
    def known() -> Iterable[str]:
        ids = set(datastore())
        if os.path.isdir(studies):
            ids.update(name.split(".")[0] for name in os.listdir(studies))
        return ids

    return known


def install(known_ids: Callable[[], Iterable[str]]) -> RedactIdentifiers:
    """On every handler the server logs through (root, uvicorn's), so nothing bypasses it."""
    redacting = RedactIdentifiers(known_ids)
    for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(redacting)
    return redacting
