"""MONAI Label scoring method: the muscle network's uncertainty around L3 for every unlabelled image.

The maths is sarcopenia_app.uncertainty's. This task loads the published model and the L3 locator
fresh on every run (training and locator retraining replace the files atomically), skips images
already scored against the same model file, and stores each score in the image's datastore info
under ``uncertainty`` with the model version (file name + content hash) it was computed against.
Request keys: ``passes`` (MC dropout + flip passes, default 8), ``force`` (rescore everything).
"""

import logging
import os
import time
from typing import Any, Dict

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from sarcopenia_app.analysis import model_description
from sarcopenia_app.ct_input import InvalidCTError
from sarcopenia_app.ct_loader import load_ct
from sarcopenia_app.level import load_locator, locate_l3
from sarcopenia_app.segment import load_model
from sarcopenia_app.uncertainty import DEFAULT_PASSES, SCORE_KEY, score_image

logger = logging.getLogger(__name__)


def no_model_message(model_path: str) -> str:
    return (f"no trained muscle model yet ({os.path.basename(model_path)} is missing): uncertainty is not "
            f"computed, since a random network's uncertainty says nothing about what it would learn")


class MuscleUncertaintyScoring(ScoringMethod):
    def __init__(self, model_path: str, locator_path: str, passes: int = DEFAULT_PASSES):
        super().__init__("Uncertainty of the muscle network around L3 (MC dropout + flip) for every unlabelled image")
        self.model_path, self.locator_path, self.passes = model_path, locator_path, passes

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        if not os.path.exists(self.model_path):
            logger.warning(no_model_message(self.model_path))
            return {"status": "no_model", "message": no_model_message(self.model_path)}
        device = "cuda" if torch.cuda.is_available() else "cpu"
        version = model_description(self.model_path)
        model = load_model(self.model_path, device)
        locator = load_locator(self.locator_path, device) if os.path.exists(self.locator_path) else None
        passes = int(request.get("passes", self.passes))
        summary = {"model": version, "scored": 0, "up_to_date": 0, "failed": 0}
        for image_id in datastore.get_unlabeled_images():
            previous = datastore.get_image_info(image_id).get(SCORE_KEY) or {}
            if previous.get("model") == version and not request.get("force"):
                summary["up_to_date"] += 1
                continue
            try:
                image = load_ct(datastore.get_image_uri(image_id)).image
            except InvalidCTError as error:  # an unreadable scan is not offered for labelling anyway
                logger.warning(f"uncertainty of {image_id} not computed: {error}")
                summary["failed"] += 1
                continue
            location = locate_l3(locator, image, device=device) if locator is not None else None
            score = score_image(model, image, location, passes, device)
            datastore.update_image_info(image_id, {SCORE_KEY: {**score.to_dict(), "model": version,
                                                               "computed_ts": int(time.time())}})
            summary["scored"] += 1
            logger.info(f"uncertainty of {image_id}: {score.score:.4f} ({score.region})")
        logger.info(f"uncertainty scoring: {summary}")
        return summary
