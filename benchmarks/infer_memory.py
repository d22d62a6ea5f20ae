"""Peak memory of one inference as the server runs it (the ``muscle_seg`` infer task, whole-volume
mask, L3 location and measurements), in a fresh process per volume so that the peak belongs to
that inference alone. This is the figure behind ``infer_concurrency``: the server may hold that
many at once.

    nice -n 10 .venv/bin/python benchmarks/infer_memory.py --slices 300
    nice -n 10 .venv/bin/python benchmarks/infer_memory.py --slices 300 1024   # 1024 = the voxel limit at 512x512

Volumes: 512x512 phantoms at 1.25 mm slices (chest-abdomen-pelvis); beyond the phantom's
length the volume repeats along z (memory depends on the size, not on the anatomy).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sarcopenia_app.ct_input import MAX_VOXELS  # noqa: E402
from sarcopenia_app.phantom.generate import generate_case  # noqa: E402
from sarcopenia_app.phantom.writer import stored_layout, write_nifti  # noqa: E402

PHANTOM_SLICES = 300


def write_volume(path: Path, slices: int) -> None:
    case = generate_case(77, 0, max_slices=min(slices, PHANTOM_SLICES), acquisition_overrides={
        "coverage": "chest_abdomen_pelvis", "slice_spacing_mm": 1.25, "slice_thickness_mm": 1.25})
    affine, to_stored = stored_layout(case, "LPS")
    stored = to_stored(case.hu)
    if slices > stored.shape[2]:
        stored = np.concatenate([stored] * (slices // stored.shape[2] + 1), axis=2)[:, :, :slices]
    write_nifti(path, stored, affine)


def measure_one(image_path: str) -> None:
    """In its own process: the server's infer task on one file, then this process's peak RSS."""
    from lib.infers.muscle_seg import MuscleSegInfer

    task = MuscleSegInfer(str(REPO / "model" / "muscle_seg.pt"), str(REPO / "model" / "l3_locator.pt"),
                          {"skeletal_muscle": 1}, "memory benchmark")
    start = time.perf_counter()
    task({"image": image_path, "device": "cpu", "result_extension": ".nii.gz", "region": "all"})
    print(json.dumps({"seconds": round(time.perf_counter() - start, 1),
                      "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, nargs="+", default=[PHANTOM_SLICES])
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_one(args.measure)
        return 0
    with tempfile.TemporaryDirectory(prefix="infer_memory_") as tmp:
        for slices in args.slices:
            path = Path(tmp) / f"ct_512x512x{slices}.nii.gz"
            write_volume(path, slices)
            done = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True,
                                  cwd=REPO)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps({"shape": [512, 512, slices], "voxels": 512 * 512 * slices,
                              "fraction_of_limit": round(512 * 512 * slices / MAX_VOXELS, 2), **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
