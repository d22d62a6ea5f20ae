"""A real Orthanc (the project's apps/orthanc/orthanc.json) for tests, on a free port and a
temporary database, plus the PACS contents the tests need that our generator does not make:
a JPEG 2000 series, instances without UIDs, a series of mixed sizes, a SEG with no reference.
"""

import copy
import json
import shutil
import subprocess
import time
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Iterator, List

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset
from servers import REPO, direct_http, free_port

ORTHANC_CONFIG = REPO / "apps" / "orthanc" / "orthanc.json"
START_TIMEOUT_S = 30.0
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


class Orthanc:
    def __init__(self, url: str, process: subprocess.Popen, log: Path):
        self.url, self.process, self.log = url, process, log
        self.dicomweb = f"{url}/dicom-web"
        self.http = direct_http()

    def alive(self) -> bool:
        return self.process.poll() is None

    def series_ids(self) -> List[str]:
        """Orthanc's own ids (not UIDs) of its series."""
        return self.http.get(f"{self.url}/series").json()

    def series_uid_of(self, orthanc_id: str) -> str:
        return self.http.get(f"{self.url}/series/{orthanc_id}").json()["MainDicomTags"]["SeriesInstanceUID"]

    def store(self, dataset: Dataset) -> requests.Response:
        """Orthanc's REST upload: answers 400 where STOW-RS would hide the reason."""
        buffer = BytesIO()
        dataset.save_as(buffer, write_like_original=False)
        return self.http.post(f"{self.url}/instances", data=buffer.getvalue())

    def transcoded_copy(self, series_uid: str, transfer_syntax: str = JPEG2000_LOSSLESS) -> str:
        """A copy of the study of ``series_uid`` (new UIDs, a study of its own, so a viewer
        opens just this series) with the pixels compressed; Orthanc's GDCM plugin encodes
        JPEG 2000. Returns the copy's SeriesInstanceUID."""
        orthanc_id = next(i for i in self.series_ids() if self.series_uid_of(i) == series_uid)
        study_id = self.http.get(f"{self.url}/series/{orthanc_id}").json()["ParentStudy"]
        answer = self.http.post(f"{self.url}/studies/{study_id}/modify",
                                json={"Transcode": transfer_syntax, "Force": True})
        answer.raise_for_status()
        copy_series = self.http.get(f"{self.url}/studies/{answer.json()['ID']}").json()["Series"]
        return self.series_uid_of(copy_series[0])


def orthanc_binary() -> str:
    binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")
    if not binary:
        pytest.skip("Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb orthanc-gdcm; "
                    ".ci/run installs it when run as root)")
    for plugin in json.loads(ORTHANC_CONFIG.read_text())["Plugins"]:
        if not Path(plugin).exists():
            pytest.skip(f"Orthanc plugin {plugin} is missing (apt-get install orthanc-dicomweb orthanc-gdcm)")
    return binary


@contextmanager
def running_orthanc(tmp: Path) -> Iterator[Orthanc]:
    """The project's configuration with only the port and the database moved."""
    config = json.loads(ORTHANC_CONFIG.read_text())
    config.update(HttpPort=free_port(), StorageDirectory=str(tmp / "storage"), IndexDirectory=str(tmp / "index"))
    config_path = tmp / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = tmp / "orthanc.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen([orthanc_binary(), str(config_path)], stdout=log_file, stderr=subprocess.STDOUT)
    orthanc = Orthanc(f"http://127.0.0.1:{config['HttpPort']}", process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not orthanc.alive():
                pytest.fail(f"Orthanc exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if orthanc.http.get(f"{orthanc.dicomweb}/studies", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc not answering after {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield orthanc
    finally:
        process.terminate()
        process.wait(timeout=30)


def without(dataset: Dataset, keyword: str) -> Dataset:
    broken = copy.deepcopy(dataset)
    delattr(broken, keyword)
    return broken


def resized(dataset: Dataset, rows: int, columns: int, instance_uid: str) -> Dataset:
    """The slice cropped to rows x columns under a new SOPInstanceUID: a series whose
    slices differ in size is not one volume."""
    other = copy.deepcopy(dataset)
    pixels = dataset.pixel_array[:rows, :columns].copy()
    other.Rows, other.Columns = rows, columns
    other.PixelData = pixels.tobytes()
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = instance_uid
    return other


def read_series(folder: Path) -> List[Dataset]:
    return [pydicom.dcmread(str(path)) for path in sorted(folder.glob("*.dcm"))]
