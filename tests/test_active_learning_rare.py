"""The rare-case active-learning benchmark: its pools hold the rare fraction asked for, each rare
scan really carries its subgroup's property (in the draws and in the voxels) and ordinary scans
carry none, and the paired summary is right on made-up numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sarcopenia_app.phantom import Anatomy, generate_case
from sarcopenia_app.phantom.subgroups import ABDOMEN, ORDINARY, RARE, draw, mixed_set, rare_count
from sarcopenia_app.phantom.variation import FORCED, Variation

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import active_learning_rare  # noqa: E402

TINY = dict(matrix=64, max_slices=4)


def test_a_pool_holds_the_rare_fraction_asked_for_one_subgroup_after_another():
    assert [rare_count(n, 0.12) for n in (40, 16, 8, 2)] == [5, 2, 1, 1] and rare_count(40, 0.0) == 0
    drawn = list(mixed_set(3, 12, 0.34, **TINY))
    groups = [group for group, _ in drawn]
    assert groups == ["ordinary"] * 8 + [g.name for g in RARE]
    assert len({case.case_id for _, case in drawn}) == 12
    for group, case in drawn:
        assert case.l3_mid_index is not None and case.acquisition.coverage == "abdomen"
        holding = [g.name for g in RARE if g.holds(case)]
        assert (holding == []) if group == "ordinary" else (group in holding)


@pytest.mark.parametrize("group", RARE, ids=[g.name for g in RARE])
def test_a_rare_scan_differs_from_its_standard_draw_in_its_property(group):
    """Same seed and index, forced and not: the property holds only for the forced one, it shows in
    the voxels, and the patient is otherwise the same draw."""
    case = next(draw(group, 5, 1, **TINY))
    plain = generate_case(5, case.index, acquisition_overrides=ABDOMEN, **TINY)
    assert group.holds(case) and not group.holds(plain) and ORDINARY.holds(plain) and not ORDINARY.holds(case)
    assert (case.patient.sex, case.patient.height_m, case.patient.age_years) == \
           (plain.patient.sex, plain.patient.height_m, plain.patient.age_years)
    k, k_plain = case.l3_mid_index, plain.l3_mid_index

    def area_cm2(c, anatomy, k):
        return float((c.anatomy[:, :, k] == anatomy).sum() * c.spacing_mm[0] * c.spacing_mm[1] / 100)

    def muscle_hu(c, k):
        return float(c.hu[:, :, k][c.muscle[:, :, k] > 0].mean())

    if group.name == "obese_arms_down":
        assert area_cm2(case, Anatomy.SUBCUTANEOUS_FAT, k) > 1.5 * area_cm2(plain, Anatomy.SUBCUTANEOUS_FAT, k_plain)
    elif group.name == "ascites":
        assert area_cm2(case, Anatomy.ASCITES, k) > 5 and area_cm2(plain, Anatomy.ASCITES, k_plain) == 0
    elif group.name == "thick_slices":
        assert case.spacing_mm[2] == 5.0 != plain.spacing_mm[2]
    else:
        assert muscle_hu(case, k) < muscle_hu(plain, k_plain) - 20


def test_a_forced_variation_with_nothing_set_is_the_standard_scan():
    """`forced` widens no other draw: what differs in a rare scan is only what its subgroup sets."""
    standard = generate_case(9, 1, **TINY)
    forced = generate_case(9, 1, variation=Variation(mode=FORCED), **TINY)
    assert np.array_equal(forced.hu, standard.hu) and np.array_equal(forced.anatomy, standard.anatomy)
    assert forced.acquisition == standard.acquisition and forced.patient == standard.patient


def test_whole_set_dice_weighs_ordinary_and_rare_by_the_pool_mix():
    cases = [{"group": "ordinary", "dice_slab": 0.9}, {"group": "ordinary", "dice_slab": 0.8},
             {"group": "ascites", "dice_slab": 0.4}, {"group": "fatty_muscle", "dice_slab": 0.6}]
    dice = active_learning_rare.dice_by_mix(cases, pool_rare_fraction=0.2)
    assert dice["dice_ordinary"] == pytest.approx(0.85) and dice["dice_rare"] == pytest.approx(0.5)
    assert dice["dice_mix"] == pytest.approx(0.8 * 0.85 + 0.2 * 0.5)
    assert dice["dice_by_group"] == pytest.approx({"ordinary": 0.85, "ascites": 0.4, "fatty_muscle": 0.6})


def test_paired_differences_are_uncertain_minus_random_per_seed_with_mean_and_sd():
    made_up = {(0, "uncertain"): 0.70, (0, "random"): 0.60, (1, "uncertain"): 0.50, (1, "random"): 0.55,
               (2, "uncertain"): 0.80, (2, "random"): 0.65}
    records = [{"seed": s, "strategy": a, "round": r, "dice_rare": v if r == 1 else 0.3}
               for (s, a), v in made_up.items() for r in (0, 1)]
    summary = active_learning_rare.paired(records, [0, 1, 2], 1, lambda r: r["dice_rare"])
    assert summary["0"]["difference"]["per_seed"] == [0.0, 0.0, 0.0]
    last = summary["1"]
    assert last["difference"]["per_seed"] == pytest.approx([0.10, -0.05, 0.15])
    assert last["difference"]["mean"] == pytest.approx(0.0667, abs=1e-4)
    assert last["difference"]["sd"] == pytest.approx(float(np.std([0.10, -0.05, 0.15], ddof=1)), abs=1e-4)
    assert last["uncertain"]["mean"] == pytest.approx(0.6667, abs=1e-4)
    assert last["random"]["mean"] == pytest.approx(0.60)


def test_one_round_end_to_end_starts_from_the_shipped_model_and_pairs_the_strategies(tmp_path):
    result = active_learning_rare.main([
        "--device", "cpu", "--seeds", "0", "--pool", "3", "--rare-fraction", "0.3", "--start", "1", "--batch", "1",
        "--rounds", "1", "--val-count", "1", "--test-count", "2", "--test-rare-fraction", "0.5", "--matrix", "64",
        "--max-slices", "6", "--epochs", "1", "--patience", "1", "--crop-px", "48", "--crops-per-epoch", "2",
        "--passes", "2", "--threads", "1", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "al.json"),
        "--plot", str(tmp_path / "al.png")])
    assert (tmp_path / "al.png").stat().st_size > 0 and (tmp_path / "al.json").stat().st_size > 0
    records = result["records"]
    assert [(r["strategy"], r["round"]) for r in records] == [("uncertain", 0), ("uncertain", 1), ("random", 0),
                                                               ("random", 1)]
    assert {r["model"] for r in records if r["round"] == 0} == {str(REPO / "model" / "muscle_seg.pt")}
    starts = {tuple(r["labelled"]) for r in records if r["round"] == 0}
    assert len(starts) == 1 and all(name.startswith("ph08000_") for name in starts.pop())  # ordinary scans
    uncertain = records[1]
    assert len(uncertain["scores"]) == 2 and uncertain["chosen"] == [max(uncertain["scores"], key=uncertain["scores"].get)]
    assert uncertain["rare_picked"] == (uncertain["chosen_groups"] != ["ordinary"])
    for r in records:
        assert [c["group"] for c in r["cases"]] == ["ordinary", "obese_arms_down"]
        assert 0.0 <= r["dice_rare"] <= 1.0 and r["dice_mix"] == pytest.approx(
            (2 / 3) * r["dice_ordinary"] + (1 / 3) * r["dice_rare"])
    difference = result["summary"]["dice_rare"]["1"]["difference"]
    assert difference["per_seed"] == [round(records[1]["dice_rare"] - records[3]["dice_rare"], 4)]


def _seed_run(path: Path, seed: int, uncertain: float, random: float, **changed) -> str:
    """A made-up per-seed --out file: rounds 0 and 1 of both strategies."""
    import json

    def record(strategy: str, round_index: int, dice: float) -> dict:
        return {"seed": seed, "strategy": strategy, "round": round_index, "labels": 4 + 2 * round_index,
                "rare_picked": round_index, "dice_mix": dice, "dice_rare": dice, "dice_ordinary": dice,
                "dice_by_group": {"ordinary": dice, "ascites": dice}}

    records = [record(s, r, d if r else 0.5) for s, d in (("uncertain", uncertain), ("random", random)) for r in (0, 1)]
    args = {"seeds": [seed], "rounds": 1, "pool": 40, "work": f"/tmp/w{seed}", "threads": 1, **changed}
    path.write_text(json.dumps({"command": "x", "machine": "m", "timing": {}, "wall_s": 1.0, "args": args,
                                "records": records}))
    return str(path)


def test_merge_pairs_the_seeds_of_separate_runs_and_refuses_runs_that_differ(tmp_path):
    files = [_seed_run(tmp_path / "s0.json", 0, 0.7, 0.6), _seed_run(tmp_path / "s1.json", 1, 0.5, 0.55)]
    out = ["--out", str(tmp_path / "all.json"), "--plot", str(tmp_path / "all.png")]
    result = active_learning_rare.main(["--merge", *files, *out])
    assert result["args"]["seeds"] == [0, 1] and [m["file"] for m in result["merged_from"]] == files
    assert result["summary"]["dice_rare"]["1"]["difference"]["per_seed"] == pytest.approx([0.1, -0.05])
    assert (tmp_path / "all.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="differ in pool"):
        active_learning_rare.main(["--merge", files[0], _seed_run(tmp_path / "p.json", 1, 0.5, 0.5, pool=20), *out])
    with pytest.raises(SystemExit, match="seed appears twice"):
        active_learning_rare.main(["--merge", files[0], files[0], *out])
