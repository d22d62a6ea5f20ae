"""Every level in view and the L1-L5 volume: positions from a level coordinate, the "not in
view" rule, volumes on a volume with known muscle, and the pipeline on a generated case."""

import numpy as np
import pytest

from sarcopenia_app.level.locator import EDGE_ROWS, LEVEL_NAMES, crossings
from sarcopenia_app.level_measurements import level_positions, measure_levels, slices_needed

ROWS = 200  # 2 mm rows: 400 mm of scan
ROWS_PER_LEVEL = 17  # 34 mm: a lumbar body and its disc


def coordinate(top_level: float, bottom_level: float, rows: int = ROWS) -> np.ndarray:
    """A level coordinate falling linearly from the scan's bottom row to its top row."""
    return np.linspace(bottom_level, top_level, rows)


def index(name: str) -> float:
    return float(LEVEL_NAMES.index(name))


def test_each_level_lies_where_its_coordinate_crosses_its_index_and_a_segment_spans_half_a_level_each_way():
    levels = coordinate(index("T10"), index("S1"))  # 8 levels over 199 rows: 24.875 rows per level
    positions = level_positions(levels, np.arange(ROWS) * 0.5)  # 1 mm slices: 2 slices per row
    rows_per_level = (ROWS - 1) / 8
    for name in ("T12", "L1", "L2", "L3", "L4", "L5"):
        mid_row = (index("S1") - index(name)) * rows_per_level
        position = positions[name]
        assert position.in_view and position.complete
        assert position.mid_slice == pytest.approx(mid_row * 0.5, abs=1e-6)
        assert (position.lower, position.upper) == pytest.approx(
            ((mid_row - rows_per_level / 2) * 0.5, (mid_row + rows_per_level / 2) * 0.5), abs=1e-6)


def _bodies(centres, half_rows: int = 9) -> np.ndarray:
    """A body-head output: probability 0.95 on rows within half_rows of each centre, 0.05 elsewhere."""
    rows = np.arange(ROWS)
    return np.where(np.any([np.abs(rows - c) <= half_rows for c in centres], axis=0), 0.95, 0.05)


def test_the_body_head_puts_a_drifting_level_on_its_body_middle_and_no_farther():
    levels = coordinate(index("T10"), index("S1"))
    rows_per_level = (ROWS - 1) / 8
    true_mid = {name: (index("S1") - index(name)) * rows_per_level for name in ("L1", "L2", "L4")}
    # the body head sees each body 5 rows (10 mm) below where the coordinate crosses its level
    body = _bodies([round(row) - 5 for row in true_mid.values()])
    positions = level_positions(levels, np.arange(ROWS, dtype=float), body)
    for name, row in true_mid.items():
        assert positions[name].mid_slice == pytest.approx(round(row) - 5, abs=0.01)
    # levels without a whole body of their own keep the crossing (T12, L5: no body; L3 likewise)
    assert positions["L5"].mid_slice == pytest.approx((index("S1") - index("L5")) * rows_per_level, abs=1e-6)
    # a body that reads more than half a level off is another vertebra: not taken
    far = _bodies([round(true_mid["L2"]) + 14])
    assert level_positions(levels, np.arange(ROWS, dtype=float), far)["L2"].mid_slice == pytest.approx(true_mid["L2"], abs=1e-6)


def test_a_segment_ends_halfway_between_body_middles_and_half_a_pitch_past_the_last_counted_body():
    levels = coordinate(index("T10"), index("S1"))
    rows_per_level = (ROWS - 1) / 8
    true_mid = {name: (index("S1") - index(name)) * rows_per_level for name in ("L1", "L2", "L3")}
    found = {name: round(row) - 5 for name, row in true_mid.items()}  # bodies 10 mm below the crossings
    positions = level_positions(levels, np.arange(ROWS, dtype=float), _bodies(found.values()))
    assert positions["L2"].upper == pytest.approx((found["L1"] + found["L2"]) / 2, abs=0.01)
    assert positions["L2"].lower == pytest.approx((found["L2"] + found["L3"]) / 2, abs=0.01)
    assert positions["L1"].lower == positions["L2"].upper  # segments still tile the spine
    # T12 has no body of its own: the count ends at L1, whose segment ends half a pitch (the gap
    # between the counted bodies) above its middle
    pitch = np.median([found["L1"] - found["L2"], found["L2"] - found["L3"]])
    assert positions["L1"].upper == pytest.approx(found["L1"] + pitch / 2, abs=0.01)


def test_where_the_coordinate_flattens_above_s1_the_body_below_l5_ends_its_segment():
    """The locator's coordinate does not reach S1's middle (it flattens at the lowest level it knows):
    L5's lower boundary comes from the body head's next body down, not from the coordinate."""
    levels = coordinate(index("T10"), index("S1") + 1.0)
    rows_per_level = (ROWS - 1) / 9
    mid = {name: round((index("S1") + 1.0 - index(name)) * rows_per_level) for name in ("L4", "L5", "S1")}
    flattened = np.minimum(levels, index("L5") + 0.45)
    assert not crossings(flattened, index("L5") + 0.5)
    positions = level_positions(flattened, np.arange(ROWS, dtype=float), _bodies(mid.values()))
    assert positions["L5"].lower == pytest.approx((mid["L5"] + mid["S1"]) / 2, abs=0.01)
    assert positions["L5"].upper == pytest.approx((mid["L4"] + mid["L5"]) / 2, abs=0.01)


def test_two_bodies_the_head_did_not_separate_do_not_move_the_level():
    """Thick slices blur the disc between two bodies into one run spanning more than a level."""
    levels = coordinate(index("T10"), index("S1"))
    rows_per_level = (ROWS - 1) / 8
    l1, l2 = ((index("S1") - index(name)) * rows_per_level for name in ("L1", "L2"))
    body = _bodies([(l1 + l2) / 2], half_rows=int(rows_per_level * 0.8))  # one run over L1 and L2
    positions = level_positions(levels, np.arange(ROWS, dtype=float), body)
    assert positions["L1"].mid_slice == pytest.approx(l1, abs=1e-6)
    assert positions["L2"].mid_slice == pytest.approx(l2, abs=1e-6)


def test_a_body_cut_by_the_scans_edge_does_not_move_the_level():
    rows = round(2.7 * ROWS_PER_LEVEL)
    levels = coordinate(index("L3") - 0.3, index("L5") + 0.4, rows)
    row = crossings(levels, index("L3"))[0]
    body = _bodies([rows - 3])[:rows]  # the run touches the last row
    assert level_positions(levels, np.arange(rows, dtype=float), body)["L3"].mid_slice == pytest.approx(row, abs=1e-6)


PITCH = 17  # rows from one body's middle to the next (34 mm)
L3_ROW = 80
BODY_ROWS = {name: L3_ROW + (index("L3") - index(name)) * PITCH for name in ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")}


def _drifting_coordinate(compression: float = 1.45) -> np.ndarray:
    """Right below L3's middle, and above it counting `compression` levels per body: the locator
    misreading the levels far from L3 (a 5 mm whole-trunk scan read L1 a vertebra off)."""
    rows = np.arange(ROWS, dtype=float)
    per_row = np.where(rows > L3_ROW, compression, 1.0) / PITCH
    return index("L3") - (rows - L3_ROW) * per_row


def test_levels_are_counted_body_by_body_from_l3_where_the_coordinate_drifts():
    levels, body = _drifting_coordinate(), _bodies(BODY_ROWS.values(), half_rows=6)
    drifted = level_positions(levels, np.arange(ROWS, dtype=float))  # the coordinate alone: on L2's body
    assert abs(drifted["L1"].mid_slice - BODY_ROWS["L1"]) > PITCH / 2
    counted = level_positions(levels, np.arange(ROWS, dtype=float), body, l3_row=L3_ROW)
    for name in ("T12", "L1", "L2", "L3", "L4", "L5"):
        assert counted[name].mid_slice == pytest.approx(BODY_ROWS[name], abs=0.01)
    # segments tile the spine halfway between counted middles, S1 included; past the count (T11
    # reads 1.8 levels off: not counted) half a pitch beyond the last body
    assert counted["T12"].upper == pytest.approx(BODY_ROWS["T12"] + PITCH / 2, abs=0.01)
    assert counted["L1"].lower == counted["L2"].upper == pytest.approx((BODY_ROWS["L1"] + BODY_ROWS["L2"]) / 2, abs=0.01)
    assert counted["L5"].lower == pytest.approx((BODY_ROWS["L5"] + BODY_ROWS["S1"]) / 2, abs=0.01)


def test_the_pictures_level_labels_sit_on_the_counted_bodies():
    from sarcopenia_app.level.locator import L3Location
    from sarcopenia_app.report import level_label_rows

    levels, body = _drifting_coordinate(), _bodies(BODY_ROWS.values(), half_rows=6)
    location = L3Location(True, 0.9, row_levels=list(levels), row_body_probability=list(body), l3_mid_row=L3_ROW)
    labels = dict(level_label_rows(location))
    for name in ("T12", "L1", "L2", "L3", "L4", "L5", "S1"):
        assert labels[name] == pytest.approx(BODY_ROWS[name], abs=0.01)
    # above the counted bodies the coordinate's labels stay only past them (its T11 is on T12's body)
    assert "T11" not in labels
    assert all(row > BODY_ROWS["T12"] for name, row in labels.items() if index(name) < index("T11"))


def test_the_count_stops_at_a_body_the_coordinate_reads_more_than_one_and_a_half_levels_off():
    """A coordinate that far off means the count or the coordinate is wrong: neither is trusted there."""
    levels, body = _drifting_coordinate(1.6), _bodies(BODY_ROWS.values(), half_rows=6)  # T12 reads 1.8 off
    counted = level_positions(levels, np.arange(ROWS, dtype=float), body, l3_row=L3_ROW)
    assert counted["L1"].mid_slice == pytest.approx(BODY_ROWS["L1"], abs=0.01)
    assert not counted["T12"].in_view and "bodies counted" in counted["T12"].reason


def test_one_run_as_long_as_two_bodies_is_counted_as_two():
    """Thick slices blur the L1/L2 disc: the head sees one run from L2's bottom to L1's top."""
    centres = [row for name, row in BODY_ROWS.items() if name not in ("L1", "L2")]
    body = np.maximum(_bodies(centres, half_rows=6),
                      _bodies([(BODY_ROWS["L1"] + BODY_ROWS["L2"]) / 2], half_rows=PITCH // 2 + 6))
    counted = level_positions(_drifting_coordinate(), np.arange(ROWS, dtype=float), body, l3_row=L3_ROW)
    for name in ("T12", "L1", "L2"):
        assert counted[name].mid_slice == pytest.approx(BODY_ROWS[name], abs=1.0)


def test_a_run_over_three_bodies_is_split_at_the_dips_of_their_discs():
    """5 mm slices: the head reads the discs between L1, T12 and T11 at 0.65, above 0.5, so the
    three bodies form one run; the dips still mark the discs."""
    body = _bodies(BODY_ROWS.values(), half_rows=6)
    rows = np.arange(ROWS)
    body[(rows > BODY_ROWS["L1"]) & (rows < BODY_ROWS["T11"]) & (body < 0.5)] = 0.65
    counted = level_positions(_drifting_coordinate(1.2), np.arange(ROWS, dtype=float), body, l3_row=L3_ROW)
    for name in ("T12", "L1", "L2"):
        assert counted[name].mid_slice == pytest.approx(BODY_ROWS[name], abs=1.0)


def test_a_scan_without_l3_is_counted_from_the_body_the_coordinate_names_best():
    """A chest scan ending at L1 (seen on generated chests: T12 read 26-31 mm off): the coordinate
    reads L1's body right at the bottom and compresses the thoracic levels above it (one level per
    25 rows where the bodies lie 15 apart). Counting bodies from L1 puts T12 on its own body."""
    rows = np.arange(ROWS, dtype=float)
    middles = {"L1": 15, "T12": 30, "T11": 45}
    body = _bodies(list(middles.values()) + [60 + 15 * k for k in range(9)], half_rows=5)
    levels = index("L1") - np.where(rows < 15, (rows - 15) / 15, (rows - 15) / 25)
    alone = level_positions(levels, rows)
    assert abs(alone["T12"].mid_slice - middles["T12"]) > 7.5  # half a pitch: the neighbouring body
    counted = level_positions(levels, rows, body)
    for name in ("L1", "T12"):
        assert counted[name].mid_slice == pytest.approx(middles[name], abs=0.01)
    assert not any(counted[name].in_view for name in ("L2", "L3", "L4", "L5"))


def test_the_count_stops_where_two_runs_compete_for_one_body():
    """L1's body seen as two runs: the count stops at L2. Past it the coordinate may name a level
    only beyond the last counted body; here it reads L1 on L2's body, so L1 is not measured."""
    centres = [row for name, row in BODY_ROWS.items() if name != "L1"]
    body = _bodies(centres + [BODY_ROWS["L1"] - 4, BODY_ROWS["L1"] + 4], half_rows=2)
    body = np.maximum(body, _bodies(centres, half_rows=6))
    counted = level_positions(_drifting_coordinate(), np.arange(ROWS, dtype=float), body, l3_row=L3_ROW)
    assert counted["L2"].mid_slice == pytest.approx(BODY_ROWS["L2"], abs=0.01)
    assert not counted["L1"].in_view and "bodies counted" in counted["L1"].reason
    # with a coordinate that reads right, the level past the count is taken from it
    right = level_positions(_drifting_coordinate(1.0), np.arange(ROWS, dtype=float), body, l3_row=L3_ROW)
    assert right["L1"].in_view and abs(right["L1"].mid_slice - BODY_ROWS["L1"]) <= 4  # on one of its pieces


def test_a_level_whose_middle_is_not_scanned_is_not_in_view_and_a_cut_segment_has_no_volume():
    # from just below L4's middle to above L2's
    levels = coordinate(index("L2") + 0.3, index("L4") + 0.2, round(1.9 * ROWS_PER_LEVEL))
    positions = level_positions(levels, np.arange(len(levels), dtype=float))
    assert [name for name, p in positions.items() if p.in_view] == ["L3", "L4"]
    assert positions["L3"].complete and not positions["L4"].complete
    assert positions["L4"].lower is None and positions["L4"].upper is not None


def test_a_crossing_at_the_scans_edge_rows_is_extrapolation_not_in_view():
    """L4's middle crossed one row above the scan's lowest row and L1's one row below its top: the
    network's edge rows, not evidence that those middles were scanned (the earlier rule said in view)."""
    rows = 3 * ROWS_PER_LEVEL
    step = 3 / (rows - 2.5)  # the change per row: L4 crossed 1 row above the bottom, L1 0.5 row below the top
    levels = coordinate(index("L1") - 0.5 * step, index("L4") + step, rows)
    assert 0 < crossings(levels, index("L4"))[0] < EDGE_ROWS
    assert rows - 1 - EDGE_ROWS < crossings(levels, index("L1"))[0] < rows - 1
    positions = level_positions(levels, np.arange(rows, dtype=float))
    assert [name for name, p in positions.items() if p.in_view] == ["L2", "L3"]
    for name in ("L1", "L4"):
        assert "edge" in positions[name].reason
    assert "not in the scan" in positions["L5"].reason
    hu, mask = np.full((4, 4, rows), 40.0), np.ones((4, 4, rows), np.uint8)
    found = measure_levels(hu, mask, 2, (1.0, 1.0, 1.0), positions, (-29.0, 150.0))["levels"]
    assert not found["L4"]["in_view"] and "extrapolated" in found["L4"]["reason"]
    assert found["L3"]["in_view"] and found["L3"]["volume_cm3"] > 0


def test_a_flat_coordinate_that_crosses_a_middle_is_not_a_level_in_view():
    """A chest scan as the locator reads it (seen on a generated chest, docs/cohorts.md): the count
    falls past T12's middle 10 mm above the scan's bottom, then stays between T11 and T12 for the
    next 300 mm. It cannot count there: T12 is not in view, with the reason; the same crossing
    where the count then moves on is a level in view."""
    levels = np.full(ROWS, index("T12") - 0.3)
    levels[:5] = np.linspace(index("T12") + 0.4, index("T12") - 0.3, 5)
    assert crossings(levels, index("T12")) and not crossings(levels, index("T12") - 0.5)
    position = level_positions(levels, np.arange(ROWS, dtype=float))["T12"]
    assert not position.in_view and "cannot count there" in position.reason
    levels[5:] = np.linspace(index("T12") - 0.3, index("T12") - 8, ROWS - 5)  # 1 level per 26 rows (52 mm)
    assert level_positions(levels, np.arange(ROWS, dtype=float))["T12"].in_view


def test_a_coordinate_that_jumps_half_a_level_in_one_row_is_not_a_level_in_view():
    """The count at a scan's edge (seen on a generated chest 7 mm above its bottom): L2 to T12 in
    a few rows, then flat. Half a level within 2 mm is no vertebra."""
    levels = np.full(ROWS, index("T12") - 0.2)
    levels[:5] = [index("L2") + 0.6, index("L2") + 0.5, index("L2") + 0.4, index("L2") + 0.1, index("L2") - 0.9]
    assert EDGE_ROWS < crossings(levels, index("L2"))[0] < 4
    position = level_positions(levels, np.arange(ROWS, dtype=float))["L2"]
    assert not position.in_view and "cannot count there" in position.reason


def test_a_segment_boundary_only_at_the_edge_rows_leaves_the_segment_without_volume():
    """L3's lower boundary (3.5) is crossed in the bottom edge rows only: its segment is cut."""
    rows = 40
    levels = coordinate(index("L2"), index("L3") + 0.5 + 1.5 / (rows - 2), rows)
    positions = level_positions(levels, np.arange(rows, dtype=float))
    assert crossings(levels, index("L3") + 0.5) and positions["L3"].in_view
    assert positions["L3"].lower is None and not positions["L3"].complete


def test_stored_head_first_slices_keep_lower_below_upper():
    levels = coordinate(index("T10"), index("S1"))
    positions = level_positions(levels, (ROWS - 1 - np.arange(ROWS)).astype(float))  # row 0 is the last slice
    for position in positions.values():
        assert position.lower < position.mid_slice < position.upper
    assert positions["L1"].mid_slice < positions["L5"].mid_slice  # L1 is nearer the head: lower index


def test_volumes_and_areas_on_a_volume_with_known_muscle():
    n = 100
    hu = np.full((20, 20, n), -1000.0)
    mask = np.zeros((20, 20, n), np.uint8)
    hu[:10, :10, :] = 50.0  # 100 muscle pixels of 2 x 2 mm = 4 cm2 per slice, in the muscle HU range
    mask[:10, :10, :] = 1
    hu[0, 0, :] = -100.0  # one fat pixel inside the mask: IMAT 0.04 cm2, not muscle
    levels = coordinate(index("T10"), index("S1"))
    positions = level_positions(levels, np.linspace(0, n - 1, ROWS))
    found = measure_levels(hu, mask, 2, (2.0, 2.0, 3.0), positions, (-29.0, 150.0))
    l3 = found["levels"]["L3"]
    assert l3["sma_cm2"] == pytest.approx(3.96) and l3["imat_cm2"] == pytest.approx(0.04)
    assert l3["muscle_mean_hu"] == pytest.approx(50.0)
    span = range(int(np.ceil(positions["L5"].lower)), int(np.floor(positions["L1"].upper)) + 1)  # L5 lies below
    assert found["muscle_volume_l1_l5_cm3"] == pytest.approx(round(3.96 * 0.3 * len(span), 1))
    first, last = slices_needed(positions, n)
    assert first <= int(positions["T12"].upper) and last >= int(positions["L5"].lower)


def test_no_level_in_view_needs_no_slices():
    positions = level_positions(coordinate(index("T1"), index("T5")), np.arange(ROWS, dtype=float))
    assert not any(p.in_view for p in positions.values())
    assert slices_needed(positions, 50) is None


def test_every_level_of_a_generated_abdomen_matches_its_truth(tmp_path):
    """Phantom seed 3100 case 0 (abdomen, 160 x 1 mm slices): the levels around L3 are found within
    a centimetre and their SMA within 5 % of the truth; L3's entry is the L3 result. All levels
    and the volume over 24 phantoms: benchmarks/eval_levels.py, docs/cohorts.md."""
    from sarcopenia_app.analysis import MeasureOptions, Models, model_description
    from sarcopenia_app.cohort import CaseInput, run_case
    from sarcopenia_app.cli import MODEL_DIR
    from sarcopenia_app.level import load_locator
    from sarcopenia_app.phantom import generate_case, write_case
    from sarcopenia_app.segment import load_model

    truth = write_case(generate_case(3100, 0, matrix=128), tmp_path, "nifti", "none", False)
    muscle, locator = MODEL_DIR / "muscle_seg.pt", MODEL_DIR / "l3_locator.pt"
    models = Models(load_model(muscle), load_locator(locator),
                    {"muscle": model_description(muscle), "l3_locator": model_description(locator)})
    path = tmp_path / truth["files"]["image"]
    record = run_case(CaseInput(truth["id"], path), models, MeasureOptions(levels="all"), tmp_path / "out", "cpu")
    levels = record["levels"]
    assert levels["L3"]["slice_index"] == record["l3_slice_index"] and levels["L3"]["sma_cm2"] == record["sma_cm2"]
    assert "T12" not in truth["levels"] and not levels["T12"]["in_view"]
    for name in ("L2", "L3", "L4"):
        expected = truth["levels"][name]
        assert levels[name]["in_view"]
        assert abs(levels[name]["slice_index"] - expected["mid_index"]) * truth["spacing_mm"][2] <= 10.0
        assert levels[name]["sma_cm2"] == pytest.approx(expected["sma_cm2"], rel=0.05)
        assert levels[name]["volume_cm3"] > 0


def test_a_stack_too_short_to_count_has_no_level_in_view():
    levels = np.linspace(index("L3") + 0.6, index("L3") - 0.6, 25)  # 48 mm of 2 mm rows across L3's middle
    positions = level_positions(levels, np.arange(25, dtype=float))
    assert not any(p.in_view for p in positions.values())
    assert "too short to count vertebrae" in positions["L3"].reason
