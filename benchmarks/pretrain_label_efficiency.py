"""Label efficiency of self-supervised pretraining: fine-tuning with K labelled volumes from a
pretrained start against the same fine-tuning from random weights.

    python benchmarks/pretrain_label_efficiency.py --out docs/pretraining_label_efficiency.json \
        --plot docs/pretraining_label_efficiency.png

For each seed: pretrain (sarcopenia_app.pretrain, the code behind /train/muscle_seg_pretrain) on
N unlabelled phantoms (seed 5000), then for each K fine-tune through the app's own train task
(`init: encoder`, the file pretraining wrote) and from scratch (`init: scratch`) on the same K
volumes (drawn by the seed from phantoms of seed 5100 labelled on a few slices around L3, as
annotators leave them), with the same epochs, crops, learning rate and random state. Every model
is scored on the same held-out phantoms (seed 2000): Dice on the mid-L3 slice and over the L3
body. Sized for a 2-core CPU: a small network on a coarse grid (the app's architecture, fewer
channels); the pretraining compute comes on top of the (equal) fine-tuning compute and is
reported separately.
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
from typing import Dict, List, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import set_determinism

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from eval_muscle import dice, held_out_cases  # noqa: E402
from lib.trainers.muscle_seg import MuscleSegTrain  # noqa: E402
from monailabel.datastore.local import LocalDatastore  # noqa: E402

from sarcopenia_app.network import NetworkConfig  # noqa: E402
from sarcopenia_app.phantom import write_dataset  # noqa: E402
from sarcopenia_app.phantom.writer import stored_layout  # noqa: E402
from sarcopenia_app.pretrain import PretrainSettings, pretrain  # noqa: E402
from sarcopenia_app.segment import MuscleModel, load_model, predict_mask  # noqa: E402

NETWORK = NetworkConfig(channels=(16, 32, 64, 128), res_units=1, dropout=0.1)
ARMS = ("pretrained", "scratch")


def make_pools(data: Path, unlabelled: int, labelled_pool: int, matrix: int, max_slices: int) -> tuple:
    """Unlabelled pretraining volumes and the ids of the L3-labelled fine-tuning volumes."""
    pretrain_dir, finetune_dir = data / "unlabelled", data / "labelled"
    if not pretrain_dir.exists():
        write_dataset(pretrain_dir, count=unlabelled, seed=5000, label_slices="none", matrix=matrix,
                      max_slices=max_slices)
    if not finetune_dir.exists():  # draws without L3 get no label: draw more than needed
        write_dataset(finetune_dir, count=2 * labelled_pool, seed=5100, label_slices="l3", labelled=labelled_pool,
                      matrix=matrix, max_slices=max_slices)
    images = sorted(str(p) for p in pretrain_dir.glob("*.nii.gz"))
    labelled = sorted(p.name for p in (finetune_dir / "labels" / "final").glob("*.nii.gz"))
    return images, finetune_dir, labelled


def subset_datastore(pool: Path, names: Sequence[str], dest: Path) -> Path:
    """A datastore folder holding only `names` (links to the pool's images and labels)."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "labels" / "final").mkdir(parents=True)
    for name in names:
        (dest / name).symlink_to(pool / name)
        (dest / "labels" / "final" / name).symlink_to(pool / "labels" / "final" / name)
    return dest


def finetune(datastore: Path, init: str, encoder: Path, work: Path, seed: int, k: int, args) -> Dict:
    """One fine-tuning run through the app's train task: `crops_per_epoch` crops per epoch whatever
    K is (one volume per optimiser step, `crops_per_epoch / K` crops from it)."""
    publish = work / "model.pt"
    shutil.rmtree(work, ignore_errors=True)
    set_determinism(seed=seed)  # both arms: same crops, same augmentation, same initial decoder
    task = MuscleSegTrain(str(work / "run"), str(publish), NETWORK, args.pixdim_mm, f"K={k} {init}", {},
                          encoder_path=str(encoder))
    datastore_api = LocalDatastore(str(datastore), extensions=["*.nii.gz"], auto_reload=False)
    request = {"init": "encoder" if init == "pretrained" else "scratch", "max_epochs": args.epochs, "lr": args.lr,
               "val_split": 0.0, "crop_px": args.crop_px, "dataset": "CacheDataset",
               "samples_per_volume": args.crops_per_epoch // k}
    cpu = time.process_time()
    task(request, datastore_api)
    set_determinism(seed=None)
    return {"model": str(publish), "cpu_s": round(time.process_time() - cpu, 1)}


def l3_dice(case, models: Dict[str, MuscleModel], device: str = "cpu") -> Dict[str, Dict[str, float]]:
    """Mid-L3 and L3-body Dice of each model on one held-out case (network on the L3 slab only)."""
    affine, to_stored = stored_layout(case, case.acquisition.orientation)
    return slab_dice(to_stored(case.hu), to_stored(case.muscle), affine,
                     (min(case.level_slices("L3")), max(case.level_slices("L3")), case.l3_mid_index), models, device)


def slab_dice(hu: np.ndarray, truth: np.ndarray, affine: np.ndarray, l3_slices: Sequence[int],
              models: Dict[str, MuscleModel], device: str = "cpu") -> Dict[str, Dict[str, float]]:
    """`l3_dice` on stored arrays: `l3_slices` is (first, last, mid) slice of the L3 body."""
    first, last, mid = l3_slices
    image = MetaTensor(torch.from_numpy(hu[None].astype(np.float32)), affine=torch.from_numpy(affine))
    scores = {}
    for name, model in models.items():
        mask = predict_mask(model, image, device, z_range=(max(first - 1, 0), min(last + 2, hu.shape[2])))
        scores[name] = {"dice_mid": dice(mask[..., mid], truth[..., mid]),
                        "dice_slab": dice(mask[..., first:last + 1], truth[..., first:last + 1])}
    return scores


def per_run_medians(runs: List[Dict], metric: str) -> Dict[tuple, float]:
    return {(r["k"], r["seed"], r["arm"]): float(np.median([c[metric] for c in r["cases"]])) for r in runs}


def summary_table(runs: List[Dict], ks: Sequence[int], seeds: Sequence[int], metric: str) -> str:
    """Per K: mean (SD) over seeds of each run's median Dice, and the paired difference."""
    medians = per_run_medians(runs, metric)
    lines = ["| K labelled | from scratch | pretrained | pretrained - scratch (per seed) | mean difference |",
             "|---|---|---|---|---|"]
    for k in ks:
        arms = {arm: np.array([medians[(k, s, arm)] for s in seeds]) for arm in ARMS}
        difference = arms["pretrained"] - arms["scratch"]
        lines.append(f"| {k} | {arms['scratch'].mean():.3f} ({arms['scratch'].std(ddof=1):.3f}) "
                     f"| {arms['pretrained'].mean():.3f} ({arms['pretrained'].std(ddof=1):.3f}) "
                     f"| {', '.join(f'{d:+.3f}' for d in difference)} | {difference.mean():+.3f} |")
    return "\n".join(lines)


def plot(runs: List[Dict], pretraining: Dict[int, Dict], ks: Sequence[int], seeds: Sequence[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    medians = per_run_medians(runs, "dice_slab")
    for offset, (arm, colour) in zip((-0.06, 0.06), zip(ARMS, ("tab:orange", "tab:blue"))):
        values = np.array([[medians[(k, s, arm)] for s in seeds] for k in ks])
        x = np.log2(ks) + offset
        left.scatter(np.repeat(x, len(seeds)), values.ravel(), color=colour, alpha=0.4, s=18)
        left.errorbar(x, values.mean(axis=1), yerr=values.std(axis=1, ddof=1), color=colour, marker="o",
                      capsize=4, label=f"{arm} (mean, SD over {len(seeds)} seeds)")
    left.set_xticks(np.log2(ks), [str(k) for k in ks])
    left.set_xlabel("labelled volumes for fine-tuning (K)")
    left.set_ylabel("median Dice over the L3 body, held-out phantoms")
    left.set_title("Label efficiency")
    left.legend(loc="lower right", fontsize=8)
    for seed, run in pretraining.items():
        steps = [h["step"] for h in run["history"]]
        right.plot(steps, [h["reconstruction"] for h in run["history"]], label=f"reconstruction L1, seed {seed}")
    right.set_xlabel("pretraining step")
    right.set_ylabel("L1 reconstruction loss (windowed HU, 0..1)")
    right.set_title("Self-supervised pretraining")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/tmp/sarcopenia_pretrain_ds")
    parser.add_argument("--work", default="/tmp/sarcopenia_pretrain_work")
    parser.add_argument("--out", default=str(REPO / "docs" / "pretraining_label_efficiency.json"))
    parser.add_argument("--plot", default=str(REPO / "docs" / "pretraining_label_efficiency.png"))
    parser.add_argument("--unlabelled", type=int, default=32, help="N: unlabelled volumes for pretraining")
    parser.add_argument("--ks", default="2,4,8", help="labelled volumes for fine-tuning")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--matrix", type=int, default=128, help="in-plane matrix of the generated volumes")
    parser.add_argument("--max-slices", type=int, default=60)
    parser.add_argument("--pixdim-mm", type=float, default=2.5, help="model grid of the benchmark network")
    parser.add_argument("--pretrain-epochs", type=int, default=25)
    parser.add_argument("--pretrain-crop-px", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=40, help="fine-tuning epochs, both arms")
    parser.add_argument("--crop-px", type=int, default=96)
    parser.add_argument("--crops-per-epoch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate, both arms")
    parser.add_argument("--eval-count", type=int, default=12, help="held-out draws of seed 2000 (those with L3 count)")
    args = parser.parse_args()
    ks, seeds = [int(k) for k in args.ks.split(",")], [int(s) for s in args.seeds.split(",")]
    work = Path(args.work)
    torch.set_num_threads(2)

    start = time.perf_counter()
    images, pool, labelled = make_pools(Path(args.data), args.unlabelled, max(ks) + 4, args.matrix, args.max_slices)
    print(f"pools ready: {len(images)} unlabelled, {len(labelled)} labelled ({time.perf_counter() - start:.0f} s)",
          flush=True)

    pretraining, runs = {}, []
    for seed in seeds:
        settings = PretrainSettings(max_epochs=args.pretrain_epochs, crop_px=args.pretrain_crop_px,
                                    samples_per_volume=8, volumes_per_batch=2, cache_rate=1.0, seed=seed,
                                    checkpoint_every_steps=20)
        cpu = time.process_time()
        summary = pretrain(images, NETWORK, args.pixdim_mm, work / f"pretrain_{seed}" / "checkpoint.pt",
                           work / f"pretrain_{seed}" / "encoder.pt", settings)
        pretraining[seed] = {**summary, "cpu_s": round(time.process_time() - cpu, 1)}
        print(f"seed {seed}: pretrained {summary['step']} steps, {pretraining[seed]['cpu_s']} CPU-s, "
              f"last {summary['history'][-1]}", flush=True)
        for k in ks:
            names = sorted(np.random.default_rng(seed).choice(labelled, size=k, replace=False))
            datastore = subset_datastore(pool, names, work / f"ds_k{k}_s{seed}")
            for arm in ARMS:
                run = finetune(datastore, arm, Path(summary["encoder_path"]), work / f"ft_k{k}_s{seed}_{arm}", seed, k,
                               args)
                runs.append({"k": k, "seed": seed, "arm": arm, "volumes": names, **run})
                print(f"K={k} seed={seed} {arm}: {run['cpu_s']} CPU-s", flush=True)

    models = {i: load_model(r["model"]) for i, r in enumerate(runs)}
    for r in runs:
        r["cases"] = []
    for case in held_out_cases(2000, args.eval_count):
        for i, scores in l3_dice(case, models).items():
            runs[i]["cases"].append({"case": case.case_id, **scores})
        print(f"scored {case.case_id}", flush=True)

    tables = {metric: summary_table(runs, ks, seeds, metric) for metric in ("dice_slab", "dice_mid")}
    for metric, table in tables.items():
        print(f"\n## {metric}: median over held-out cases, mean (SD) over seeds\n\n{table}")
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args),
              "network": NETWORK.to_dict(), "versions": {p: version(p) for p in ("torch", "monai", "monailabel")},
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU", "tables": tables,
              "pretraining": {s: {k: v for k, v in p.items()} for s, p in pretraining.items()}, "runs": runs,
              "wall_s": round(time.perf_counter() - start, 1)}
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    plot(runs, pretraining, ks, seeds, Path(args.plot))
    print(f"\nwall time {result['wall_s'] / 60:.1f} min; wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
