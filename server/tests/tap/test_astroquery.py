"""astroquery's TapPlus (the client behind astroquery.gaia and others) against `insitu serve`:
a sync job and an async job with an uploaded VOTable, compared with numpy/astropy."""

import numpy as np
import pytest
from astropy.table import Table
from astroquery.utils.tap.core import TapPlus

from conftest import Catalogue
from test_pyvo import expected_pairs, upload_table


@pytest.fixture(scope="module")
def tapplus(server):
    # TapPlus splits the URL into a server context ("/tap") and a TAP context (empty here):
    # it then asks for /tap/sync and /tap/async, as TAP 1.1 §2 lays out.
    return TapPlus(url=server.tap)


def test_launch_job_sync(tapplus, catalogue: Catalogue):
    job = tapplus.launch_job("SELECT TOP 200 id, ra, dec, mag FROM x.cat WHERE cls = 1 ORDER BY id")
    t = job.get_results()
    sel = catalogue.cls == 1
    assert [int(i) for i in t["id"]] == catalogue.id[sel][:200].tolist()
    np.testing.assert_array_equal(np.asarray(t["ra"]), catalogue.ra[sel][:200])
    np.testing.assert_array_equal(np.asarray(t["mag"], dtype=np.float32), catalogue.mag[sel][:200])
    assert str(t["ra"].unit) == "deg"


def test_launch_job_async_with_upload(tapplus, catalogue: Catalogue, tmp_path):
    up = upload_table(catalogue, n_near=120, n_random=80, seed=11)
    path = tmp_path / "upload.xml"
    up.write(path, format="votable")
    r = 2.5 / 3600
    job = tapplus.launch_job_async(
        "SELECT u.uid, c.id, c.mag FROM TAP_UPLOAD.t AS u JOIN x.cat AS c "
        f"ON DISTANCE(POINT('ICRS',u.ra,u.dec), POINT('ICRS',c.ra,c.dec)) < {r!r}",
        upload_resource=str(path), upload_table_name="t")
    t = job.get_results()
    assert job.get_phase() == "COMPLETED"
    got = {(int(a), int(b)) for a, b in zip(t["uid"], t["id"])}
    want = expected_pairs(catalogue, up, r)
    assert len(want) > 50 and len(got) == len(t)
    assert got == want
    mag_of = dict(zip(catalogue.id.tolist(), catalogue.mag.tolist()))
    assert all(np.float32(m) == np.float32(mag_of[int(i)]) for i, m in zip(t["id"], t["mag"]))


def test_sync_and_async_agree_with_numpy(tapplus, catalogue: Catalogue):
    q = "SELECT cls, COUNT(*) AS n FROM x.cat GROUP BY cls ORDER BY cls"
    want = np.bincount(catalogue.cls).tolist()
    for t in (tapplus.launch_job(q).get_results(), tapplus.launch_job_async(q).get_results()):
        assert isinstance(t, Table)
        assert [int(c) for c in t["cls"]] == list(range(len(want)))
        assert [int(v) for v in t["n"]] == want
