"""Send DICOM files to a PACS over DICOMweb STOW-RS (Orthanc, dcm4chee, a cloud archive).

One request per file, so that a file the PACS refuses (Orthanc refuses instances without
Study/Series/SOP Instance UIDs) is reported by name while the rest of the series goes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

import pydicom
import requests
from dicomweb_client import DICOMwebClient

from .dicom_io import dicom_files


@dataclass
class UploadReport:
    stored: List[Path] = field(default_factory=list)
    refused: List[Tuple[Path, str]] = field(default_factory=list)  # (file, reason)
    not_dicom: List[Path] = field(default_factory=list)  # labels, JSON, thumbnails beside the series


def upload_folder(dicomweb_url: str, folder: Path) -> UploadReport:
    """Every DICOM file under ``folder``; other files are listed as not DICOM and left alone."""
    client = DICOMwebClient(url=dicomweb_url)
    report = UploadReport()
    for path in dicom_files(folder):
        try:
            dataset = pydicom.dcmread(str(path))
        except pydicom.errors.InvalidDicomError:
            report.not_dicom.append(path)
            continue
        try:
            client.store_instances([dataset])
        except requests.HTTPError as error:
            report.refused.append((path, f"PACS answered {error.response.status_code}"))
        else:
            report.stored.append(path)
    return report
