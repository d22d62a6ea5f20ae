"""Classical skeletal-muscle segmenter for abdominal CT: the COLD-START BASELINE.

Nothing here is learnt. It gives annotators a first mask to correct before any model
has been trained, and a floor that trained models must beat. Expect it to include
bowel, kidney or vessels that touch muscle, and to miss muscle outside its search
regions. Sizes it assumes are in ``BaselineParams``.

Each axial slice (the third array axis) is handled on its own; the in-plane axes may
have any orientation, so "posterior" is estimated from the anatomy itself:

1. Body: largest connected component of HU > -500, holes filled. This drops the CT
   table and arms that do not touch the trunk.
2. Core, the region inside the muscle wall: the body minus the skin band and the
   subcutaneous fat (fat connected to the skin through channels wider than thin
   fascial planes), united with the muscle ring closed across gaps and filled.
3. Muscle wall: muscle-range pixels in the outer ``wall_depth_mm`` of the core, in
   pieces that reach the core's edge, bridging thin fat planes between layers
   (rectus, obliques, transversus; the outer part of the back muscles).
4. Spine: bone (HU > 200) in the core, its outline closed and its inside (marrow,
   canal) filled; the largest piece is the vertebra. The direction from the body's
   centroid to the vertebra's is "posterior". Muscle-range tissue is searched beside
   the vertebral body (psoas) and behind the vertebra (paraspinals, quadratus
   lumborum); only pieces that come close to bone or the wall are kept, so organs
   separated from them by fat are not.
5. Muscle = muscle-range (-29..150 HU, Mitsiopoulos 1998) pixels of the wall and of
   those pieces, minus bone, minus tissue next to bowel gas, minus specks.

Without a vertebra in the slice only the muscle wall is returned.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .measurements import FAT_HU, MUSCLE_HU
BODY_MIN_HU = -500.0
BONE_MIN_HU = 200.0

# 8-connectivity in the slice plane: thin diagonal structures stay in one piece.
_CONNECTIVITY_2D = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class BaselineParams:
    """Anatomical size assumptions of the heuristics, all in mm or cm2."""

    skin_depth_mm: float = 3.0  # skin thickness: removed; subcutaneous fat starts below it
    wall_depth_mm: float = 30.0  # thickness of the muscle-wall band inside the subcutaneous fat
    psoas_width_mm: float = 45.0  # how far psoas reaches sideways beyond the vertebral body
    psoas_front_mm: float = 15.0  # how far psoas reaches forward of the vertebral body, beside it
    vertebral_body_depth_mm: float = 15.0  # anterior strip of bone used to measure body width
    paraspinal_half_width_mm: float = 90.0  # half-width of the region behind the vertebra
    contact_mm: float = 5.0  # muscle pieces must come this close to the core edge, bone or the wall
    fat_plane_mm: float = 4.0  # fat narrower than this (fascial planes, gaps in the wall) separates nothing
    wall_gap_mm: float = 40.0  # gaps in the muscle ring up to this width are bridged
    cortex_gap_mm: float = 6.0  # breaks in a bone's outline up to this width are closed before filling it
    gas_margin_mm: float = 5.0  # tissue this close to gas inside the body is bowel, not muscle
    min_vertebra_area_cm2: float = 2.0  # smaller bone pieces are not taken for the vertebra
    min_component_area_cm2: float = 0.3  # muscle pieces smaller than this are dropped as noise


DEFAULT_PARAMS = BaselineParams()


def segment_muscle_volume(
    volume_hu: np.ndarray,
    spacing_mm: Sequence[float],
    params: BaselineParams = DEFAULT_PARAMS,
) -> np.ndarray:
    """Skeletal-muscle mask (uint8, 1 = muscle) of a CT volume, on the volume's own grid.

    ``volume_hu`` is indexed (in-plane, in-plane, slice); ``spacing_mm`` gives the voxel
    size along those three axes.
    """
    if volume_hu.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {volume_hu.shape}")
    pixel_spacing_mm = (float(spacing_mm[0]), float(spacing_mm[1]))
    mask = np.zeros(volume_hu.shape, dtype=np.uint8)
    for k in range(volume_hu.shape[2]):
        mask[:, :, k] = segment_muscle_slice(volume_hu[:, :, k], pixel_spacing_mm, params)
    return mask


def segment_muscle_slice(
    slice_hu: np.ndarray,
    pixel_spacing_mm: Tuple[float, float],
    params: BaselineParams = DEFAULT_PARAMS,
) -> np.ndarray:
    """Boolean skeletal-muscle mask of one axial slice (see the module docstring)."""
    slice_hu = np.asarray(slice_hu, dtype=np.float32)
    body = body_mask(slice_hu)
    muscle = np.zeros(body.shape, dtype=bool)
    if body.any():
        box = ndimage.find_objects(body.astype(np.uint8))[0]  # work on the body's bounding box only: faster
        muscle[box] = _muscle_in_body(slice_hu[box], body[box], pixel_spacing_mm, params)
    return muscle


def _muscle_in_body(
    slice_hu: np.ndarray, body: np.ndarray, pixel_spacing_mm: Tuple[float, float], params: BaselineParams
) -> np.ndarray:
    muscle_range = _in_range(slice_hu, MUSCLE_HU)

    core = fascia_core(slice_hu, body, pixel_spacing_mm, params)
    wall = muscle_wall(muscle_range & core, depth_mm(core, pixel_spacing_mm), pixel_spacing_mm, params)

    bone = ndimage.binary_fill_holes(_closing(core & (slice_hu > BONE_MIN_HU), params.cortex_gap_mm / 2, pixel_spacing_mm))
    posterior = posterior_muscle(muscle_range & core & ~bone, body, bone, wall, pixel_spacing_mm, params)

    bowel_gas = body & (slice_hu < BODY_MIN_HU)  # the body's holes were filled: gas inside it
    near_gas = ndimage.distance_transform_edt(~bowel_gas, sampling=pixel_spacing_mm) <= params.gas_margin_mm
    muscle = (wall | posterior) & ~bone & ~near_gas
    min_pixels = params.min_component_area_cm2 / _pixel_area_cm2(pixel_spacing_mm)
    return remove_small_components(muscle, min_pixels)


def body_mask(slice_hu: np.ndarray) -> np.ndarray:
    """Largest connected non-air region with its holes (bowel gas, lungs) filled."""
    return ndimage.binary_fill_holes(largest_component(slice_hu > BODY_MIN_HU))


def fascia_core(
    slice_hu: np.ndarray,
    body: np.ndarray,
    pixel_spacing_mm: Tuple[float, float],
    params: BaselineParams = DEFAULT_PARAMS,
) -> np.ndarray:
    """Body minus skin and subcutaneous fat: the region enclosed by the muscle wall.

    Two estimates are united, as each fails where the other holds:
    - inside the subcutaneous fat, taken as fat-range tissue connected to the skin band
      through channels wider than ``fat_plane_mm`` (thin fat planes between wall
      muscles do not count); fails when a wide gap in the wall lets it leak inside;
    - inside the muscle ring, closed across gaps up to ``wall_gap_mm``; fails when the
      ring has a wider gap.
    """
    skin = body & (depth_mm(body, pixel_spacing_mm) <= params.skin_depth_mm)
    below_skin = body & ~skin

    wide_fat = _opening(body & _in_range(slice_hu, FAT_HU), params.fat_plane_mm / 2, pixel_spacing_mm)
    subcutaneous_fat = _components_touching(wide_fat, skin)
    inside_fat = largest_component(below_skin & ~subcutaneous_fat)

    min_pixels = params.min_component_area_cm2 / _pixel_area_cm2(pixel_spacing_mm)
    muscle_like = remove_small_components(below_skin & _in_range(slice_hu, MUSCLE_HU), min_pixels)
    closed_ring = _closing(muscle_like, params.wall_gap_mm / 2, pixel_spacing_mm)

    return ndimage.binary_fill_holes(inside_fat | closed_ring) & below_skin


def muscle_wall(
    candidates: np.ndarray,
    core_depth_mm: np.ndarray,
    pixel_spacing_mm: Tuple[float, float],
    params: BaselineParams = DEFAULT_PARAMS,
) -> np.ndarray:
    """Muscle-range tissue in the outer ``wall_depth_mm`` of the core that reaches the core's edge.

    Muscle lies directly under the subcutaneous fat. The layers of the lateral wall
    count as one piece across thin fat planes; an organ in the band that is separated
    from the wall by more fat is not wall.
    """
    in_band = candidates & (core_depth_mm <= params.wall_depth_mm)
    bridged = ndimage.distance_transform_edt(~in_band, sampling=pixel_spacing_mm) <= params.fat_plane_mm / 2
    at_edge = core_depth_mm <= params.contact_mm
    return in_band & _components_touching(bridged, at_edge)


def posterior_muscle(
    candidates: np.ndarray,
    body: np.ndarray,
    bone: np.ndarray,
    wall: np.ndarray,
    pixel_spacing_mm: Tuple[float, float],
    params: BaselineParams = DEFAULT_PARAMS,
) -> np.ndarray:
    """Psoas, paraspinals and quadratus lumborum among the muscle-range ``candidates``.

    They are searched beside the vertebral body and behind the vertebra. Only pieces
    that come close to bone or to the muscle wall are kept: organs that lie in the
    search region but are wrapped in fat are left out.
    """
    none = np.zeros(body.shape, dtype=bool)
    vertebra = largest_component(bone)
    if vertebra.sum() * _pixel_area_cm2(pixel_spacing_mm) < params.min_vertebra_area_cm2:
        return none
    frame = _vertebra_frame_mm(body, vertebra, pixel_spacing_mm)
    if frame is None:
        return none
    along_mm, across_mm = frame

    anterior_edge_mm = along_mm[vertebra].min()
    vertebral_body = vertebra & (along_mm <= anterior_edge_mm + params.vertebral_body_depth_mm)
    body_half_width_mm = np.abs(across_mm[vertebral_body]).max()
    lateral_to_body = np.abs(across_mm) > body_half_width_mm  # not in front of it, where the aorta lies
    front_limit_mm = anterior_edge_mm - np.where(lateral_to_body, params.psoas_front_mm, 0.0)
    beside_vertebral_body = (along_mm >= front_limit_mm) & (
        np.abs(across_mm) <= body_half_width_mm + params.psoas_width_mm
    )
    behind_vertebra = (along_mm >= 0.0) & (np.abs(across_mm) <= params.paraspinal_half_width_mm)

    in_region = candidates & (beside_vertebral_body | behind_vertebra)
    near_anchor = ndimage.distance_transform_edt(~(bone | wall), sampling=pixel_spacing_mm) <= params.contact_mm
    return _components_touching(in_region, near_anchor)


def depth_mm(mask: np.ndarray, pixel_spacing_mm: Tuple[float, float]) -> np.ndarray:
    """Distance (mm) of each mask pixel from the mask's edge; the image border counts as edge."""
    padded = np.pad(mask, 1, constant_values=False)
    return ndimage.distance_transform_edt(padded, sampling=pixel_spacing_mm)[1:-1, 1:-1]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask`` (all False if it is empty)."""
    labels, count = ndimage.label(mask, structure=_CONNECTIVITY_2D)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def remove_small_components(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """``mask`` without connected components of fewer than ``min_pixels`` pixels."""
    labels, count = ndimage.label(mask, structure=_CONNECTIVITY_2D)
    if count == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def _components_touching(mask: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Connected components of ``mask`` that share at least one pixel with ``anchor``."""
    labels, count = ndimage.label(mask, structure=_CONNECTIVITY_2D)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    touched = np.zeros(count + 1, dtype=bool)
    touched[np.unique(labels[anchor & mask])] = True
    touched[0] = False
    return touched[labels]


def _vertebra_frame_mm(
    body: np.ndarray, vertebra: np.ndarray, pixel_spacing_mm: Tuple[float, float]
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Per-pixel (posterior, lateral) coordinates in mm, origin at the vertebra's centroid.

    "Posterior" points from the body's centroid to the vertebra's; None when the two
    coincide (within 1 mm) and the direction is undefined.
    """
    rows_mm, cols_mm = np.indices(body.shape, dtype=np.float32)
    rows_mm *= pixel_spacing_mm[0]
    cols_mm *= pixel_spacing_mm[1]
    body_centre = np.array([rows_mm[body].mean(), cols_mm[body].mean()])
    vertebra_centre = np.array([rows_mm[vertebra].mean(), cols_mm[vertebra].mean()])
    offset_mm = vertebra_centre - body_centre
    distance_mm = float(np.hypot(*offset_mm))
    if distance_mm < 1.0:
        return None
    posterior = offset_mm / distance_mm
    d_rows = rows_mm - vertebra_centre[0]
    d_cols = cols_mm - vertebra_centre[1]
    along = d_rows * posterior[0] + d_cols * posterior[1]
    across = d_cols * posterior[0] - d_rows * posterior[1]
    return along, across


def _opening(mask: np.ndarray, radius_mm: float, pixel_spacing_mm: Tuple[float, float]) -> np.ndarray:
    """Morphological opening with a disk of ``radius_mm``: removes parts narrower than its diameter."""
    padded, crop = _padded(mask, radius_mm, pixel_spacing_mm)
    eroded = ndimage.distance_transform_edt(padded, sampling=pixel_spacing_mm) > radius_mm
    return (ndimage.distance_transform_edt(~eroded, sampling=pixel_spacing_mm) <= radius_mm)[crop]


def _closing(mask: np.ndarray, radius_mm: float, pixel_spacing_mm: Tuple[float, float]) -> np.ndarray:
    """Morphological closing with a disk of ``radius_mm``: bridges gaps narrower than its diameter."""
    padded, crop = _padded(mask, radius_mm, pixel_spacing_mm)
    dilated = ndimage.distance_transform_edt(~padded, sampling=pixel_spacing_mm) <= radius_mm
    return (ndimage.distance_transform_edt(dilated, sampling=pixel_spacing_mm) > radius_mm)[crop]


def _padded(
    mask: np.ndarray, radius_mm: float, pixel_spacing_mm: Tuple[float, float]
) -> Tuple[np.ndarray, Tuple[slice, slice]]:
    """``mask`` with a background margin wider than ``radius_mm``, and the slices that undo it.

    Distance transforms (used here for fast morphology with large disks) then see
    background beyond the image border."""
    margins = [int(np.ceil(radius_mm / step)) + 1 for step in pixel_spacing_mm]
    padded = np.pad(mask, [(margin, margin) for margin in margins])
    return padded, tuple(slice(margin, -margin) for margin in margins)


def _pixel_area_cm2(pixel_spacing_mm: Tuple[float, float]) -> float:
    return pixel_spacing_mm[0] * pixel_spacing_mm[1] / 100.0


def _in_range(values: np.ndarray, bounds: Tuple[float, float]) -> np.ndarray:
    return (values >= bounds[0]) & (values <= bounds[1])
