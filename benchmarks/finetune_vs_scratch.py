"""Fine-tuning the shipped model on 8 labelled volumes against training the same network from
scratch on them, with the same epochs, and the CPU time each took.

    python benchmarks/finetune_vs_scratch.py --epochs 15 --eval-count 12

The 8 volumes (seed 3000) carry labels on a few slices around L3 only, as annotators leave them;
both runs go through the app's MONAI Label train task. Evaluation: mid-L3 and L3-slab Dice on
held-out phantoms (seed 2000).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from eval_muscle import held_out_cases, score_case, summary_table  # noqa: E402
from lib.configs.muscle_seg import NETWORK  # noqa: E402
from lib.trainers.muscle_seg import MuscleSegTrain  # noqa: E402
from monailabel.datastore.local import LocalDatastore  # noqa: E402

from sarcopenia_app.phantom import write_dataset  # noqa: E402
from sarcopenia_app.segment import load_model  # noqa: E402
from sarcopenia_app.transforms import DEFAULT_PIXDIM_MM  # noqa: E402


def train(init: str, start_from: Path, data: Path, work: Path, epochs: int) -> tuple:
    publish = work / "model.pt"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if init == "current":
        shutil.copy(start_from, publish)
    task = MuscleSegTrain(str(work / "run"), str(publish), NETWORK, DEFAULT_PIXDIM_MM, init, {})
    datastore = LocalDatastore(str(data), extensions=["*.nii.gz"], auto_reload=False)
    cpu, wall = time.process_time(), time.perf_counter()
    task({"max_epochs": epochs, "init": init, "val_split": 0.0, "crop_px": 224, "samples_per_volume": 8,
          "lr": 3e-4 if init == "current" else 1e-3, "dataset": "CacheDataset"}, datastore)
    return publish, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--data", default="/tmp/sarcopenia_finetune_ds")
    parser.add_argument("--work", default="/tmp/sarcopenia_finetune_work")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--eval-seed", type=int, default=2000)
    parser.add_argument("--eval-count", type=int, default=12)
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "labels" / "final").exists():
        # draws without L3 get no label: draw more cases than needed, label the first 8 with L3
        write_dataset(data, count=12, seed=3000, label_slices="l3", labelled=8)
    labelled = len(list((data / "labels" / "final").glob("*.nii.gz")))
    results = {}
    for init in ("current", "scratch"):
        path, cpu_s, wall_s = train(init, Path(args.model), data, Path(args.work) / init, args.epochs)
        results[init] = (load_model(path), cpu_s, wall_s)
        print(f"{init}: CPU {cpu_s:.0f} s, wall {wall_s:.0f} s", flush=True)
    rows = []
    for case in held_out_cases(args.eval_seed, args.eval_count):
        row = {}
        for init, (model, _, _) in results.items():
            scored = score_case(case, model)
            row.update({key.replace("net_", f"{init}_"): value for key, value in scored.items()})
        rows.append(row)
    print(f"\n## Fine-tuning on {labelled} volumes labelled around L3, {args.epochs} epochs each\n")
    print(summary_table(rows, (("current", "fine-tuned from the shipped model"), ("scratch", "trained from scratch"),
                               ("baseline", "classical baseline (no training)"))))
    for init, (_, cpu_s, wall_s) in results.items():
        print(f"- {init}: {cpu_s / 60:.1f} CPU-minutes ({wall_s / 60:.1f} min wall) on this 2-core machine")


if __name__ == "__main__":
    main()
