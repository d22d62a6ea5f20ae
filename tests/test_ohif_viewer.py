"""The OHIF viewer bundled with MONAI Label, in a real headless Chromium, on the app over
Orthanc: the steps an annotator takes (tests/ohif/check_ohif.mjs drives the browser), and the
whole loop (tests/ohif/annotator_loop.mjs): proposal, eraser, Export DICOM SEG, Update Model,
Next Sample, with access tokens on.

Needs node, Chromium (/usr/bin/chromium, or CHROMIUM=...) and playwright-core
(`npm ci --prefix tests/ohif`); .ci/run installs all three. Screenshots go to
OHIF_SCREENSHOTS_DIR when set (docs/pacs_and_viewers.md uses them).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import PacsStack
from dicomweb_client import DICOMwebClient
from pacs import read_series, running_orthanc
from servers import app_copy, direct_http, offline_env, running_server

from lib.endpoints.ohif_viewer import APP_CONFIG, OHIF_BUILD, ohif_file
from sarcopenia_app.access_tokens import add_token
from sarcopenia_app.dicomweb_upload import upload_folder
from sarcopenia_app.phantom import write_dataset

OHIF_DIR = Path(__file__).resolve().parent / "ohif"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MODEL = "muscle_threshold"  # always available (no weights); its overlay covers every slice
BROWSER_TIMEOUT_S = 420


def missing_tools() -> str:
    if not shutil.which("node"):
        return "node is not installed (Debian: apt-get install nodejs npm)"
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium; or set CHROMIUM)"
    if not (OHIF_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed: npm ci --prefix tests/ohif"
    return ""


def study_of(pacs: PacsStack, series_uid: str) -> str:
    found = pacs.orthanc.http.get(f"{pacs.orthanc.dicomweb}/series", params={"SeriesInstanceUID": series_uid}).json()
    return found[0]["0020000D"]["Value"][0]


@pytest.fixture(scope="module")
def ohif_run(pacs_stack, tmp_path_factory) -> dict:
    if missing_tools():
        pytest.skip(missing_tools())
    shots = Path(os.environ.get("OHIF_SCREENSHOTS_DIR") or tmp_path_factory.mktemp("ohif"))
    command = ["node", str(OHIF_DIR / "check_ohif.mjs"), pacs_stack.stack.url,
               study_of(pacs_stack, pacs_stack.series["plain"]), study_of(pacs_stack, pacs_stack.series["jpeg2000"]),
               MODEL, str(shots)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S,
                         env={**os.environ, "CHROMIUM": CHROMIUM})
    assert run.returncode == 0, run.stderr[-3000:]
    findings = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(findings["steps"], indent=1))
    return findings


def step(ohif_run: dict, name: str) -> dict:
    result = ohif_run["steps"][name]
    assert "error" not in result, result["error"]
    return result


def test_study_list_shows_the_orthanc_studies(ohif_run, pacs_stack):
    studies = pacs_stack.orthanc.http.get(f"{pacs_stack.orthanc.dicomweb}/studies").json()
    patients = sorted({study["00100020"]["Value"][0] for study in studies})
    listed = step(ohif_run, "01_study_list")
    assert listed["studies"] == len(studies)
    assert listed["patients"] == patients


def test_monai_label_mode_opens_a_study_and_renders_it(ohif_run):
    assert step(ohif_run, "02_study_open")["pixels"]["drawn"] > 1000


def test_monai_label_panel_connects_and_lists_our_models(ohif_run):
    assert MODEL in [name.strip() for name in step(ohif_run, "03_panel_connected")["models"]]


def test_auto_segmentation_runs_our_model_and_draws_the_overlay(ohif_run):
    result = step(ohif_run, "04_auto_segmentation")
    assert result["before"]["coloured"] < 100  # grey CT only
    assert result["after"]["coloured"] > result["before"]["coloured"] + 200


def test_a_jpeg2000_study_renders_through_the_proxy_and_orthanc_survives(ohif_run, pacs_stack):
    assert step(ohif_run, "05_jpeg2000_study")["pixels"]["drawn"] > 1000
    assert pacs_stack.orthanc.alive(), pacs_stack.orthanc.log.read_text()[-2000:]


def test_the_browser_saw_no_uncaught_errors(ohif_run):
    assert ohif_run["errors"] == []


# ---- the annotator's whole loop ------------------------------------------------------------------
LOOP_MODEL = "muscle_seg"
L3_CASES = dict(count=2, seed=2, matrix=96, max_slices=60)  # 60 slices reach L3; the 16-slice series do not
TRAIN_OPTIONS = {"max_epochs": 1, "crop_px": 64, "samples_per_volume": 2}  # typed into the panel's Options
LOOP_CONF = ("models", "muscle_seg,muscle_threshold", "uncertainty_passes", "2")
LOOP_TIMEOUT_S = 600


class LoopRun:
    def __init__(self, findings, orthanc, url, http, series, app, cache):
        self.findings, self.orthanc, self.url, self.http = findings, orthanc, url, http
        self.labelled, self.other = series
        self.app, self.cache = app, cache

    def step(self, name: str) -> dict:
        return step({"steps": self.findings["steps"]}, name)


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
    """The loop with access tokens on: every step runs as a signed-in user, and the sign-in and the
    roles are checked too (without tokens the same steps only skip the sign-in, which the viewer
    tests above run)."""
    if missing_tools():
        pytest.skip(missing_tools())
    tmp = tmp_path_factory.mktemp("loop")
    (tmp / "orthanc").mkdir()
    with running_orthanc(tmp / "orthanc") as orthanc:
        cases = write_dataset(tmp / "cases", fmt="dicom", label_slices="none", **L3_CASES)
        series = []
        for case in cases:
            assert not upload_folder(orthanc.dicomweb, tmp / "cases" / case["id"]).refused
            series.append(str(read_series(tmp / "cases" / case["id"])[0].SeriesInstanceUID))
        env, http, tokens_file = offline_env(tmp), direct_http(), tmp / "tokens.json"
        users = {role: {"user": f"{role}_user", "token": add_token(tokens_file, f"{role}_user", [role])[0]}
                 for role in ("annotator", "admin")}
        env["SARCOPENIA_ACCESS_TOKENS"] = str(tokens_file)
        http.headers["Authorization"] = f"Bearer {users['admin']['token']}"
        app = app_copy(tmp)
        with running_server(app, orthanc.dicomweb, env, tmp, LOOP_CONF) as url:
            shots = Path(os.environ.get("OHIF_SCREENSHOTS_DIR") or tmp) / "annotator_loop_tokens_on"
            config = {"server": url, "study": study_of_uid(orthanc, series[0]), "model": LOOP_MODEL,
                      "out_dir": str(shots), "train_options": TRAIN_OPTIONS, "users": users}
            (tmp / "loop.json").write_text(json.dumps(config))
            run = subprocess.run(["node", str(OHIF_DIR / "annotator_loop.mjs"), str(tmp / "loop.json")],
                                 capture_output=True, text=True, timeout=LOOP_TIMEOUT_S,
                                 env={**os.environ, "CHROMIUM": CHROMIUM})
            assert run.returncode == 0, run.stderr[-3000:]
            findings = json.loads(run.stdout.strip().splitlines()[-1])
            yield LoopRun(findings, orthanc, url, http, series, app, tmp / "dicomweb-cache")


def study_of_uid(orthanc, series_uid: str) -> str:
    found = orthanc.http.get(f"{orthanc.dicomweb}/series", params={"SeriesInstanceUID": series_uid}).json()
    return found[0]["0020000D"]["Value"][0]


def voxels(grid: dict, world_mm: np.ndarray) -> set:
    """Flat indices in OHIF's labelmap grid (x fastest) of points given in patient mm (LPS)."""
    axes = np.array(grid["direction"], float).reshape(3, 3).T * np.array(grid["spacing"], float)
    ijk = np.rint(np.linalg.solve(axes, (world_mm - np.array(grid["origin"], float)).T).T).astype(int)
    nx, ny, _ = grid["dimensions"]
    return set((ijk[:, 0] + nx * (ijk[:, 1] + ny * ijk[:, 2])).tolist())


def stored_seg(run: LoopRun, description: str):
    client = DICOMwebClient(run.orthanc.dicomweb)
    found = [s for s in client.search_for_series(search_filters={"Modality": "SEG"})
             if s.get("0008103E", {}).get("Value", [""])[0] == description]
    assert len(found) == 1, found
    study, seg = found[0]["0020000D"]["Value"][0], found[0]["0020000E"]["Value"][0]
    return client.retrieve_series(study, seg)[0]


def seg_voxels(seg, grid: dict) -> set:
    """The SEG's foreground, frame by frame, placed by each frame's position and the shared orientation."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    row_dir, col_dir = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float).reshape(2, 3)
    row_mm, col_mm = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    points = []
    for frame, group in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        origin = np.array(group.PlanePositionSequence[0].ImagePositionPatient, float)
        rows, cols = np.nonzero(frame)
        points.append(origin + np.outer(cols * col_mm, row_dir) + np.outer(rows * row_mm, col_dir))
    return voxels(grid, np.concatenate(points))


def image_voxels(path: Path, grid: dict) -> set:
    """The foreground of a label file (NRRD/NIfTI, read by SimpleITK in LPS) in OHIF's grid."""
    image = sitk.ReadImage(str(path))
    zyx = np.argwhere(sitk.GetArrayFromImage(image) > 0)
    return voxels(grid, np.array([image.TransformContinuousIndexToPhysicalPoint(p[::-1].tolist()) for p in zyx.astype(float)]))


def test_loop_auto_segmentation_draws_the_muscle_seg_proposal(loop_run):
    result = loop_run.step("02_auto_segmentation")
    assert result["after"]["coloured"] > result["before"]["coloured"] + 200
    assert len(result["proposal"]["foreground"]) > 1000


def test_loop_the_eraser_removes_exactly_the_stroked_part_of_the_proposal(loop_run):
    proposal = set(loop_run.step("02_auto_segmentation")["proposal"]["foreground"])
    erase = loop_run.step("03_erase")
    grid, edited = erase["edited"], set(erase["edited"]["foreground"])
    removed = proposal - edited
    assert edited < proposal and len(removed) >= 5  # only removed, and something was
    nx, ny, _ = grid["dimensions"]
    flat = np.array(sorted(proposal))
    ijk = np.stack([flat % nx, (flat // nx) % ny, flat // (nx * ny)], axis=1).astype(float)
    (x0, y0, z0), (x1, _, _) = erase["stroke"]["index"]
    spacing = np.array(grid["spacing"], float)
    # in-plane distance (mm) of every proposal voxel from the stroke (a horizontal segment)
    dx = np.clip(ijk[:, 0], min(x0, x1), max(x0, x1)) - ijk[:, 0]
    distance_mm = np.hypot(dx * spacing[0], (ijk[:, 1] - y0) * spacing[1])
    on_slice = ijk[:, 2] == round(z0)
    voxel_mm = float(np.hypot(*spacing[:2]))
    inside = set(flat[on_slice & (distance_mm < erase["radius_mm"] - voxel_mm)].tolist())
    near = set(flat[on_slice & (distance_mm <= erase["radius_mm"] + voxel_mm)].tolist())
    assert inside <= removed <= near, (len(inside), len(removed), len(near))


def test_loop_export_stores_the_edited_mask_voxel_by_voxel_as_a_seg_of_the_series(loop_run):
    export = loop_run.step("04_export_dicom_seg")
    assert export["status"] == 200 and export["url"].startswith("/proxy/dicom/")
    seg = stored_seg(loop_run, export["description"])
    assert seg.Modality == "SEG" and [s.SegmentLabel for s in seg.SegmentSequence] == ["skeletal_muscle"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == loop_run.labelled
    erase = loop_run.step("03_erase")
    stored = seg_voxels(seg, erase["edited"])
    assert stored == set(erase["edited"]["foreground"])
    assert stored != set(loop_run.step("02_auto_segmentation")["proposal"]["foreground"])


def test_loop_the_server_counts_the_export_as_the_label_and_trains_on_the_edited_mask(loop_run):
    stats = loop_run.http.get(f"{loop_run.url}/datastore/", params={"output": "stats"}, timeout=60).json()
    assert stats["completed"] == 1 and stats["total"] == 2
    listed = loop_run.http.get(f"{loop_run.url}/datastore/", params={"output": "all"}, timeout=60).json()["objects"]
    seg = stored_seg(loop_run, loop_run.step("04_export_dicom_seg")["description"])
    assert listed[loop_run.labelled]["labels"]["final"]["info"]["SeriesInstanceUID"] == seg.SeriesInstanceUID
    # what training read from the datastore: the SEG converted back, in the server's cache
    label_files = list(loop_run.cache.glob(f"*/labels/final/{loop_run.labelled}.*"))
    assert len(label_files) == 1, label_files
    erase = loop_run.step("03_erase")
    assert image_voxels(label_files[0], erase["edited"]) == set(erase["edited"]["foreground"])


def test_loop_update_model_trains_muscle_seg_with_the_panels_options_and_never_pretrains(loop_run):
    update = loop_run.step("07_update_model")
    assert update["status"] == 200 and update["stop_button_shown"]
    request = update["body"]["muscle_seg"]["result"]["request"]
    assert {k: request[k] for k in TRAIN_OPTIONS} == TRAIN_OPTIONS
    train_stats = loop_run.http.get(f"{loop_run.url}/info/", timeout=60).json()["train_stats"]
    assert train_stats["muscle_seg"]["total_epochs"] == 1 and train_stats["muscle_seg"]["total_time"]
    assert f"{round(100 * train_stats['muscle_seg']['best_metric'])}%" in update["finished"]  # the panel's Train Acc
    assert not train_stats.get("muscle_seg_pretrain")  # asked without confirmation: skipped
    assert not (loop_run.app / "model" / "muscle_seg_encoder.pt").exists()
    assert not (loop_run.app / "model" / "muscle_seg_pretrain").exists()


def test_loop_next_sample_uncertain_opens_the_scan_the_server_hands_out(loop_run):
    sample = loop_run.step("08_next_sample")
    assert sample["url"] == "/activelearning/uncertain" and sample["status"] == 200
    assert sample["served"]["id"] == loop_run.other  # the one still unlabelled
    assert sample["opened"].endswith(f"StudyInstanceUIDs={study_of_uid(loop_run.orthanc, loop_run.other)}")
    assert sample["pixels"]["drawn"] > 1000


def test_loop_with_tokens_users_sign_in_and_get_exactly_their_roles_rights(loop_run):
    signed_in = loop_run.step("00_sign_in_annotator")
    assert "Sign in" in signed_in["before"]  # what an anonymous browser got instead of OHIF
    assert signed_in["cookie"] == {"httpOnly": True, "sameSite": "Strict"} and not signed_in["script_sees_cookie"]
    assert loop_run.step("05_update_model_refused_for_annotator")["status"] == 403
    anonymous = direct_http()
    for route in ("/ohif/", "/proxy/dicom/qido/studies", "/info/"):
        assert anonymous.get(f"{loop_run.url}{route}", timeout=60).status_code == 401, route


def test_loop_the_browser_saw_no_uncaught_errors(loop_run):
    assert loop_run.findings["errors"] == []


def test_ohif_files_below_the_top_folder_are_served_as_themselves_and_nothing_outside_the_build():
    nested = next(path for path in OHIF_BUILD.rglob("*") if path.is_file() and path.parent != OHIF_BUILD)
    assert ohif_file(str(nested.relative_to(OHIF_BUILD))) == nested  # upstream answers index.html
    assert ohif_file("app-config.js") == APP_CONFIG
    for route in ("monai-label", "viewer", "../../../../../../etc/passwd", "assets/../../ohif.py"):
        assert ohif_file(route) == OHIF_BUILD / "index.html", route
