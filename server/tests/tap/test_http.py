"""Raw HTTP against `insitu serve`: every way a request can be wrong gets a DALI error document
(a VOTable with QUERY_STATUS=ERROR, DALI 1.1 §4.4) and a 4xx status, never a 5xx or a hang;
the other response formats, limits from a --config TOML, VOSI availability, /metrics and a
graceful stop on SIGTERM."""

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.io.votable import parse_single_table
from astropy.table import Table

from conftest import Catalogue, Server, dali_error

# A request never takes this long here; hitting it is a hang, a failure.
TIMEOUT_S = 30

LIMITS = {"upload_rows": 100, "upload_bytes": 20_000, "hard_maxrec": 1000, "default_maxrec": 400}


@pytest.fixture(scope="module")
def limited(tmp_path_factory, catalogue: Catalogue, insitu):
    """A server whose tables and limits come from a TOML file (issue 4's config keys)."""
    d = tmp_path_factory.mktemp("limited")
    cfg = d / "insitu.toml"
    cfg.write_text("[tables]\n"
                   f'"x.cat" = "{catalogue.cat_path}"\n'
                   "[limits]\n" + "".join(f"{k} = {v}\n" for k, v in LIMITS.items()))
    s = Server(d, ["--config", cfg]).start()
    yield s
    s.stop()


def sync(server, method="GET", files=None, **params):
    url = server.tap + "/sync"
    if method == "GET":
        return requests.get(url, params=params, timeout=TIMEOUT_S)
    if files is not None:
        # multipart/form-data: parameters as form fields, tables as file parts (DALI 1.1 §3.4.5)
        return requests.post(url, data=params, files=files, timeout=TIMEOUT_S)
    return requests.post(url, data=params, timeout=TIMEOUT_S)


def csv_upload(n_rows, pad=0):
    text = "uid,ra,dec,note\n" + "".join(f"{i},{i * 0.01},{-i * 0.01},{'x' * pad}\n" for i in range(n_rows))
    return text.encode()


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("params, words", [
    ({"LANG": "ADQL", "QUERY": "SELECT id FROM x.cat WHERE"}, []),
    ({"LANG": "ADQL", "QUERY": "SELEKT id FROM x.cat"}, []),
    ({"LANG": "ADQL", "QUERY": "SELECT id FROM x.no_such_table"}, ["no_such_table"]),
    ({"LANG": "ADQL", "QUERY": "SELECT nope FROM x.cat"}, ["nope"]),
    ({"LANG": "PQL", "QUERY": "SELECT id FROM x.cat"}, ["PQL"]),
    ({"QUERY": "SELECT id FROM x.cat"}, ["LANG"]),
    ({"LANG": "ADQL"}, ["QUERY"]),
    ({"LANG": "ADQL", "QUERY": "  "}, ["QUERY"]),
    ({"REQUEST": "getCapabilities", "LANG": "ADQL", "QUERY": "SELECT id FROM x.cat"}, ["getCapabilities"]),
    ({"LANG": "ADQL", "QUERY": "SELECT id FROM x.cat", "RESPONSEFORMAT": "image/png"}, ["image/png"]),
    ({"LANG": "ADQL", "QUERY": "SELECT id FROM x.cat", "FORMAT": "xlsx"}, ["xlsx"]),
    ({"LANG": "ADQL", "QUERY": "SELECT id FROM x.cat", "MAXREC": "99999999999999999999999999"}, ["MAXREC"]),
    ({"LANG": "ADQL", "QUERY": "SELECT id FROM x.cat", "MAXREC": "-1"}, ["MAXREC"]),
    ({"LANG": "ADQL", "QUERY": "SELECT id FROM x.cat", "MAXREC": "ten"}, ["MAXREC"]),
    ({"LANG": "ADQL", "QUERY": "DELETE FROM x.cat"}, []),
    ({"LANG": "ADQL", "QUERY": "SELECT id FROM x.cat", "UPLOAD": "t,param:t"}, ["t"]),
    ({"LANG": "ADQL", "QUERY": "SELECT 1 FROM x.cat", "UPLOAD": "t,https://example.org/t.xml"}, ["param:", "http://"]),
    ({"LANG": "ADQL", "QUERY": "SELECT 1 FROM x.cat", "UPLOAD": "t,http://127.0.0.1:9/t.xml"}, ["cannot fetch"]),
    ({"LANG": "ADQL", "QUERY": "SELECT 1 FROM x.cat", "UPLOAD": "9bad,param:t"}, ["9bad"]),
])
def test_bad_requests_get_a_dali_error(server, method, params, words):
    err = dali_error(sync(server, method, **params))
    assert err.status == 400
    for w in words:
        assert w.lower() in err.message.lower(), err.message


def astroquery_multipart(fields: dict, part: str, table: bytes):
    """A body framed exactly as astroquery's TapPlus does it (tapconn.encode_multipart): an
    unquoted boundary made of '=' and digits, and the file part's Content-Type `None`."""
    boundary = "===1700000000000==="
    crlf = "\r\n"
    items = []
    for k, v in fields.items():
        items += [f"--{boundary}{crlf}", f'Content-Disposition: form-data; name="{k}"{crlf}', crlf, f"{v}{crlf}"]
    items += [f"--{boundary}{crlf}", f'Content-Disposition: form-data; name="{part}"; filename="t.xml"{crlf}',
              f"Content-Type: None{crlf}", crlf, table.decode(), crlf, f"--{boundary}--{crlf}", crlf]
    return f"multipart/form-data; boundary={boundary}", "".join(items).encode()


def test_unquoted_boundary_with_equals_signs_is_accepted(server, catalogue: Catalogue):
    # RFC 2046 §5.1.1 wants such a boundary quoted, but astroquery (and so astroquery.gaia and
    # every TapPlus user) sends it bare; multipart parsers in TAP services accept it.
    t = Table({"uid": np.array([1, 2]), "cid": catalogue.id[:2]})
    buf = io.BytesIO()
    t.write(buf, format="votable")
    ctype, body = astroquery_multipart(
        {"REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "csv", "UPLOAD": "t,param:t",
         "QUERY": "SELECT u.uid, c.mag FROM TAP_UPLOAD.t AS u JOIN x.cat AS c ON c.id = u.cid ORDER BY u.uid"},
        "t", buf.getvalue())
    r = requests.post(server.tap + "/sync", data=body, headers={"Content-Type": ctype}, timeout=TIMEOUT_S)
    assert r.status_code == 200, f"{r.status_code}: {r.text[:400]}"
    got = Table.read(r.text, format="ascii.csv")
    assert list(got["uid"]) == [1, 2]
    np.testing.assert_array_equal(np.asarray(got["mag"], dtype=np.float32), catalogue.mag[:2])


def test_upload_naming_a_missing_part(server):
    files = {"other": ("other.csv", csv_upload(3), "text/csv")}
    err = dali_error(sync(server, "POST", files=files, LANG="ADQL", UPLOAD="t,param:mine",
                          QUERY="SELECT * FROM TAP_UPLOAD.t"))
    assert err.status == 400 and "mine" in err.message


def test_upload_that_is_not_a_table(server):
    files = {"t": ("t.xml", b"<VOTABLE><RESOURCE><TABLE><DATA>", "text/xml")}
    err = dali_error(sync(server, "POST", files=files, LANG="ADQL", UPLOAD="t,param:t",
                          QUERY="SELECT * FROM TAP_UPLOAD.t"))
    assert err.status == 400 and "t" in err.message


def test_upload_limits_from_the_config(limited):
    q = dict(LANG="ADQL", UPLOAD="t,param:t", QUERY="SELECT COUNT(*) AS n FROM TAP_UPLOAD.t")
    # at the row limit: accepted, every row there
    ok = sync(limited, "POST", files={"t": ("t.csv", csv_upload(LIMITS["upload_rows"]), "text/csv")},
              RESPONSEFORMAT="csv", **q)
    assert ok.status_code == 200, ok.text[:300]
    assert ok.text.split() == ["n", str(LIMITS["upload_rows"])]
    # one row over
    err = dali_error(sync(limited, "POST", **q,
                          files={"t": ("t.csv", csv_upload(LIMITS["upload_rows"] + 1), "text/csv")}))
    assert str(LIMITS["upload_rows"]) in err.message, err.message
    # few rows, too many bytes
    big = csv_upload(20, pad=1500)
    assert LIMITS["upload_bytes"] < len(big) < 2 * LIMITS["upload_bytes"]
    err = dali_error(sync(limited, "POST", **q, files={"t": ("t.csv", big, "text/csv")}))
    assert err.status == 413 and str(LIMITS["upload_bytes"]) in err.message, err.message
    # a body far over the limit is refused the same way, not with a bare 413 or a reset
    huge = csv_upload(20, pad=200_000)
    err = dali_error(sync(limited, "POST", **q, files={"t": ("t.csv", huge, "text/csv")}))
    assert err.status == 413


def test_votable_upload_over_the_row_limit(limited):
    t = Table({"uid": np.arange(LIMITS["upload_rows"] + 5), "ra": np.zeros(LIMITS["upload_rows"] + 5)})
    buf = io.BytesIO()
    t.write(buf, format="votable", tabledata_format="binary2")
    err = dali_error(sync(limited, "POST", files={"t": ("t.vot", buf.getvalue(), "application/x-votable+xml")},
                          LANG="ADQL", UPLOAD="t,param:t", QUERY="SELECT * FROM TAP_UPLOAD.t"))
    assert str(LIMITS["upload_rows"]) in err.message, err.message


def result_table(resp) -> Table:
    return parse_single_table(io.BytesIO(resp.content)).to_table()


def query_status(resp) -> str:
    from astropy.io.votable import parse
    doc = parse(io.BytesIO(resp.content))
    infos = [i for r in doc.resources for i in r.infos if i.name == "QUERY_STATUS"]
    infos += [i for i in doc.infos if i.name == "QUERY_STATUS"]
    return infos[-1].value if infos else "OK"


def test_huge_maxrec_is_capped_at_hard_maxrec(limited):
    r = sync(limited, LANG="ADQL", QUERY="SELECT id FROM x.cat", MAXREC=str(10**12))
    assert r.status_code == 200, r.text[:300]
    assert len(result_table(r)) == LIMITS["hard_maxrec"]
    assert query_status(r) == "OVERFLOW"
    # no MAXREC: default_maxrec, also an overflow
    r = sync(limited, LANG="ADQL", QUERY="SELECT id FROM x.cat")
    assert len(result_table(r)) == LIMITS["default_maxrec"] and query_status(r) == "OVERFLOW"
    # MAXREC=0: no rows, the metadata only (DALI 1.1 §3.4.3)
    r = sync(limited, LANG="ADQL", QUERY="SELECT id, ra FROM x.cat", MAXREC="0")
    t = result_table(r)
    assert len(t) == 0 and t.colnames == ["id", "ra"]


def test_fits_and_tsv_formats(server, catalogue: Catalogue):
    q = dict(LANG="ADQL", QUERY="SELECT TOP 100 id, ra, dec, mag, cls FROM x.cat ORDER BY id")
    r = sync(server, RESPONSEFORMAT="fits", **q)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fits")
    with fits.open(io.BytesIO(r.content)) as hl:
        t = Table(hl[1].data)
        units = {hl[1].header[f"TTYPE{i}"]: hl[1].header.get(f"TUNIT{i}") for i in range(1, 6)}
    np.testing.assert_array_equal(np.asarray(t["id"]), catalogue.id[:100])
    np.testing.assert_array_equal(np.asarray(t["ra"]), catalogue.ra[:100])
    np.testing.assert_array_equal(np.asarray(t["mag"]), catalogue.mag[:100])
    assert units["ra"] == "deg" and units["mag"] == "mag"
    r = sync(server, RESPONSEFORMAT="tsv", **q)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/tab-separated-values")
    t = Table.read(r.text, format="ascii.tab")
    assert list(t.colnames) == ["id", "ra", "dec", "mag", "cls"]
    np.testing.assert_array_equal(np.asarray(t["dec"], dtype=np.float64), catalogue.dec[:100])
    r = sync(server, RESPONSEFORMAT="parquet", **q)
    assert r.status_code == 200
    # Parquet files start and end with the magic "PAR1" (no Parquet reader in the venv)
    assert r.content[:4] == b"PAR1" and r.content[-4:] == b"PAR1"


def test_form_and_multipart_posts_equal_get(server, catalogue: Catalogue):
    q = dict(LANG="ADQL", QUERY="SELECT COUNT(*) AS n FROM x.cat WHERE cls = 2", RESPONSEFORMAT="csv")
    want = ["n", str(int((catalogue.cls == 2).sum()))]
    assert sync(server, "GET", **q).text.split() == want
    assert sync(server, "POST", **q).text.split() == want
    # multipart with an unused file part
    assert sync(server, "POST", files={"x": ("x.csv", b"a\n1\n", "text/csv")}, **q).text.split() == want
    # parameter names are case-insensitive (DALI 1.1 §3.1)
    r = requests.get(server.tap + "/sync", params={k.lower(): v for k, v in q.items()}, timeout=TIMEOUT_S)
    assert r.text.split() == want


def test_availability_and_metrics(server):
    r = requests.get(server.tap + "/availability", timeout=TIMEOUT_S)
    assert r.status_code == 200
    available = [e.text for e in ET.fromstring(r.content).iter()
                 if e.tag == "{http://www.ivoa.net/xml/VOSIAvailability/v1.0}available"]
    assert available == ["true"], r.text[:300]
    r = requests.get(server.tap + "/capabilities", timeout=TIMEOUT_S)
    assert r.status_code == 200 and "ivo://ivoa.net/std/TAP" in r.text
    before = requests.get(server.base + "/metrics", timeout=TIMEOUT_S)
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    samples = [ln for ln in before.text.splitlines() if ln and not ln.startswith("#")]
    assert samples, before.text[:300]
    for ln in samples:  # Prometheus text format: `name{labels} value`
        float(ln.rsplit(" ", 1)[1])


def test_sigterm_stops_gracefully(tmp_path, catalogue: Catalogue, insitu):
    s = Server(tmp_path, ["--table", f"x.cat={catalogue.cat_path}"]).start()
    r = sync(s, LANG="ADQL", QUERY="SELECT COUNT(*) AS n FROM x.cat", RESPONSEFORMAT="csv")
    assert r.text.split() == ["n", str(len(catalogue.id))]
    assert s.stop() == 0, s.log()
    # one log line per request
    assert len([ln for ln in s.lines if "/tap/sync" in ln]) == 1, s.log()
