"""`insitu query`: ADQL over a FITS binary table and a CSV catalogue, against astropy/numpy."""

import csv
import io

import numpy as np
from astropy.table import Table

from conftest import FITS_DIR, error_line, run_insitu, run_ok


def query_csv(*args):
    out = run_ok("query", *args, "--format", "csv").stdout
    return list(csv.DictReader(io.StringIO(out)))


def test_fits_table_matches_astropy(insitu):
    path = FITS_DIR / "table_types.fits"
    rows = query_csv("--table", f"m.t={path}", "SELECT TOP 5 name, ra FROM m.t WHERE mag > 0 ORDER BY ra DESC")
    t = Table.read(path, hdu=1)
    t = t[t["mag"] > 0]
    t.sort("ra", reverse=True)
    assert [r["name"] for r in rows] == [str(n).strip() for n in t["name"][:5]]
    np.testing.assert_allclose([float(r["ra"]) for r in rows], t["ra"][:5], rtol=0, atol=1e-12)


def test_cone_search_over_csv_matches_numpy(tmp_path, insitu):
    rng = np.random.default_rng(5)
    ra = rng.uniform(0, 360, 3000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    cat = tmp_path / "cat.csv"
    with open(cat, "w") as f:
        f.write("id,ra,dec\n")
        for i, (a, d) in enumerate(zip(ra, dec)):
            f.write(f"{i},{float(a)!r},{float(d)!r}\n")
    ra0, dec0, r = 359.0, 10.0, 8.0
    rows = query_csv("--table", f"u.cat={cat}",
                     f"SELECT id FROM u.cat WHERE 1=CONTAINS(POINT('ICRS',ra,dec), CIRCLE('ICRS',{ra0},{dec0},{r}))")
    v = lambda a, d: np.stack([np.cos(np.radians(d)) * np.cos(np.radians(a)),
                              np.cos(np.radians(d)) * np.sin(np.radians(a)), np.sin(np.radians(d))])
    sep = np.degrees(np.arccos(np.clip((v(ra, dec) * v(ra0, dec0)[:, None]).sum(0), -1, 1)))
    assert sorted(int(r["id"]) for r in rows) == sorted(np.nonzero(sep <= r)[0].tolist())


def test_bad_queries_fail_with_one_line(insitu):
    path = FITS_DIR / "table_types.fits"
    for adql, words in [("DROP TABLE m.t", "only SELECT"), ("SELECT nope FROM m.t", "nope"),
                        ("SELECT ra FROM m.t WHERE ra > > 1", "Line: 1, Column: 31")]:
        args = ("query", "--table", f"m.t={path}", adql)
        assert words in error_line(run_insitu(*args), args)


def test_votable_output_reads_back_in_astropy(tmp_path, insitu):
    from astropy.io.votable import parse_single_table

    path = FITS_DIR / "table_types.fits"
    adql = "SELECT name, ra, mag, i16, u16, flag, vec, u64 FROM m.t ORDER BY name"
    out = run_ok("query", "--table", f"m.t={path}", "--format", "votable", adql).stdout
    vot = tmp_path / "result.xml"
    vot.write_text(out)
    votable = parse_single_table(vot, verify="exception")
    got = votable.to_table()
    want = Table.read(path, hdu=1)
    want.sort("name")
    assert [str(n) for n in got["name"]] == [str(n).strip() for n in want["name"]]
    np.testing.assert_array_equal(np.asarray(got["ra"]), want["ra"])
    np.testing.assert_array_equal(np.asarray(got["mag"], dtype=np.float32), want["mag"])
    np.testing.assert_array_equal(np.asarray(got["u16"]), want["u16"])
    np.testing.assert_array_equal(np.asarray(got["flag"]), want["flag"])
    np.testing.assert_array_equal(np.asarray(got["vec"]), want["vec"])
    assert [int(v) for v in got["u64"]] == [int(v) for v in want["u64"]]
    # TNULL rows are null in the VOTable, the rest equal.
    null = np.asarray(want["i16"]) == -999
    assert list(np.ma.getmaskarray(got["i16"])) == list(null)
    np.testing.assert_array_equal(np.asarray(got["i16"])[~null], np.asarray(want["i16"])[~null])
    assert got["ra"].unit == "deg" and got["mag"].unit == "mag"
    assert votable.get_field_by_id_or_name("ra").ucd == "pos.eq.ra;meta.main"
    assert votable.get_field_by_id_or_name("ra").description == "right ascension"


def test_output_file_formats_round_trip(tmp_path, insitu):
    path = FITS_DIR / "table_types.fits"
    adql = "SELECT name, ra, i16 FROM m.t ORDER BY name"
    want = query_csv("--table", f"m.t={path}", adql)
    assert len(want) == len(Table.read(path, hdu=1)) and any(r["i16"] == "" for r in want)  # nulls survive
    # Parquet (needs -o), read back by insitu itself: same rows, nulls included.
    pq = tmp_path / "out.parquet"
    run_ok("query", "--table", f"m.t={path}", "--format", "parquet", "-o", str(pq), adql)
    assert pq.read_bytes()[:4] == b"PAR1"
    assert query_csv("--table", f"p.q={pq}", "SELECT name, ra, i16 FROM p.q ORDER BY name") == want
    # Units travel with the Parquet field metadata into TAP_SCHEMA.
    units = query_csv("--table", f"p.q={pq}",
                      "SELECT column_name, unit FROM tap_schema.columns WHERE table_name = 'p.q' ORDER BY column_name")
    assert {r["column_name"]: r["unit"] for r in units} == {"i16": "", "name": "", "ra": "deg"}
    # CSV to a file equals CSV on stdout; no temporary left beside it.
    out = tmp_path / "out.csv"
    run_ok("query", "--table", f"m.t={path}", "--format", "csv", "-o", str(out), adql)
    assert list(csv.DictReader(io.StringIO(out.read_text()))) == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.parquet"]
    # No row: the CSV header is still there.
    empty = run_ok("query", "--table", f"m.t={path}", "SELECT name, ra FROM m.t WHERE ra > 1000").stdout
    assert empty.strip() == "name,ra"
    # Parquet to a terminal and an output over an input are refused.
    for args, words in [(("--format", "parquet"), "-o OUT"), (("-o", str(path)), "overwrite an input")]:
        full = ("query", "--table", f"m.t={path}", *args, adql)
        assert words in error_line(run_insitu(*full), full)


def test_parse_only_checks_syntax_without_tables(insitu):
    for adql in ["SELECT TOP 5 * FROM nowhere.at_all WHERE 1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 1, 2, 0.1))",
                 "SELECT a.x FROM s.a AS a JOIN s.b AS b ON DISTANCE(a.ra, a.dec, b.ra, b.dec) < 0.001"]:
        assert run_insitu("query", "--parse-only", adql).returncode == 0, adql
    for adql, words in [("SELECT * FROM t WHERE ra > > 1", "Line: 1, Column: 28"), ("DROP TABLE t", "only SELECT")]:
        args = ("query", "--parse-only", adql)
        assert words in error_line(run_insitu(*args), args)
