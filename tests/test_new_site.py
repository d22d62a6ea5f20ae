"""The "new site" benchmark: its target domain really lies away from the standard draws (the
shipped model's training domain), and the benchmark runs end to end, with arm (c) continuing from
the shipped weights."""

from __future__ import annotations

import dataclasses
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
import new_site_encoder_probe  # noqa: E402

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


TINY_RUN = ["--matrix", "96", "--max-slices", "12", "--unlabelled", "3", "--ks", "0,2", "--pretrain-epochs", "1",
            "--pretrain-crop-px", "48", "--epochs", "2", "--patience", "1", "--crop-px", "64", "--crops-per-epoch", "8",
            "--val-count", "1", "--test-count", "1", "--threads", "1"]


def tiny_run(tmp_path, seeds: str, *extra: str) -> dict:
    return new_site.main([*TINY_RUN, "--seeds", seeds, "--data", str(tmp_path / "ds"), "--work", str(tmp_path / "work"),
                          "--records", str(tmp_path / "records"), "--out", str(tmp_path / f"s{seeds}.json"),
                          "--plot", str(tmp_path / f"s{seeds}.png"), *extra])


def test_the_benchmark_runs_and_arm_c_continues_from_the_shipped_weights(tmp_path):
    result = tiny_run(tmp_path, "0")
    assert json.loads((tmp_path / "s0.json").read_text()) == result
    assert (tmp_path / "s0.png").stat().st_size > 0 and result["missing"] == []
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
    records = tmp_path / "records"
    encoder = torch.load(records / adaptation["encoder_file"], map_location="cpu", weights_only=True)["model"]
    assert set(encoder) == set(shipped)
    assert 0.0 < adaptation["change_from_shipped"] < 0.2  # a random start would be ~1 away
    fresh = build_network(load_model(REPO / "model" / "muscle_seg.pt").config).state_dict()
    assert new_site.relative_change(fresh, shipped) > 0.5
    assert new_site.relative_change(encoder, shipped) == adaptation["change_from_shipped"]
    assert not (records / "s0" / "adapt" / "checkpoint.pt").exists()  # finished: only the encoder stays


def test_a_run_continues_from_its_records_and_refuses_other_settings(tmp_path, monkeypatch):
    first = tiny_run(tmp_path, "0")
    records = tmp_path / "records"
    # a second session: a stopped pretraining of seed 1 (its checkpoint) and seed 0's K=2 scratch run lost
    (records / "s0" / "k2_scratch.json").unlink()
    trained = []
    real_finetune, real_pretrain = new_site.finetune, new_site.pretrain
    monkeypatch.setattr(new_site, "finetune", lambda *a, **kw: trained.append((a[5], a[4])) or real_finetune(*a, **kw))
    pretrained = []
    monkeypatch.setattr(new_site, "pretrain", lambda *a, **kw: pretrained.append(a[5].seed) or real_pretrain(*a, **kw))
    # the paired arms first (--arms): seed 0 has them, seed 1 runs them; both scratch runs are left
    paired = tiny_run(tmp_path, "0,1", "--arms", "fine_tuned,adapted")
    assert trained == [(2, 1), (2, 1)] and pretrained == [1]
    assert paired["missing"] == ["s0/k2_scratch.json", "s1/k2_scratch.json"]
    trained.clear()
    both = tiny_run(tmp_path, "0,1")
    assert trained == [(2, 0), (2, 1)]  # only what is missing: the scratch runs
    assert pretrained == [1]
    assert both["missing"] == [] and both["args"]["seeds"] == [0, 1]
    kept = [r for r in both["runs"] if r["seed"] == 0 and r["arm"] != "scratch"]
    assert kept == [r for r in first["runs"] if r["arm"] != "scratch"]  # read back, not run again
    difference = both["summary"]["dice_slab"]["2"]["differences"]["fine_tuned - shipped"]
    assert len(difference["per_seed"]) == 2 and difference["per_seed"][0] == \
        first["summary"]["dice_slab"]["2"]["differences"]["fine_tuned - shipped"]["per_seed"][0]

    # --report alone: every recorded seed, nothing trained; a seed not run yet is listed as missing
    trained.clear()
    report = new_site.main([*TINY_RUN, "--seeds", "0,1,2", "--records", str(records), "--report",
                            "--out", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")])
    assert trained == [] and "s2/k2_fine_tuned.json" in report["missing"]
    assert set(report["summary"]["dice_slab"]["2"]["arms"]) == {"shipped"}  # no arm is there for every seed

    with pytest.raises(SystemExit, match="other settings .*epochs"):
        tiny_run(tmp_path, "0", "--epochs", "3")


def test_a_stopped_pretraining_continues_from_its_checkpoint(tmp_path, monkeypatch):
    """Killed after its first checkpoint: the next run starts at that step, not at 0."""
    real_pretrain = new_site.pretrain
    summaries = []

    def pretrain_then_stop(*args, **kwargs):
        if not summaries:  # the first run stops after one checkpoint: keep it as a kill would
            settings = dataclasses.replace(args[5], max_epochs=1)
            summaries.append(real_pretrain(*args[:5], settings, **kwargs))
            raise KeyboardInterrupt
        summaries.append(real_pretrain(*args, **kwargs))
        return summaries[-1]

    monkeypatch.setattr(new_site, "pretrain", pretrain_then_stop)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(tmp_path, "0", "--pretrain-epochs", "2")
    assert (tmp_path / "records" / "s0" / "adapt" / "checkpoint.pt").exists()
    result = tiny_run(tmp_path, "0", "--pretrain-epochs", "2")
    assert summaries[1]["resumed_from"] == summaries[0]["step"] > 0
    assert result["adaptation"]["0"]["step"] == summaries[1]["total_steps"] == 2 * summaries[0]["step"]


def test_the_probe_splits_the_unet_into_its_down_and_up_paths():
    """Down path and bottom = encoder; every up block (item 2 of a down-skip-up block) = decoder."""
    network = build_network(load_model(REPO / "model" / "muscle_seg.pt").config)
    decoder = {n for n in network.state_dict() if new_site_encoder_probe.is_decoder(n)}
    up_blocks = [m for n, m in network.named_modules() if n.endswith(("model.2", "submodule.2"))]
    assert len(up_blocks) == len(network.channels) - 1  # one up block per down-sampling
    assert sum(p.numel() for m in up_blocks for p in m.state_dict().values()) == \
        sum(network.state_dict()[n].numel() for n in decoder)
    assert not any(n.startswith("model.0.") for n in decoder) and any(n.startswith("model.2.") for n in decoder)
