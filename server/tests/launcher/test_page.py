"""The launcher's web page in headless Chromium (Debian `chromium`): what it lists, and a
screenshot that shows it; the calls its buttons make."""

import shutil
import subprocess

import numpy as np
import pytest
import requests
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As root on a closed network: no sandbox, and none of Chromium's own connections.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium(tmp_path, *args):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: .ci/setup installs Debian's chromium")
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_page_lists_datalabs_instances_volumes_and_workspaces(lab, tmp_path):
    inst = lab.running("alice")
    login = f"{lab.base}/login?token={lab.tokens['alice']}"
    dom = chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", login)
    assert "<h1>insitu datalabs</h1>" in dom and "alice" in dom
    for expected in ["id=\"datalab-probe\"", "id=\"datalab-jupyterlab\"", "Launch",
                     f"id=\"instance-{inst['id']}\"", "class=\"state-running\"", f"href=\"{inst['url']}\"",
                     str(lab.volume), "users/alice", "teams/wl", "Your instances (1 of 2)"]:
        assert expected in dom, expected
    assert "bob" not in dom

    shot = tmp_path / "launcher.png"
    chromium(tmp_path, "--window-size=1200,900", "--virtual-time-budget=3000", f"--screenshot={shot}", login)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (900, 1200, 3)
    header = image[5:40, 5:1195].reshape(-1, 3)
    # The navy header (#14213d) across the top, and a page with text and cards below it.
    assert (np.abs(header.astype(int) - [0x14, 0x21, 0x3d]).sum(axis=1) < 30).mean() > 0.9
    body = image[80:600].reshape(-1, 3)
    assert len(np.unique(body, axis=0)) > 50
    # The orange Launch buttons (#fca311) are drawn.
    assert (np.abs(body.astype(int) - [0xfc, 0xa3, 0x11]).sum(axis=1) < 30).sum() > 500


def test_without_login_the_page_asks_for_a_token(lab, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", f"{lab.base}/launcher")
    assert "name=\"token\"" in dom and "Probe" not in dom
    wrong = requests.get(f"{lab.base}/login", params={"token": "wrong"}, timeout=10, allow_redirects=False)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


def test_the_buttons_calls_need_the_page_header_with_the_cookie(lab):
    s = requests.Session()
    r = s.post(f"{lab.base}/login", data={"token": lab.tokens["carol"]}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
    # A form posted from another site carries the cookie but cannot add the header.
    assert s.post(f"{lab.base}/datalabs/probe/launch", timeout=10).status_code == 403
    r = s.post(f"{lab.base}/datalabs/probe/launch", headers={"x-insitu": "1"}, timeout=30)
    assert r.status_code == 201, r.text
    inst = lab.wait_state("carol", r.json()["id"])
    assert s.get(f"{lab.base}{inst['url']}health", timeout=10).status_code == 200
    assert s.delete(f"{lab.base}/instances/{inst['id']}", timeout=10).status_code == 403
    assert s.delete(f"{lab.base}/instances/{inst['id']}", headers={"x-insitu": "1"}, timeout=30).status_code == 204
    assert s.post(f"{lab.base}/logout", timeout=10).status_code == 200
    assert s.get(f"{lab.base}/instances", timeout=10).status_code == 401
