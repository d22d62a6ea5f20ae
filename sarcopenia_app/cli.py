"""`sarcopenia` command line: the same library the server uses, without the server."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

MODEL_DIR = Path(__file__).resolve().parents[1] / "model"  # the shipped models (repository checkout)


def _phantom(args: argparse.Namespace) -> int:
    from .phantom.writer import write_dataset

    start = time.perf_counter()
    records = write_dataset(Path(args.out), args.count, args.seed, fmt=args.format,
                            label_slices=args.label_slices, labelled=args.labelled,
                            matrix=args.matrix, max_slices=args.max_slices, variation=args.variation)
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


def _measure(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .analysis import InvalidRequestError, MeasureOptions
    from .cohort import find_cases
    from .cohort_engine import COHORT_CSV, RUN_LOG, CohortJob, run_cohort

    options = MeasureOptions(muscle_hu=(args.muscle_hu_min, args.muscle_hu_max), cutoffs=args.cutoffs,
                             convention=args.convention, slab_mm=args.slab_mm, levels=args.levels)
    try:
        options.validated()
    except InvalidRequestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    cases = find_cases([Path(p).resolve() for p in args.inputs])
    job = CohortJob(str(out), str(Path(args.muscle_model).resolve()), str(Path(args.locator_model).resolve()), options,
                    args.sex, args.height_m, args.weight_kg, args.sr, args.device)
    outcomes = run_cohort(cases, job, args.cluster, args.workers,
                          progress=lambda items, total: tqdm(items, total=total, desc="cases", unit="case",
                                                             file=sys.stderr))
    failed = [o for o in outcomes if o.status == "failed"]
    for outcome in failed:
        print(f"FAILED {outcome.case.name}: {outcome.record['error']}", file=sys.stderr)
    skipped = sum(o.status == "skipped" for o in outcomes)
    print(f"measured {len(outcomes) - len(failed)} of {len(outcomes)} case(s) ({skipped} already done); "
          f"table: {out / COHORT_CSV}; log: {out / RUN_LOG}", file=sys.stderr)
    return 1 if outcomes and len(failed) == len(outcomes) else 0


def _pretrain(args: argparse.Namespace) -> int:
    import logging

    from .pretrain import PretrainSettings, pretrain
    from .segment import load_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    images = sorted(Path(args.images).glob(args.pattern))
    if not images:
        print(f"no files matching {args.pattern} under {args.images}", file=sys.stderr)
        return 2
    like = load_model(args.network_from)  # the network and grid to pretrain for
    work = Path(args.work)
    summary = pretrain(images, like.config, like.pixdim_mm, work / "checkpoint.pt",
                       Path(args.encoder or work / "muscle_seg_encoder.pt"),
                       PretrainSettings.from_request(vars(args)), device=args.device,
                       start=like if args.start_from_weights else None)
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0


def _add_pretrain_parser(sub) -> None:
    import dataclasses

    from .pretrain import PretrainSettings

    pre = sub.add_parser("pretrain", help="self-supervised pretraining on a folder of CT scans (no labels needed); "
                                          "a stopped run continues from its checkpoint")
    pre.add_argument("--images", required=True, help="folder of CT volumes (its subfolders, e.g. a datastore's labels/, are not searched)")
    pre.add_argument("--pattern", default="*.nii.gz", help="file name pattern of the volumes (default *.nii.gz)")
    pre.add_argument("--network-from", default=str(Path(__file__).resolve().parents[1] / "model" / "muscle_seg.pt"),
                     help="model file whose network and grid are pretrained (its weights only with --start-from-weights)")
    pre.add_argument("--start-from-weights", action="store_true",
                     help="start from --network-from's weights (a shipped model adapted to this site's scans), not random ones")
    pre.add_argument("--work", required=True, help="folder of the checkpoint (WORK/checkpoint.pt)")
    pre.add_argument("--encoder", help="encoder file to write (default WORK/muscle_seg_encoder.pt); the server's "
                                       "/train/muscle_seg with init=encoder reads model/muscle_seg_encoder.pt")
    pre.add_argument("--device", default="cpu")
    # one option per PretrainSettings field, so that the CLI and the server task cannot drift apart
    for f in dataclasses.fields(PretrainSettings):
        flag = f"--{f.name.replace('_', '-')}"
        if f.name == "restart":
            pre.add_argument(flag, action="store_true", help="ignore an existing checkpoint and start again")
        else:
            pre.add_argument(flag, type=int if f.name == "seed" else type(f.default), help=f"default {f.default}")
    pre.set_defaults(func=_pretrain)


def _access_token(args: argparse.Namespace) -> int:
    from .access_tokens import add_token

    token, user = add_token(Path(args.file), args.user, args.role)
    print(token)
    print(f"token for {user.user} with roles {sorted(user.roles)} added to {args.file}; it is shown only now",
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sarcopenia", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from .phantom.variation import VARIATIONS

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
    ph.add_argument("--variation", choices=VARIATIONS, default="standard",
                    help="standard draws; wide: deformations, kernels, ascites, oedema, metal, odd arms, cut field "
                         "of view, 0.5-5 mm slices, tilt (docs/phantom.md); stress: the extremes of all of them")
    ph.set_defaults(func=_phantom)
    _add_pretrain_parser(sub)
    _add_measure_parser(sub)
    up = sub.add_parser("pacs-upload", help="send the DICOM files of a folder to a PACS over DICOMweb (STOW-RS)")
    up.add_argument("folder", help="folder searched recursively for DICOM files")
    up.add_argument("--dicomweb", default="http://127.0.0.1:8042/dicom-web", help="DICOMweb root of the PACS")
    up.set_defaults(func=_pacs_upload)
    tok = sub.add_parser("access-token", help="create a bearer token for one user of the server "
                                              "(--conf access_tokens FILE; see docs/reliability.md)")
    tok.add_argument("--file", required=True, help="token file (created if missing; only hashes are stored)")
    tok.add_argument("--user", required=True)
    tok.add_argument("--role", action="append", required=True, choices=("admin", "reviewer", "annotator", "user"),
                     help="repeat for several roles")
    tok.set_defaults(func=_access_token)
    return parser


def _add_measure_parser(sub) -> None:
    from .cutoffs import CUTOFF_SETS, DEFAULT_CUTOFFS
    from .measurements import MUSCLE_HU

    me = sub.add_parser("measure", help="L3 skeletal muscle area, SMI, muscle HU and flags for one scan or a cohort")
    me.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="NIfTI file, folder with one DICOM series, single DICOM file, or a folder of such inputs")
    me.add_argument("--out", required=True, help="output folder: <case>/measurements.json, muscle.nii.gz, l3.png; "
                                                 "measurements.csv")
    me.add_argument("--sex", choices=("F", "M"), help="default: DICOM PatientSex")
    me.add_argument("--height-m", type=float, help="default: DICOM PatientSize")
    me.add_argument("--weight-kg", type=float, help="default: DICOM PatientWeight")
    me.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: each worker's GPU where it has one)")
    me.add_argument("--cutoffs", choices=sorted(CUTOFF_SETS), default=DEFAULT_CUTOFFS)
    me.add_argument("--convention", choices=("mid", "inferior_endplate"), default="mid",
                    help="L3 slice: middle of the vertebral body (default) or its inferior endplate")
    me.add_argument("--slab-mm", type=float, help="average SMA over the L3 slices within +-slab/2 of the chosen one")
    me.add_argument("--muscle-hu-min", type=float, default=MUSCLE_HU[0])
    me.add_argument("--muscle-hu-max", type=float, default=MUSCLE_HU[1])
    me.add_argument("--levels", choices=("l3", "all"), default="l3",
                    help="all: also T12, L1, L2, L4, L5 and the L1-L5 muscle volume (cut-offs apply to L3 only)")
    me.add_argument("--sr", action="store_true", help="DICOM input: also write muscle_seg.dcm (SEG) and "
                                                       "measurements_sr.dcm (DICOM SR TID 1500) per case")
    me.add_argument("--cluster", metavar="ADDRESS", help="Dask scheduler to run on (tcp://host:8786); default: "
                                                         "a local cluster on this machine")
    me.add_argument("--workers", type=int, help="local cluster: worker processes (default: one per CPU core, "
                                                "or one per GPU)")
    me.add_argument("--muscle-model", default=str(MODEL_DIR / "muscle_seg.pt"))
    me.add_argument("--locator-model", default=str(MODEL_DIR / "l3_locator.pt"))
    me.set_defaults(func=_measure)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
