"""Bulk cutout jobs (`/cutout/async`, UWS) against `insitu serve` on its demo volume: a
catalogue in, a tar / zip / multi-extension FITS / .npy stack out, checked against astropy's
`Cutout2D` on the demo tiles read straight from the volume folder; bad rows end up in the
errors file, not in a failed job; the job shows its progress.
"""

import csv
import io
import tarfile
import time
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

from conftest import Server

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
PROGRESS = "{urn:insitu:uws:progress}progress"
BANDS = ("VIS", "NIR_H")  # two of the demo's three bands
SIZE_ARCSEC = 4.0  # 40 pixels of 0.1″


@pytest.fixture(scope="module")
def demo(tmp_path_factory, insitu):
    s = Server(tmp_path_factory.mktemp("bulk")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tiles(demo):
    """(band, WCS, data) of every demo tile, read with astropy from the volume folder."""
    out = []
    for path in sorted((demo.cache_dir / "demo-volume-v2").rglob("*.fits")):
        with fits.open(path) as hdul:
            h = hdul[0].header
            out.append((h["FILTER"], WCS(h), hdul[0].data.astype(np.float32)))
    assert {b for b, _, _ in out} == {"VIS", "NIR_Y", "NIR_H"} and len(out) == 12
    return out


def inside(w, data, ra, dec, margin):
    x, y = w.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg))
    ny, nx = data.shape
    return margin - 0.5 <= x < nx - 0.5 - margin and margin - 0.5 <= y < ny - 0.5 - margin


@pytest.fixture(scope="module")
def catalogue(tiles):
    """Rows well inside one tile, rows across tile edges, and bad rows (off every tile, no
    valid declination)."""
    rng = np.random.default_rng(5)
    vis = [(w, d) for b, w, d in tiles if b == "VIS"]
    rows = []
    for k, (w, d) in enumerate(vis):
        for j in range(3):
            x, y = rng.uniform(60, d.shape[1] - 60), rng.uniform(60, d.shape[0] - 60)
            ra, dec = w.pixel_to_world_values(x, y)
            rows.append((f"in{k}_{j}", float(ra), float(dec)))
    # the corner where the four tiles meet, and the middle of one shared edge
    w, d = vis[0]
    for name, (x, y) in {"corner": (d.shape[1] - 0.5, d.shape[0] - 0.5),
                         "edge": (d.shape[1] - 0.5, d.shape[0] / 2)}.items():
        ra, dec = w.pixel_to_world_values(x, y)
        # the block's outer edges are elsewhere: only the shared corner/edge is near here
        rows.append((name, float(ra), float(dec)))
    rows.append(("far", 10.0, -40.0))
    rows.append(("nodec", 267.0, 95.0))
    return rows


def catalogue_csv(rows) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "ra", "dec"])
    for r in rows:
        writer.writerow([r[0], repr(r[1]), repr(r[2])])
    return text.getvalue().encode()


def run_job(demo, rows, fmt, **extra):
    params = {"SIZE": str(SIZE_ARCSEC), "BAND": ",".join(BANDS), "FORMAT": fmt, "PHASE": "RUN", **extra}
    r = requests.post(demo.base + "/cutout/async", data=params,
                      files={"catalog": ("targets.csv", catalogue_csv(rows), "text/csv")},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    job = r.headers["Location"]
    deadline = time.monotonic() + 120
    while True:
        doc = ET.fromstring(requests.get(job, params={"WAIT": "10"}, timeout=30).content)
        phase = doc.find(f"{UWS}phase").text
        if phase not in ("PENDING", "QUEUED", "EXECUTING"):
            break
        assert time.monotonic() < deadline, "the job did not finish"
    assert phase == "COMPLETED", ET.tostring(doc).decode()
    results = {e.get("id"): e.get("{http://www.w3.org/1999/xlink}href")
               for e in doc.iter(f"{UWS}result")}
    progress = doc.find(f"{UWS}jobInfo/{PROGRESS}")
    assert progress is not None, ET.tostring(doc).decode()
    assert progress.get("done") == progress.get("total") == str(len(rows))
    result = requests.get(results["result"], timeout=60)
    assert result.status_code == 200
    errors = requests.get(results["errors"], timeout=30)
    return result.content, list(csv.DictReader(io.StringIO(errors.text)))


def expected(tiles, band, ra, dec):
    """astropy's Cutout2D of the tile holding (ra, dec) well inside it."""
    for b, w, d in tiles:
        if b == band and inside(w, d, ra, dec, margin=25):
            c = Cutout2D(d, SkyCoord(ra * u.deg, dec * u.deg), SIZE_ARCSEC * u.arcsec, wcs=w)
            return c
    return None


def check_errors(errors, rows):
    bad = {e["id"] or e["row"] for e in errors}
    # "far" fails in each band; "nodec" once, when its position is read.
    assert len([e for e in errors if e["id"] == "far"]) == len(BANDS), errors
    nodec_row = str([r[0] for r in rows].index("nodec") + 1)
    assert [e["row"] for e in errors if e["id"] == "nodec"] == [nodec_row], errors
    assert not any(r[0].startswith("in") for r in rows if r[0] in bad)


def test_tar_holds_astropy_cutouts_and_an_errors_file(demo, tiles, catalogue):
    content, errors = run_job(demo, catalogue, "tar")
    check_errors(errors, catalogue)
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        names = tar.getnames()
        assert "errors.csv" in names
        for name, ra, dec in catalogue:
            for band in BANDS:
                member = f"{name}_{band}.fits"
                if name in ("far", "nodec"):
                    assert member not in names
                    continue
                with fits.open(io.BytesIO(tar.extractfile(member).read())) as hdul:
                    got, header = hdul[0].data, hdul[0].header
                want = expected(tiles, band, ra, dec)
                if want is not None:
                    np.testing.assert_array_equal(got, want.data, err_msg=member)
                    w = WCS(header)
                    x, y = w.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg))
                    wx, wy = want.wcs.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg))
                    assert abs(x - wx) < 1e-6 and abs(y - wy) < 1e-6, member
                else:
                    # across tile edges: stitched from the neighbours, nothing missing
                    assert got.shape == (40, 40) and np.isfinite(got).all(), member


def test_npy_zip_and_fits_hold_the_same_cutouts(demo, tiles, catalogue):
    tar_content, _ = run_job(demo, catalogue, "tar")
    with tarfile.open(fileobj=io.BytesIO(tar_content)) as tar:
        by_name = {m.name: fits.getdata(io.BytesIO(tar.extractfile(m).read()))
                   for m in tar.getmembers() if m.name.endswith(".fits")}

    stack_bytes, errors = run_job(demo, catalogue, "npy")
    check_errors(errors, catalogue)
    stack = np.load(io.BytesIO(stack_bytes))
    # one item per catalogue row, in order; rows that could not be cut are NaN
    assert stack.shape == (len(catalogue), len(BANDS), 40, 40) and stack.dtype == np.float32
    for i, (name, _, _) in enumerate(catalogue):
        for b, band in enumerate(BANDS):
            if name in ("far", "nodec"):
                assert np.isnan(stack[i, b]).all()
            else:
                np.testing.assert_array_equal(stack[i, b], by_name[f"{name}_{band}.fits"])

    zip_bytes, _ = run_job(demo, catalogue, "zip")
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        assert sorted(z.namelist()) == sorted(list(by_name) + ["errors.csv"])
        for name, data in by_name.items():
            np.testing.assert_array_equal(fits.getdata(io.BytesIO(z.read(name))), data)

    mef_bytes, _ = run_job(demo, catalogue, "fits")
    with fits.open(io.BytesIO(mef_bytes)) as hdul:
        # one IMAGE extension per cutout, named <id>_<band>, in catalogue order
        names = [h.name.upper() + ".FITS" for h in hdul[1:]]
        assert sorted(names) == sorted(n.upper() for n in by_name)
        for h in hdul[1:]:
            match = [k for k in by_name if k.upper() == h.name.upper() + ".FITS"]
            np.testing.assert_array_equal(h.data, by_name[match[0]])


def test_bad_requests_are_refused_or_fail_clearly(demo):
    # no catalogue, bad size, bad format: the job ends in ERROR with a message
    for params in ({"SIZE": "4"}, {"SIZE": "huge", "CATALOG": "ra,dec\n1,2\n"},
                   {"SIZE": "4", "FORMAT": "gif", "CATALOG": "ra,dec\n1,2\n"},
                   {"SIZE": "4", "CATALOG": "x,y\n1,2\n"},
                   {"SIZE": "4", "BAND": "NOPE", "VOLUME": "nowhere", "CATALOG": "ra,dec\n1,2\n"},
                   # empty and broken catalogues
                   {"SIZE": "4", "CATALOG": "ra,dec\n"},
                   {"SIZE": "4", "CATALOG": "ra,dec\n1,2,3,4\n\"unclosed\n"},
                   {"SIZE": "4", "CATALOG": '<?xml version="1.0"?><VOTABLE><RESOURCE><TABLE><FIELD '},
                   {"SIZE": "4", "CATALOG": "\x00\x01\x02 not a catalogue \xff"}):
        r = requests.post(demo.base + "/cutout/async", data={**params, "PHASE": "RUN"},
                          allow_redirects=False, timeout=30)
        assert r.status_code == 303, r.text
        doc = ET.fromstring(requests.get(r.headers["Location"], params={"WAIT": "20"}, timeout=30).content)
        assert doc.find(f"{UWS}phase").text == "ERROR", params
        message = doc.find(f"{UWS}errorSummary/{UWS}message").text
        assert message and str(demo.cache_dir) not in message, message


def test_votable_catalogue_with_other_column_names(demo, tiles, catalogue):
    """A VOTable (BINARY2, as astropy writes it) with RAJ2000/DEJ2000 and the ids in a column
    named by ID_COL."""
    from astropy.io.votable import from_table
    from astropy.table import Table

    rows = [r for r in catalogue if r[0].startswith("in")][:4]
    table = Table({"RAJ2000": [r[1] for r in rows], "DEJ2000": [r[2] for r in rows],
                   "designation": [r[0] for r in rows]})
    buffer = io.BytesIO()
    votable = from_table(table)
    votable.get_first_table().format = "binary2"
    votable.to_xml(buffer)
    r = requests.post(demo.base + "/cutout/async",
                      data={"SIZE": "40px", "BAND": "VIS", "FORMAT": "tar", "ID_COL": "designation",
                            "PHASE": "RUN"},
                      files={"catalog": ("targets.xml", buffer.getvalue(), "application/x-votable+xml")},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    doc = ET.fromstring(requests.get(r.headers["Location"], params={"WAIT": "60"}, timeout=90).content)
    assert doc.find(f"{UWS}phase").text == "COMPLETED", ET.tostring(doc).decode()
    href = [e.get("{http://www.w3.org/1999/xlink}href") for e in doc.iter(f"{UWS}result")
            if e.get("id") == "result"][0]
    with tarfile.open(fileobj=io.BytesIO(requests.get(href, timeout=60).content)) as tar:
        for name, ra, dec in rows:
            got = fits.getdata(io.BytesIO(tar.extractfile(f"{name}_VIS.fits").read()))
            np.testing.assert_array_equal(got, expected(tiles, "VIS", ra, dec).data)
