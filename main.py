"""MONAI Label app: skeletal muscle on abdominal CT for sarcopenia screening at L3.

Models are the modules of lib/configs/ (one ``TaskConfig`` each, found automatically).
``--conf models all`` (the default) serves them all; ``--conf models a,b`` serves some.
The server rebuilds this app in every train/scoring subprocess, so construction only
wires objects together: it loads no weights and downloads nothing.
"""

import importlib
import logging
import os
from importlib.metadata import version
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar, Union

import lib.configs
import lib.endpoints
import lib.log_privacy
import lib.scoring.refresh
from lib.datastore.dicomweb import for_this_app
from lib.datastore.local import safe_local_datastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.class_utils import get_class_names

logger = logging.getLogger(__name__)

Task = TypeVar("Task")


def available_configs() -> Dict[str, Type[TaskConfig]]:
    """Model name (the module's name under lib/configs) -> its TaskConfig class."""
    configs = {}
    for class_path in get_class_names(lib.configs, "TaskConfig"):
        module_name, class_name = class_path.rsplit(".", 1)
        model_name = module_name.rsplit(".", 1)[-1]
        configs[model_name] = getattr(importlib.import_module(module_name), class_name)
    return dict(sorted(configs.items()))


def selected_models(models_conf: str, available: List[str]) -> List[str]:
    """Names from a comma-separated ``models`` conf value; ``all`` selects every model."""
    names = [name.strip() for name in models_conf.split(",") if name.strip()]
    if "all" in names:
        return list(available)
    unknown = [name for name in names if name not in available]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {unknown} in '{models_conf}'; choose from: all, {', '.join(available)}")
    return names


def by_name(tasks: Union[None, Task, Dict[str, Task]], model_name: str) -> Dict[str, Task]:
    """A config's task(s) as a name -> task dict; a single task is named after its model."""
    if tasks is None:
        return {}
    return tasks if isinstance(tasks, dict) else {model_name: tasks}


class SarcopeniaApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]):
        configs = available_configs()
        model_dir = os.path.join(app_dir, "model")
        self.models: Dict[str, TaskConfig] = {}
        for name in selected_models(conf.get("models", "all"), list(configs)):
            self.models[name] = configs[name]()
            self.models[name].init(name, model_dir, conf, None)
        logger.info(f"Models: {list(self.models)}")
        # before the datastore is built: it logs every image id it finds
        lib.log_privacy.install(lib.log_privacy.ids_in_folder(
            studies, lambda: self._datastore.list_images() if getattr(self, "_datastore", None) else []))

        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="Sarcopenia screening: skeletal muscle at L3",
            description="Segments skeletal muscle on abdominal CT to measure muscle area at the third lumbar vertebra",
            version=version("sarcopenia-app"),
        )

    def _collect(self, task_of: Callable[[TaskConfig], Any], tasks: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Every selected model's task(s) of one kind, by name."""
        tasks = dict(tasks or {})
        for name, config in self.models.items():
            tasks.update(by_name(task_of(config), name))
        return tasks

    def init_infers(self) -> Dict[str, InferTask]:
        return self._collect(lambda config: config.infer())

    def init_trainers(self) -> Dict[str, TrainTask]:
        return self._collect(lambda config: config.trainer())

    def init_strategies(self) -> Dict[str, Strategy]:
        return self._collect(lambda config: config.strategy(), {"random": Random(), "first": First()})

    def init_scoring_methods(self) -> Dict[str, ScoringMethod]:
        return self._collect(lambda config: config.scoring_method())

    def async_scoring(self, method, params=None):
        """Scores are refreshed after training even while scoring runs (lib/scoring/refresh.py)."""
        return lib.scoring.refresh.request_scoring(list(self._scoring_methods), self._server_mode, method, params)

    def init_datastore(self) -> Datastore:
        """With ``--studies http...``: our DICOMweb datastore (lib/datastore/dicomweb.py); with a
        folder: the local datastore with crash-safe writes (lib/datastore/local.py)."""
        if not self.studies.startswith(("http://", "https://")):
            return safe_local_datastore(self.studies)
        label_names = {name: value for config in self.models.values() for name, value in config.labels.items()}
        return for_this_app(super().init_datastore(), label_names)

    def on_init_complete(self):
        super().on_init_complete()
        lib.endpoints.install_for(self)  # server only: train subprocesses never call this hook
        lib.scoring.refresh.stop_scoring_at_exit()

    def infer(self, request, datastore=None):
        """Also keep the L3 measurements in the image's datastore info, so any later client
        (another viewer, a cohort export) reads them without running the model again."""
        result = super().infer(request, datastore)
        measurements = (result.get("params") or {}).get("measurements")
        image_id = request.get("image")
        if measurements and isinstance(image_id, str) and not os.path.exists(image_id):
            try:
                (datastore or self.datastore()).update_image_info(image_id, {"sarcopenia": measurements})
            except Exception as error:  # noqa: BLE001 - a read-only datastore must not fail the inference
                logger.warning(f"measurements of {image_id} not stored in the datastore: {error}")
        return result
