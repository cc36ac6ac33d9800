"""The datalab launcher under `insitu serve`: a volume, a users file made with `insitu
launcher add-user`, datalab manifests (a probe written in plain Python, and JupyterLab), and
a server configured with a `[launcher]` section. `Server` (start, log, stop, kill) is the one
of server/tests/tap.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("tap_conftest", HERE.parent / "tap" / "conftest.py")
tap_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tap_conftest)
Server = tap_conftest.Server
insitu_bin = tap_conftest.insitu_bin

PYTHON = Path(sys.executable)
JUPYTER_LAB = PYTHON.parent / "jupyter-lab"


def probe_manifest(name="probe", title="Probe", volumes=("q1",), memory="512MiB", cpus=1, start_seconds=30,
                   python=PYTHON, script=HERE / "probe_datalab.py"):
    return f"""
title = "{title}"
description = "What the sandbox lets a datalab do"
command = "{python}"
args = ["{script}", "{{port}}", "{{base_url}}"]
health = "health"
start_seconds = {start_seconds}
volumes = {json.dumps(list(volumes))}
[resources]
cpus = {cpus}
memory = "{memory}"
"""


JUPYTERLAB_MANIFEST = f"""
title = "JupyterLab"
description = "Notebooks next to the data"
command = "{JUPYTER_LAB}"
args = ["--no-browser", "--ip=127.0.0.1", "--port={{port}}", "--ServerApp.base_url={{base_url}}",
        "--ServerApp.root_dir={{workspace}}", "--allow-root",
        "--ServerApp.open_browser=False", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
health = "api/status"
start_seconds = 90
volumes = ["*"]
[env]
JUPYTER_TOKEN = "{{token}}"
JUPYTER_CONFIG_DIR = "{{workspace}}/.jupyter"
JUPYTER_DATA_DIR = "{{workspace}}/.local/share/jupyter"
JUPYTER_RUNTIME_DIR = "{{workspace}}/.local/share/jupyter/runtime"
IPYTHONDIR = "{{workspace}}/.ipython"
[resources]
cpus = 1
memory = "4GiB"
[proxy]
authorization = "token {{token}}"
"""


def add_user(users: Path, name: str, teams=(), uid=None) -> str:
    args = [str(insitu_bin()), "launcher", "add-user", name, "--users", str(users)]
    for t in teams:
        args += ["--team", t]
    if uid is not None:
        args += ["--uid", str(uid)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@dataclass
class Lab:
    """One launcher: its folders, the users' tokens, the server."""
    root: Path
    server: Server
    tokens: dict = field(default_factory=dict)

    @property
    def base(self):
        return self.server.base

    @property
    def volume(self) -> Path:
        return self.root / "volumes" / "q1"

    @property
    def workspaces(self) -> Path:
        return self.root / "workspaces"

    def auth(self, user):
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def get(self, user, path, **kw):
        return requests.get(self.base + path, headers=self.auth(user), timeout=30, **kw)

    def launch(self, user, datalab="probe"):
        return requests.post(f"{self.base}/datalabs/{datalab}/launch", headers=self.auth(user), timeout=30)

    def stop(self, user, instance_id):
        return requests.delete(f"{self.base}/instances/{instance_id}", headers=self.auth(user), timeout=60)

    def wait_state(self, user, instance_id, states=("running",), timeout=90):
        deadline = time.monotonic() + timeout
        while True:
            r = self.get(user, f"/instances/{instance_id}")
            if r.status_code == 200 and r.json()["state"] in states:
                return r.json()
            if time.monotonic() > deadline:
                pytest.fail(f"instance {instance_id} not {states} after {timeout} s: {r.status_code} {r.text}\n"
                            f"{self.server.log()}\n--- instance log:\n{self.instance_log(instance_id)}")
            time.sleep(0.2)

    def running(self, user, datalab="probe"):
        r = self.launch(user, datalab)
        assert r.status_code == 201, r.text
        view = r.json()
        assert view["state"] == "starting" and view["url"] == f"/user/{user}/{view['id']}/"
        return self.wait_state(user, view["id"])

    def probe(self, user, instance, what, **params):
        r = requests.get(f"{self.base}{instance['url']}{what}", params=params, headers=self.auth(user), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def instance_log(self, instance_id):
        log = self.root / "state" / "launcher" / "logs" / f"{instance_id}.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def make_lab(root: Path, quotas="", idle_seconds=0, extra_manifests=None, probe_python=PYTHON,
             probe_script=HERE / "probe_datalab.py") -> Lab:
    (root / "volumes" / "q1").mkdir(parents=True)
    (root / "volumes" / "q1" / "README").write_text("mission data: read-only\n")
    datalabs = root / "datalabs"
    datalabs.mkdir()
    (datalabs / "probe.toml").write_text(probe_manifest(python=probe_python, script=probe_script))
    (datalabs / "jupyterlab.toml").write_text(JUPYTERLAB_MANIFEST)
    for name, text in (extra_manifests or {}).items():
        (datalabs / name).write_text(text)
    users = root / "users.toml"
    tokens = {"alice": add_user(users, "alice", ["wl"]), "bob": add_user(users, "bob"),
              "carol": add_user(users, "carol", ["wl"])}
    config = root / "serve.toml"
    config.write_text(f"""
[volumes]
q1 = "{root / 'volumes' / 'q1'}"
[launcher]
datalabs = "{datalabs}"
users = "{users}"
workspaces = "{root / 'workspaces'}"
idle_seconds = {idle_seconds}
[launcher.quotas]
{quotas}
""")
    server = Server(root, ["--config", config], state_dir=root / "state")
    return Lab(root, server, tokens)


@pytest.fixture
def lab(tmp_path):
    lab = make_lab(tmp_path)
    lab.server.start()
    yield lab
    stop_all(lab)


def stop_all(lab: Lab):
    """Stops the instances a test left (a failed test must not leave datalabs running)."""
    if lab.server.proc is not None and lab.server.proc.poll() is None:
        for user in lab.tokens:
            try:
                r = lab.get(user, "/instances")
                for i in r.json() if r.status_code == 200 else []:
                    lab.stop(user, i["id"])
            except (requests.RequestException, ValueError):
                pass
    lab.server.stop()


def pids_with(text: str):
    """Processes whose command line holds `text` (an instance id is in its base URL)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids, timeout=15):
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return [p for p in pids if alive(p)]
        time.sleep(0.1)
    return []
