"""The launcher run by an unprivileged user (as `nobody`, by setpriv): datalabs get their
mount namespace inside a user namespace, and the volumes stay read-only there too, even for
a volume folder its user may write."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import Server, make_lab, stop_all

NOBODY = 65534


class UnprivilegedServer(Server):
    def command(self):
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *super().command()]


@pytest.fixture
def nobody_lab():
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run the launcher unprivileged")
    root = Path(tempfile.mkdtemp(prefix="insitu-nobody-"))
    try:
        # The system's Python and a copy of the probe: inside a user namespace, root's own
        # folders (pyenv's, perhaps the checkout's) are closed.
        script = Path(shutil.copy(Path(__file__).with_name("probe_datalab.py"), root / "probe_datalab.py"))
        lab = make_lab(root, probe_python=Path("/usr/bin/python3"), probe_script=script)
        lab.server = UnprivilegedServer(root, lab.server.args, state_dir=root / "state")
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(root)], check=True)
        lab.server.start()
        yield lab
        stop_all(lab)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_volumes_are_read_only_in_a_user_namespace(nobody_lab):
    lab = nobody_lab
    assert any("in a user namespace (launcher not root)" in line for line in lab.server.lines), lab.server.log()
    bob = lab.running("bob")
    (lab.workspaces / "users" / "bob" / "secret.txt").write_text("bob's")
    a = lab.running("alice")
    assert lab.probe("alice", a, "whoami")["uid"] == 0  # root inside its namespace only
    # The volume folder belongs to the launcher's user, yet a datalab cannot write it.
    assert os.stat(lab.volume).st_uid == NOBODY
    write = lab.probe("alice", a, "write", path=str(lab.volume / "new.fits"))
    assert not write["ok"] and "Read-only file system" in write["error"], write
    assert not (lab.volume / "new.fits").exists()
    assert lab.probe("alice", a, "write", path=str(lab.workspaces / "users" / "alice" / "ok.txt"))["ok"]
    secret = lab.probe("alice", a, "read", path=str(lab.workspaces / "users" / "bob" / "secret.txt"))
    assert not secret["ok"], secret
    assert lab.stop("bob", bob["id"]).status_code == 204
