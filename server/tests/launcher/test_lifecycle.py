"""Manifests, quotas, idle culling and restarts of the launcher."""

import os
import signal
import subprocess
import time

import pytest
import requests

from conftest import add_user, insitu_bin, make_lab, probe_manifest, stop_all, wait_gone


def test_malformed_manifests_are_reported_and_the_rest_load(tmp_path):
    lab = make_lab(tmp_path, extra_manifests={
        "typo.toml": probe_manifest().replace("cpus = 1", 'cpus = "one"'),
        "nofield.toml": 'title = "No command"\nargs = ["{port}"]\n',
        "wrongvolume.toml": probe_manifest(volumes=("dr1",)),
        "notoml.toml": "title = [unclosed",
    })
    lab.server.start()
    try:
        listing = lab.get("alice", "/datalabs").json()
        assert sorted(d["name"] for d in listing["datalabs"]) == ["jupyterlab", "probe"]
        problems = {p["file"]: p for p in listing["problems"]}
        assert set(problems) == {"typo.toml", "nofield.toml", "wrongvolume.toml", "notoml.toml"}
        assert problems["typo.toml"]["field"] == "resources.cpus"
        assert "command" in problems["nofield.toml"]["message"]
        assert problems["wrongvolume.toml"]["field"] == "volumes" and "dr1" in problems["wrongvolume.toml"]["message"]
        assert listing["volumes"] == [{"name": "q1", "path": str(lab.volume), "read_only": True}]
        r = lab.launch("alice", "typo")
        assert r.status_code == 404 and "resources.cpus" in r.json()["error"]
        assert lab.launch("alice", "nosuch").status_code == 404
        # The server's log names them too.
        assert any("typo.toml: resources.cpus" in line for line in lab.server.lines), lab.server.log()
    finally:
        stop_all(lab)
    check = subprocess.run([str(insitu_bin()), "launcher", "check", str(tmp_path / "datalabs"), "--volume", "q1=/x"],
                           capture_output=True, text=True)
    assert check.returncode == 1
    assert "typo.toml: resources.cpus" in check.stderr and "ok       probe" in check.stdout


def test_quotas_refuse_with_a_clear_message(tmp_path):
    lab = make_lab(tmp_path, quotas="instances = 2\nworkspace_gb = 0.002\ncpus = 16")
    lab.server.start()
    try:
        first, second = lab.running("alice"), lab.running("alice")
        r = lab.launch("alice")
        assert r.status_code == 409, r.text
        assert "alice already runs 2 of 2 datalabs" in r.json()["error"]
        # Other users have their own quota.
        assert lab.running("bob")["state"] == "running"
        assert lab.stop("alice", first["id"]).status_code == 204
        # A workspace over its size: 3 MB of 2 MB.
        (lab.workspaces / "users" / "alice" / "big.bin").write_bytes(os.urandom(3_000_000))
        r = lab.launch("alice")
        assert r.status_code == 409 and "workspace of alice holds 0.0 GB of its 0.002 GB" in r.json()["error"], r.text
        (lab.workspaces / "users" / "alice" / "big.bin").unlink()
        assert lab.running("alice")["id"] != second["id"]
    finally:
        stop_all(lab)


def test_cpu_and_memory_quotas(tmp_path):
    lab = make_lab(tmp_path, quotas="instances = 5\ncpus = 1.5\nmemory_gb = 1", extra_manifests={
        "big.toml": probe_manifest(title="Big", memory="2GiB"),
    })
    lab.server.start()
    try:
        r = lab.launch("alice", "big")
        assert r.status_code == 409 and "needs 2.0 GiB" in r.json()["error"], r.text
        lab.running("alice")
        r = lab.launch("alice")
        assert r.status_code == 409 and "needs 1 CPUs; alice uses 1 of 1.5" in r.json()["error"], r.text
    finally:
        stop_all(lab)


def test_idle_instances_are_culled(tmp_path):
    lab = make_lab(tmp_path, idle_seconds=2)
    lab.server.start()
    try:
        a = lab.running("alice")
        pid = lab.probe("alice", a, "whoami")["pid"]
        # Used now and then: kept.
        for _ in range(3):
            time.sleep(1)
            lab.probe("alice", a, "health")
        assert lab.get("alice", f"/instances/{a['id']}").status_code == 200
        deadline = time.monotonic() + 15
        while lab.get("alice", f"/instances/{a['id']}").status_code == 200:
            assert time.monotonic() < deadline, "not culled"
            time.sleep(0.3)
        assert wait_gone([pid]) == []
        assert any(f"instance {a['id']} of alice idle: culled" in line for line in lab.server.lines)
    finally:
        stop_all(lab)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_restarted_launcher_adopts_its_instances_and_cleans_up_the_dead(tmp_path, how):
    lab = make_lab(tmp_path)
    lab.server.start()
    try:
        kept, lost = lab.running("alice"), lab.running("bob")
        kept_pid = lab.probe("alice", kept, "whoami")["pid"]
        lost_pid = lab.probe("bob", lost, "whoami")["pid"]
        lab.server.proc.send_signal(how)
        lab.server.proc.wait(20)
        # While the launcher is away, bob's datalab dies.
        os.kill(lost_pid, signal.SIGKILL)
        assert wait_gone([lost_pid]) == []
        lab.server.start()
        adopted = lab.wait_state("alice", kept["id"])
        assert adopted["state"] == "running"
        assert lab.probe("alice", kept, "whoami")["pid"] == kept_pid
        assert lab.get("bob", f"/instances/{lost['id']}").status_code == 404
        assert lab.get("bob", "/instances").json() == []
        assert any(f"re-adopted instance {kept['id']}" in line for line in lab.server.lines), lab.server.log()
        # An adopted instance stops like any other.
        assert lab.stop("alice", kept["id"]).status_code == 204
        assert wait_gone([kept_pid]) == []
    finally:
        stop_all(lab)


def test_a_datalab_that_exits_is_reported_failed_with_its_log(tmp_path):
    lab = make_lab(tmp_path, extra_manifests={
        "crash.toml": 'title = "Crash"\ncommand = "/bin/sh"\nargs = ["-c", "echo no such module >&2; exit 3", "{port}"]\n',
        "slow.toml": probe_manifest(title="Slow", start_seconds=2).replace('health = "health"', 'health = "never"'),
    })
    lab.server.start()
    try:
        r = lab.launch("alice", "crash")
        assert r.status_code == 201
        failed = lab.wait_state("alice", r.json()["id"], states=("failed",), timeout=20)
        assert "exited" in failed["message"] and "no such module" in failed["message"]
        slow = lab.launch("alice", "slow").json()
        failed = lab.wait_state("alice", slow["id"], states=("failed",), timeout=30)
        assert "did not answer" in failed["message"]
        # Failed instances do not count against the quota, and go away when stopped.
        assert lab.running("alice")["state"] == "running"
        assert lab.stop("alice", slow["id"]).status_code == 204
    finally:
        stop_all(lab)


def test_add_user_replaces_a_token_and_the_server_sees_it_without_restart(lab):
    old = lab.tokens["bob"]
    new = add_user(lab.root / "users.toml", "bob", ["wl"])
    assert new != old and len(new) == 64
    assert old not in (lab.root / "users.toml").read_text()
    time.sleep(0.05)
    r = requests.get(lab.base + "/workspaces", headers={"Authorization": f"Bearer {new}"}, timeout=10)
    assert r.status_code == 200 and {w["name"] for w in r.json()} == {"bob", "wl"}
    r = requests.get(lab.base + "/workspaces", headers={"Authorization": f"Bearer {old}"}, timeout=10)
    assert r.status_code == 401
    bad = subprocess.run([str(insitu_bin()), "launcher", "add-user", "../eve", "--users", str(lab.root / "users.toml")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "user name" in bad.stderr


def test_a_datalab_without_base_url_behind_strip_prefix(tmp_path):
    bare = probe_manifest(title="Bare").replace('"{base_url}"', '"/"') + "[proxy]\nstrip_prefix = true\n"
    lab = make_lab(tmp_path, extra_manifests={"bare.toml": bare})
    lab.server.start()
    try:
        inst = lab.running("alice", "bare")
        assert lab.probe("alice", inst, "whoami")["env"]["INSITU_BASE_URL"] == inst["url"]
        r = requests.get(f"{lab.base}{inst['url']}nothing?x=1", headers=lab.auth("alice"), timeout=10)
        assert r.status_code == 404 and r.json()["error"] == "nothing"
    finally:
        stop_all(lab)
