"""MONAI Label's local-folder datastore, with writes a crash cannot half-do.

Upstream 0.8.5 copies labels and images straight onto their destination (``shutil.copy``) and
rewrites ``datastore_v2.json`` in place, so a server killed mid-write leaves a truncated label
(which training then reads) or a truncated JSON (the server then refuses to start, or an
auto-reload drops every image's info). Here every file is written aside and moved into place
(sarcopenia_app.safe_files), the JSON keeps its previous version as a backup, and a damaged
JSON is recovered from that backup at load.
"""

import logging
import os
import time
from typing import Any, Dict

from filelock import FileLock
from monailabel.config import settings
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel
from monailabel.interfaces.exception import ImageNotFoundException

from sarcopenia_app.safe_files import (copy_atomically, read_json_recovering, remove_stale_temp_files,
                                       write_json_atomically)

logger = logging.getLogger(__name__)


class SafeLocalDatastore(LocalDatastore):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        remove_stale_temp_files(self._datastore_path)  # what a server killed mid-write left
        if getattr(self, "_handler", None) is not None:  # auto reload on
            self._handler.on_moved = self._on_moved_event

    def _on_moved_event(self, event):
        """The JSON is replaced by a rename, which the file watcher reports as a move, not as the
        modification upstream reloads on: without this, what a scoring or training subprocess
        writes into the image info never reaches the server. Our own writes are skipped by the
        modification-time check in ``_init_from_datastore_file``."""
        if getattr(event, "dest_path", None) == self._datastore_config_path:
            self._init_from_datastore_file()

    def _init_from_datastore_file(self, throw_exception=False):
        with FileLock(self._lock_file):
            if not os.path.exists(self._datastore_config_path) and not os.path.exists(f"{self._datastore_config_path}.bak"):
                return
            ts = os.stat(self._datastore_config_path).st_mtime if os.path.exists(self._datastore_config_path) else -1
            if ts == self._config_ts:
                return
            try:
                data, note = read_json_recovering(self._datastore_config_path)
                self._datastore = LocalDatastoreModel.model_validate(data)
            except ValueError as error:  # neither the file nor its backup: never start empty
                logger.error(f"+++ Failed to load datastore => {error}")
                if throw_exception:
                    raise
                return
            self._datastore.base_path = self._datastore_path
            self._config_ts = os.stat(self._datastore_config_path).st_mtime
            if note:
                logger.warning(note)

    def _update_datastore_file(self, lock=True):
        def write() -> None:
            self._ignore_event_config = True
            write_json_atomically(self._datastore_config_path, self._datastore.model_dump(exclude={"base_path"}))
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()

    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        default_id, image_ext = self._to_id(os.path.basename(image_filename))
        image_id = image_id or default_id
        name = self._filename(image_id, image_ext)
        with FileLock(self._lock_file):
            copy_atomically(image_filename, os.path.join(self._datastore.image_path(), name))
            info = {**(image_info or {}), "ts": int(time.time()), "name": name}
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=image_ext))
            self._update_datastore_file(lock=False)
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        obj = self._datastore.objects.get(image_id)
        if not obj:
            raise ImageNotFoundException(f"Image {image_id} not found")
        _, label_ext = self._to_id(os.path.basename(label_filename))
        name = self._filename(image_id, label_ext)
        with FileLock(self._lock_file):
            copy_atomically(label_filename, os.path.join(self._datastore.label_path(label_tag), name))
            info = {**(label_info or {}), "ts": int(time.time()), "name": name}
            obj.labels[label_tag] = DataModel(info=info, ext=label_ext)
            self._update_datastore_file(lock=False)
        return image_id


def safe_local_datastore(studies: str) -> SafeLocalDatastore:
    """The folder datastore with the settings MONAI Label itself would use."""
    return SafeLocalDatastore(studies, extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                              auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                              read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)
