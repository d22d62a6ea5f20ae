"""What one step of the full-size rare-case active-learning run costs here, so the whole run can be
estimated before it is started (docs/active_learning.md, "Cost of the full size").

    python benchmarks/active_learning_rare_cost.py --out /tmp/active_learning_rare_cost.json

Times, with active_learning_rare.py's full-size settings and its own functions: writing the
validation set and a small pool, the L3 locator and the uncertainty score per pool scan, one
fine-tune round (`--epochs` epochs on `--labelled` scans; the train log gives the time per epoch),
and one test scan's generation and scoring by one model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from active_learning_rare import SEEDS, write_mix  # noqa: E402
from active_learning_sim import choose, locate_pool  # noqa: E402
from new_site import finetune  # noqa: E402
from pretrain_label_efficiency import l3_dice, subset_datastore  # noqa: E402

from sarcopenia_app.phantom.subgroups import mixed_set  # noqa: E402
from sarcopenia_app.segment import load_model  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--locator", default=str(REPO / "model" / "l3_locator.pt"))
    parser.add_argument("--work", default="/tmp/sarcopenia_active_learning_rare_cost")
    parser.add_argument("--out", default="/tmp/active_learning_rare_cost.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pool", type=int, default=8, help="pool scans written and scored")
    parser.add_argument("--labelled", type=int, default=6, help="labelled scans of the timed fine-tune")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the timed fine-tune (no early stop)")
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # the full-size settings of active_learning_rare.py
    settings = argparse.Namespace(matrix=512, max_slices=60, rare_fraction=0.12, val_count=6, patience=0,
                                  crop_px=224, crops_per_epoch=32, lr=3e-4, epochs=args.epochs)
    shipped = load_model(args.model, args.device)
    settings.network, settings.pixdim_mm = shipped.config, shipped.pixdim_mm
    work, cost = Path(args.work), {}

    def timed(name: str, count: int, step):
        start = time.perf_counter()
        value = step()
        cost[name] = round((time.perf_counter() - start) / count, 2)
        return value

    val = timed("write_validation_scan_s", settings.val_count, lambda: write_mix(
        work / "validation", SEEDS["validation"], settings.val_count, settings.rare_fraction, settings))
    pool = timed("write_pool_scan_s", args.pool, lambda: write_mix(
        work / "pool", SEEDS["pool"], args.pool, settings.rare_fraction, settings))
    names = list(pool)
    locations = timed("locate_scan_s", len(names), lambda: locate_pool(args.locator, work / "pool", names, args.device))
    _, scores = timed("score_scan_s", len(names), lambda: choose(
        "uncertain", shipped, work / "pool", names, locations, 1, None, args.passes, args.device))
    cost["scores"] = {n: [pool[n], round(s, 3)] for n, s in scores.items()}
    validation = [{"image": str(work / "validation" / n), "label": str(work / "validation" / "labels" / "final" / n)}
                  for n in val]
    datastore = subset_datastore(work / "pool", names[:args.labelled], work / "datastore")
    cost["finetune"] = finetune(datastore, Path(args.model), validation, work / "finetune", 1, args.labelled,
                                settings.lr, settings, as_current=True, device=args.device)
    case = timed("generate_test_scan_s", 1, lambda: next(mixed_set(SEEDS["test"], 1, 0.0, 512, 60))[1])
    timed("score_test_scan_per_model_s", 1, lambda: l3_dice(case, {"shipped": shipped}, args.device))
    result = {"command": " ".join([Path(sys.executable).name, *(sys.argv if argv is None else argv)]),
              "device": args.device, "threads": torch.get_num_threads(), "cost": cost}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
