"""Train (or continue) the muscle model on phantoms generated on the fly, wide and stress variation.

    nice -n 10 python benchmarks/train_muscle_stream.py --init model/muscle_seg.pt --steps 3000 \
        --work /tmp/muscle_stream --log-every 25

Seeds 5000..5007 are training seeds (the held-out benchmark uses 2000, 2100, 2200, 6000+). Every
`--val-every` steps the mid-L3 Dice of 10 fixed validation cases (seed 5900, wide and stress) is
measured through `segment.predict_mask`, the checkpoint is written to WORK/latest.pt and, when
the Dice is the best so far, to WORK/best.pt (model-file format: it loads with segment.load_model).
Nothing under model/ is replaced: that is decided on the held-out benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.losses import DiceCELoss

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.muscle_training import crop_batches, phantom_cases  # noqa: E402
from sarcopenia_app.network import NetworkConfig, build_network  # noqa: E402
from sarcopenia_app.phantom.writer import stored_layout  # noqa: E402
from sarcopenia_app.publish import publish_atomically  # noqa: E402
from sarcopenia_app.segment import MuscleModel, load_model, predict_mask  # noqa: E402
from sarcopenia_app.transforms import DEFAULT_PIXDIM_MM  # noqa: E402

TRAIN_SEEDS = tuple(range(5000, 5008))
VAL_SEED = 5900


def mid_l3_dice(model: MuscleModel, cases) -> float:
    scores = []
    for case in cases:
        affine, to_stored = stored_layout(case, case.acquisition.orientation)
        image = MetaTensor(torch.from_numpy(to_stored(case.hu).astype(np.float32))[None], affine=torch.as_tensor(affine))
        k = case.l3_mid_index
        mask = predict_mask(model, image, z_range=(k, k + 1))[:, :, k].astype(bool)
        truth = to_stored(case.muscle)[:, :, k].astype(bool)
        scores.append(2 * (mask & truth).sum() / max(mask.sum() + truth.sum(), 1))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--init", help="model file to continue from (else random weights, --network)")
    parser.add_argument("--network", default="{}", help="NetworkConfig fields as JSON, for a new network")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--crops-per-case", type=int, default=12)
    parser.add_argument("--variations", default="wide,wide,stress")
    parser.add_argument("--start-index", type=int, default=0, help="first case index (resume on new cases)")
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--work", default="/tmp/muscle_stream")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    if args.init:
        model = load_model(args.init)
    else:
        config = NetworkConfig.from_dict({**NetworkConfig().to_dict(), **json.loads(args.network)})
        model = MuscleModel(build_network(config), config, DEFAULT_PIXDIM_MM)
    network = model.network
    val_cases = list(zip(range(10), phantom_cases((VAL_SEED,), ("wide", "stress"))))
    val_cases = [case for _, case in val_cases]
    best = mid_l3_dice(model, val_cases)
    print(json.dumps({"step": 0, "val_mid_l3_dice": round(best, 4)}), flush=True)

    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True)
    batches = crop_batches(phantom_cases(TRAIN_SEEDS, args.variations.split(","), args.start_index),
                           model.pixdim_mm, model.config.neighbour_slices, args.crop, args.crops_per_case,
                           args.batch, seed=args.start_index)
    start, losses = time.perf_counter(), []
    for step, (image, label) in enumerate(batches, start=1):
        network.train()
        optimizer.zero_grad()
        loss = loss_function(network(image), label)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss))
        if step % args.log_every == 0:
            print(json.dumps({"step": step, "loss": round(float(np.mean(losses[-args.log_every:])), 4),
                              "seconds": round(time.perf_counter() - start)}), flush=True)
        if step % args.val_every == 0 or step == args.steps:
            dice = mid_l3_dice(model, val_cases)
            state = {**model.state(), "val_mid_l3_dice": dice, "step": step}
            publish_atomically(state, work / "latest.pt")
            if dice > best:
                best = dice
                publish_atomically(state, work / "best.pt")
            print(json.dumps({"step": step, "val_mid_l3_dice": round(dice, 4), "best": round(best, 4)}), flush=True)
        if step == args.steps:
            break


if __name__ == "__main__":
    main()
