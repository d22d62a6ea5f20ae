"""Train the shipped default muscle model (model/muscle_seg.pt) on generated phantoms.

    python benchmarks/train_default_model.py --data /tmp/train_ds --seed 1000 --count 40 --epochs 60

Uses the app's own MONAI Label train task on a local datastore, so what ships is what the server's
/train/muscle_seg would produce. Cases are labelled on every slice; seeds 1000+ are for training,
the evaluation benchmark uses other seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lib.configs.muscle_seg import NETWORK  # noqa: E402
from lib.trainers.muscle_seg import MuscleSegTrain  # noqa: E402
from monailabel.datastore.local import LocalDatastore  # noqa: E402

from sarcopenia_app.phantom import generate_case, write_case  # noqa: E402
from sarcopenia_app.transforms import DEFAULT_PIXDIM_MM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="/tmp/sarcopenia_train_ds")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--matrix", type=int, default=512, help="in-plane matrix of the generated cases")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--init", choices=("scratch", "current"), default="scratch",
                        help="current: continue from the model file at --out")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--out", default=str(REPO / "model" / "muscle_seg.pt"))
    parser.add_argument("--work", default="/tmp/sarcopenia_train_work")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    data = Path(args.data)
    start = time.perf_counter()
    for index in range(args.count):  # resumable: cases already written are kept
        case_id = f"ph{args.seed:05d}_{index:03d}"
        if not (data / "truth" / f"{case_id}.json").exists():
            write_case(generate_case(args.seed, index, matrix=args.matrix), data, "nifti", "all", with_label=True)
    print(f"data ready in {time.perf_counter() - start:.0f} s", flush=True)

    datastore = LocalDatastore(str(data), extensions=["*.nii.gz"], auto_reload=False)
    task = MuscleSegTrain(str(Path(args.work) / args.init), args.out, NETWORK, DEFAULT_PIXDIM_MM, "default model", {})
    start = time.perf_counter()
    stats = task({"max_epochs": args.epochs, "lr": args.lr, "val_split": 0.1, "crop_px": args.crop,
                  "samples_per_volume": 8, "init": args.init, "dataset": "CacheDataset"}, datastore)
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    print(json.dumps(stats, default=str, indent=1))


if __name__ == "__main__":
    main()
