"""Servers shared by several test modules (each starts in seconds, but not for free):
the app on a local folder and the app on a real Orthanc holding well-formed and malformed
DICOM. Both run offline on copies of the app, so training never touches model/."""

from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional

import pytest
import requests
from pydicom.uid import generate_uid
from pacs import Orthanc, read_series, resized, running_orthanc, without
from servers import app_copy, direct_http, offline_env, running_server

from sarcopenia_app.dicomweb_upload import UploadReport, upload_folder
from sarcopenia_app.phantom import write_dataset

# Small cases keep a test run short: 128 x 128 pixels, at most 16 slices.
MATRIX, MAX_SLICES, SEED = 128, 16, 11
MODELS = ("--conf", "models", "muscle_seg,muscle_threshold")
MIXED_SERIES_UID = "1.2.1.1"


class Stack(NamedTuple):
    url: str
    http: requests.Session
    app: Path
    image_ids: List[str]  # well-formed CT series (or files), the ones every test may use
    workdir: Path
    dicomweb: Optional[str] = None  # the PACS behind the datastore, if any


class PacsStack(NamedTuple):
    stack: Stack
    orthanc: Orthanc
    series: Dict[str, str]  # role -> SeriesInstanceUID: "plain", "other", "jpeg2000", "mixed"
    refused: UploadReport  # uploading instances without UIDs
    image_status: Dict[str, int]  # role -> HTTP status of GET /datastore/image at start


def _pacs_contents(orthanc: Orthanc, tmp: Path) -> tuple:
    cases = write_dataset(tmp / "cases", count=3, seed=SEED, fmt="dicom", matrix=MATRIX, max_slices=MAX_SLICES,
                          label_slices="none")
    folders = [tmp / "cases" / case["id"] for case in cases]
    for dataset in read_series(folders[2]):  # the series to be mixed sorts first: "first" would serve it
        dataset.SeriesInstanceUID = MIXED_SERIES_UID
        dataset.save_as(dataset.filename)
    series = {}
    for role, folder in zip(("plain", "other", "mixed"), folders):
        report = upload_folder(orthanc.dicomweb, folder)
        assert report.stored and not report.refused, report
        series[role] = str(read_series(folder)[0].SeriesInstanceUID)
    series["jpeg2000"] = orthanc.transcoded_copy(series["other"])

    first = read_series(folders[2])[0]
    odd_slice = resized(first, MATRIX // 2, MATRIX // 2, generate_uid())
    assert orthanc.store(odd_slice).status_code == 200  # the PACS takes it: the series is now mixed

    broken = tmp / "broken"
    broken.mkdir()
    plain = read_series(folders[0])[0]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        without(plain, keyword).save_as(str(broken / f"no_{keyword}.dcm"))
    refused = upload_folder(orthanc.dicomweb, broken)

    seg_without_reference = without(plain, "PixelData")
    seg_without_reference.Modality = "SEG"
    seg_without_reference.SeriesInstanceUID = generate_uid()
    seg_without_reference.SOPInstanceUID = seg_without_reference.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    assert orthanc.store(seg_without_reference).status_code == 200
    return series, refused


@pytest.fixture(scope="session")
def pacs_stack(tmp_path_factory) -> Iterator[PacsStack]:
    tmp = tmp_path_factory.mktemp("pacs")
    (tmp / "orthanc").mkdir()
    with running_orthanc(tmp / "orthanc") as orthanc:
        series, refused = _pacs_contents(orthanc, tmp)
        env = offline_env(tmp)
        app = app_copy(tmp)
        with running_server(app, orthanc.dicomweb, env, tmp, MODELS[1:]) as url:
            http = direct_http()
            # What 3D Slicer does first for each image; it also tells the datastore which
            # series cannot be read, so that active learning never serves them.
            image_status = {role: http.get(f"{url}/datastore/image", params={"image": uid}, timeout=120).status_code
                            for role, uid in series.items()}
            images = [series["plain"], series["other"], series["jpeg2000"]]
            yield PacsStack(Stack(url, http, app, images, tmp, orthanc.dicomweb), orthanc, series, refused, image_status)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("local")
    studies = tmp / "studies"
    cases = write_dataset(studies, count=2, seed=SEED, matrix=MATRIX, max_slices=MAX_SLICES, label_slices="none")
    env = offline_env(tmp)
    app = app_copy(tmp)
    with running_server(app, str(studies), env, tmp, MODELS[1:]) as url:
        yield Stack(url, direct_http(), app, [case["id"] for case in cases], tmp)
