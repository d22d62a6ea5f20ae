"""Bad input, path traversal, access control and log privacy on the real server (offline).

Every bad request must get a 4xx whose message says what to do, the server must keep serving,
and nothing in the datastore may change."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, NamedTuple

import nibabel as nib
import numpy as np
import pytest
import requests
from bad_inputs import CATALOGUE, write_chest_only
from servers import REPO, direct_http, offline_env, running_server
from test_server import write_datastore

from sarcopenia_app.access_tokens import add_token

PATIENT_LIKE_ID = "DOE_JOHN_0042"  # sites name files after patients: it must never reach the log


class Server(NamedTuple):
    url: str
    http: requests.Session
    studies: Path
    log: Path


def snapshot(studies: Path) -> Dict[str, str]:
    """Every file of the datastore (JSON included) and its content hash."""
    return {str(p.relative_to(studies)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(studies.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("reliability")
    studies = tmp / "studies"
    write_datastore(studies)
    (studies / "case_a.nii.gz").rename(studies / f"{PATIENT_LIKE_ID}.nii.gz")
    (studies / "labels" / "final" / "case_a.nii.gz").rename(studies / "labels" / "final" / f"{PATIENT_LIKE_ID}.nii.gz")
    # no uncertainty scoring at start-up: it writes scores into datastore_v2.json while the tests
    # check that bad requests change nothing there
    env = {**offline_env(tmp), "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    with running_server(REPO, str(studies), env, tmp, ("models", "muscle_threshold,muscle_seg")) as url:
        yield Server(url, direct_http(), studies, tmp / "server.log")


def assert_refused_and_nothing_changed(server: Server, response: requests.Response, before: Dict[str, str],
                                       reason: str, status: int = 422) -> None:
    assert response.status_code == status, response.text[:500]
    detail = response.json()["detail"]
    assert any(phrase in detail for phrase in reason.split("|")), detail
    assert server.http.get(f"{server.url}/info/", timeout=30).status_code == 200
    assert snapshot(server.studies) == before


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_bad_image_is_refused_by_infer_and_upload(server, tmp_path, kind):
    bad = CATALOGUE[kind]
    path = tmp_path / bad.file_name
    bad.write(path)
    before = snapshot(server.studies)
    for route, method, field, params in (("/infer/muscle_threshold", "post", "file", {}),
                                         ("/datastore/image", "put", "file", {"image": f"new_{kind}"})):
        with open(path, "rb") as f:
            response = server.http.request(method, f"{server.url}{route}", params=params,
                                           files={field: (bad.file_name, f)}, timeout=120)
        assert_refused_and_nothing_changed(server, response, before, bad.reason)


def _label(shape, values=(0, 1)) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[10:20, 10:20, :] = values[-1]
    return label


@pytest.mark.parametrize("case, reason", [
    ("wrong_shape", "does not match its image"),
    ("unknown_value", "are not known"),
    ("not_a_label", "could not read the label"),
    ("tag_traversal", "path separator"),
    ("image_traversal", "path separator"),
    ("file_name_traversal", "path component"),
])
def test_bad_label_is_refused_and_the_old_label_kept(server, tmp_path, case, reason):
    image = nib.load(server.studies / f"{PATIENT_LIKE_ID}.nii.gz")
    label = _label(image.shape)
    params, file_name = {"image": PATIENT_LIKE_ID, "tag": "final"}, "label.nii.gz"
    if case == "wrong_shape":
        label = _label((image.shape[0] // 2, image.shape[1], image.shape[2]))
    elif case == "unknown_value":
        label = _label(image.shape, (0, 7))
    elif case == "tag_traversal":
        params["tag"] = "../../outside"
    elif case == "image_traversal":
        params["image"] = f"../{PATIENT_LIKE_ID}"
    elif case == "file_name_traversal":
        file_name = "../../label.nii.gz"
    path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(label, image.affine), path)
    if case == "not_a_label":
        path.write_bytes(b"\x1f\x8b truncated")
    before = snapshot(server.studies)
    with open(path, "rb") as f:
        response = server.http.put(f"{server.url}/datastore/label", params=params, files={"label": (file_name, f)},
                                   timeout=60)
    assert_refused_and_nothing_changed(server, response, before, reason)
    assert not (server.studies.parent / "outside").exists()


def test_a_good_label_is_saved(server, tmp_path):
    image = nib.load(server.studies / f"{PATIENT_LIKE_ID}.nii.gz")
    path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(_label(image.shape), image.affine), path)
    with open(path, "rb") as f:
        response = server.http.put(f"{server.url}/datastore/label", params={"image": PATIENT_LIKE_ID},
                                   files={"label": ("label.nii.gz", f)}, timeout=60)
    assert response.status_code == 200, response.text
    saved = nib.load(server.studies / "labels" / "final" / f"{PATIENT_LIKE_ID}.nii.gz")
    assert np.array_equal(np.asarray(saved.dataobj), _label(image.shape))


@pytest.mark.parametrize("route, params", [
    ("/datastore/image", {"image": "../../../../etc/passwd"}),
    ("/datastore/label", {"label": "..", "tag": "final"}),
    ("/datastore/image/info", {"image": "/etc/hostname"}),
])
def test_path_traversal_in_ids_is_refused(server, route, params):
    before = snapshot(server.studies)
    response = server.http.get(f"{server.url}{route}", params=params, timeout=30)
    assert_refused_and_nothing_changed(server, response, before, "path separator|relative folder|starts with")


def test_infer_on_a_server_path_is_refused(server):
    response = server.http.post(f"{server.url}/infer/muscle_threshold",
                                params={"image": str(server.studies / f"{PATIENT_LIKE_ID}.nii.gz")}, timeout=60)
    assert response.status_code == 422 and "path separator" in response.json()["detail"]


def test_logs_carry_no_patient_ids(server):
    for _ in range(2):
        assert server.http.post(f"{server.url}/infer/muscle_threshold", params={"image": PATIENT_LIKE_ID},
                                timeout=120).status_code == 200
    assert server.http.get(f"{server.url}/datastore/image/info", params={"image": PATIENT_LIKE_ID}).status_code == 200
    log = server.log.read_text()
    assert "Infer Request" in log and "Adding New Image" in log  # the requests were logged...
    assert PATIENT_LIKE_ID not in log and "DOE_JOHN" not in log  # ...without the id


def test_a_scan_without_l3_is_refused_by_muscle_seg_unless_the_whole_volume_is_asked_for(server, tmp_path):
    path = tmp_path / "chest.nii.gz"
    write_chest_only(path)
    before = snapshot(server.studies)
    with open(path, "rb") as f:
        response = server.http.post(f"{server.url}/infer/muscle_seg", files={"file": ("chest.nii.gz", f)}, timeout=300)
    assert_refused_and_nothing_changed(server, response, before, "no L3 measurement is possible")
    assert '"region": "all"' in response.json()["detail"]  # what to do instead
    with open(path, "rb") as f:
        whole = server.http.post(f"{server.url}/infer/muscle_seg", params={"output": "json"},
                                 files={"file": ("chest.nii.gz", f)}, data={"params": json.dumps({"region": "all"})},
                                 timeout=300)
    assert whole.status_code == 200, whole.text[:500]
    assert whole.json()["measurements"]["has_l3"] is False
    assert snapshot(server.studies) == before


def test_the_cli_refuses_each_bad_input_with_its_reason(tmp_path):
    """One run over the whole catalogue plus a chest-only scan: each bad input is FAILED with its
    reason; the chest scan is measured without L3, so the run exits 0 (1 only if nothing was measured)."""
    inputs = []
    for kind, bad in sorted(CATALOGUE.items()):
        path = tmp_path / "in" / f"{kind}_{bad.file_name}"
        path.parent.mkdir(exist_ok=True)
        bad.write(path)
        inputs.append(str(path))
    write_chest_only(tmp_path / "in" / "chest.nii.gz")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "sarcopenia_app.cli", "measure", *inputs,
                           str(tmp_path / "in" / "chest.nii.gz"), "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for kind, bad in CATALOGUE.items():
        line = next(l for l in done.stderr.splitlines() if l.startswith(f"FAILED {kind}_"))
        assert any(phrase in line for phrase in bad.reason.split("|")), line
    assert "FAILED chest" not in done.stderr and f"measured 1 of {len(CATALOGUE) + 1}" in done.stderr
    chest = json.loads((out / "chest" / "measurements.json").read_text())
    assert chest["has_l3"] is False and chest["sma_cm2"] is None
    assert any(w.startswith("l3_not_found") for w in chest["warnings"])


# ---- access control ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guarded")
    studies = tmp / "studies"
    write_datastore(studies)
    tokens_file = tmp / "tokens.json"
    tokens = {role: add_token(tokens_file, f"{role}_user", [role])[0] for role in ("admin", "annotator")}
    env = {**offline_env(tmp), "SARCOPENIA_ACCESS_TOKENS": str(tokens_file)}
    with running_server(REPO, str(studies), env, tmp, ("models", "muscle_threshold")) as url:
        yield url, direct_http(), tokens, studies, tokens_file


def _call(guarded, method, route, token=None, **kwargs):
    url, http, *_ = guarded
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.request(method, f"{url}{route}", headers=headers, timeout=60, **kwargs)


@pytest.mark.parametrize("method, route", [("GET", "/info/"), ("GET", "/datastore/"), ("POST", "/train/muscle_seg"),
                                           ("POST", "/infer/muscle_threshold?image=case_b"),
                                           ("GET", "/datastore/image?image=case_b"), ("GET", "/ohif/")])
def test_anonymous_and_unknown_tokens_get_nothing(guarded, method, route):
    assert _call(guarded, method, route).status_code == 401
    assert _call(guarded, method, route, token="not-a-token").status_code == 401


def test_annotators_save_labels_but_cannot_train_or_upload_models(guarded, tmp_path):
    *_, tokens, studies, _ = guarded
    annotator = tokens["annotator"]
    assert _call(guarded, "GET", "/info/", annotator).status_code == 200
    image = nib.load(studies / "case_b.nii.gz")
    path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(_label(image.shape), image.affine), path)
    with open(path, "rb") as f:
        saved = _call(guarded, "PUT", "/datastore/label?image=case_b", annotator, files={"label": ("l.nii.gz", f)})
    assert saved.status_code == 200, saved.text
    for method, route in (("POST", "/train/muscle_seg"), ("DELETE", "/train/"), ("PUT", "/model/muscle_seg"),
                          ("DELETE", "/datastore/image?id=case_b"), ("GET", "/logs/")):
        refused = _call(guarded, method, route, annotator)
        assert refused.status_code == 403 and "monailabel-admin" in refused.json()["detail"], (route, refused.text)
    assert (studies / "case_b.nii.gz").exists()


def test_admins_may_stop_training_and_clients_log_in_with_their_token(guarded):
    url, http, tokens, _, _ = guarded
    assert _call(guarded, "DELETE", "/train/", tokens["admin"]).status_code not in (401, 403)
    assert http.get(f"{url}/auth/").json()["enabled"] is True
    login = http.post(f"{url}/auth/token", data={"username": "annotator_user", "password": tokens["annotator"]})
    assert login.status_code == 200 and login.json()["access_token"] == tokens["annotator"]
    assert http.post(f"{url}/auth/token", data={"username": "admin_user", "password": tokens["annotator"]}).status_code == 401


def test_a_token_removed_from_the_file_is_refused_at_once(guarded):
    *_, tokens, _, tokens_file = guarded
    revoked, _ = add_token(tokens_file, "leaver", ["annotator"])
    assert _call(guarded, "GET", "/info/", revoked).status_code == 200
    data = json.loads(tokens_file.read_text())
    data["tokens"] = [t for t in data["tokens"] if t["user"] != "leaver"]
    tokens_file.write_text(json.dumps(data))
    assert _call(guarded, "GET", "/info/", revoked).status_code == 401


def _sign_in(guarded, user, token, next_path="/ohif/"):
    url, http, *_ = guarded
    return http.post(f"{url}/auth/session", data={"username": user, "token": token, "next": next_path},
                     allow_redirects=False, timeout=60)


def test_a_browser_without_a_token_gets_the_sign_in_form_and_a_wrong_token_gets_no_cookie(guarded):
    url, http, tokens, *_ = guarded
    page = http.get(f"{url}/ohif/monai-label?StudyInstanceUIDs=1.2", headers={"Accept": "text/html"}, timeout=60)
    assert page.status_code == 401 and "<form" in page.text
    assert 'value="/ohif/monai-label?StudyInstanceUIDs=1.2"' in page.text  # back there after signing in
    wrong = _sign_in(guarded, "annotator_user", tokens["admin"])
    assert wrong.status_code == 401 and "Unknown user name or token" in wrong.text and "set-cookie" not in wrong.headers


def test_signing_in_sets_an_httponly_same_site_cookie_with_exactly_the_users_rights(guarded):
    url, http, tokens, *_ = guarded
    signed_in = _sign_in(guarded, "annotator_user", tokens["annotator"], "/ohif/viewer?StudyInstanceUIDs=1.2")
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ohif/viewer?StudyInstanceUIDs=1.2"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    jar = {"sarcopenia_token": signed_in.cookies["sarcopenia_token"]}
    assert http.get(f"{url}/info/", cookies=jar, timeout=60).status_code == 200
    assert http.get(f"{url}/ohif/", cookies=jar, timeout=60).status_code == 200
    refused = http.post(f"{url}/train/muscle_seg", cookies=jar, json={}, timeout=60)
    assert refused.status_code == 403 and "monailabel-admin" in refused.json()["detail"]
    signed_out = http.post(f"{url}/auth/session/end", cookies=jar, allow_redirects=False, timeout=60)
    assert signed_out.status_code == 303 and 'sarcopenia_token=""' in signed_out.headers["set-cookie"]


def test_sign_in_only_sends_the_browser_back_to_this_server(guarded):
    _, _, tokens, *_ = guarded
    for elsewhere in ("//evil.example/ohif/", "https://evil.example/", "/\\evil.example"):
        assert _sign_in(guarded, "annotator_user", tokens["annotator"], elsewhere).headers["location"] == "/ohif/"


def test_a_revoked_token_in_a_cookie_is_refused_at_once(guarded):
    url, http, _, _, tokens_file = guarded
    token, _ = add_token(tokens_file, "cookie_leaver", ["annotator"])
    jar = {"sarcopenia_token": _sign_in(guarded, "cookie_leaver", token).cookies["sarcopenia_token"]}
    assert http.get(f"{url}/info/", cookies=jar, timeout=60).status_code == 200
    data = json.loads(tokens_file.read_text())
    data["tokens"] = [t for t in data["tokens"] if t["user"] != "cookie_leaver"]
    tokens_file.write_text(json.dumps(data))
    assert http.get(f"{url}/info/", cookies=jar, timeout=60).status_code == 401
