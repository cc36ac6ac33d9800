"""pyvo's TAPService against `insitu serve`: every answer checked with numpy/astropy over the
FITS tables the server reads."""

import io
import warnings

import numpy as np
import pytest
import pyvo
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.table import Table
import astropy.units as u
from pyvo.dal import DALQueryError

from conftest import Catalogue, cone_ids


@pytest.fixture(scope="module")
def tap(server):
    return pyvo.dal.TAPService(server.tap)


def test_cone_search_matches_astropy(tap, catalogue: Catalogue):
    # one cone across RA=0 and one near the pole, where a naive box would be wrong
    for ra0, dec0, r in [(359.5, -12.0, 6.0), (140.0, 84.0, 7.5)]:
        res = tap.search(f"SELECT id, ra, dec FROM x.cat "
                         f"WHERE 1=CONTAINS(POINT('ICRS',ra,dec), CIRCLE('ICRS',{ra0},{dec0},{r}))")
        got = [int(i) for i in res["id"]]
        assert len(got) == len(set(got))
        want = cone_ids(catalogue, ra0, dec0, r)
        assert want, "the cone should not be empty"
        assert set(got) == want


def test_aggregates_match_numpy(tap, catalogue: Catalogue):
    t = tap.search("SELECT cls, COUNT(*) AS n, AVG(mag) AS mean_mag, MIN(dec) AS lo, MAX(dec) AS hi "
                   "FROM x.cat WHERE mag < 20 GROUP BY cls ORDER BY cls").to_table()
    keep = catalogue.mag < np.float32(20)
    classes = np.unique(catalogue.cls[keep])
    assert [int(c) for c in t["cls"]] == classes.tolist()
    for row, c in zip(t, classes):
        sel = keep & (catalogue.cls == c)
        assert int(row["n"]) == int(sel.sum())
        # AVG over float32 values: accumulated in float64 by the server, float32 in the file
        np.testing.assert_allclose(float(row["mean_mag"]), catalogue.mag[sel].astype(np.float64).mean(),
                                   rtol=1e-9)
        assert float(row["lo"]) == catalogue.dec[sel].min()
        assert float(row["hi"]) == catalogue.dec[sel].max()


def test_join_matches_numpy(tap, catalogue: Catalogue):
    t = tap.search("SELECT c.id, r.ref_id, r.z FROM x.cat AS c JOIN x.ref AS r ON c.id = r.cat_id "
                   "WHERE c.mag < 18", maxrec=100_000).to_table()
    bright = set(catalogue.id[catalogue.mag < np.float32(18)].tolist())
    want = {(int(c), int(r), float(z)) for c, r, z in
            zip(catalogue.ref_cat_id, catalogue.ref_id, catalogue.ref_z) if int(c) in bright}
    got = {(int(c), int(r), float(z)) for c, r, z in zip(t["id"], t["ref_id"], t["z"])}
    assert len(got) == len(t) and want
    assert got == want


def test_run_async_equals_the_oracle(tap, catalogue: Catalogue):
    res = tap.run_async("SELECT id, mag FROM x.cat WHERE cls = 3 AND mag BETWEEN 15 AND 16 ORDER BY id",
                        timeout=60)
    sel = (catalogue.cls == 3) & (catalogue.mag >= np.float32(15)) & (catalogue.mag <= np.float32(16))
    assert [int(i) for i in res["id"]] == sorted(catalogue.id[sel].tolist())
    np.testing.assert_array_equal(np.asarray(res["mag"], dtype=np.float32),
                                  catalogue.mag[sel][np.argsort(catalogue.id[sel])])


def upload_table(catalogue: Catalogue, n_near=150, n_random=150, seed=7):
    """Positions near catalogue sources (within ~3 arcsec) and random ones."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(catalogue.id), n_near, replace=False)
    near = SkyCoord(catalogue.ra[pick], catalogue.dec[pick], unit="deg").directional_offset_by(
        rng.uniform(0, 360, n_near) * u.deg, rng.uniform(0, 3, n_near) * u.arcsec)
    rra = rng.uniform(0, 360, n_random)
    rdec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_random)))
    t = Table()
    t["uid"] = np.arange(n_near + n_random, dtype=np.int64) + 500
    t["ra"] = np.concatenate([near.ra.deg, rra]) * u.deg
    t["dec"] = np.concatenate([near.dec.deg, rdec]) * u.deg
    return t


def expected_pairs(catalogue: Catalogue, up: Table, radius_deg: float):
    c1 = SkyCoord(np.asarray(up["ra"]), np.asarray(up["dec"]), unit="deg")
    c2 = SkyCoord(catalogue.ra, catalogue.dec, unit="deg")
    i1, i2, _, _ = search_around_sky(c1, c2, radius_deg * u.deg)
    return {(int(up["uid"][a]), int(catalogue.id[b])) for a, b in zip(i1, i2)}


def test_upload_cross_match_matches_search_around_sky(tap, catalogue: Catalogue):
    up = upload_table(catalogue)
    r = 2.0 / 3600
    res = tap.search("SELECT u.uid, c.id FROM TAP_UPLOAD.t AS u JOIN x.cat AS c "
                     f"ON DISTANCE(POINT('ICRS',u.ra,u.dec), POINT('ICRS',c.ra,c.dec)) < {r!r}",
                     uploads={"t": up})
    got = [(int(a), int(b)) for a, b in zip(res["uid"], res["id"])]
    want = expected_pairs(catalogue, up, r)
    assert len(want) > 50, "the fixture should give many pairs"
    assert len(got) == len(set(got))
    assert set(got) == want


def test_tables_lists_names_columns_and_units(tap):
    tables = tap.tables
    names = set(tables.keys())
    assert {"x.cat", "x.ref"} <= names, names
    cols = {c.name: c for c in tables["x.cat"].columns}
    assert list(cols) == [m[0] for m in Catalogue.CAT_META]
    for name, unit, ucd, desc in Catalogue.CAT_META:
        c = cols[name]
        assert (c.unit or None) == unit, (name, c.unit)
        assert c.ucd == ucd, (name, c.ucd)
        assert c.description == desc, (name, c.description)
    assert "ref_id" in {c.name for c in tables["x.ref"].columns}


def test_tap_schema_columns_lists_the_units(tap):
    t = tap.search("SELECT column_name, unit, ucd, description FROM TAP_SCHEMA.columns "
                   "WHERE table_name = 'x.cat'").to_table()
    got = {str(r["column_name"]): (str(r["unit"]) if not np.ma.is_masked(r["unit"]) and str(r["unit"]) else None,
                                   str(r["ucd"]), str(r["description"])) for r in t}
    assert got == {n: (unit, ucd, desc) for n, unit, ucd, desc in Catalogue.CAT_META}


def test_maxrec_overflow_is_reported(tap, catalogue: Catalogue):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tap.search("SELECT id FROM x.cat ORDER BY id", maxrec=25)
    assert len(res) == 25
    assert res.query_status == "OVERFLOW"
    assert [int(i) for i in res["id"]] == sorted(catalogue.id.tolist())[:25]
    # exactly as many rows as asked for, and no more in the table: no overflow
    exact = tap.search("SELECT ref_id FROM x.ref WHERE ref_id < 1000010", maxrec=10)
    assert len(exact) == 10 and exact.query_status == "OK"


def test_bad_query_raises_dal_query_error_with_the_message(tap):
    with pytest.raises(DALQueryError) as e:
        tap.search("SELECT no_such_column FROM x.cat")
    assert "no_such_column" in str(e.value)
    with pytest.raises(DALQueryError) as e:
        tap.search("SELECT id FROM x.nope")
    assert "nope" in str(e.value).lower()


def test_binary2_response_equals_tabledata(tap, catalogue: Catalogue):
    q = "SELECT TOP 500 id, ra, dec, mag, cls FROM x.cat ORDER BY id"
    plain = tap.search(q).to_table()
    b2 = tap.search(q, responseformat="application/x-votable+xml;serialization=BINARY2").to_table()
    assert len(b2) == 500
    for col in ("id", "ra", "dec", "mag", "cls"):
        np.testing.assert_array_equal(np.asarray(b2[col]), np.asarray(plain[col]))
    np.testing.assert_array_equal(np.asarray(b2["ra"]), catalogue.ra[:500])
    np.testing.assert_array_equal(np.asarray(b2["mag"], dtype=np.float32), catalogue.mag[:500])


def test_csv_response(tap, catalogue: Catalogue):
    q = tap.create_query("SELECT TOP 300 id, ra, mag FROM x.cat ORDER BY id", responseformat="csv")
    resp = q.submit()
    resp.raise_for_status()
    assert resp.headers["content-type"].startswith("text/csv")
    t = Table.read(resp.text, format="ascii.csv")
    assert list(t.colnames) == ["id", "ra", "mag"]
    assert list(t["id"]) == catalogue.id[:300].tolist()
    # full precision: CSV round-trips the doubles
    np.testing.assert_array_equal(np.asarray(t["ra"], dtype=np.float64), catalogue.ra[:300])
    np.testing.assert_array_equal(np.asarray(t["mag"], dtype=np.float32), catalogue.mag[:300])
