"""Active-learning simulation: does labelling the most uncertain scan first beat labelling a random one?

    python benchmarks/active_learning_sim.py --out docs/active_learning.json --plot docs/active_learning.png

For each seed: a pool of generated phantoms of mixed difficulty (seed 6000 + seed: ordinary scans,
very noisy ones, noisy ones with fatty muscle), labelled on the L3 slices as annotators leave them.
Both strategies start from the same 2 labelled scans (drawn by the seed) and the same model trained
on them from scratch; each round adds `--batch` scans chosen by the strategy and fine-tunes the
previous round's model through the app's own train task (`init: current`). "uncertain" ranks the
unlabelled pool with the server's code (sarcopenia_app.uncertainty: MC dropout + flip around the
L3 the locator finds, then sarcopenia_app.labelling_order); "random" draws. Every model is scored
on the same held-out phantoms (seed 6900, same mix). Sized for a 2-core CPU: a small network on a
coarse grid (the app's architecture, fewer channels), a few epochs per round.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import set_determinism

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from eval_muscle import dice  # noqa: E402
from lib.trainers.muscle_seg import MuscleSegTrain  # noqa: E402
from monailabel.datastore.local import LocalDatastore  # noqa: E402

from sarcopenia_app.ct_loader import load_ct  # noqa: E402
from sarcopenia_app.labelling_order import Candidate, labelling_order  # noqa: E402
from sarcopenia_app.level import L3Location, load_locator, locate_l3  # noqa: E402
from sarcopenia_app.network import NetworkConfig  # noqa: E402
from sarcopenia_app.phantom import generate_case, write_case  # noqa: E402
from sarcopenia_app.phantom.generate import PhantomCase  # noqa: E402
from sarcopenia_app.phantom.writer import stored_layout  # noqa: E402
from sarcopenia_app.segment import MuscleModel, load_model, predict_mask  # noqa: E402
from sarcopenia_app.uncertainty import score_image  # noqa: E402

NETWORK = NetworkConfig(channels=(16, 32, 64, 128), res_units=1, dropout=0.1)
STRATEGIES = ("uncertain", "random")
HELD_OUT_SEED = 6900
# (name, patient overrides, acquisition overrides): every pool and the held-out set cycle through these
DIFFICULTIES = (
    ("ordinary", {}, {}),
    ("very noisy", {}, {"noise_hu": 90.0}),
    ("noisy, fatty muscle", {"muscle_hu": 15.0}, {"noise_hu": 50.0}),
)


def mixed_cases(seed: int, count: int, matrix: int, max_slices: int) -> List[Tuple[str, PhantomCase]]:
    """`count` (difficulty, case): abdominal cases with L3, cycling through DIFFICULTIES (draws
    without L3 are skipped)."""
    cases, index = [], 0
    while len(cases) < count:
        name, patient, acquisition = DIFFICULTIES[len(cases) % len(DIFFICULTIES)]
        case = generate_case(seed, index, matrix=matrix, max_slices=max_slices, patient_overrides=patient,
                             acquisition_overrides={"coverage": "abdomen", **acquisition})
        index += 1
        if case.l3_mid_index is not None:
            cases.append((name, case))
    return cases


def write_pool(cases: Sequence[PhantomCase], folder: Path) -> List[str]:
    """Images and L3-slice labels in a MONAI Label folder layout; returns the image file names."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_case(case, folder, "nifti", "l3", with_label=True)["files"]["image"] for case in cases]


def labelled_datastore(pool: Path, names: Sequence[str], folder: Path) -> LocalDatastore:
    """A datastore that holds only the scans labelled so far (links into the pool)."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "labels" / "final").mkdir(parents=True)
    for name in names:
        for relative in (Path(name), Path("labels") / "final" / name):
            (folder / relative).symlink_to(pool / relative)
    return LocalDatastore(str(folder), extensions=["*.nii.gz"], auto_reload=False)


def train_round(datastore: LocalDatastore, start_from: Optional[Path], work: Path, seed: int, epochs: int,
                args) -> Path:
    """One run of the app's train task: from scratch, or fine-tuning `start_from` (init: current)."""
    publish = work / "model.pt"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if start_from is not None:
        shutil.copy(start_from, publish)
    labelled = len(datastore.get_labeled_images())
    set_determinism(seed=seed)
    task = MuscleSegTrain(str(work / "run"), str(publish), NETWORK, args.pixdim_mm, "active learning round", {})
    task({"init": "current" if start_from else "scratch", "max_epochs": epochs, "lr": args.lr, "val_split": 0.0,
          "crop_px": args.crop_px, "dataset": "CacheDataset",
          "samples_per_volume": max(args.crops_per_epoch // labelled, 1)}, datastore)
    set_determinism(seed=None)
    return publish


def held_out_dice(model: MuscleModel, cases: Sequence[PhantomCase]) -> Dict[str, float]:
    """Mean Dice over the L3 body of the held-out cases (the network runs on that slab only)."""
    per_case = []
    for case in cases:
        affine, to_stored = stored_layout(case, case.acquisition.orientation)
        body = case.level_slices("L3")
        image = MetaTensor(torch.from_numpy(to_stored(case.hu)[None].astype(np.float32)), affine=torch.from_numpy(affine))
        mask = predict_mask(model, image, z_range=(body[0], body[-1] + 1))
        per_case.append(dice(mask[..., body[0]:body[-1] + 1], to_stored(case.muscle)[..., body[0]:body[-1] + 1]))
    return {"dice_slab": float(np.mean(per_case)), "dice_slab_by_case": [round(d, 4) for d in per_case]}


def locate_pool(locator_path: Union[str, Path], folder: Path, names: Sequence[str],
                device: str = "cpu") -> Dict[str, L3Location]:
    """The L3 location of every pool scan, with one locator loaded once (the file may be replaced
    while a run goes on), on `device`."""
    locator = load_locator(locator_path, device)
    return {name: locate_l3(locator, load_ct(folder / name).image, device=device) for name in names}


def choose(strategy: str, model: MuscleModel, pool: Path, unlabelled: Sequence[str], locations: Dict[str, L3Location],
           batch: int, rng: np.random.Generator, passes: int, device: str = "cpu") -> tuple:
    """The next `batch` scans and the scores the choice was made from (uncertain only)."""
    if strategy == "random":
        return [str(n) for n in rng.choice(list(unlabelled), size=batch, replace=False)], {}
    scores = {}
    for name in unlabelled:
        image = load_ct(pool / name).image
        scores[name] = score_image(model, image, locations[name], passes=passes, device=device).score
    order = labelling_order({name: Candidate(score) for name, score in scores.items()}, now=time.time())
    return order[:batch], scores


def simulate(seed: int, args, held_out: Sequence[PhantomCase], locator_path: str, records: List[Dict], log) -> None:
    """Both strategies on this seed's pool; appends one record per round to `records`."""
    work = Path(args.work) / f"seed{seed}"
    drawn = mixed_cases(6000 + seed, args.pool, args.matrix, args.max_slices)
    names = write_pool([case for _, case in drawn], work / "pool")
    difficulty = {name: kind for name, (kind, _) in zip(names, drawn)}
    locations = locate_pool(locator_path, work / "pool", names)
    rng = np.random.default_rng(seed)
    start = [str(n) for n in rng.choice(names, size=args.start, replace=False)]
    first_model = train_round(labelled_datastore(work / "pool", start, work / "ds_start"), None,
                              work / "model_start", seed, args.first_epochs, args)
    first_dice = held_out_dice(load_model(first_model), held_out)
    for strategy in STRATEGIES:
        labelled, model_path = list(start), first_model
        strategy_rng = np.random.default_rng(seed + 1)
        records.append({"seed": seed, "strategy": strategy, "round": 0, "labels": len(labelled),
                        "labelled": list(labelled), **first_dice})
        for round_index in range(1, args.rounds + 1):
            unlabelled = [n for n in names if n not in labelled]
            t0 = time.perf_counter()
            chosen, scores = choose(strategy, load_model(model_path), work / "pool", unlabelled, locations,
                                    args.batch, strategy_rng, args.passes)
            labelled += chosen
            datastore = labelled_datastore(work / "pool", labelled, work / f"ds_{strategy}_{round_index}")
            model_path = train_round(datastore, model_path, work / f"model_{strategy}_{round_index}",
                                     seed + round_index, args.epochs, args)
            result = held_out_dice(load_model(model_path), held_out)
            records.append({"seed": seed, "strategy": strategy, "round": round_index, "labels": len(labelled),
                            "chosen": chosen, "chosen_difficulty": [difficulty[n] for n in chosen],
                            "scores": {n: round(s, 4) for n, s in scores.items()},
                            "score_difficulty": {n: difficulty[n] for n in scores}, "labelled": list(labelled),
                            "round_s": round(time.perf_counter() - t0, 1), **result})
            log(records[-1])


def labels_to_reach(records: List[Dict], strategy: str, seeds: Sequence[int], target: float) -> List[Optional[int]]:
    """Per seed: the fewest labels at which held-out Dice (L3 body) reached `target` (None: never)."""
    needed = []
    for seed in seeds:
        curve = sorted((r["labels"], r["dice_slab"]) for r in records if r["seed"] == seed and r["strategy"] == strategy)
        needed.append(next((labels for labels, value in curve if value >= target), None))
    return needed


def summary_table(records: List[Dict], seeds: Sequence[int], targets: Sequence[float]) -> str:
    lines = ["| strategy | " + " | ".join(f"labels to reach Dice {t:.2f} (per seed)" for t in targets)
             + " | Dice at the last round, mean (per seed) |", "|---|" + "---|" * (len(targets) + 1)]
    last = max(r["round"] for r in records)
    for strategy in STRATEGIES:
        cells = [", ".join("never" if n is None else str(n) for n in labels_to_reach(records, strategy, seeds, t))
                 for t in targets]
        final = [r["dice_slab"] for r in records if r["strategy"] == strategy and r["round"] == last]
        cells.append(f"{np.mean(final):.3f} ({', '.join(f'{v:.3f}' for v in final)})")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: List[Dict], seeds: Sequence[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for strategy, colour in zip(STRATEGIES, ("tab:red", "tab:blue")):
        for seed in seeds:
            curve = sorted((r["labels"], r["dice_slab"]) for r in records if r["seed"] == seed and r["strategy"] == strategy)
            axis.plot(*zip(*curve), color=colour, alpha=0.3, marker=".")
        labels = sorted({r["labels"] for r in records if r["strategy"] == strategy})
        mean = [np.mean([r["dice_slab"] for r in records if r["strategy"] == strategy and r["labels"] == n])
                for n in labels]
        axis.plot(labels, mean, color=colour, linewidth=2.5, marker="o", label=f"{strategy} (mean of {len(seeds)} seeds)")
    axis.set_xlabel("labelled scans")
    axis.set_ylabel("mean Dice over the L3 body, held-out phantoms")
    axis.set_title("Active learning: most uncertain scan vs random scan")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/sarcopenia_active_learning")
    parser.add_argument("--out", default=str(REPO / "docs" / "active_learning.json"))
    parser.add_argument("--plot", default=str(REPO / "docs" / "active_learning.png"))
    parser.add_argument("--locator", default=str(REPO / "model" / "l3_locator.pt"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pool", type=int, default=8, help="generated scans per seed (all labelled in truth)")
    parser.add_argument("--start", type=int, default=2, help="labelled scans before the first round")
    parser.add_argument("--batch", type=int, default=1, help="scans added per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--held-out", type=int, default=6)
    parser.add_argument("--matrix", type=int, default=96)
    parser.add_argument("--max-slices", type=int, default=30)
    parser.add_argument("--pixdim-mm", type=float, default=2.5, help="model grid of the simulation network")
    parser.add_argument("--first-epochs", type=int, default=16, help="training from scratch on the first scans")
    parser.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs per round")
    parser.add_argument("--crop-px", type=int, default=96)
    parser.add_argument("--crops-per-epoch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--passes", type=int, default=2, help="MC dropout + flip passes per scored scan")
    parser.add_argument("--targets", default="0.70,0.75,0.80")
    parser.add_argument("--replot", action="store_true", help="only redo the table and plot from --out")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    torch.set_num_threads(2)
    started = time.perf_counter()
    if args.replot:
        result = json.loads(Path(args.out).read_text())
    else:
        drawn = mixed_cases(HELD_OUT_SEED, args.held_out, args.matrix, args.max_slices)
        held_out = [case for _, case in drawn]
        records: List[Dict] = []
        result = {"command": " ".join(["python", *sys.argv]), "args": vars(args), "network": NETWORK.to_dict(),
                  "versions": {p: version(p) for p in ("torch", "monai", "monailabel")},
                  "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
                  "held_out": [{"case": c.case_id, "difficulty": kind} for kind, c in drawn], "records": records}

        def log(record: Dict) -> None:
            print(json.dumps({k: record[k] for k in ("seed", "strategy", "labels", "chosen_difficulty", "dice_slab",
                                                     "round_s")}), flush=True)
            result["wall_s"] = round(time.perf_counter() - started, 1)
            Path(args.out).write_text(json.dumps(result, indent=1))

        for seed in seeds:
            simulate(seed, args, held_out, args.locator, records, log)
    result["table"] = summary_table(result["records"], seeds, targets)
    Path(args.out).write_text(json.dumps(result, indent=1))
    plot(result["records"], seeds, Path(args.plot))
    print(f"\n{result['table']}\n\nwall time {result.get('wall_s', 0) / 60:.1f} min; wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
