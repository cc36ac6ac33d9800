"""SODA cutouts through real clients against `insitu serve` on the demo volume: pyvo's DataLink
and SODA clients (from a DataLink document, and from an ObsCore row of a TAP query), plain HTTP
for SUB, errors and async jobs, and astroquery's Euclid `get_cutout` pointed at insitu by its
base URL only. The oracle is astropy reading the demo tiles themselves: a cutout's pixels are
the same pixel box of the tile, its WCS puts every sky position where the tile's WCS does
(shifted by the box origin), and the box covers every pixel whose centre is in the region.
"""

import io
import socket
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from conftest import Server

VIS_QUERY = ("SELECT obs_publisher_did, access_url, access_format, s_ra, s_dec FROM ivoa.obscore "
             "WHERE obs_publisher_did LIKE '%MOSAIC-VIS%' ORDER BY obs_publisher_did")


class FixedPortServer(Server):
    """`insitu serve` on a port chosen beforehand, so that --base-url can name it (ObsCore's
    access_url is built from it when the tables are registered)."""

    def __init__(self, workdir: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        super().__init__(workdir, ["--base-url", f"http://127.0.0.1:{self.port}"])

    def command(self):
        return [a if a != "127.0.0.1:0" else f"127.0.0.1:{self.port}" for a in super().command()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, insitu):
    """The demo server (no table, no volume: the demo tables and the euclid_demo volume)."""
    s = FixedPortServer(tmp_path_factory.mktemp("soda"))
    s.start()
    yield s
    s.stop()


def tile_path(server: Server, did: str) -> Path:
    """The demo tile a DID names, in the server's cache folder (where the demo volume lives)."""
    return server.cache_dir / "demo-volume-v2" / did.split("?", 1)[1]


@pytest.fixture(scope="module")
def vis(demo):
    """The first VIS tile's ObsCore row, its file and its astropy WCS."""
    import pyvo
    rows = pyvo.dal.TAPService(demo.tap).search(VIS_QUERY)
    assert len(rows) == 4
    rec = rows[0]
    path = tile_path(demo, rec["obs_publisher_did"])
    with fits.open(path) as hdul:
        data = hdul[0].data.copy()
        header = hdul[0].header.copy()
    return rec, path, data, WCS(header), header


def box_of(cutout: fits.HDUList, source_header) -> tuple:
    """(x0, y0, width, height) of a cutout in 0-based source pixels, from the moved CRPIX."""
    h = cutout[0].header
    dx = source_header["CRPIX1"] - h["CRPIX1"]
    dy = source_header["CRPIX2"] - h["CRPIX2"]
    x0, y0 = int(round(dx)), int(round(dy))
    assert abs(dx - x0) < 1e-9 and abs(dy - y0) < 1e-9
    return x0, y0, h["NAXIS1"], h["NAXIS2"]


def check_cutout(body: bytes, data, wcs, header, centre: SkyCoord) -> tuple:
    """The cutout's pixels are the source's in its box, its WCS is the source's shifted by the
    box origin; returns the box."""
    hdul = fits.open(io.BytesIO(body))
    assert hdul[0].header["BITPIX"] == -32
    x0, y0, w, h = box_of(hdul, header)
    assert x0 >= 0 and y0 >= 0 and x0 + w <= data.shape[1] and y0 + h <= data.shape[0]
    np.testing.assert_array_equal(hdul[0].data, data[y0:y0 + h, x0:x0 + w])
    cut_wcs = WCS(hdul[0].header)
    cx, cy = cut_wcs.world_to_pixel(centre)
    sx, sy = wcs.world_to_pixel(centre)
    assert abs(cx + x0 - sx) < 1e-6 and abs(cy + y0 - sy) < 1e-6
    corner = cut_wcs.pixel_to_world(w - 1, 0)
    assert corner.separation(wcs.pixel_to_world(x0 + w - 1, y0)).arcsec < 1e-6
    return x0, y0, w, h


def check_covers(box, inside: np.ndarray):
    """Every pixel `inside` (a boolean image) holds lies in the box, and the box reaches at
    most one pixel beyond them."""
    x0, y0, w, h = box
    ys, xs = np.nonzero(inside)
    assert len(xs), "the region holds no pixel centre"
    assert xs.min() >= x0 and xs.max() < x0 + w and ys.min() >= y0 and ys.max() < y0 + h, \
        (box, xs.min(), xs.max(), ys.min(), ys.max())
    assert x0 >= xs.min() - 1 and x0 + w - 1 <= xs.max() + 1, (box, xs.min(), xs.max())
    assert y0 >= ys.min() - 1 and y0 + h - 1 <= ys.max() + 1, (box, ys.min(), ys.max())


def pixel_centres(wcs, shape) -> SkyCoord:
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    return wcs.pixel_to_world(xs, ys)


def test_pyvo_circle_through_datalink(demo, vis):
    from pyvo.dal.adhoc import DatalinkResults
    rec, path, data, wcs, header = vis
    assert rec.getdataformat() == "application/x-votable+xml;content=datalink"
    links = DatalinkResults.from_result_url(rec.getdataurl())
    # (include_narrower would fetch the DataLink vocabulary from the network.)
    this = next(links.bysemantics("#this", include_narrower=False))
    assert requests.get(this.access_url).content == path.read_bytes()
    proc = links.get_first_proc()
    assert proc.semantics == "#cutout"
    centre = wcs.pixel_to_world(150.3, 300.7)
    radius = 4.2 * u.arcsec
    body = proc.processed(circle=(centre.ra.deg, centre.dec.deg, radius.to_value(u.deg))).read()
    box = check_cutout(body, data, wcs, header, centre)
    check_covers(box, pixel_centres(wcs, data.shape).separation(centre) <= radius)
    assert 83 <= box[2] <= 86, box  # 2 × 42 pixels of 0.1″, plus the pixels the edge touches

    # The same cutout straight from the TAP row: pyvo follows access_url to the descriptor.
    again = rec.processed(circle=(centre.ra.deg, centre.dec.deg, radius.to_value(u.deg))).read()
    assert again == body


def test_pyvo_range_and_polygon(demo, vis):
    from pyvo.dal.adhoc import DatalinkResults, SodaQuery
    rec, path, data, wcs, header = vis
    links = DatalinkResults.from_result_url(rec.getdataurl())
    descriptor = links.get_adhocservice_by_ivoid("ivo://ivoa.net/std/SODA#sync-1.0")
    access_url = next(p.value for p in descriptor.params if p.name == "accessURL")
    centres = pixel_centres(wcs, data.shape)

    a, b = wcs.pixel_to_world(400, 30), wcs.pixel_to_world(250, 140)
    ra1, ra2 = sorted([a.ra.deg, b.ra.deg])
    dec1, dec2 = sorted([a.dec.deg, b.dec.deg])
    query = SodaQuery(access_url, id=rec["obs_publisher_did"], range=(ra1, ra2, dec1, dec2))
    assert query["POS"].startswith("RANGE ")
    response = query.execute_stream()
    query.raise_if_error()
    box = check_cutout(response.read(), data, wcs, header, a)
    ra, dec = centres.ra.deg, centres.dec.deg
    check_covers(box, (ra >= ra1) & (ra <= ra2) & (dec >= dec1) & (dec <= dec2))

    # A triangle (pyvo's polygon converter takes multiples of 3 values). The tile is TAN, so
    # the great-circle edges are straight lines in its pixels: test the centres there.
    corners = [(60.0, 40.0), (300.0, 90.0), (120.0, 420.0)]
    sky = [wcs.pixel_to_world(x, y) for x, y in corners]
    flat = [v for c in sky for v in (c.ra.deg, c.dec.deg)]
    query = SodaQuery.from_resource(links.get_first_proc(), descriptor, polygon=flat)
    assert query["POLYGON"].count(" ") == 5
    response = query.execute_stream()
    query.raise_if_error()
    box = check_cutout(response.read(), data, wcs, header, sky[0])
    ys, xs = np.mgrid[0:data.shape[0], 0:data.shape[1]]
    inside = np.zeros(data.shape, bool)
    for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1]):
        crosses = (y1 > ys) != (y2 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < at)
    check_covers(box, inside)


def sync(demo, **params):
    return requests.get(demo.base + "/soda/sync", params=params)


def test_sub_section_matches_astropy(demo, vis):
    rec, path, data, wcs, header = vis
    r = sync(demo, ID=rec["obs_publisher_did"], SUB="[101:180,201:260]")
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    hdul = fits.open(io.BytesIO(r.content))
    np.testing.assert_array_equal(hdul[0].data, data[200:260, 100:180])
    assert hdul[0].header["CRPIX1"] == header["CRPIX1"] - 100
    assert hdul[0].header["CRPIX2"] == header["CRPIX2"] - 200
    # Beyond the image: clipped to it.
    r = sync(demo, ID=rec["obs_publisher_did"], SUB="[0][500:600,*]")
    np.testing.assert_array_equal(fits.open(io.BytesIO(r.content))[0].data, data[:, 499:])


def test_errors_and_no_overlap(demo, vis):
    rec = vis[0]
    did = rec["obs_publisher_did"]
    r = sync(demo, ID=did, CIRCLE="10 10 0.01")
    assert r.status_code == 204 and r.content == b""
    for params, status, start in [
        (dict(ID=did, POS="CIRCLE 1 2"), 400, "UsageError"),
        (dict(ID=did, CIRCLE="1 95 0.1"), 400, "UsageError"),
        (dict(ID=did, CIRCLE="1 2 0"), 400, "UsageError"),
        (dict(ID=did, CIRCLE="nan 2 0.1"), 400, "UsageError"),
        (dict(ID=[did, did]), 400, "MultiValuedParamNotSupported"),
        (dict(ID="euclid_demo/../../etc/passwd"), 404, "UsageError"),
        (dict(ID="/etc/passwd"), 404, "UsageError"),
    ]:
        r = sync(demo, **params)
        assert r.status_code == status, (params, r.text)
        assert r.headers["content-type"].startswith("text/plain"), r.headers
        assert r.text.startswith(start + ": "), r.text
        assert str(demo.cache_dir) not in r.text


def test_async_job_one_result_per_position(demo, vis):
    rec, path, data, wcs, header = vis
    did = rec["obs_publisher_did"]
    positions = [wcs.pixel_to_world(100, 100), wcs.pixel_to_world(400, 200)]
    pos = [f"CIRCLE {c.ra.deg} {c.dec.deg} {2 / 3600}" for c in positions] + ["CIRCLE 10 10 0.01"]
    r = requests.post(demo.base + "/soda/async", data=[("ID", did)] + [("POS", p) for p in pos]
                      + [("PHASE", "RUN")], allow_redirects=False)
    assert r.status_code == 303, r.text
    job = r.headers["location"]
    deadline = time.monotonic() + 60
    while True:
        phase = requests.get(job + "/phase").text.strip()
        if phase not in ("PENDING", "QUEUED", "EXECUTING") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert phase == "COMPLETED", requests.get(job).text
    ns = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}
    results = ET.fromstring(requests.get(job + "/results").content).findall("uws:result", ns)
    assert [e.get("id") for e in results] == ["result-1", "result-2", "result-3"]
    for n, (p, c) in enumerate(zip(pos, positions), start=1):
        body = requests.get(f"{job}/results/result-{n}").content
        assert body == sync(demo, ID=did, POS=p).content
        check_cutout(body, data, wcs, header, c)
    last = requests.get(f"{job}/results/result-3")
    assert last.headers["content-type"].startswith("text/plain")
    assert last.text.startswith("UsageError: "), last.text


def test_capabilities(demo):
    root = ET.fromstring(requests.get(demo.base + "/soda/capabilities").content)
    ids = {c.get("standardID"): c.find("interface/accessURL").text for c in root.iter("capability")}
    assert ids["ivo://ivoa.net/std/SODA#sync-1.0"] == demo.base + "/soda/sync"
    assert ids["ivo://ivoa.net/std/SODA#async-1.0"] == demo.base + "/soda/async"


def test_astroquery_euclid_get_cutout(demo, vis, tmp_path, monkeypatch):
    """`Euclid.get_cutout` as a Euclid notebook calls it, with only the archive's base URL
    changed, and FILEPATH from insitu's own mosaic_product table."""
    from astroquery.esa.euclid import EuclidClass, conf
    rec, path, data, wcs, header = vis
    environment = dict(conf.ENVIRONMENTS["PDR"], url_server=demo.base + "/")
    monkeypatch.setitem(conf.ENVIRONMENTS, "PDR", environment)
    euclid = EuclidClass(environment="PDR", show_server_messages=False)
    row = requests.get(demo.tap + "/sync", params=dict(
        LANG="ADQL", FORMAT="csv",
        QUERY=f"SELECT datalabs_path, file_name, tile_index FROM euclid_demo.mosaic_product "
              f"WHERE file_name = '{path.name}'")).text.splitlines()[1].split(",")
    centre = wcs.pixel_to_world(256.0, 30.0)
    files = euclid.get_cutout(file_path=f"{row[0]}/{row[1]}", instrument="VIS", id=row[2],
                              coordinate=centre, radius=1.5 * u.arcsec,
                              output_file=str(tmp_path / "cutout.fits"))
    assert files == [str(tmp_path / "cutout.fits")]
    body = Path(files[0]).read_bytes()
    box = check_cutout(body, data, wcs, header, centre)
    check_covers(box, pixel_centres(wcs, data.shape).separation(centre) <= 1.5 * u.arcsec)
    # The box SODA cuts for the same circle (astroquery's RA, from hours, may differ in the
    # last digit, so compare boxes rather than bytes).
    soda = sync(demo, ID=rec["obs_publisher_did"],
                CIRCLE=f"{centre.ra.deg} {centre.dec.deg} {1.5 / 3600}").content
    assert box == box_of(fits.open(io.BytesIO(soda)), header)
    # Over the archive's 0.5° limit: astroquery refuses it before asking.
    with pytest.raises(ValueError):
        euclid.get_cutout(file_path=f"{row[0]}/{row[1]}", instrument="VIS", id=row[2],
                          coordinate=centre, radius=0.6 * u.deg)
    # The service refuses it too.
    r = requests.post(demo.base + "/sas-cutout/cutout", data=dict(
        FILEPATH=f"{row[0]}/{row[1]}", POS=f"CIRCLE,{centre.ra.deg},{centre.dec.deg},0.6"))
    assert r.status_code == 400 and "0.5" in r.text
