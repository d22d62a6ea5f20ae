"""A new site: the shipped model, a few hundred unlabelled scans of the site and a handful of labels.

    # full size (the shipped network on its own 1 mm grid, 512 matrix)
    python benchmarks/new_site.py --out docs/new_site.json --plot docs/new_site.png
    # the same as one process per seed: pools first, then the seeds side by side, then one report
    python benchmarks/new_site.py --pools-only
    python benchmarks/new_site.py --seeds 0 --threads 1 --work /tmp/ns0 --out /tmp/ns0.json --plot /tmp/ns0.png &
    ...                           (seeds 1 and 2 likewise)
    python benchmarks/new_site.py --merge /tmp/ns0.json /tmp/ns1.json /tmp/ns2.json
    # smoke (minutes): tiny volumes, few scans, one epoch
    python benchmarks/new_site.py --matrix 96 --max-slices 12 --unlabelled 4 --ks 0,2 --seeds 0,1 \
        --pretrain-epochs 1 --epochs 2 --patience 1 --val-count 2 --test-count 2 --out /tmp/new_site.json ...

Source domain: the shipped model's training draws (standard phantoms). Target domain: the fixed
`new_site` setting (sarcopenia_app/phantom/site.py: sharp kernel at low dose, 100 kVp portal-venous
5 mm abdominal scans, field of view cutting the flanks, obese patients). Pools, all of the target
domain: N unlabelled scans (seed 7000), a labelled pool (seed 7100, labels on a few slices around
L3, as annotators leave them), a validation set (seed 7200, same kind of labels) and a held-out test
set (seed 7300, scored against the full truth).

Arms, for each seed (which draws the K labelled volumes and the random state):
  (a) shipped: model/muscle_seg.pt as it is;
  (b) fine-tuned: the shipped model fine-tuned on the K volumes;
  (c) adapted: self-supervised pretraining on the N unlabelled scans starting from the shipped
      weights (sarcopenia_app.pretrain with `start`), then fine-tuned on the same K; at K = 0 the
      adapted network itself (the shipped output layers on the pretrained layers);
  (d) scratch: random weights fine-tuned on the same K.
Fine-tuning goes through the app's train task (lib/trainers/muscle_seg.py) with the same budget for
b, c and d: at most `--epochs` epochs of `--crops-per-epoch` crops, validation Dice on the target
validation set after every epoch, stopped when it has not improved for `--patience` epochs; the
best validation epoch is kept. Scores: Dice over the L3 body and on the mid-L3 slice per test case;
per run the median over cases; per seed the paired differences b - a, c - b, d - b (and c - a at
K = 0); their mean and SD over seeds. The pretraining compute of arm c is on top and reported.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from monai.utils import set_determinism

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from eval_muscle import held_out_cases  # noqa: E402
from lib.trainers.muscle_seg import MuscleSegTrain  # noqa: E402
from monailabel.datastore.local import LocalDatastore  # noqa: E402
from pretrain_label_efficiency import l3_dice, per_run_medians, subset_datastore  # noqa: E402
from seed_runs import load_seed_runs, merged_header  # noqa: E402

from sarcopenia_app.analysis import model_description  # noqa: E402
from sarcopenia_app.phantom import write_dataset  # noqa: E402
from sarcopenia_app.phantom.site import NEW_SITE  # noqa: E402
from sarcopenia_app.pretrain import PretrainSettings, pretrain  # noqa: E402
from sarcopenia_app.segment import MuscleModel, load_model  # noqa: E402

SITE = NEW_SITE.name
SEEDS = {"unlabelled": 7000, "labelled": 7100, "validation": 7200, "test": 7300}
ARMS = ("shipped", "fine_tuned", "adapted", "scratch")  # (a), (b), (c), (d)
DIFFERENCES = (("fine_tuned", "shipped"), ("adapted", "fine_tuned"), ("scratch", "fine_tuned"), ("adapted", "shipped"))
METRICS = ("dice_slab", "dice_mid")


def make_pools(data: Path, args) -> Dict[str, object]:
    """The target domain's unlabelled scans, labelled pool and validation datalist (written once)."""
    pool = max(args.ks) + 4  # every seed draws its K from more than the largest K
    sizes = {"unlabelled": (args.unlabelled, "none", None), "labelled": (2 * pool, "l3", pool),
             "validation": (2 * args.val_count, "l3", args.val_count)}
    for pool, (count, labels, labelled) in sizes.items():
        if not (data / pool).exists():  # draws without L3 get no label: draw more than needed
            # written beside, then renamed: a killed write leaves no half pool that a rerun would take
            partial = data / f".{pool}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            write_dataset(partial, count=count, seed=SEEDS[pool], label_slices=labels, labelled=labelled,
                          matrix=args.matrix, max_slices=args.max_slices, variation=SITE)
            partial.rename(data / pool)
    labels = {pool: sorted(p.name for p in (data / pool / "labels" / "final").glob("*.nii.gz"))
              for pool in ("labelled", "validation")}
    return {"unlabelled": sorted(str(p) for p in (data / "unlabelled").glob("*.nii.gz")),
            "labelled": labels["labelled"],
            "validation": [{"image": str(data / "validation" / n),
                            "label": str(data / "validation" / "labels" / "final" / n)} for n in labels["validation"]]}


def finetune(datastore: Path, start: Optional[Path], validation: List[Dict], work: Path, seed: int, k: int,
             lr: float, args, as_current: bool = False, device: str = "cuda") -> Dict:
    """One run of the app's train task from `start` (a model or encoder file; None: random weights),
    validated on the target validation set every epoch, stopped `patience` epochs after its best.
    `as_current`: `start` is the published model (init: current), as in the app's fine-tuning, so
    only an epoch that beats it on the validation set replaces it (`kept_start` says none did).
    `device` is the train request's (MONAI Label's default "cuda"; a CPU machine trains on the CPU)."""
    publish = work / "model.pt"
    shutil.rmtree(work, ignore_errors=True)  # a model left there would be the bar to beat
    if as_current:
        work.mkdir(parents=True)
        shutil.copy(start, publish)
    set_determinism(seed=seed)  # every arm: same crops, same augmentation
    task = MuscleSegTrain(str(work / "run"), str(publish), args.network, args.pixdim_mm, f"K={k}", {},
                          encoder_path=str(start or ""))
    init = "current" if as_current else "encoder" if start else "scratch"
    request = {"init": init, "max_epochs": args.epochs, "lr": lr, "device": device,
               "early_stop_patience": args.patience, "val_ds": validation, "crop_px": args.crop_px,
               "dataset": "CacheDataset", "samples_per_volume": max(args.crops_per_epoch // k, 1)}
    cpu, wall = time.process_time(), time.perf_counter()
    stats = task(request, LocalDatastore(str(datastore), extensions=["*.nii.gz"], auto_reload=False))
    set_determinism(seed=None)
    # the task's engines keep its cached volumes in reference cycles that big tensors rarely make the
    # collector visit: ~1 GB per run at full size, the first smoke run ran out of memory after 25 runs
    gc.collect()
    kept_start = as_current and publish.read_bytes() == Path(start).read_bytes()
    best = torch.load(publish, map_location="cpu", weights_only=True)
    return {"model": str(publish), "epochs_run": int(stats.get("epoch", 0)),
            "best_epoch": 0 if kept_start else int(best["epoch"]),
            "val_dice": None if kept_start else round(float(best["val_dice"]), 4),
            "cpu_s": round(time.process_time() - cpu, 1), "wall_s": round(time.perf_counter() - wall, 1),
            **({"kept_start": kept_start} if as_current else {})}


def relative_change(state: Dict[str, torch.Tensor], reference: Dict[str, torch.Tensor]) -> float:
    """|state - reference| / |reference| over the tensors both hold (L2 over all their entries)."""
    names = [n for n in state if n in reference and reference[n].is_floating_point()]
    change = sum(float((state[n].float() - reference[n].float()).pow(2).sum()) for n in names)
    size = sum(float(reference[n].float().pow(2).sum()) for n in names)
    return round((change / size) ** 0.5, 5)


def adapt(images: Sequence[str], shipped: MuscleModel, work: Path, seed: int, args) -> Dict:
    """Arm (c)'s first half: self-supervised pretraining on the unlabelled target scans, starting
    from the shipped weights; the encoder file it writes is a whole network (shipped output layers)."""
    settings = PretrainSettings(max_epochs=args.pretrain_epochs, lr=args.pretrain_lr, crop_px=args.pretrain_crop_px,
                                samples_per_volume=8, volumes_per_batch=2, cache_rate=args.pretrain_cache_rate,
                                seed=seed, checkpoint_every_steps=20, restart=True)
    cpu = time.process_time()
    summary = pretrain(images, shipped.config, shipped.pixdim_mm, work / "checkpoint.pt", work / "encoder.pt",
                       settings, start=shipped)
    encoder = torch.load(work / "encoder.pt", map_location="cpu", weights_only=True)
    shipped_state = shipped.network.state_dict()
    return {**{k: v for k, v in summary.items() if k != "skipped"}, "cpu_s": round(time.process_time() - cpu, 1),
            "change_from_shipped": relative_change(encoder["model"], shipped_state),
            "output_layers_are_shipped": all(torch.equal(encoder["model"][n], shipped_state[n])
                                              for n in encoder["from_start"])}


def mean_sd(values: np.ndarray) -> Dict[str, Optional[float]]:
    return {"mean": round(float(values.mean()), 4),
            "sd": round(float(values.std(ddof=1)), 4) if len(values) > 1 else None}


def summarise(runs: List[Dict], ks: Sequence[int], seeds: Sequence[int], metric: str) -> Dict[str, Dict]:
    """Per K: each arm's mean (SD) over seeds of its per-run median, and each paired difference
    per seed with its mean (SD)."""
    table = per_run_medians(runs, metric)
    out = {}
    for k in ks:
        arms = {arm: np.array([table[(k, s, arm)] for s in seeds]) for arm in ARMS
                if all((k, s, arm) in table for s in seeds)}
        differences = {f"{x} - {y}": arms[x] - arms[y] for x, y in DIFFERENCES if x in arms and y in arms
                       and (k == 0) == ((x, y) == ("adapted", "shipped"))}
        out[str(k)] = {"arms": {a: mean_sd(v) for a, v in arms.items()},
                       "differences": {d: {**mean_sd(v), "per_seed": [round(float(x), 4) for x in v]}
                                       for d, v in differences.items()}}
    return out


def markdown(summary: Dict[str, Dict]) -> str:
    def cell(entry: Optional[Dict]) -> str:
        if entry is None:
            return "-"
        return f"{entry['mean']:.3f}" + (f" ({entry['sd']:.3f})" if entry["sd"] is not None else "")

    names = [f"{x} - {y}" for x, y in DIFFERENCES]
    lines = ["| K | " + " | ".join(ARMS) + " | " + " | ".join(names) + " |",
             "|---" * (1 + len(ARMS) + len(names)) + "|"]
    for k, row in summary.items():
        diffs = [f"{cell(row['differences'][n])} [{', '.join(f'{v:+.3f}' for v in row['differences'][n]['per_seed'])}]"
                 if n in row["differences"] else "-" for n in names]
        arms = [cell(row["arms"].get(a)) for a in ARMS]
        lines.append(f"| {k} | " + " | ".join(arms + diffs) + " |")
    return "\n".join(lines)


def plot(runs: List[Dict], summary: Dict[str, Dict], ks: Sequence[int], seeds: Sequence[int], path: Path,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    table = per_run_medians(runs, "dice_slab")
    x_of = {k: i for i, k in enumerate(ks)}
    colours = ("grey", "tab:orange", "tab:blue", "tab:green")
    for offset, (arm, colour) in zip((-0.15, -0.05, 0.05, 0.15), zip(ARMS, colours)):
        present = [k for k in ks if all((k, s, arm) in table for s in seeds)]
        values = np.array([[table[(k, s, arm)] for s in seeds] for k in present])
        if not present:
            continue
        x = np.array([x_of[k] for k in present]) + offset
        left.scatter(np.repeat(x, len(seeds)), values.ravel(), color=colour, alpha=0.4, s=16)
        left.errorbar(x, values.mean(axis=1), yerr=values.std(axis=1, ddof=1) if len(seeds) > 1 else None,
                      color=colour, marker="o", capsize=4, label=arm)
    left.set_xticks(range(len(ks)), [str(k) for k in ks])
    left.set_xlabel("labelled target volumes (K)")
    left.set_ylabel("median Dice over the L3 body, target test set")
    left.legend(fontsize=8)
    colours = ("tab:orange", "tab:blue", "tab:green", "tab:purple")
    for offset, (name, colour) in zip((-0.1, 0.0, 0.1, 0.0), zip([f"{x} - {y}" for x, y in DIFFERENCES], colours)):
        points = [(x_of[int(k)], row["differences"][name]) for k, row in summary.items() if name in row["differences"]]
        for x, entry in points:
            right.scatter([x + offset] * len(entry["per_seed"]), entry["per_seed"], color=colour, alpha=0.4, s=16)
            right.errorbar([x + offset], [entry["mean"]], yerr=[entry["sd"]] if entry["sd"] is not None else None,
                           color=colour, marker="o", capsize=4, label=name if x == points[0][0] else None)
    right.axhline(0.0, color="black", lw=0.8)
    right.set_xticks(range(len(ks)), [str(k) for k in ks])
    right.set_xlabel("labelled target volumes (K)")
    right.set_ylabel("paired difference of median Dice (per seed, mean, SD)")
    right.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "model" / "muscle_seg.pt"), help="the shipped model")
    parser.add_argument("--data", default="/tmp/sarcopenia_new_site_ds")
    parser.add_argument("--work", default="/tmp/sarcopenia_new_site_work")
    parser.add_argument("--out", default=str(REPO / "docs" / "new_site.json"))
    parser.add_argument("--plot", default=str(REPO / "docs" / "new_site.png"))
    parser.add_argument("--title", default="New site: shipped model, fine-tuned, adapted (SSL) + fine-tuned, scratch")
    parser.add_argument("--unlabelled", type=int, default=200, help="N: unlabelled target scans")
    parser.add_argument("--ks", default="0,2,4,8", help="K: labelled target volumes")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--matrix", type=int, default=512, help="in-plane matrix of the generated scans")
    parser.add_argument("--max-slices", type=int, default=60)
    parser.add_argument("--val-count", type=int, default=6, help="labelled target validation volumes")
    parser.add_argument("--test-count", type=int, default=20, help="held-out target test draws")
    parser.add_argument("--pretrain-epochs", type=int, default=50)
    parser.add_argument("--pretrain-crop-px", type=int, default=96)
    parser.add_argument("--pretrain-lr", type=float, default=1e-4,
                        help="self-supervised lr from the shipped weights (1e-3, the default from random weights, "
                             "moved them by 13 %% in the 20 steps of a smoke run)")
    parser.add_argument("--pretrain-cache-rate", type=float, default=1.0,
                        help="fraction of the unlabelled scans kept in memory on the model grid")
    parser.add_argument("--epochs", type=int, default=100, help="most fine-tuning epochs, every arm")
    parser.add_argument("--patience", type=int, default=10,
                        help="epochs without a better validation Dice before stopping")
    parser.add_argument("--crop-px", type=int, default=224)
    parser.add_argument("--crops-per-epoch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4, help="fine-tuning lr from trained weights (b, c)")
    parser.add_argument("--scratch-lr", type=float, default=1e-3, help="fine-tuning lr from random weights (d)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pools-only", action="store_true",
                        help="only write the target pools to --data (before one process per seed)")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="only combine earlier per-seed --out files")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args)
    args.ks, seeds = [int(k) for k in args.ks.split(",")], [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    shipped = load_model(args.model)
    args.network, args.pixdim_mm = shipped.config, shipped.pixdim_mm  # the full-size network on its own grid
    work, start = Path(args.work), time.perf_counter()

    pools = make_pools(Path(args.data), args)
    timing = {"pools_wall_s": round(time.perf_counter() - start, 1)}
    print(f"pools ready: {len(pools['unlabelled'])} unlabelled, {len(pools['labelled'])} labelled, "
          f"{len(pools['validation'])} validation ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.pools_only:
        return {"pools": pools, "timing": timing}
    runs: List[Dict] = [{"k": 0, "seed": s, "arm": "shipped", "model": args.model} for s in seeds]
    adaptation = {}
    for seed in seeds:
        adaptation[seed] = adapt(pools["unlabelled"], shipped, work / f"adapt_s{seed}", seed, args)
        print(f"seed {seed}: adapted {adaptation[seed]['step']} steps, {adaptation[seed]['cpu_s']} CPU-s, "
              f"change from shipped {adaptation[seed]['change_from_shipped']}", flush=True)
        runs.append({"k": 0, "seed": seed, "arm": "adapted", "model": adaptation[seed]["encoder_path"]})
        for k in [k for k in args.ks if k > 0]:
            names = sorted(np.random.default_rng(seed).choice(pools["labelled"], size=k, replace=False))
            datastore = subset_datastore(Path(args.data) / "labelled", names, work / f"ds_k{k}_s{seed}")
            starts = {"fine_tuned": (Path(args.model), args.lr),
                      "adapted": (Path(adaptation[seed]["encoder_path"]), args.lr), "scratch": (None, args.scratch_lr)}
            for arm, (from_file, lr) in starts.items():
                run = finetune(datastore, from_file, pools["validation"], work / f"ft_k{k}_s{seed}_{arm}", seed, k,
                               lr, args)
                runs.append({"k": k, "seed": seed, "arm": arm, "volumes": names, **run})
                print(f"K={k} seed={seed} {arm}: {run['epochs_run']} epochs (best {run['best_epoch']}, val Dice "
                      f"{run['val_dice']}), {run['cpu_s']} CPU-s", flush=True)
    # shipped at K > 0 is the same network: scored once, repeated for the paired differences
    runs += [{**r, "k": k} for k in args.ks if k > 0 for r in runs if r["arm"] == "shipped" and r["k"] == 0]

    files = sorted({r["model"] for r in runs})
    # strict loads: the adapted encoder file (arm c at K = 0) must be a whole network
    models = {f: shipped if f == args.model else load_model(f) for f in files}
    scores: Dict[str, List[Dict]] = {f: [] for f in files}
    scoring = time.perf_counter()
    for case in held_out_cases(SEEDS["test"], args.test_count, variation=SITE, matrix=args.matrix,
                               max_slices=args.max_slices):
        for f, s in l3_dice(case, models).items():
            scores[f].append({"case": case.case_id, **s})
        print(f"scored {case.case_id}", flush=True)
    timing.update(scoring_wall_s=round(time.perf_counter() - scoring, 1), models_scored=len(files))
    for r in runs:
        r["cases"] = scores[r["model"]]

    settings = {k: v for k, v in vars(args).items() if k not in ("network", "merge", "pools_only")}
    command = sys.argv if argv is None else ["benchmarks/new_site.py", *argv]
    extra = {"command": " ".join([Path(sys.executable).name, *command]),
             "args": {**settings, "seeds": seeds}, "site": NEW_SITE.describe(), "pool_seeds": SEEDS,
             "network": shipped.config.to_dict(), "pixdim_mm": shipped.pixdim_mm,
             "model_file": model_description(args.model),
             "versions": {p: version(p) for p in ("torch", "monai", "monailabel")},
             "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU", "adaptation": adaptation,
             "timing": timing, "wall_s": round(time.perf_counter() - start, 1)}
    print(f"wall time {extra['wall_s'] / 60:.1f} min")
    return report(runs, args.ks, seeds, args, extra)


def report(runs: List[Dict], ks: Sequence[int], seeds: Sequence[int], args, extra: Dict) -> Dict:
    """Paired summaries over `seeds` for both metrics, printed as tables; the JSON at `--out`, the plot."""
    summary = {metric: summarise(runs, ks, seeds, metric) for metric in METRICS}
    for metric in METRICS:
        print(f"\n## {metric}: median over test cases, mean (SD) over seeds; differences [per seed]\n\n"
              f"{markdown(summary[metric])}")
    result = {**extra, "summary": summary, "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    plot(runs, summary["dice_slab"], ks, seeds, Path(args.plot), args.title)
    print(f"\nwrote {args.out} and {args.plot}")
    return result


def merge(paths: Sequence[str], args) -> Dict:
    """One report over per-seed runs (one process per seed); each adapted its own encoder."""
    runs, seeds = load_seed_runs(paths)
    extra = merged_header(paths, runs, seeds, "benchmarks/new_site.py", ("summary", "runs", "adaptation"))
    extra["adaptation"] = {seed: a for r in runs for seed, a in r["adaptation"].items()}
    return report([run for r in runs for run in r["runs"]], runs[0]["args"]["ks"], seeds, args, extra)


if __name__ == "__main__":
    main()
