"""Active learning on a pool with rare cases: does labelling the most uncertain scan first find the
rare hard scans, and does that help on them, when the start is the shipped model?

    # full size (the shipped network on its own 1 mm grid, 512 matrix); a GPU session
    python benchmarks/active_learning_rare.py --device cuda --out docs/active_learning_rare.json \
        --plot docs/active_learning_rare.png
    # smoke (minutes on a CPU): tiny volumes, small pool, short fine-tuning: see docs/active_learning.md

Pool, per seed (seed 8000 + seed): `--pool` abdominal scans, `--rare-fraction` of them (12 %: 5 of
40) from the named hard subgroups of sarcopenia_app/phantom/subgroups.py in turn (obese with arms
down, ascites, 5 mm slices, fatty muscle), the rest ordinary standard draws that are in none of
them; labels on the few slices around L3 that annotators leave (the generator's L3 label slices).
Both strategies start from the shipped model (model/muscle_seg.pt) and the same `--start` labelled
ordinary scans (drawn by the seed). Each round a strategy picks `--batch` scans ("uncertain": the
server's code, sarcopenia_app.uncertainty.score_image around the L3 the locator finds, then
sarcopenia_app.labelling_order; "random": drawn), they get their labels, and the previous round's
model is fine-tuned on everything labelled so far through the app's train task (`init: current`):
at most `--epochs` epochs of `--crops-per-epoch` crops, validation Dice after every epoch on a
small fixed validation set of the pool's mix (seed 8200), stopped `--patience` epochs after the
best; as in the app, only an epoch that beats the model it started from replaces it. The same
round of both strategies trains with the same random state, so the two differ only in the scans.

Test (seed 8300, the same for every model): `--test-count` scans, `--test-rare-fraction` of them
rare (25 %: 2 per subgroup of 32), scored against the full truth over the L3 body. Reported per
round: Dice on the ordinary and on the rare test scans (mean over cases), the whole test set at the
pool's mix ((1 - f) ordinary + f rare, f the pool's rare fraction: the subgroups are oversampled
only so that their mean is not one or two scans), Dice per subgroup, and how many rare scans each
strategy has labelled; per seed the paired differences uncertain - random, their mean and SD.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from active_learning_sim import STRATEGIES, choose, locate_pool  # noqa: E402
from new_site import finetune, mean_sd  # noqa: E402
from pretrain_label_efficiency import l3_dice, subset_datastore  # noqa: E402
from seed_runs import load_seed_runs, merged_header  # noqa: E402

from sarcopenia_app.analysis import model_description  # noqa: E402
from sarcopenia_app.phantom import write_case  # noqa: E402
from sarcopenia_app.phantom.subgroups import ORDINARY, RARE, mixed_set, rare_count  # noqa: E402
from sarcopenia_app.segment import load_model  # noqa: E402

SEEDS = {"pool": 8000, "validation": 8200, "test": 8300}
METRICS = ("dice_mix", "dice_rare", "dice_ordinary", "rare_picked")


def write_mix(folder: Path, seed: int, count: int, rare_fraction: float, args) -> Dict[str, str]:
    """Image file name -> subgroup for `count` scans of the mix, written with their L3-slice labels
    one at a time as they are drawn."""
    folder.mkdir(parents=True, exist_ok=True)
    return {write_case(case, folder, "nifti", "l3", with_label=True)["files"]["image"]: group
            for group, case in mixed_set(seed, count, rare_fraction, args.matrix, args.max_slices)}


def run_seed(seed: int, validation: List[Dict], args) -> List[Dict]:
    """Both strategies' rounds on this seed's pool: one record per strategy and round (round 0 is
    the shipped model on the start labels)."""
    work = Path(args.work) / f"seed{seed}"
    pool = work / "pool"
    groups = write_mix(pool, SEEDS["pool"] + seed, args.pool, args.rare_fraction, args)
    names = list(groups)
    locations = locate_pool(args.locator, pool, names, args.device)
    ordinary = [n for n in names if groups[n] == ORDINARY.name]
    start = sorted(str(n) for n in np.random.default_rng(seed).choice(ordinary, size=args.start, replace=False))
    records = []
    for strategy in STRATEGIES:
        labelled, model_path = list(start), Path(args.model)
        pick_rng = np.random.default_rng(seed + 1)
        records.append({"seed": seed, "strategy": strategy, "round": 0, "labels": len(labelled), "rare_picked": 0,
                        "labelled": list(labelled), "model": str(model_path)})
        for round_index in range(1, args.rounds + 1):
            unlabelled = [n for n in names if n not in labelled]
            t0 = time.perf_counter()
            chosen, scores = choose(strategy, load_model(model_path, args.device), pool, unlabelled, locations,
                                    args.batch, pick_rng, args.passes, args.device)
            choose_s = time.perf_counter() - t0
            labelled += chosen
            datastore = subset_datastore(pool, labelled, work / f"ds_{strategy}_{round_index}")
            run = finetune(datastore, model_path, validation, work / f"ft_{strategy}_{round_index}",
                           100 * seed + round_index, len(labelled), args.lr, args, as_current=True,
                           device=args.device)
            model_path = Path(run["model"])
            records.append({"seed": seed, "strategy": strategy, "round": round_index, "labels": len(labelled),
                            "chosen": chosen, "chosen_groups": [groups[n] for n in chosen],
                            "rare_picked": sum(groups[n] != ORDINARY.name for n in labelled),
                            "labelled": list(labelled), "scores": {n: round(s, 4) for n, s in scores.items()},
                            "score_groups": {n: groups[n] for n in scores}, "choose_s": round(choose_s, 1), **run})
            print(json.dumps({k: records[-1][k] for k in ("seed", "strategy", "round", "chosen_groups", "epochs_run",
                                                          "kept_start", "choose_s", "wall_s")}), flush=True)
    return records


def dice_by_mix(cases: Sequence[Dict], pool_rare_fraction: float) -> Dict:
    """Mean Dice over the L3 body: ordinary, rare, each subgroup, and the pool's mix of the two."""
    def mean(rows) -> float:
        return float(np.mean([r["dice_slab"] for r in rows]))

    ordinary = mean([c for c in cases if c["group"] == ORDINARY.name])
    rare = mean([c for c in cases if c["group"] != ORDINARY.name])
    by_group = {g.name: mean([c for c in cases if c["group"] == g.name]) for g in (ORDINARY, *RARE)
                if any(c["group"] == g.name for c in cases)}
    return {"dice_mix": (1 - pool_rare_fraction) * ordinary + pool_rare_fraction * rare, "dice_rare": rare,
            "dice_ordinary": ordinary, "dice_by_group": by_group}


def paired(records: Sequence[Dict], seeds: Sequence[int], rounds: int, key) -> Dict[str, Dict]:
    """Per round: each strategy's mean (SD) over seeds of `key(record)`, and the per-seed paired
    differences uncertain - random with their mean (SD)."""
    value = {(r["seed"], r["strategy"], r["round"]): key(r) for r in records}
    out = {}
    for round_index in range(rounds + 1):
        arms = {s: np.array([value[(seed, s, round_index)] for seed in seeds], float) for s in STRATEGIES}
        difference = arms["uncertain"] - arms["random"]
        out[str(round_index)] = {**{s: mean_sd(v) for s, v in arms.items()},
                                 "difference": {**mean_sd(difference), "per_seed": [round(float(d), 4)
                                                                                    for d in difference]}}
    return out


def summarise(records: Sequence[Dict], seeds: Sequence[int], rounds: int) -> Dict[str, Dict]:
    summary = {m: paired(records, seeds, rounds, lambda r, m=m: r[m]) for m in METRICS}
    groups = sorted({g for r in records for g in r["dice_by_group"]})
    summary["dice_by_group"] = {g: paired(records, seeds, rounds, lambda r, g=g: r["dice_by_group"][g]) for g in groups}
    return summary


def cell(entry: Dict, signed: bool = False, digits: int = 3) -> str:
    text = f"{entry['mean']:{'+' if signed else ''}.{digits}f}"
    return text + (f" ({entry['sd']:.{digits}f})" if entry["sd"] is not None else "")


def markdown(summary: Dict[str, Dict], labels_by_round: Dict[str, int]) -> str:
    """Per round: each metric for both strategies and the paired difference [per seed]; then Dice
    per subgroup at the last round."""
    names = {"dice_mix": "Dice, pool mix", "dice_rare": "Dice, rare", "dice_ordinary": "Dice, ordinary",
             "rare_picked": "rare scans labelled"}
    lines = ["| round | labelled | " + " | ".join(f"{names[m]}: uncertain, random, difference [per seed]"
                                               for m in METRICS) + " |", "|---" * (2 + len(METRICS)) + "|"]
    for round_index, labels in labels_by_round.items():
        cells = []
        for metric in METRICS:
            row, digits = summary[metric][round_index], 1 if metric == "rare_picked" else 3
            per_seed = ", ".join(f"{d:+.{digits}f}" for d in row["difference"]["per_seed"])
            cells.append(f"{cell(row['uncertain'], digits=digits)}, {cell(row['random'], digits=digits)}, "
                         f"{cell(row['difference'], True, digits)} [{per_seed}]")
        lines.append(f"| {round_index} | {labels} | " + " | ".join(cells) + " |")
    last = max(labels_by_round, key=int)
    lines += ["", f"| subgroup (test) | shipped (round 0) | uncertain, round {last} | random, round {last} | "
              "difference [per seed] |", "|---|---|---|---|---|"]
    for group, rows in summary["dice_by_group"].items():
        row = rows[last]
        per_seed = ", ".join(f"{d:+.3f}" for d in row["difference"]["per_seed"])
        lines.append(f"| {group} | {cell(rows['0']['uncertain'])} | {cell(row['uncertain'])} | {cell(row['random'])} "
                     f"| {cell(row['difference'], True)} [{per_seed}] |")
    return "\n".join(lines)


def plot(records: Sequence[Dict], seeds: Sequence[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = {"dice_mix": "Dice over the L3 body, test set at the pool's mix", "dice_rare": "Dice, rare test scans",
              "rare_picked": "rare scans labelled so far"}
    for axis, (metric, label) in zip(axes, labels.items()):
        for strategy, colour in zip(STRATEGIES, ("tab:red", "tab:blue")):
            mine = [r for r in records if r["strategy"] == strategy]
            for seed in seeds:
                curve = sorted((r["labels"], r[metric]) for r in mine if r["seed"] == seed)
                axis.plot(*zip(*curve), color=colour, alpha=0.3, marker=".")
            counts = sorted({r["labels"] for r in mine})
            axis.plot(counts, [np.mean([r[metric] for r in mine if r["labels"] == n]) for n in counts], color=colour,
                      linewidth=2.5, marker="o", label=f"{strategy} (mean of {len(seeds)} seeds)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("labelled scans")
        axis.set_ylabel(label)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(records: List[Dict], seeds: Sequence[int], args, extra: Dict) -> Dict:
    """The paired summary over `seeds`, its markdown table, the JSON at `--out` and the plot."""
    summary = summarise(records, seeds, args.rounds)
    labels_by_round = {str(r["round"]): r["labels"] for r in records}
    table = markdown(summary, labels_by_round)
    result = {**extra, "summary": summary, "table": table, "records": records}
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    plot(records, seeds, Path(args.plot), args.title)
    print(f"\n{table}\n\nwrote {args.out} and {args.plot}")
    return result


def merge(paths: Sequence[str], args) -> Dict:
    """One report over several per-seed runs (e.g. one process per seed)."""
    runs, seeds = load_seed_runs(paths)
    args.rounds = runs[0]["args"]["rounds"]
    extra = merged_header(paths, runs, seeds, "benchmarks/active_learning_rare.py", ("summary", "table", "records"))
    return report([rec for r in runs for rec in r["records"]], seeds, args, extra)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "model" / "muscle_seg.pt"), help="the shipped model: the start")
    parser.add_argument("--locator", default=str(REPO / "model" / "l3_locator.pt"))
    parser.add_argument("--work", default="/tmp/sarcopenia_active_learning_rare")
    parser.add_argument("--out", default=str(REPO / "docs" / "active_learning_rare.json"))
    parser.add_argument("--plot", default=str(REPO / "docs" / "active_learning_rare.png"))
    parser.add_argument("--title", default="Active learning from the shipped model, pool with rare hard cases")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="scoring, locator, test inference and the train request")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pool", type=int, default=40, help="scans per seed's pool (all labelled in truth)")
    parser.add_argument("--rare-fraction", type=float, default=0.12, help="of the pool and the validation set")
    parser.add_argument("--start", type=int, default=4, help="labelled ordinary scans before the first round")
    parser.add_argument("--batch", type=int, default=2, help="scans labelled per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--val-count", type=int, default=6, help="validation scans (pool mix, L3-slice labels)")
    parser.add_argument("--test-count", type=int, default=32)
    parser.add_argument("--test-rare-fraction", type=float, default=0.25)
    parser.add_argument("--matrix", type=int, default=512, help="in-plane matrix of the generated scans")
    parser.add_argument("--max-slices", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=30, help="most fine-tuning epochs per round")
    parser.add_argument("--patience", type=int, default=5,
                        help="epochs without a better validation Dice before a round stops")
    parser.add_argument("--crop-px", type=int, default=224)
    parser.add_argument("--crops-per-epoch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4, help="fine-tuning lr from trained weights")
    parser.add_argument("--passes", type=int, default=8, help="MC dropout + flip passes per scored scan")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="only combine earlier --out files of other seeds into one report")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args)
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    shipped = load_model(args.model)
    args.network, args.pixdim_mm = shipped.config, shipped.pixdim_mm  # the full-size network on its own grid
    started = time.perf_counter()

    val_dir = Path(args.work) / "validation"
    validation = [{"image": str(val_dir / n), "label": str(val_dir / "labels" / "final" / n)}
                  for n in write_mix(val_dir, SEEDS["validation"], args.val_count, args.rare_fraction, args)]
    records: List[Dict] = []
    for seed in seeds:
        records += run_seed(seed, validation, args)
    training_s = time.perf_counter() - started

    scoring = time.perf_counter()
    models = {path: load_model(path, args.device) for path in sorted({r["model"] for r in records})}
    cases: Dict[str, List[Dict]] = {path: [] for path in models}
    for group, case in mixed_set(SEEDS["test"], args.test_count, args.test_rare_fraction, args.matrix,
                                 args.max_slices):
        for path, scores in l3_dice(case, models, args.device).items():
            cases[path].append({"case": case.case_id, "group": group, **scores})
    pool_fraction = rare_count(args.pool, args.rare_fraction) / args.pool
    for record in records:
        record.update(dice_by_mix(cases[record["model"]], pool_fraction), cases=cases[record["model"]])

    settings = {k: v for k, v in vars(args).items() if k not in ("network", "merge")}
    command = sys.argv if argv is None else ["benchmarks/active_learning_rare.py", *argv]
    extra = {"command": " ".join([Path(sys.executable).name, *command]), "args": {**settings, "seeds": seeds},
             "model_file": model_description(args.model),
             "pool_seeds": SEEDS, "pool_rare_fraction": pool_fraction,
             "subgroups": {g.name: {"patient": g.patient, "acquisition": g.acquisition,
                                    "variation": g.variation.describe()} for g in RARE},
             "network": shipped.config.to_dict(), "pixdim_mm": shipped.pixdim_mm,
             "versions": {p: version(p) for p in ("torch", "monai", "monailabel")},
             "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, device {args.device}",
             "timing": {"rounds_wall_s": round(training_s, 1), "test_wall_s": round(time.perf_counter() - scoring, 1),
                        "models_scored": len(models)},
             "wall_s": round(time.perf_counter() - started, 1)}
    print(f"wall time {extra['wall_s'] / 60:.1f} min")
    return report(records, seeds, args, extra)


if __name__ == "__main__":
    main()
