"""Start the real MONAI Label server with this app, offline, for the tests that talk to it.

The server runs offline: a start-up hook refuses and records every attempt to reach
another machine or the (dead) proxy, in the server and in any subprocess it starts.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence, Tuple

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

# Python imports `sitecustomize` at start-up from PYTHONPATH, in every process.
OFFLINE_GUARD = textwrap.dedent(
    """
    import os
    import socket

    _LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", "0.0.0.0", None}
    _DEAD_PROXY = ("127.0.0.1", int(os.environ["DEAD_PROXY_PORT"]))
    _log_path = os.environ["NETWORK_ATTEMPTS_LOG"]


    def _refuse(host):
        with open(_log_path, "a") as log:
            log.write(f"pid {os.getpid()}: {host}\\n")
        raise OSError(f"network disabled in this test: {host}")


    _connect = socket.socket.connect
    _getaddrinfo = socket.getaddrinfo


    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            if address[0] not in _LOCAL_HOSTS or tuple(address[:2]) == _DEAD_PROXY:
                _refuse(address)
        return _connect(self, address)


    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL_HOSTS:
            _refuse(host)
        return _getaddrinfo(host, *args, **kwargs)


    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def offline_env(tmp: Path) -> dict:
    """Caches and home in ``tmp``; proxies point at a closed port; the offline guard is on."""
    guard_dir = tmp / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(OFFLINE_GUARD)
    dead_proxy_port = free_port()
    dead_proxy = f"http://127.0.0.1:{dead_proxy_port}"
    env = dict(os.environ)
    env.update(
        HOME=str(tmp / "home"),
        TMPDIR=str(tmp / "tmp"),
        XDG_CACHE_HOME=str(tmp / "home" / ".cache"),
        MONAI_LABEL_SESSION_PATH=str(tmp / "sessions"),
        MONAI_LABEL_DATASTORE_CACHE_PATH=str(tmp / "datastore-cache"),
        MONAI_LABEL_DICOMWEB_CACHE_PATH=str(tmp / "dicomweb-cache"),
        MONAI_LABEL_TRACKING_ENABLED="false",
        NETWORK_ATTEMPTS_LOG=str(tmp / "network-attempts.log"),
        DEAD_PROXY_PORT=str(dead_proxy_port),
        PYTHONPATH=os.pathsep.join(filter(None, [str(guard_dir), os.environ.get("PYTHONPATH")])),
        # the venv's bin holds dcmqi's itkimage2segimage: without it the server downloads dcmqi
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        http_proxy=dead_proxy,
        https_proxy=dead_proxy,
        HTTP_PROXY=dead_proxy,
        HTTPS_PROXY=dead_proxy,
        no_proxy="127.0.0.1,localhost",
        NO_PROXY="127.0.0.1,localhost",
    )
    for directory in ("home", "tmp"):
        (tmp / directory).mkdir()
    return env


def wait_for_info(url: str, http: requests.Session, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-5000:]}")
        try:
            if http.get(f"{url}/info/", timeout=5).status_code in (200, 401):  # 401: up, with access tokens
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no /info/ within {START_TIMEOUT_S} s:\n{log.read_text()[-5000:]}")


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise



def app_copy(tmp: Path) -> Path:
    """The app (main.py, lib/, model/) in ``tmp``: training there publishes to ``tmp/app/model``,
    never over the shipped model in the repository."""
    app = tmp / "app"
    app.mkdir()
    shutil.copy2(REPO / "main.py", app / "main.py")
    shutil.copytree(REPO / "lib", app / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "model", app / "model", ignore=shutil.ignore_patterns("*.tmp", ".*"))
    return app


def start_server(app: Path, studies: str, env: dict, workdir: Path, conf: Sequence[str] = (),
                 log_name: str = "server.log") -> Tuple[subprocess.Popen, str]:
    """The server process and its URL once ``/info/`` answers. ``conf`` is key, value, key, value...
    It runs in a process group of its own, so that ``kill_group`` takes its train and scoring
    subprocesses down with it."""
    pairs = [item for item in conf if item != "--conf"]  # callers may also write the flag themselves
    port = free_port()
    log = workdir / log_name
    command = [
        *(sys.executable, "-m", "monailabel.main", "start_server"),
        *("--app", str(app), "--studies", studies, "--host", "127.0.0.1", "--port", str(port)),
        *(arg for key, value in zip(pairs[::2], pairs[1::2]) for arg in ("--conf", key, value)),
    ]
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for_info(url, direct_http(), process, log)
    except BaseException:
        kill_group(process)
        raise
    return process, url


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the server and every process it started (what a power cut or the OOM killer does)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def running_server(app: Path, studies: str, env: dict, workdir: Path, conf: Sequence[str] = ()) -> Iterator[str]:
    """The server's URL while it runs; on exit it is stopped and must exit cleanly."""
    process, url = start_server(app, studies, env, workdir, conf)
    try:
        yield url
    finally:
        returncode = stop(process)
    assert returncode == 0, (workdir / "server.log").read_text()[-5000:]


def direct_http() -> requests.Session:
    """A session that talks to local servers directly, whatever the proxy settings."""
    http = requests.Session()
    http.trust_env = False
    return http
