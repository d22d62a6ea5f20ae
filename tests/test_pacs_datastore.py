"""The app on a real Orthanc over DICOMweb: listing, infer to DICOM SEG, proposals vs labels,
the DICOMweb proxy OHIF uses, and malformed DICOM in the PACS."""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.uid import generate_uid
from conftest import PacsStack
from pacs import JPEG2000_LOSSLESS

from lib.datastore.dicomweb import SarcopeniaDICOMwebDatastore

PROPOSAL_PREFIX = "MONAI Label proposal"


def stats(pacs: PacsStack) -> dict:
    return pacs.stack.http.get(f"{pacs.stack.url}/datastore/", params={"output": "stats"}).json()


def seg_series(pacs: PacsStack) -> list:
    found = pacs.orthanc.http.get(f"{pacs.orthanc.dicomweb}/series", params={"Modality": "SEG"}).json()
    return [(s["0020000E"]["Value"][0], s.get("0008103E", {}).get("Value", [""])[0]) for s in found]


def test_instances_without_uids_are_refused_by_the_pacs_and_reported(pacs_stack):
    refused = {path.name for path, _ in pacs_stack.refused.refused}
    assert refused == {"no_StudyInstanceUID.dcm", "no_SeriesInstanceUID.dcm", "no_SOPInstanceUID.dcm"}
    assert not pacs_stack.refused.stored


def test_datastore_lists_every_ct_series_including_compressed_and_mixed(pacs_stack):
    listed = stats(pacs_stack)
    assert listed["total"] == len(pacs_stack.series) == 4
    assert listed["completed"] == 0  # the SEG without a reference labels nothing


def test_every_series_is_served_except_the_mixed_one_which_is_never_offered_for_labelling(pacs_stack):
    assert pacs_stack.image_status == {"plain": 200, "other": 200, "jpeg2000": 200, "mixed": 422}
    stack = pacs_stack.stack
    first = stack.http.post(f"{stack.url}/activelearning/first", json={}).json()["id"]
    assert pacs_stack.series["mixed"] < min(stack.image_ids)  # so "first" would pick it if it were offered
    assert first == min(stack.image_ids)


def test_infer_returns_a_seg_named_after_our_label_that_references_the_series(pacs_stack):
    stack, image = pacs_stack.stack, pacs_stack.series["plain"]
    answer = stack.http.post(f"{stack.url}/infer/muscle_threshold", params={"image": image, "output": "dicom_seg"},
                             timeout=120)
    assert answer.status_code == 200, answer.text
    seg = pydicom.dcmread(io.BytesIO(answer.content))
    assert seg.Modality == "SEG"
    assert [segment.SegmentLabel for segment in seg.SegmentSequence] == ["skeletal_muscle"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == image
    assert seg.SeriesDescription.startswith(PROPOSAL_PREFIX)


def test_infer_with_save_label_stores_a_proposal_seg_that_does_not_count_as_a_label(pacs_stack):
    stack, image = pacs_stack.stack, pacs_stack.series["other"]
    before = {uid for uid, _ in seg_series(pacs_stack)}
    answer = stack.http.post(f"{stack.url}/infer/muscle_threshold", params={"image": image, "output": "json"},
                             data={"params": json.dumps({"save_label": True})}, timeout=120)
    assert answer.status_code == 200, answer.text
    new = [(uid, description) for uid, description in seg_series(pacs_stack) if uid not in before]
    assert len(new) == 1 and new[0][1] == f"{PROPOSAL_PREFIX}: muscle_threshold"
    stored = pacs_stack.orthanc.http.get(f"{pacs_stack.orthanc.dicomweb}/series",
                                         params={"SeriesInstanceUID": new[0][0], "includefield": "all"}).json()
    assert stored and stats(pacs_stack)["completed"] == 0


def test_a_seg_stored_through_the_proxy_like_ohifs_export_counts_as_a_label_at_once(pacs_stack):
    """OHIF's DICOM SEG export STOWs through /proxy/dicom; the datastore's cached list of
    labels (kept for MONAI_LABEL_DICOMWEB_CACHE_EXPIRY) must not hide it."""
    stack, image = pacs_stack.stack, pacs_stack.series["plain"]
    before = stats(pacs_stack)["completed"]
    answer = stack.http.post(f"{stack.url}/infer/muscle_threshold", params={"image": image, "output": "dicom_seg"},
                             timeout=120)
    seg = pydicom.dcmread(io.BytesIO(answer.content))
    seg.SeriesDescription = "Segmentation"  # as an annotator's export, not a model proposal
    seg.SeriesInstanceUID, seg.SOPInstanceUID = generate_uid(), generate_uid()
    seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
    DICOMwebClient(url=f"{stack.url}/proxy/dicom/wado", session=stack.http).store_instances([seg])
    assert stats(pacs_stack)["completed"] == before + 1


def test_a_jpeg2000_series_is_fetched_as_stored_and_segmented(pacs_stack):
    stack = pacs_stack.stack
    answer = stack.http.post(f"{stack.url}/infer/muscle_threshold",
                             params={"image": pacs_stack.series["jpeg2000"], "output": "dicom_seg"}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert pacs_stack.orthanc.alive()


def test_a_series_of_mixed_slice_sizes_gets_a_reason_and_the_server_keeps_serving(pacs_stack):
    stack = pacs_stack.stack
    answer = stack.http.post(f"{stack.url}/infer/muscle_threshold",
                             params={"image": pacs_stack.series["mixed"], "output": "image"}, timeout=120)
    assert answer.status_code == 422, answer.text
    assert "not one readable CT volume" in answer.json()["detail"]
    assert stats(pacs_stack)["total"] == 4
    again = stack.http.post(f"{stack.url}/infer/muscle_threshold",
                            params={"image": pacs_stack.series["plain"], "output": "image"}, timeout=120)
    assert again.status_code == 200


def test_proxy_passes_the_query_string_on(pacs_stack):
    stack, study = pacs_stack.stack, "1.2.3.4.5.6.7.8.9"
    answer = stack.http.get(f"{stack.url}/proxy/dicom/qido/studies", params={"StudyInstanceUID": study})
    assert answer.status_code == 200
    assert answer.json() == []  # upstream's proxy dropped the filter and listed every study
    every = stack.http.get(f"{stack.url}/proxy/dicom/qido/studies").json()
    assert len(every) >= 1


def test_proxy_passes_the_accept_header_on_so_a_compressed_series_stays_compressed(pacs_stack):
    stack, series = pacs_stack.stack, pacs_stack.series["jpeg2000"]
    found = stack.http.get(f"{stack.url}/proxy/dicom/qido/series", params={"SeriesInstanceUID": series}).json()
    study = found[0]["0020000D"]["Value"][0]
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    answer = stack.http.get(f"{stack.url}/proxy/dicom/wado/studies/{study}/series/{series}",
                            headers={"Accept": accept}, timeout=60)
    assert answer.status_code == 200
    first_part = answer.content.split(b"\r\n\r\n", 1)[1]
    dataset = pydicom.dcmread(io.BytesIO(first_part))
    assert dataset.file_meta.TransferSyntaxUID == JPEG2000_LOSSLESS
    assert pacs_stack.orthanc.alive(), pacs_stack.orthanc.log.read_text()[-2000:]


@pytest.mark.parametrize("path", ["studies", "series"])
def test_proxy_answers_like_the_pacs(pacs_stack, path):
    direct = pacs_stack.orthanc.http.get(f"{pacs_stack.orthanc.dicomweb}/{path}").json()
    proxied = pacs_stack.stack.http.get(f"{pacs_stack.stack.url}/proxy/dicom/qido/{path}").json()
    assert proxied == direct


# ---- the cache folder that the server and its scoring/training subprocesses share ----------------
def datastore_on(pacs: PacsStack, cache: Path) -> SarcopeniaDICOMwebDatastore:
    """A datastore as one process of the server sees it (each process builds its own)."""
    return SarcopeniaDICOMwebDatastore(DICOMwebClient(pacs.orthanc.dicomweb), {"Modality": "CT"}, str(cache),
                                       {"skeletal_muscle": 1}, list_expiry_s=60)


def study_uid(pacs: PacsStack, series_uid: str) -> str:
    found = pacs.orthanc.http.get(f"{pacs.orthanc.dicomweb}/series", params={"SeriesInstanceUID": series_uid}).json()
    return found[0]["0020000D"]["Value"][0]


def test_a_series_another_process_fetched_comes_with_its_study_uid_for_next_sample(pacs_stack, tmp_path):
    server, scoring = datastore_on(pacs_stack, tmp_path), datastore_on(pacs_stack, tmp_path)
    series = pacs_stack.series["other"]
    assert server.get_image_info(series) == {}  # not fetched yet: nothing known, nothing asked
    scoring.get_image_uri(series)  # the scoring subprocess fetched and converted it
    assert server.get_image_info(series)["StudyInstanceUID"] == study_uid(pacs_stack, series)

    # the file watcher may add the converted image before its info: bare, as upstream's reconcile does
    scoring._datastore.objects[series].image.info = {"name": f"{series}.nii.gz", "ts": 0}
    scoring._update_datastore_file()
    assert server.get_image_info(series)["StudyInstanceUID"] == study_uid(pacs_stack, series)


def test_two_processes_fetching_one_series_at_once_both_get_the_whole_series(pacs_stack, tmp_path):
    series = pacs_stack.series["plain"]
    folder = tmp_path / "images" / series
    datastores = [datastore_on(pacs_stack, tmp_path / f"cache{i}") for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda ds: ds._download_as_stored(series, folder), datastores))
    instances = pacs_stack.orthanc.http.get(f"{pacs_stack.orthanc.dicomweb}/studies/{study_uid(pacs_stack, series)}"
                                            f"/series/{series}/instances").json()
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i['00080018']['Value'][0]}.dcm" for i in instances)
    assert [p.name for p in folder.parent.iterdir()] == [series]  # no half-written folder left behind
