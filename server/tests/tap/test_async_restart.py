"""UWS 1.1 async jobs across a crash: jobs submitted to a one-worker server, the server killed
with SIGKILL while they are queued or executing, restarted on the same --state-dir: every job
is listed again and ends COMPLETED with the right result (the cut-off ones run again). Also the
job list filters (UWS 1.1 §2.2.2.1) and DELETE (§2.2.3.1) over HTTP."""

import io
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.table import Table
import astropy.units as u

from conftest import Server, sphere_points, write_bintable

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
TIMEOUT_S = 30
# A job never takes this long here; reaching it means a hang.
JOB_DEADLINE_S = 240

# Two 200k-row tables and a radius giving ~190k pairs: a debug build takes ~1 s per
# cross-match, so with one worker the kill lands while they run or wait.
N_BIG = 200_000
XMATCH_R = 0.25


@dataclass
class Big:
    a: tuple  # (ra, dec) of x.a
    b: tuple
    paths: tuple


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(99)
    a = sphere_points(rng, N_BIG)
    b = sphere_points(rng, N_BIG)
    paths = []
    for name, (ra, dec) in (("a", a), ("b", b)):
        paths.append(write_bintable(d / f"{name}.fits", [
            ("id", "K", np.arange(N_BIG, dtype=np.int64), None, "meta.id", None),
            ("ra", "D", ra, "deg", "pos.eq.ra", None), ("dec", "D", dec, "deg", "pos.eq.dec", None)]))
    return Big(a, b, tuple(paths))


def pair_count(p, q, r_deg) -> int:
    i, _, _, _ = search_around_sky(SkyCoord(*p, unit="deg"), SkyCoord(*q, unit="deg"), r_deg * u.deg)
    return len(i)


def create(server, query, run=True, files=None, **extra):
    """POST to the job list: a 303 to the new job (UWS 1.1 §2.2.3.1)."""
    data = {"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": "csv", **extra}
    if run:
        data["PHASE"] = "RUN"
    r = requests.post(server.tap + "/async", data=data, files=files, allow_redirects=False, timeout=TIMEOUT_S)
    assert r.status_code == 303, f"{r.status_code}: {r.text[:300]}"
    loc = r.headers["location"]
    assert loc.startswith(server.tap + "/async/"), loc
    return loc.rsplit("/", 1)[1]


def job_url(server, job):
    return f"{server.tap}/async/{job}"


def phase(server, job) -> str:
    r = requests.get(job_url(server, job) + "/phase", timeout=TIMEOUT_S)
    assert r.status_code == 200, f"{job}: {r.status_code} {r.text[:200]}"
    return r.text.strip()


def wait_final(server, job) -> str:
    deadline = time.monotonic() + JOB_DEADLINE_S
    while True:
        # blocking WAIT (UWS 1.1 §2.2.3.2): returns when the phase leaves the one given
        p = phase(server, job)
        if p in ("COMPLETED", "ERROR", "ABORTED"):
            return p
        assert time.monotonic() < deadline, f"job {job} still {p} after {JOB_DEADLINE_S} s"
        requests.get(job_url(server, job), params={"WAIT": 5, "PHASE": p}, timeout=TIMEOUT_S)


def result_csv(server, job) -> Table:
    r = requests.get(job_url(server, job) + "/results/result", timeout=TIMEOUT_S)
    assert r.status_code == 200, f"{job}: {r.status_code} {r.text[:200]}"
    assert r.headers["content-type"].startswith("text/csv")
    return Table.read(r.text, format="ascii.csv")


def job_list(server, **filters) -> dict:
    """id -> phase of the job list's jobrefs."""
    r = requests.get(server.tap + "/async", params=filters, timeout=TIMEOUT_S)
    assert r.status_code == 200, r.text[:300]
    root = ET.fromstring(r.content)
    assert root.tag == UWS + "jobs", root.tag
    return {ref.get("id"): ref.findtext(UWS + "phase") for ref in root.iter(UWS + "jobref")}


def creation_time(server, job) -> str:
    root = ET.fromstring(requests.get(job_url(server, job), timeout=TIMEOUT_S).content)
    return root.findtext(UWS + "creationTime")


def test_jobs_survive_sigkill_and_complete(tmp_path, big: Big, catalogue, insitu):
    args = ["--workers", "1", "--table", f"x.a={big.paths[0]}", "--table", f"x.b={big.paths[1]}",
            "--table", f"x.cat={catalogue.cat_path}"]
    s = Server(tmp_path, args).start()
    xmatch = ("SELECT COUNT(*) AS n FROM x.a AS p JOIN x.b AS q "
              f"ON DISTANCE(POINT('ICRS',p.ra,p.dec), POINT('ICRS',q.ra,q.dec)) < {XMATCH_R!r}")
    self_match = ("SELECT COUNT(*) AS n FROM x.a AS p JOIN x.a AS q "
                  f"ON DISTANCE(POINT('ICRS',p.ra,p.dec), POINT('ICRS',q.ra,q.dec)) < {XMATCH_R!r} "
                  "WHERE p.id < q.id")
    upload = "uid,ra,dec\n" + "".join(f"{i},{ra!r},{dec!r}\n" for i, (ra, dec) in
                                      enumerate(zip((catalogue.ra[:40] + 1e-4).tolist(), catalogue.dec[:40].tolist())))
    jobs = {}
    # first a quick job, finished before the crash: its result must still be there after
    jobs["count"] = create(s, "SELECT COUNT(*) AS n FROM x.cat WHERE cls = 4")
    assert wait_final(s, jobs["count"]) == "COMPLETED"
    jobs["xmatch"] = create(s, xmatch)
    jobs["self"] = create(s, self_match)
    jobs["upload"] = create(s, "SELECT u.uid, c.id FROM TAP_UPLOAD.t AS u JOIN x.cat AS c "
                               "ON DISTANCE(POINT('ICRS',u.ra,u.dec), POINT('ICRS',c.ra,c.dec)) < 0.001",
                            files={"t": ("t.csv", upload.encode(), "text/csv")}, UPLOAD="t,param:t")
    jobs["pending"] = create(s, "SELECT TOP 3 id FROM x.cat ORDER BY id", run=False)
    before = {k: phase(s, j) for k, j in jobs.items()}
    assert before["count"] == "COMPLETED" and before["pending"] == "PENDING"
    # one worker: the later jobs cannot all have finished while the cross-match runs
    assert before["upload"] in ("QUEUED", "EXECUTING"), before
    assert before["xmatch"] in ("QUEUED", "EXECUTING", "COMPLETED"), before
    print(f"phases at the SIGKILL: {before}")
    s.kill()

    s.start()  # same --state-dir and --cache-dir, new port
    try:
        listed = job_list(s)
        assert set(jobs.values()) <= set(listed), (jobs, listed)
        assert listed[jobs["count"]] == "COMPLETED" and listed[jobs["pending"]] == "PENDING"
        # the PENDING job kept its parameters: run it now
        r = requests.post(job_url(s, jobs["pending"]) + "/phase", data={"PHASE": "RUN"},
                          allow_redirects=False, timeout=TIMEOUT_S)
        assert r.status_code == 303, r.text[:300]
        for k, j in jobs.items():
            assert wait_final(s, j) == "COMPLETED", (k, requests.get(job_url(s, j) + "/error").text[:300])

        assert list(result_csv(s, jobs["count"])["n"]) == [int((catalogue.cls == 4).sum())]
        assert list(result_csv(s, jobs["xmatch"])["n"]) == [pair_count(big.a, big.b, XMATCH_R)]
        # a self-match: every source with itself plus each distinct pair twice
        self_pairs = (pair_count(big.a, big.a, XMATCH_R) - N_BIG) // 2
        assert list(result_csv(s, jobs["self"])["n"]) == [self_pairs]
        up = result_csv(s, jobs["upload"])
        ref = SkyCoord(catalogue.ra, catalogue.dec, unit="deg")
        i, k, _, _ = search_around_sky(SkyCoord(catalogue.ra[:40] + 1e-4, catalogue.dec[:40], unit="deg"),
                                       ref, 0.001 * u.deg)
        assert {(int(a), int(b)) for a, b in zip(up["uid"], up["id"])} == \
               {(int(a), int(catalogue.id[b])) for a, b in zip(i, k)}
        assert [int(v) for v in result_csv(s, jobs["pending"])["id"]] == sorted(catalogue.id.tolist())[:3]

        check_job_list_filters(s, jobs)
    finally:
        s.stop()


def check_job_list_filters(s, jobs):
    ids = list(jobs.values())
    assert set(job_list(s, PHASE="COMPLETED")) >= set(ids)
    assert not set(job_list(s, PHASE="PENDING")) & set(ids)
    last2 = job_list(s, LAST=2)
    assert len(last2) == 2
    # the two most recently created: the upload and the pending job
    assert set(last2) == {jobs["upload"], jobs["pending"]}, last2
    after = job_list(s, AFTER=creation_time(s, jobs["count"]))
    assert jobs["count"] not in after and jobs["pending"] in after
    # DELETE: the job goes, with a 303 to the job list (UWS 1.1 §2.2.3.1)
    r = requests.delete(job_url(s, jobs["count"]), allow_redirects=False, timeout=TIMEOUT_S)
    assert r.status_code == 303, r.text[:200]
    assert requests.get(job_url(s, jobs["count"]), timeout=TIMEOUT_S).status_code == 404
    r = requests.post(job_url(s, jobs["self"]), data={"ACTION": "DELETE"}, allow_redirects=False,
                      timeout=TIMEOUT_S)
    assert r.status_code == 303, r.text[:200]
    assert not {jobs["count"], jobs["self"]} & set(job_list(s))


def test_failed_async_job_reports_the_error(server):
    j = create(server, "SELECT no_such_column FROM x.cat")
    assert wait_final(server, j) == "ERROR"
    root = ET.fromstring(requests.get(job_url(server, j), timeout=TIMEOUT_S).content)
    summary = root.find(UWS + "errorSummary")
    assert summary is not None and "no_such_column" in (summary.findtext(UWS + "message") or "")
    r = requests.get(job_url(server, j) + "/error", timeout=TIMEOUT_S)
    assert r.status_code == 200 and "no_such_column" in r.text
