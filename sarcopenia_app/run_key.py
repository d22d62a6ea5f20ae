"""What makes a case's result reusable: the input's content, the models' content, the options and
the version of the measuring rules.

A cohort rerun compares this key with the one stored in the case's measurements.json and skips
the case only when they are equal, so a changed scan, a retrained model, a different cut-off set
or an upgrade whose rules measure differently is measured again (a cohort table never mixes
results of two rule versions), while a rename of the output folder or a restart is not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from .dicom_io import dicom_files

CHUNK_BYTES = 1 << 20
# change with every code change that alters a measured number or a record's fields (2026-12-07:
# levels counted as vertebral bodies, docs/cohorts.md; 2026-12-08: the metal_suspected flag); a
# rerun then measures every case again
RULES_VERSION = "2026-12-08"


def input_sha256(path: Path) -> str:
    """Content hash of a volume file, or of every file of a DICOM folder (with its relative name,
    so that two slices swapping content count as a change)."""
    digest = hashlib.sha256()
    root = path if path.is_dir() else path.parent
    for file in dicom_files(path):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
                digest.update(chunk)
    return digest.hexdigest()


def run_key(input_digest: str, model_names: Mapping[str, str], settings: Mapping[str, Any]) -> str:
    """One hex string for (input content, model files, every option that changes a result, the
    measuring rules' version)."""
    text = json.dumps({"input": input_digest, "models": dict(model_names), "settings": dict(settings),
                       "rules": RULES_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
