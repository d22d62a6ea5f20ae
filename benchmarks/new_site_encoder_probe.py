"""Why the adapted network (new-site arm c at K = 0) no longer segments: its encoder half alone on
the shipped decoder and output layers, scored on the new-site test draws like every arm.

    python benchmarks/new_site_encoder_probe.py --seeds 0,1     # after new_site.py recorded those seeds

The encoder half is every tensor of the MONAI UNet outside its up-sampling path: in the UNet's
nested (down, skip, up) blocks the up block is item 2, at every depth (`model.2`, `submodule.2`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from new_site import ENCODER, METRICS, score  # noqa: E402

from sarcopenia_app.segment import load_model  # noqa: E402


def is_decoder(name: str) -> bool:
    """Tensor of the UNet's up-sampling path (item 2 of a down-skip-up block, at any depth)."""
    return re.search(r"(^|\.)(model|submodule)\.2\.", name) is not None


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--records", default=str(REPO / "docs" / "new_site_runs"))
    parser.add_argument("--data", default="/tmp/sarcopenia_new_site_ds", help="new_site.py's pools (--pools-only)")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    result, model = {}, load_model(args.model)
    shipped = {name: tensor.clone() for name, tensor in model.network.state_dict().items()}
    encoder = [name for name in shipped if not is_decoder(name)]
    for seed in [int(s) for s in args.seeds.split(",")]:
        adapted = torch.load(Path(args.records) / ENCODER.format(seed=seed), map_location="cpu", weights_only=True)
        model.network.load_state_dict({**shipped, **{name: adapted["model"][name] for name in encoder}})
        cases = score({"probe": model}, Path(args.data) / "test")["probe"]
        result[seed] = {"encoder_tensors": len(encoder), "of": len(shipped),
                        **{m: round(float(np.median([c[m] for c in cases])), 4) for m in METRICS}}
        print(f"seed {seed}: adapted encoder on the shipped decoder: {result[seed]}", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
