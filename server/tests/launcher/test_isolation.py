"""Owners only, read-only volumes, private workspaces, resource limits: checked from outside
through the API and from inside by the probe datalab."""

import shutil
import subprocess
from pathlib import Path

import requests

from conftest import pids_with, wait_gone


def test_no_token_no_entry(lab):
    for method, path in [("GET", "/datalabs"), ("GET", "/instances"), ("POST", "/datalabs/probe/launch"),
                         ("GET", "/workspaces"), ("GET", "/user/alice/x/")]:
        r = requests.request(method, lab.base + path, timeout=10)
        assert r.status_code == 401, (method, path, r.text)
        assert "error" in r.json() and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = requests.get(lab.base + "/instances", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 401


def test_another_users_instance_and_workspace_do_not_exist_for_them(lab):
    a = lab.running("alice")
    (lab.workspaces / "users" / "alice" / "notes.txt").write_text("alice's notes")
    assert lab.get("alice", "/workspaces/users/alice/notes.txt").text == "alice's notes"
    listing = lab.get("alice", "/workspaces/users/alice/").json()
    assert {"name": "notes.txt", "type": "file", "bytes": 13} in listing, listing
    assert any(e["name"] == "teams" and e["type"] == "folder" for e in listing)
    assert [i["id"] for i in lab.get("alice", "/instances").json()] == [a["id"]]
    assert lab.get("bob", "/instances").json() == []
    assert lab.get("bob", f"/instances/{a['id']}").status_code == 404
    assert lab.stop("bob", a["id"]).status_code == 404
    # The proxy, by alice's URL or by bob's own name with alice's instance id.
    assert lab.get("bob", f"/user/alice/{a['id']}/health").status_code == 404
    assert lab.get("bob", f"/user/bob/{a['id']}/health").status_code == 404
    assert lab.get("alice", f"/user/alice/{a['id']}/health").status_code == 200
    for path in ["/workspaces/users/alice/notes.txt", "/workspaces/users/alice/", "/workspaces/teams/wl/",
                 "/workspaces/users/bob/../alice/notes.txt", "/workspaces/users/bob/%2e%2e/alice/notes.txt"]:
        assert lab.get("bob", path).status_code == 404, path
    # carol shares alice's team workspace, not her own.
    (lab.workspaces / "teams" / "wl" / "plan.txt").write_text("team plan")
    assert lab.get("carol", "/workspaces/teams/wl/plan.txt").text == "team plan"
    assert lab.get("carol", "/workspaces/users/alice/notes.txt").status_code == 404
    listing = {w["name"]: w for w in lab.get("carol", "/workspaces").json()}
    assert set(listing) == {"carol", "wl"} and listing["carol"]["quota_bytes"] > 0
    # Bob's instance was still alice's after all that.
    assert lab.get("alice", f"/instances/{a['id']}").json()["state"] == "running"


def test_datalab_cannot_write_a_volume_nor_see_other_workspaces(lab):
    # bob's workspace exists (with a secret) before alice's datalab starts.
    assert lab.running("bob")
    (lab.workspaces / "users" / "bob" / "secret.txt").write_text("bob's secret")
    a = lab.running("alice")
    volume = lab.volume
    write = lab.probe("alice", a, "write", path=str(volume / "new.fits"))
    assert not write["ok"] and "Read-only file system" in write["error"], write
    overwrite = lab.probe("alice", a, "write", path=str(volume / "README"))
    assert not overwrite["ok"], overwrite
    assert lab.probe("alice", a, "read", path=str(volume / "README"))["text"] == "mission data: read-only\n"
    assert (volume / "README").read_text() == "mission data: read-only\n" and not (volume / "new.fits").exists()
    # Its own workspace and its team's are writable; bob's is not there at all.
    me = lab.probe("alice", a, "whoami")
    assert me["cwd"] == str(lab.workspaces / "users" / "alice") == me["home"]
    assert me["env"]["INSITU_VOLUME_Q1"] == str(volume)
    assert lab.probe("alice", a, "write", path=str(lab.workspaces / "users" / "alice" / "out.txt"))["ok"]
    assert (lab.workspaces / "users" / "alice" / "out.txt").exists()
    assert lab.probe("alice", a, "write", path=str(lab.workspaces / "teams" / "wl" / "shared.txt"))["ok"]
    secret = lab.probe("alice", a, "read", path=str(lab.workspaces / "users" / "bob" / "secret.txt"))
    assert not secret["ok"] and "No such file" in secret["error"], secret
    # Nor the server's state, where the instances' secrets are.
    state = lab.probe("alice", a, "read", path=str(lab.root / "state" / "launcher" / "instances.json"))
    assert not state["ok"], state
    assert (lab.root / "state" / "launcher" / "instances.json").exists()


def test_the_proxy_replaces_the_users_credentials(lab):
    a = lab.running("alice")
    h = requests.get(f"{lab.base}{a['url']}headers", timeout=10,
                     headers={**lab.auth("alice"), "Cookie": "insitu_token=x; theirs=1"}).json()
    assert "authorization" not in h  # the probe's manifest sets no [proxy] authorization
    assert h["cookie"] == "theirs=1"
    assert h["x-forwarded-host"] == h["host"]


def test_resource_limits_apply(lab):
    a = lab.running("alice")
    limits = lab.probe("alice", a, "limits")
    assert limits["as_soft"] == limits["as_hard"] == 512 << 20
    assert len(limits["cpus"]) == 1
    pid = lab.probe("alice", a, "whoami")["pid"]
    assert lab.stop("alice", a["id"]).status_code == 204
    assert wait_gone([pid]) == []
    assert lab.get("alice", f"/instances/{a['id']}").status_code == 404
    assert pids_with(a["id"]) == []


def test_a_mount_inside_a_volume_is_read_only_too(lab):
    # An NFS volume often has mounts below it (one export per data release): a tmpfs here.
    sub = lab.volume / "dr1"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "insitu-test", str(sub)], check=True)
    try:
        (sub / "tile.fits").write_text("on the host, writable")
        a = lab.running("alice")
        write = lab.probe("alice", a, "write", path=str(sub / "tile.fits"))
        assert not write["ok"] and "Read-only file system" in write["error"], write
        assert lab.probe("alice", a, "read", path=str(sub / "tile.fits"))["text"] == "on the host, writable"
        assert (sub / "tile.fits").read_text() == "on the host, writable"
        assert lab.stop("alice", a["id"]).status_code == 204
    finally:
        subprocess.run(["umount", "-l", str(sub)], check=False)


def test_a_user_with_a_uid_runs_as_that_uid(tmp_path):
    from conftest import add_user, make_lab, probe_manifest, stop_all
    # That uid must reach the probe (the system's Python, a copy of the script) and the
    # workspaces: pytest's own folders, perhaps the checkout, are closed to others.
    for folder in [tmp_path, *tmp_path.parents]:
        if folder == Path("/tmp"):
            break
        folder.chmod(folder.stat().st_mode | 0o711)
    script = Path(shutil.copy(Path(__file__).with_name("probe_datalab.py"), tmp_path / "probe_datalab.py"))
    lab = make_lab(tmp_path, extra_manifests={
        "sysprobe.toml": probe_manifest(title="System probe", python=Path("/usr/bin/python3"), script=script)})
    lab.tokens["dave"] = add_user(lab.root / "users.toml", "dave", uid=65534)
    lab.server.start()
    try:
        d = lab.running("dave", "sysprobe")
        me = lab.probe("dave", d, "whoami")
        assert (me["uid"], me["gid"]) == (65534, 65534)
        own = lab.workspaces / "users" / "dave"
        assert own.stat().st_uid == 65534
        assert lab.probe("dave", d, "write", path=str(own / "mine.txt"))["ok"]
        assert (own / "mine.txt").stat().st_uid == 65534
        write = lab.probe("dave", d, "write", path=str(lab.volume / "new.fits"))
        assert not write["ok"], write
    finally:
        stop_all(lab)
