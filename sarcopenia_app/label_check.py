"""A saved label becomes training data: refuse one that cannot belong to its image before it
is stored, instead of failing (or silently mis-training) at the next training run."""

from __future__ import annotations

from typing import Collection, Sequence

import numpy as np


class InvalidLabelError(ValueError):
    """The label does not fit its image or holds values no model knows; the message says which."""


def check_label_array(label: np.ndarray, image_shape: Sequence[int], allowed_values: Collection[int]) -> None:
    """``label`` on the image's voxel grid, holding only 0 (background) and ``allowed_values``."""
    shape = tuple(int(n) for n in np.squeeze(label).shape)
    expected = tuple(int(n) for n in image_shape)
    if shape != expected:
        raise InvalidLabelError(f"label of shape {shape} does not match its image of shape {expected}: "
                                "save the mask on the image's own grid (same size and slices)")
    if label.dtype.kind == "f" and not np.all(np.isfinite(label)):
        raise InvalidLabelError("the label contains NaN or infinite values")
    values = np.unique(label)
    if label.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise InvalidLabelError("the label holds fractional values: save a label map of integers")
    unknown = sorted(set(int(v) for v in values) - {0} - set(int(v) for v in allowed_values))
    if unknown:
        known = ", ".join(str(v) for v in sorted({0, *allowed_values}))
        raise InvalidLabelError(f"label values {unknown[:10]} are not known; allowed: {known} "
                                "(0 = background, see GET /info/ for each model's labels)")
