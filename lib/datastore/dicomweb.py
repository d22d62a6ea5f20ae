"""MONAI Label's DICOMweb datastore with what a clinical PACS set-up needs on top.

Over ``monailabel.datastore.dicom.DICOMWebDatastore`` (0.8.5) this:
- names SEG segments after our labels (upstream writes ``unknown``) and tells a model's
  proposal from an annotator's final label by the SEG's SeriesDescription; only final
  labels count as labelled and reach training;
- stores proposals (infer with ``save_label``) back to the PACS as SEG too, so a viewer
  shows them next to the image;
- stores, next to each final label's SEG, a DICOM SR (TID 1500) with the L3 measurements of
  that label (sarcopenia_app/label_report.py) when the scan was measured before; an SR that
  cannot be made is logged and never fails the label;
- forgets its cached lists of images and labels when it stores a SEG itself (upstream
  keeps them for ``MONAI_LABEL_DICOMWEB_CACHE_EXPIRY``, 2 h by default, so a saved
  label would not count for hours);
- retrieves instances in the transfer syntax they are stored in (``transfer-syntax=*``):
  Debian's Orthanc 1.10 + GDCM plugin can crash transcoding JPEG 2000, and SimpleITK
  (GDCM) reads compressed series itself;
- fetches a series into its cache folder atomically and reads image info as the datastore file
  holds it (the server's scoring and training subprocesses share that folder);
- skips what it cannot use in the PACS (a SEG without a readable reference, a series
  that is not one volume) instead of failing the whole listing or the server; a series
  found unreadable is still listed but no longer offered for labelling.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import pydicom
from cachetools import TTLCache
from dicomweb_client import DICOMwebClient
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.convert import binary_to_image, dicom_to_nifti, nifti_to_dicom_seg
from monailabel.datastore.utils.dicom import dicom_web_upload_dcm
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from pydicom.dataset import Dataset

from lib.datastore import segments
from sarcopenia_app.ct_input import InvalidCTError
from sarcopenia_app.label_report import report_for_label

logger = logging.getLogger(__name__)

SERIES_UID = "0020000E"
STUDY_UID = "0020000D"
SERIES_DESCRIPTION = "0008103E"
AS_STORED = (("application/dicom", "*"),)  # WADO-RS: no transcoding
STUDY_FACT = "StudyInstanceUID"  # present in the info of every image this datastore fetched


class SegLink(NamedTuple):
    """A SEG series in the PACS and the image series it labels."""

    seg: str
    image: str
    proposal: bool


def _first_value(dataset_json: Dict[str, Any], tag: str) -> str:
    values = dataset_json.get(tag, {}).get("Value") or [""]
    return str(values[0])


class SarcopeniaDICOMwebDatastore(DICOMWebDatastore):
    def __init__(self, client: DICOMwebClient, search_filter: Dict[str, Any], cache_path: Optional[str],
                 label_names: Mapping[str, int], list_expiry_s: float):
        super().__init__(client, search_filter, cache_path, fetch_by_frame=False, convert_to_nifti=True)
        self._label_names = dict(label_names)
        self._lists: TTLCache = TTLCache(maxsize=4, ttl=list_expiry_s)
        self._unreadable: Dict[str, str] = {}  # series id -> why it is not one CT volume

    @classmethod
    def replacing(cls, upstream: DICOMWebDatastore, label_names: Mapping[str, int]) -> "SarcopeniaDICOMwebDatastore":
        """The same PACS, filter and cache folder as the datastore MONAI Label built."""
        cache_path = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
        return cls(upstream._client, upstream._search_filter, cache_path, label_names,
                   settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY)

    def forget_lists(self) -> None:
        """Re-read images and labels from the PACS on the next request."""
        self._lists.clear()

    # --- listing -----------------------------------------------------------------------
    def list_images(self) -> List[str]:
        if "images" not in self._lists:
            found = self._client.search_for_series(search_filters=self._search_filter)
            self._lists["images"] = [uid for uid in (_first_value(ds, SERIES_UID) for ds in found) if uid]
        return self._lists["images"]

    def seg_links(self) -> List[SegLink]:
        """Every SEG series that references a listed image series; unreadable ones are logged and skipped."""
        if "segs" not in self._lists:
            images = set(self.list_images())
            links = []
            for seg in self._client.search_for_series(search_filters={"Modality": "SEG"}):
                link = self._link(seg)
                if link and link.image in images:
                    links.append(link)
            self._lists["segs"] = links
        return self._lists["segs"]

    def _link(self, seg: Dict[str, Any]) -> Optional[SegLink]:
        seg_uid, study_uid = _first_value(seg, SERIES_UID), _first_value(seg, STUDY_UID)
        try:
            meta = Dataset.from_json(self._client.retrieve_series_metadata(study_uid, seg_uid)[0])
            image_uid = str(meta.ReferencedSeriesSequence[0].SeriesInstanceUID)
        except Exception as error:  # any broken SEG means the same: it labels nothing we can use
            logger.warning(f"SEG series {seg_uid} ignored: no readable referenced series ({error})")
            return None
        return SegLink(seg_uid, image_uid, segments.is_proposal(_first_value(seg, SERIES_DESCRIPTION)))

    def final_links(self) -> List[SegLink]:
        return [link for link in self.seg_links() if not link.proposal]

    def get_labeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        return sorted({link.image for link in self.final_links()})

    def get_unlabeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        """What active learning may serve: not labelled, and not found unreadable since the start."""
        skipped = set(self.get_labeled_images()) | set(self._unreadable)
        return [image for image in self.list_images() if image not in skipped]

    def _download_labeled_data(self) -> None:
        """Training data: one final SEG per image, the last one the PACS lists (upstream also
        took proposals); a series that is not one volume is left out, not fatal."""
        chosen: Dict[str, SegLink] = {link.image: link for link in self.final_links()}
        for image_id, link in chosen.items():
            try:
                self.get_image_uri(image_id)
                self.get_label_uri(link.seg, DefaultLabelTag.FINAL, image_id=image_id)
            except InvalidCTError as error:
                logger.warning(f"labelled series {image_id} left out of training: {error}")

    # --- images --------------------------------------------------------------------------
    def get_image_uri(self, image_id: str) -> str:
        image_dir = Path(self._datastore.image_path()) / image_id
        image_nii = Path(self._datastore.image_path()) / f"{image_id}.nii.gz"
        if image_nii.exists():
            return str(image_nii.resolve())
        if not image_dir.is_dir() or not any(image_dir.iterdir()):
            self._download_as_stored(image_id, image_dir)
        try:
            converted = dicom_to_nifti(str(image_dir))
        except RuntimeError as error:  # SimpleITK: mixed sizes, missing geometry, unreadable pixels
            self._unreadable[image_id] = f"series {image_id} is not one readable CT volume: {str(error).strip()[:300]}"
            logger.warning(self._unreadable[image_id])
            raise InvalidCTError(self._unreadable[image_id]) from error
        try:
            LocalDatastore.add_image(self, image_id, converted, self._dicom_info(image_id))
        finally:
            os.unlink(converted)
        return str(image_nii.resolve())

    def _download_as_stored(self, series_uid: str, folder: Path) -> None:
        """The series' instances into ``folder``, which appears whole or not at all: the server and
        its scoring or training subprocesses may fetch the same series at once, and a half-written
        folder would be read as a shorter (or "not one volume") series."""
        found = self._client.search_for_series(search_filters={"SeriesInstanceUID": series_uid})
        studies = [_first_value(ds, STUDY_UID) for ds in found if _first_value(ds, SERIES_UID) == series_uid]
        if not studies:
            raise InvalidCTError(f"series {series_uid} is not in the PACS")
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-")
        try:
            for instance in self._client.retrieve_series(studies[0], series_uid, media_types=AS_STORED):
                instance.save_as(os.path.join(partial, f"{instance.SOPInstanceUID}.dcm"), write_like_original=True)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # an empty folder left by a failed fetch
            os.rename(partial, folder)
        except OSError:
            if not (folder.is_dir() and any(folder.iterdir())):
                raise
            # another process stored the whole series first: use theirs
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def get_image_info(self, image_id: str) -> Dict[str, Any]:
        """The image's info as the datastore file holds it now, with the series' DICOM facts.

        The server and its scoring and training subprocesses share the cache folder: a subprocess
        that fetched a series wrote its info to the datastore file, which this process may not have
        re-read yet; and the file watcher can add the converted image before that info, bare. The
        facts matter: OHIF's Next Sample opens the study named by ``StudyInstanceUID``.
        """
        self._init_from_datastore_file()
        info = LocalDatastore.get_image_info(self, image_id)
        if info and STUDY_FACT not in info:
            try:
                facts = self._dicom_info(image_id)  # one QIDO search
            except IndexError:  # the series has left the PACS: keep what is known
                return info
            self.update_image_info(image_id, facts)
            info = LocalDatastore.get_image_info(self, image_id)
        return info

    # --- labels --------------------------------------------------------------------------
    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any],
                   label_id: str = "") -> str:
        """Stores the label as a SEG in the PACS (final labels and proposals alike) and in the cache."""
        image_uri = self.get_image_uri(image_id)
        converted = binary_to_image(image_uri, label_filename) if label_filename.endswith(".bin") else None
        label_file = converted or label_filename
        info = dict(label_info)
        final = label_tag == DefaultLabelTag.FINAL
        description = segments.series_description(info.get("model"), final)
        if info.get("label_info"):
            info["label_info"] = segments.with_description(info["label_info"], description)
        else:
            names = (info.get("params") or {}).get("label_names") or self._label_names
            info["label_info"] = segments.segment_list(names, description)
        try:
            seg_uid, seg = self._store_seg(image_id, label_file, info["label_info"])
            image_info = self.get_image_info(image_id)
            if final:
                info["sr_series_uid"] = self._store_report(image_id, label_file, seg, image_info.get("sarcopenia"))
            info.update(SeriesInstanceUID=seg_uid, Modality="SEG", PatientID=image_info.get("PatientID"),
                        StudyInstanceUID=image_info.get("StudyInstanceUID"))
            return LocalDatastore.save_label(self, image_id, label_file, label_tag, info)
        finally:
            self.forget_lists()
            if converted:
                os.unlink(converted)

    def _store_seg(self, image_id: str, label_file: str, label_info: List[Dict[str, Any]]) -> Tuple[str, Dataset]:
        """(SeriesInstanceUID, dataset) of the SEG stored for the label."""
        image_dir = os.path.join(self._datastore.image_path(), image_id)
        seg_file = nifti_to_dicom_seg(image_dir, label_file, label_info)
        if not seg_file:
            raise InvalidCTError(f"the label for {image_id} is empty: nothing to store as DICOM SEG")
        try:
            return dicom_web_upload_dcm(seg_file, self._client), pydicom.dcmread(seg_file)
        finally:
            os.unlink(seg_file)

    def _store_report(self, image_id: str, label_file: str, seg: Dataset,
                      measurements: Optional[Dict[str, Any]]) -> Optional[str]:
        """The SR of the saved label, STOWed into the study of the SEG; its SeriesInstanceUID, or
        None (logged) when there is no L3 measurement or the PACS refuses it."""
        if not measurements:
            logger.info(f"no SR for {image_id}: the scan was not measured (run /infer/muscle_seg first)")
            return None
        try:
            sr = report_for_label(os.path.join(self._datastore.image_path(), image_id), label_file, measurements, seg)
            self._client.store_instances([sr])
        except Exception as error:  # noqa: BLE001 - the label is stored; the report is an extra
            logger.warning(f"no SR stored for {image_id}: {error}")
            return None
        return str(sr.SeriesInstanceUID)


def for_this_app(datastore: Datastore, label_names: Mapping[str, int]) -> Datastore:
    """Our DICOMweb datastore in place of MONAI Label's; any other datastore as it is."""
    if isinstance(datastore, DICOMWebDatastore) and not isinstance(datastore, SarcopeniaDICOMwebDatastore):
        return SarcopeniaDICOMwebDatastore.replacing(datastore, label_names)
    return datastore
