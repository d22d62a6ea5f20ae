"""MONAI Label strategy ``uncertain``: the unlabelled image the muscle network is least sure about.

Ordering: sarcopenia_app.labelling_order (scans handed out within ``reserve_s`` by any strategy are
skipped, unscored ones first, then highest uncertainty). Scores come from the ``muscle_uncertainty``
scoring method; a score computed against an older model still ranks until the rescore after
training replaces it. Without a trained model there is nothing to rank by: the answer says so and
the image is drawn at random among the free ones. Request key: ``reserve_s``.
"""

import logging
import os
import random
import time
from typing import Any, Dict, Optional

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from lib.scoring.muscle_uncertainty import no_model_message

from sarcopenia_app.labelling_order import DEFAULT_RESERVE_S, Candidate, is_reserved, labelling_order
from sarcopenia_app.uncertainty import SCORE_KEY

logger = logging.getLogger(__name__)


def candidate(info: Dict[str, Any]) -> Candidate:
    """Score and last hand-out time from an image's datastore info (MONAI Label's active-learning
    endpoint records ``strategy.<name>.ts`` for every image it hands out)."""
    handed_out = [entry.get("ts") for entry in (info.get("strategy") or {}).values() if isinstance(entry, dict)]
    handed_out = [ts for ts in handed_out if ts is not None]
    score = (info.get(SCORE_KEY) or {}).get("score")
    return Candidate(score=None if score is None else float(score), handed_out_ts=max(handed_out, default=None))


class MostUncertain(Strategy):
    def __init__(self, model_path: str, reserve_s: float = DEFAULT_RESERVE_S):
        super().__init__("Unlabelled image the muscle network is least sure about around L3 (not one handed out recently)")
        self.model_path, self.reserve_s = model_path, reserve_s

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Optional[Dict[str, Any]]:
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        now, reserve_s = time.time(), float(request.get("reserve_s", self.reserve_s))
        infos = {image_id: datastore.get_image_info(image_id) for image_id in images}
        candidates = {image_id: candidate(info) for image_id, info in infos.items()}
        order = labelling_order(candidates, now, reserve_s)
        if not os.path.exists(self.model_path):
            free = [image_id for image_id in order if not is_reserved(candidates[image_id], now, reserve_s)]
            chosen = random.choice(free) if free else order[0]
            return {"id": chosen, "uncertainty": None, "reason": f"{no_model_message(self.model_path)}; random choice"}
        chosen = order[0]
        score = infos[chosen].get(SCORE_KEY)
        reason = ("not scored yet (new image, or scoring still running)" if score is None
                  else "most uncertain free image")
        if is_reserved(candidates[chosen], now, reserve_s):
            reason = "every unlabelled image was handed out recently: the one handed out longest ago"
        logger.info(f"{request.get('strategy', 'uncertain')}: {chosen} ({reason}; score {score})")
        return {"id": chosen, "uncertainty": score, "reason": reason}
