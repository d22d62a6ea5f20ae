"""The "new site" benchmark: its target domain really lies away from the standard draws (the
shipped model's training domain), and the benchmark runs end to end, with arm (c) continuing from
the shipped weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sarcopenia_app.network import build_network
from sarcopenia_app.phantom import generate_case
from sarcopenia_app.phantom.patient import sample_acquisition, sample_patient
from sarcopenia_app.phantom.site import NEW_SITE
from sarcopenia_app.segment import load_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import new_site  # noqa: E402

TINY = dict(matrix=64, max_slices=4)


def test_the_new_site_is_far_from_every_standard_draw():
    rngs = (np.random.default_rng([3, i]) for i in range(300))
    standard = [sample_acquisition(rng, sample_patient(rng)) for rng in rngs]
    assert max(a.noise_hu for a in standard) <= 40.0 < NEW_SITE.noise_hu[0]  # noisier than any standard scan
    assert {a.kernel for a in standard} == {"standard"} and NEW_SITE.kernel == "sharp"
    assert max(a.blur_mm for a in standard) > min(a.blur_mm for a in standard) >= 0.35 > NEW_SITE.blur_mm[1]
    for index in range(4):
        plain, site = generate_case(31, index, **TINY), generate_case(31, index, variation="new_site", **TINY)
        assert (site.patient.sex, site.patient.height_m) == (plain.patient.sex, plain.patient.height_m)
        assert site.patient.bmi >= 35.0 and site.patient.subcutaneous_fat_mm >= 45.0
        a = site.acquisition
        assert (a.kernel, a.contrast_phase, a.kvp, a.coverage, a.slice_thickness_mm) == \
               ("sharp", "portal_venous", 100, "abdomen", 5.0)
        assert 0.8 <= site.variation.fov_fraction <= 0.9 and plain.variation.fov_fraction == 1.0
        muscle = site.muscle.astype(bool), plain.muscle.astype(bool)
        # the noise shows in the image: muscle HU spread well above the standard scan's
        assert site.hu[muscle[0]].std() > plain.hu[muscle[1]].std() + 15.0


def test_the_benchmark_runs_and_arm_c_continues_from_the_shipped_weights(tmp_path):
    out = tmp_path / "new_site.json"
    new_site.main(["--matrix", "96", "--max-slices", "12", "--unlabelled", "3", "--ks", "0,2", "--seeds", "0",
                   "--pretrain-epochs", "1", "--pretrain-crop-px", "48", "--epochs", "2", "--patience", "1",
                   "--crop-px", "64", "--crops-per-epoch", "8", "--val-count", "1", "--test-count", "1",
                   "--threads", "1", "--data", str(tmp_path / "ds"), "--work", str(tmp_path / "work"),
                   "--out", str(out), "--plot", str(tmp_path / "new_site.png")])
    result = json.loads(out.read_text())
    assert (tmp_path / "new_site.png").stat().st_size > 0
    assert result["site"]["name"] == "new_site" and result["network"]["channels"] == [16, 32, 64, 128, 256]
    for metric in ("dice_slab", "dice_mid"):
        summary = result["summary"][metric]
        assert set(summary) == {"0", "2"}
        assert set(summary["0"]["arms"]) == {"shipped", "adapted"}
        assert set(summary["0"]["differences"]) == {"adapted - shipped"}
        assert set(summary["2"]["arms"]) == {"shipped", "fine_tuned", "adapted", "scratch"}
        assert set(summary["2"]["differences"]) == {"fine_tuned - shipped", "adapted - fine_tuned",
                                                    "scratch - fine_tuned"}
        for entry in summary["2"]["differences"].values():
            assert len(entry["per_seed"]) == 1 and entry["sd"] is None and -1.0 <= entry["mean"] <= 1.0
    arms = [(r["k"], r["arm"]) for r in result["runs"]]
    assert sorted(arms) == sorted([(0, "shipped"), (0, "adapted"), (2, "shipped"), (2, "fine_tuned"),
                                   (2, "adapted"), (2, "scratch")])
    assert all(len(r["cases"]) == 1 and 0.0 <= r["cases"][0]["dice_slab"] <= 1.0 for r in result["runs"])
    finetuned = [r for r in result["runs"] if r["k"] == 2 and r["arm"] != "shipped"]
    assert all(1 <= r["best_epoch"] <= r["epochs_run"] <= 2 for r in finetuned)

    # arm (c): pretraining started from the shipped weights, moved them a little, kept its output layers
    adaptation = result["adaptation"]["0"]
    assert adaptation["tensors_from_start_model"] == adaptation["tensors_kept"] > 0
    assert adaptation["output_layers_are_shipped"] and adaptation["from_start"]
    shipped = torch.load(REPO / "model" / "muscle_seg.pt", map_location="cpu", weights_only=True)["model"]
    encoder = torch.load(adaptation["encoder_path"], map_location="cpu", weights_only=True)["model"]
    assert set(encoder) == set(shipped)
    assert 0.0 < adaptation["change_from_shipped"] < 0.2  # a random start would be ~1 away
    fresh = build_network(load_model(REPO / "model" / "muscle_seg.pt").config).state_dict()
    assert new_site.relative_change(fresh, shipped) > 0.5
    assert new_site.relative_change(encoder, shipped) == adaptation["change_from_shipped"]

    # one process per seed, then --merge: a second seed's run (this one relabelled, its Dice 0.1 lower)
    other = json.loads(out.read_text())
    other["args"]["seeds"] = [1]
    other["adaptation"] = {"1": other["adaptation"]["0"]}
    for run in other["runs"]:
        run["seed"] = 1
        run["cases"] = [{**c, "dice_slab": c["dice_slab"] - (0.1 if run["arm"] == "fine_tuned" else 0.0)}
                        for c in run["cases"]]
    (tmp_path / "seed1.json").write_text(json.dumps(other))
    merged = new_site.main(["--merge", str(out), str(tmp_path / "seed1.json"), "--out", str(tmp_path / "all.json"),
                            "--plot", str(tmp_path / "all.png")])
    assert merged["args"]["seeds"] == [0, 1] and set(merged["adaptation"]) == {"0", "1"}
    difference = merged["summary"]["dice_slab"]["2"]["differences"]["fine_tuned - shipped"]
    first = result["summary"]["dice_slab"]["2"]["differences"]["fine_tuned - shipped"]["per_seed"][0]
    assert difference["per_seed"] == pytest.approx([first, first - 0.1], abs=1e-4) and difference["sd"] > 0
    (tmp_path / "seed1.json").write_text(json.dumps({**other, "args": {**other["args"], "epochs": 3}}))
    with pytest.raises(SystemExit, match="differ in epochs"):
        new_site.main(["--merge", str(out), str(tmp_path / "seed1.json"), "--out", str(tmp_path / "x.json")])
