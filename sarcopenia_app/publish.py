"""Model publishing: atomic (readers see the old file or the new one, never half of one), and
only for a model that is not worse than the one it replaces."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from .safe_files import remove_stale_temp_files, write_atomically


def publish_atomically(state: Dict[str, Any], path: Union[str, Path]) -> None:
    remove_stale_temp_files(Path(path).parent, recursive=False)  # what a killed earlier publish left
    write_atomically(path, lambda f: torch.save(state, f))


def all_finite(state_dict: Dict[str, Any]) -> bool:
    """False if any weight is NaN or infinite: what a diverged training leaves behind."""
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values()
               if isinstance(t, torch.Tensor) and t.is_floating_point())


def publish_decision(candidate_dice: float, baseline_dice: Optional[float], weights_finite: bool = True,
                     tolerance: float = 0.0) -> Tuple[bool, str]:
    """Publish a candidate only if it is a real number with finite weights and its validation
    Dice does not drop below the published model's on the same validation images (``baseline``;
    None when there is nothing published to compare with). Returns (publish?, why)."""
    if not weights_finite or not math.isfinite(candidate_dice):
        return False, f"not published: the training diverged (dice {candidate_dice}, finite weights: {weights_finite})"
    if baseline_dice is not None and math.isfinite(baseline_dice) and candidate_dice < baseline_dice - tolerance:
        return False, (f"not published: validation dice {candidate_dice:.4f} is below the published model's "
                       f"{baseline_dice:.4f} on the same images")
    return True, f"published: validation dice {candidate_dice:.4f} (published model: {baseline_dice})"
