"""Every level in view and the L1-L5 volume: positions from a level coordinate, the "not in
view" rule, volumes on a volume with known muscle, and the pipeline on a generated case."""

import numpy as np
import pytest

from sarcopenia_app.level.locator import LEVEL_NAMES
from sarcopenia_app.level_measurements import level_positions, measure_levels, slices_needed

ROWS = 200  # 2 mm rows: 400 mm of scan


def coordinate(top_level: float, bottom_level: float) -> np.ndarray:
    """A level coordinate falling linearly from the scan's bottom row to its top row."""
    return np.linspace(bottom_level, top_level, ROWS)


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


def test_a_level_whose_middle_is_not_scanned_is_not_in_view_and_a_cut_segment_has_no_volume():
    levels = coordinate(index("L2") + 0.3, index("L4") + 0.2)  # from just below L4's middle to above L2's
    positions = level_positions(levels, np.arange(ROWS, dtype=float))
    assert [name for name, p in positions.items() if p.in_view] == ["L3", "L4"]
    assert positions["L3"].complete and not positions["L4"].complete
    assert positions["L4"].lower is None and positions["L4"].upper is not None


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
