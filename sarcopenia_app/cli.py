"""`sarcopenia` command line: the same library the server uses, without the server."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional


def _phantom(args: argparse.Namespace) -> int:
    from .phantom.writer import write_dataset

    start = time.perf_counter()
    records = write_dataset(Path(args.out), args.count, args.seed, fmt=args.format,
                            label_slices=args.label_slices, labelled=args.labelled,
                            matrix=args.matrix, max_slices=args.max_slices)
    for r in records:
        print(json.dumps({k: r[k] for k in ("id", "has_l3", "l3_mid_index", "sma_cm2", "shape", "orientation")}))
    print(f"wrote {len(records)} case(s) to {args.out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _pacs_upload(args: argparse.Namespace) -> int:
    from .dicomweb_upload import upload_folder

    report = upload_folder(args.dicomweb, Path(args.folder))
    for path, reason in report.refused:
        print(f"refused {path}: {reason}", file=sys.stderr)
    print(f"stored {len(report.stored)} DICOM file(s), refused {len(report.refused)}, "
          f"{len(report.not_dicom)} other file(s) left alone", file=sys.stderr)
    return 1 if report.refused else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sarcopenia", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ph = sub.add_parser("phantom", help="generate synthetic abdominal CT cases with exact ground truth")
    ph.add_argument("--out", required=True, help="output folder (MONAI Label datastore layout)")
    ph.add_argument("--count", type=int, default=1)
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--format", choices=("nifti", "dicom"), default="nifti")
    ph.add_argument("--label-slices", choices=("all", "l3", "none"), default="all",
                    help="datastore labels on every slice, on a few slices around L3, or none")
    ph.add_argument("--labelled", type=int, default=None, metavar="K",
                    help="write datastore labels for the first K cases that can have one (default: all)")
    ph.add_argument("--matrix", type=int, default=512, help="in-plane matrix size (default 512)")
    ph.add_argument("--max-slices", type=int, default=160)
    ph.set_defaults(func=_phantom)
    up = sub.add_parser("pacs-upload", help="send the DICOM files of a folder to a PACS over DICOMweb (STOW-RS)")
    up.add_argument("folder", help="folder searched recursively for DICOM files")
    up.add_argument("--dicomweb", default="http://127.0.0.1:8042/dicom-web", help="DICOMweb root of the PACS")
    up.set_defaults(func=_pacs_upload)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
