"""Train the L3 locator (model/l3_locator.pt) on coronal projections of generated phantoms.

    python benchmarks/train_l3_locator.py --epochs 80
    python benchmarks/train_l3_locator.py --epochs 30 --init model/l3_locator.pt --lr 7e-4 \
        --draws 4000:standard:300 4100:wide:100 4200:stress:60
    # more thick-slice scans (5 mm: the per-level count was a whole vertebra off there)
    python benchmarks/train_l3_locator.py --epochs 30 --init model/l3_locator.pt --lr 5e-4 \
        --draws 4000:standard:300 4100:wide:100 4200:stress:60 4300:standard:80:5 4400:wide:40:5

Phantoms of seeds 4000, 4100 and 4200 (never used by the muscle model or the held-out evaluations:
seeds 2000-2300, 3100, 3200), long scans (up to 400 slices) so that random cuts in training see
every coverage. Only the small projections are cached (--cache), so a stopped run resumes without
regenerating. A locator file without the vertebral-body head gets one (`with_body_head`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.level.locator import build_locator, load_locator  # noqa: E402
from sarcopenia_app.level.training import LevelSample, phantom_sample, train_epoch, with_body_head  # noqa: E402
from sarcopenia_app.phantom import generate_case  # noqa: E402
from sarcopenia_app.publish import publish_atomically  # noqa: E402
from sarcopenia_app.safe_files import write_atomically  # noqa: E402

MATRICES = (192, 288)
DEFAULT_DRAWS = ("4000:standard:300", "4100:wide:100", "4200:stress:60")  # two in-plane resolutions: the projection must not depend on the matrix


def cached_sample(cache: Path, seed: int, index: int, variation: str = "standard",
                  slice_mm: Optional[float] = None) -> LevelSample:
    """The projection of one phantom (`slice_mm`: every slice that thick and that far apart)."""
    forced = "" if slice_mm is None else f"_{slice_mm:g}mm"
    path = cache / f"{seed}_{variation}{forced}_{index:04d}.npz"
    if not path.exists():
        slices = None if slice_mm is None else {"slice_spacing_mm": slice_mm, "slice_thickness_mm": slice_mm}
        case = generate_case(seed, index, matrix=MATRICES[index % len(MATRICES)], max_slices=400, variation=variation,
                             acquisition_overrides=slices)
        sample = phantom_sample(case)
        # a killed run leaves no broken entry
        write_atomically(path, lambda handle: np.savez_compressed(handle, image=sample.image, level=sample.level,
                                                                  in_l3=sample.in_l3, in_body=sample.in_body))
    data = np.load(path)
    return LevelSample(data["image"], data["level"], data["in_l3"], data["in_body"])


def training_set(cache: Path, draws: List[str]) -> List[LevelSample]:
    """Samples of every SEED:VARIATION:COUNT[:SLICE_MM] draw (cases 0..COUNT-1 of that seed)."""
    samples = []
    for draw in draws:
        seed, variation, count, *slice_mm = draw.split(":")
        thickness = float(slice_mm[0]) if slice_mm else None
        samples += [cached_sample(cache, int(seed), i, variation, thickness) for i in range(int(count))]
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", nargs="+", default=list(DEFAULT_DRAWS), help="SEED:VARIATION:COUNT[:SLICE_MM]")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=4)
    # projections with the whole level coordinate (since 2026-12-07; the older cache held it clipped at T10)
    parser.add_argument("--cache", default="/tmp/sarcopenia_l3_cache_t1_s1")
    parser.add_argument("--out", default=str(REPO / "model" / "l3_locator.pt"))
    parser.add_argument("--init", help="continue from this locator file instead of random weights")
    args = parser.parse_args()
    torch.manual_seed(0)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    samples = training_set(cache, args.draws)
    print(f"{len(samples)} projections ready in {time.perf_counter() - start:.0f} s", flush=True)

    locator = with_body_head(load_locator(args.init)) if args.init else build_locator()
    optimizer = torch.optim.AdamW(locator.network.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs,
                                                   pct_start=0.1)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        value = train_epoch(locator, samples, optimizer, rng, batch_size=args.batch)
        schedule.step()
        print(f"epoch {epoch + 1}/{args.epochs} loss {value:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
        if (epoch + 1) % 5 == 0:  # a usable file early, replaced atomically as training goes on
            publish_atomically(locator.state(), args.out)
    publish_atomically(locator.state(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
