"""What a clinician looks at: the L3 slice with the muscle outline and the numbers, a sagittal
view with the chosen level marked, and the cohort table.

Pictures are in radiological convention (anterior up, patient's right on the viewer's left) with
a fixed soft-tissue window, whatever the stored orientation.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from .level.locator import LEVEL_NAMES, L3Location, crossings  # noqa: E402
from .level.projection import ROW_MM  # noqa: E402
from .level_measurements import MEASURED_LEVELS, beyond_count, counted_body_rows  # noqa: E402
from .safe_files import write_atomically  # noqa: E402

WINDOW_HU = (-160, 240)
CSV_COLUMNS = ("case", "has_l3", "l3_slice_index", "l3_z_mm", "l3_confidence", "sma_cm2", "muscle_mean_hu",
               "imat_cm2", "smi_cm2_m2", "sarcopenia", "myosteatosis", "cutoffs", "sex", "height_m", "weight_kg",
               "bmi", "contrast_suspected", "metal_suspected", "slice_thickness_mm", "l3_sop_instance_uid", "warnings", "error")
LEVEL_VALUES = ("slice_index", "sma_cm2", "muscle_mean_hu", "imat_cm2", "volume_cm3")
LEVEL_CSV_COLUMNS = tuple(f"{name.lower()}_{key}" for name in MEASURED_LEVELS for key in LEVEL_VALUES) + (
    "muscle_volume_l1_l5_cm3",)


def to_ras(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A stored (X, Y, Z) array reoriented to RAS index order."""
    return nib.orientations.apply_orientation(volume, nib.orientations.io_orientation(affine))


def axial_display(ras_slice: np.ndarray) -> np.ndarray:
    """RAS (X, Y) slice -> rows anterior to posterior, columns patient right to left."""
    return ras_slice[::-1, ::-1].T


def ras_index(stored_index: int, affine: np.ndarray, n_slices: int) -> int:
    """The RAS slice (third axis) that holds stored slice `stored_index` of the S-I axis."""
    axis = int(np.argmax(np.abs(np.asarray(affine)[2, :3])))
    return n_slices - 1 - stored_index if affine[2, axis] < 0 else stored_index


def _summary(record: Dict[str, Any]) -> List[str]:
    def fmt(key: str, unit: str, digits: int = 1) -> str:
        value = record.get(key)
        return "n/a" if value is None else f"{value:.{digits}f} {unit}"

    flag = {True: "yes", False: "no", None: "n/a"}
    return [f"SMA {fmt('sma_cm2', 'cm²')}   SMI {fmt('smi_cm2_m2', 'cm²/m²')}",
            f"muscle {fmt('muscle_mean_hu', 'HU')}   IMAT {fmt('imat_cm2', 'cm²')}",
            f"sarcopenia: {flag[record.get('sarcopenia')]}   myosteatosis: {flag[record.get('myosteatosis')]}"
            f"   ({record.get('cutoffs')})",
            f"slice {record.get('l3_slice_index')} ({record.get('l3_convention', 'mid')}-L3), "
            f"confidence {record.get('l3_confidence')}"]


def write_l3_png(path: Path, hu: np.ndarray, mask: np.ndarray, affine: np.ndarray, record: Dict[str, Any],
                 location: Optional[L3Location] = None) -> None:
    """Axial L3 slice with the muscle outline and the numbers; beside it a sagittal view through the
    spine with the chosen slice and the predicted vertebral levels."""
    ras_hu, ras_mask = to_ras(hu, affine), to_ras(mask, affine)
    spacing = _ras_spacing(affine)
    k = ras_index(record["l3_slice_index"], affine, ras_hu.shape[2])
    sagittal = ras_hu.shape[2] > 1
    fig, axes = plt.subplots(1, 2 if sagittal else 1, figsize=(12 if sagittal else 8, 8),
                             gridspec_kw={"width_ratios": [3, 1]} if sagittal else None, squeeze=False)
    ax = axes[0, 0]
    ax.imshow(axial_display(ras_hu[:, :, k]), cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1],
              aspect=spacing[1] / spacing[0])
    ax.contour(axial_display(ras_mask[:, :, k]), [0.5], colors="red", linewidths=0.8)
    ax.set_title(f"{record.get('case', '')}: L3 slice, skeletal muscle outlined")
    ax.text(0.01, 0.99, "\n".join(_summary(record) + record.get("warnings", [])[:4]), transform=ax.transAxes,
            va="top", ha="left", fontsize=9, color="yellow", family="monospace", wrap=True,
            bbox=dict(facecolor="black", alpha=0.6, edgecolor="none"))
    ax.text(0.01, 0.01, "R", transform=ax.transAxes, color="white")
    ax.text(0.97, 0.01, "L", transform=ax.transAxes, color="white")
    ax.axis("off")
    if sagittal:
        _sagittal(axes[0, 1], ras_hu, k, spacing, location)
    plt.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.savefig(path, dpi=80)
    plt.close(fig)


def _ras_spacing(affine: np.ndarray) -> np.ndarray:
    ornt = nib.orientations.io_orientation(affine)
    sizes = nib.affines.voxel_sizes(affine)
    return np.array([sizes[int(np.nonzero(ornt[:, 0] == axis)[0][0])] for axis in range(3)])


def _sagittal(ax, ras_hu: np.ndarray, k: int, spacing: np.ndarray, location: Optional[L3Location]) -> None:
    """Mid-sagittal plane (superior up, anterior left) with the chosen slice and level labels."""
    column = int(np.argmax((ras_hu[:, :, k] > 200).sum(axis=1))) if (ras_hu[:, :, k] > 200).any() else ras_hu.shape[0] // 2
    plane = ras_hu[column].T[::-1, ::-1]  # rows: superior first; columns: anterior first
    n = ras_hu.shape[2]
    ax.imshow(plane, cmap="gray", vmin=-250, vmax=800, aspect=spacing[2] / spacing[1])
    ax.axhline(n - 1 - k, color="red", linewidth=1)
    if location is not None and location.row_levels:
        for name, row in level_label_rows(location):
            display_row = n - 1 - row * ROW_MM / spacing[2]
            if 0 <= display_row < n:
                ax.text(2, display_row, name, color="cyan", fontsize=8, va="center")
    ax.set_title("sagittal: chosen slice")
    ax.axis("off")


def level_label_rows(location: L3Location) -> Iterable[tuple]:
    """(level name, fractional projection row of its body's middle) for every level in view: the
    bodies counted from L3 where they were, else where the level coordinate crosses the level
    (past the counted bodies: as for the measured levels, level_measurements.py)."""
    levels = np.asarray(location.row_levels)
    counted, pitch = counted_body_rows(levels, location.row_body_probability, location.l3_mid_row)
    for index, name in enumerate(LEVEL_NAMES):
        rows = [counted[index]] if index in counted else crossings(levels, float(index))
        if rows and (index in counted or beyond_count(rows[0], index, counted, pitch)):
            yield name, rows[0]


def write_cohort_csv(path: Path, records: Sequence[Dict[str, Any]]) -> None:
    """The cohort table, written atomically (a killed run leaves the previous table, never half of
    one); per-level columns appear when any case was measured at every level."""
    level_columns = [column for column in LEVEL_CSV_COLUMNS if any(column in level_row(r) for r in records)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS) + level_columns, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        row = {**record, **level_row(record)}
        row["warnings"] = "; ".join(w.split(":", 1)[0] for w in record.get("warnings", []))
        writer.writerow(row)
    write_atomically(path, lambda f: f.write(buffer.getvalue().encode()))


def level_row(record: Dict[str, Any]) -> Dict[str, Any]:
    """Per-level numbers of a record as flat CSV columns (``l1_sma_cm2``, ...)."""
    row = {f"{name.lower()}_{key}": value for name, level in (record.get("levels") or {}).items()
           for key, value in level.items() if key in LEVEL_VALUES}
    if "muscle_volume_l1_l5_cm3" in record:
        row["muscle_volume_l1_l5_cm3"] = record["muscle_volume_l1_l5_cm3"]
    return row
