"""The OHIF viewer bundled with MONAI Label, in a real headless Chromium, on the app over
Orthanc: the steps an annotator takes (tests/ohif/check_ohif.mjs drives the browser).

Needs node, Chromium (/usr/bin/chromium, or CHROMIUM=...) and playwright-core
(`npm ci --prefix tests/ohif`); .ci/run installs all three. Screenshots go to
OHIF_SCREENSHOTS_DIR when set (docs/pacs_and_viewers.md uses them).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PacsStack

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
