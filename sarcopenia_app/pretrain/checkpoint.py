"""What pretraining leaves on disk, and how a later run picks it up.

Two files, both written atomically (`publish_atomically`), so that a run stopped from the server
(`DELETE /train/` kills the process) or killed by anything else leaves the previous complete
version, never half of one:

- the checkpoint: the self-supervised model, optimiser state, step count and loss history; the
  next run continues from it;
- the encoder file for the segmentation train task (`init: encoder`): the segmentation network's
  own tensor names, holding only the tensors that fit it (see `segmentation_weights`), plus the
  names of those that did not, the network config and the grid spacing it was pretrained on.
  A run that started from a segmentation model also carries that model's tensors the twin cannot
  hold (its output layers, `from_start`): the file is then a whole segmentation network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from ..network import NetworkConfig
from ..publish import publish_atomically
from .model import SelfSupervisedNet, segmentation_weights

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    step: int = 0
    history: List[Dict[str, float]] = field(default_factory=list)  # mean losses per checkpoint interval


def save_checkpoint(path: Union[str, Path], model: SelfSupervisedNet, optimizer: torch.optim.Optimizer,
                    progress: Progress, config: NetworkConfig, pixdim_mm: float, total_steps: int) -> None:
    publish_atomically({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": progress.step,
                        "total_steps": total_steps, "history": progress.history,
                        "network_config": config.to_dict(), "pixdim_mm": pixdim_mm}, path)


def resume(path: Union[str, Path], model: SelfSupervisedNet, optimizer: torch.optim.Optimizer,
           config: NetworkConfig, pixdim_mm: float) -> Optional[Progress]:
    """Load the checkpoint at `path` into model and optimiser; None when there is none.

    A checkpoint of another network or grid is refused rather than partly loaded: continuing it
    would silently pretrain something else than what segmentation will use.
    """
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if NetworkConfig.from_dict(state["network_config"]) != config or float(state["pixdim_mm"]) != pixdim_mm:
        raise ValueError(f"checkpoint {path} was made for network {state['network_config']} at "
                         f"{state['pixdim_mm']} mm, not {config.to_dict()} at {pixdim_mm} mm; "
                         "restart pretraining (restart=true) or move the checkpoint away")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return Progress(int(state["step"]), list(state["history"]))


def write_encoder(path: Union[str, Path], model: SelfSupervisedNet, config: NetworkConfig, pixdim_mm: float,
                  progress: Progress, start: Optional[Mapping[str, torch.Tensor]] = None) -> Dict[str, Any]:
    """The segmentation network's starting point; returns what was kept, skipped and taken from
    `start` (the segmentation model the run started from, if any)."""
    kept, skipped = segmentation_weights(model.twin.state_dict(), config)
    from_start = sorted(set(start or {}) - set(kept))
    weights = {**{name: start[name] for name in from_start}, **kept}
    publish_atomically({"model": weights, "skipped": skipped, "from_start": from_start,
                        "network_config": config.to_dict(), "pixdim_mm": pixdim_mm,
                        "pretraining_step": progress.step}, path)
    return {"tensors_kept": len(kept), "skipped": skipped, "from_start": from_start}
