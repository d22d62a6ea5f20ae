"""Per-seed runs of a benchmark, combined: a long benchmark runs one process per seed (the cores or
machines it has), each writing its own --out JSON, and `--merge` reports them together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

# settings that may differ between the runs of one benchmark: where and how each ran, and its seeds
RUN_ONLY = ("seeds", "out", "plot", "work", "threads", "device", "title")


def differing_settings(settings: Sequence[Dict]) -> List[str]:
    """Names of the settings that are not the same in every one of `settings`."""
    return sorted({k for s in settings for k in s if any(o.get(k) != s[k] for o in settings)})


def load_seed_runs(paths: Sequence[str]) -> Tuple[List[Dict], List[int]]:
    """The runs' JSON and their seeds, in order; exits with the reason when they are not one
    experiment (settings that differ beyond RUN_ONLY) or a seed comes twice."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    differing = differing_settings([{k: v for k, v in r["args"].items() if k not in RUN_ONLY} for r in runs])
    if differing:
        raise SystemExit(f"--merge: the runs differ in {', '.join(differing)}")
    seeds = [s for r in runs for s in r["args"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--merge: a seed appears twice ({seeds})")
    return runs, seeds


def merged_header(paths: Sequence[str], runs: Sequence[Dict], seeds: Sequence[int], script: str,
                  per_run: Sequence[str]) -> Dict:
    """The first run's description with the seeds of all, where each run came from, and the merge
    command; `per_run` names the keys that belong to one run (its results and timing)."""
    header = {k: v for k, v in runs[0].items() if k not in (*per_run, "command", "machine", "timing", "wall_s")}
    header["args"] = {**header["args"], "seeds": list(seeds)}
    header["merged_from"] = [{"file": p, "command": r["command"], "machine": r["machine"], "timing": r.get("timing"),
                              "wall_s": r.get("wall_s")} for p, r in zip(paths, runs)]
    header["command"] = " ".join(["python", script, "--merge", *paths])
    return header
