"""What a DICOM SEG written by this app says about its segments and its origin.

MONAI Label 0.8.5 names a segment ``unknown`` and the series ``AIName`` unless a
``label_info`` list reaches ``nifti_to_dicom_seg``. The writer pairs ``label_info[i]``
with the i-th label value present in the mask and takes the SeriesDescription from
the first entry's ``model_name``, so entries are ordered by label value.
"""

from typing import Any, Dict, List, Mapping, Optional

# SeriesDescription prefixes. A SEG whose description starts with PROPOSAL is a model's
# unreviewed output: it is stored for viewing but never counted as a label, so training
# cannot learn from its own proposals.
PROPOSAL = "MONAI Label proposal"
FINAL = "MONAI Label final label"


def series_description(model: Optional[str], final: bool) -> str:
    if final:
        return FINAL
    return f"{PROPOSAL}: {model}" if model else PROPOSAL


def is_proposal(description: str) -> bool:
    return description.startswith(PROPOSAL)


def segment_list(label_names: Mapping[str, int], description: str) -> List[Dict[str, Any]]:
    """``label_info`` for the SEG writer: one entry per label, by label value."""
    return [
        {"name": name, "description": name.replace("_", " "), "idx": int(value), "model_name": description}
        for name, value in sorted(label_names.items(), key=lambda item: item[1])
        if int(value) != 0
    ]


def with_description(label_info: List[Dict[str, Any]], description: str) -> List[Dict[str, Any]]:
    """A client's own ``label_info`` (3D Slicer sends name, idx, color) with our series
    description, keeping the client's segment names and colours. The description is
    overwritten: it decides whether the SEG counts as a label."""
    entries = sorted((dict(entry) for entry in label_info), key=lambda entry: int(entry.get("idx", 0)))
    for entry in entries:
        entry["model_name"] = description
    return entries
