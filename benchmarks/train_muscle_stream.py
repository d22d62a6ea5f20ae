"""Train (or continue) the muscle model on phantoms generated on the fly, wide and stress variation.

    nice -n 19 python benchmarks/train_muscle_stream.py --init model/muscle_seg.pt --steps 4000 \
        --work /tmp/muscle_stream --val-every 50
    # a later session (the run's settings come from the state file):
    nice -n 19 python benchmarks/train_muscle_stream.py --resume model/training_state/muscle_stream.pt \
        --work /tmp/muscle_stream --val-every 50

Seeds 5000..5007 are training seeds (the held-out benchmark uses 2000, 2100, 2200, 6000+). Every
`--val-every` steps the mid-L3 Dice of 10 fixed validation cases (seed 5900, wide and stress) is
measured through `segment.predict_mask`, the checkpoint is written to WORK/latest.pt and, when
the Dice is the best so far, to WORK/best.pt (model-file format: it loads with segment.load_model),
and the whole run (network, best network, optimizer, lr schedule, step, best Dice, the next case
index, the val curve, wall and CPU seconds) to WORK/state.pt, atomically, so that a run of
thousands of steps can be stopped at any time and continued in another session with `--resume`.
The lr is warmed up over the first `--warmup` steps of the run only and then follows a cosine
over `--steps`, so a resumed run continues on the same curve. Nothing under model/ is replaced:
that is decided on the held-out benchmark.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional

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
from sarcopenia_app.segment import MuscleModel, load_model, model_from_state, predict_mask, reshaped  # noqa: E402
from sarcopenia_app.transforms import DEFAULT_PIXDIM_MM  # noqa: E402

TRAIN_SEEDS = tuple(range(5000, 5008))
VAL_SEED = 5900
RUN_SETTINGS = ("init", "network", "steps", "lr", "warmup", "batch", "crop", "crops_per_case", "variations", "levels")


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warmup at the true start of the run, then a cosine down to 5 % at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(steps - warmup, 1), 1.0)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def new_model(init: Optional[str], network_fields: dict) -> MuscleModel:
    """The model a new run starts from: `init` as it is, `init` reshaped to the network fields
    (warm-started where tensors match), or a random network."""
    if not init:
        config = NetworkConfig().with_fields(network_fields)
        return MuscleModel(build_network(config), config, DEFAULT_PIXDIM_MM)
    start = load_model(init)
    if not network_fields:
        return start
    model, copied = reshaped(start, network_fields)
    print(json.dumps({"warm_start_tensors": copied, "of": len(model.network.state_dict())}), flush=True)
    return model


def counting(cases, position: dict):
    """The cases, noting the index after the last one drawn: where a resumed run continues."""
    for case in cases:
        position["next_case_index"] = case.index + 1
        yield case


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
    parser.add_argument("--resume", help="training state (WORK/state.pt) to continue; its run settings win")
    parser.add_argument("--init", help="model file to continue from (else random weights)")
    parser.add_argument("--network", default="{}",
                        help="NetworkConfig fields as JSON: a new network of that shape (warm-started from --init where shapes match)")
    parser.add_argument("--steps", type=int, default=3000, help="length of the lr schedule and of the run")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=100, help="warmup steps at the start of the run")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--crops-per-case", type=int, default=12)
    parser.add_argument("--variations", default="wide,wide,stress")
    parser.add_argument("--levels", default="L3", help="levels the training stacks are centred on, in turn")
    parser.add_argument("--start-index", type=int, default=0, help="first case index of a new run")
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--work", default="/tmp/muscle_stream")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    run = torch.load(args.resume, map_location="cpu", weights_only=True) if args.resume else None
    if run:
        vars(args).update(run["settings"])
        model = model_from_state(run["model"])
    else:
        model = new_model(args.init, json.loads(args.network))
    network = model.network
    val_cases = [case for _, case in zip(range(10), phantom_cases((VAL_SEED,), ("wide", "stress")))]
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, args.steps, args.warmup))
    if run:
        optimizer.load_state_dict(run["optimizer"])
        schedule.load_state_dict(run["schedule"])
        best_state = run["best_model"]
        publish_atomically(best_state, work / "best.pt")  # the work folder may be new (another machine)
    else:
        dice = mid_l3_dice(model, val_cases)
        run = {"step": 0, "best_val_dice": dice, "next_case_index": args.start_index, "val_curve": [[0, dice]],
               "wall_seconds": 0.0, "cpu_seconds": 0.0, "settings": {k: getattr(args, k) for k in RUN_SETTINGS}}
        best_state = copy.deepcopy(model.state())
        print(json.dumps({"step": 0, "val_mid_l3_dice": round(dice, 4)}), flush=True)
    print(json.dumps({"run": run["settings"], "from_step": run["step"], "next_case_index": run["next_case_index"]}),
          flush=True)

    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True)
    position = {"next_case_index": run["next_case_index"]}
    cases = counting(phantom_cases(TRAIN_SEEDS, args.variations.split(","), run["next_case_index"],
                                   levels=args.levels.split(",")), position)
    batches = crop_batches(cases, model.pixdim_mm, model.config.neighbour_slices, args.crop, args.crops_per_case,
                           args.batch, seed=run["next_case_index"])
    session = wall = time.perf_counter()
    cpu, losses = time.process_time(), []
    for step, (image, label) in zip(range(run["step"] + 1, args.steps + 1), batches):
        network.train()
        optimizer.zero_grad()
        loss = loss_function(network(image), label)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss))
        if step % args.log_every == 0:
            print(json.dumps({"step": step, "loss": round(float(np.mean(losses[-args.log_every:])), 4),
                              "lr": float(f"{schedule.get_last_lr()[0]:.3g}"),
                              "session_s": round(time.perf_counter() - session)}), flush=True)
        if step % args.val_every == 0 or step == args.steps:
            dice = mid_l3_dice(model, val_cases)
            latest = {**model.state(), "val_mid_l3_dice": dice, "step": step}
            publish_atomically(latest, work / "latest.pt")
            if dice > run["best_val_dice"]:
                best_state = copy.deepcopy(latest)
                publish_atomically(best_state, work / "best.pt")
            now_wall, now_cpu = time.perf_counter(), time.process_time()
            run.update(step=step, best_val_dice=max(dice, run["best_val_dice"]), val_curve=run["val_curve"] + [[step, dice]],
                       next_case_index=position["next_case_index"], model=model.state(), best_model=best_state,
                       optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                       wall_seconds=run["wall_seconds"] + now_wall - wall, cpu_seconds=run["cpu_seconds"] + now_cpu - cpu)
            wall, cpu = now_wall, now_cpu
            publish_atomically(run, work / "state.pt")
            print(json.dumps({"step": step, "val_mid_l3_dice": round(dice, 4), "best": round(run["best_val_dice"], 4),
                              "next_case_index": run["next_case_index"], "wall_h": round(run["wall_seconds"] / 3600, 2),
                              "cpu_h": round(run["cpu_seconds"] / 3600, 2)}), flush=True)


if __name__ == "__main__":
    main()
