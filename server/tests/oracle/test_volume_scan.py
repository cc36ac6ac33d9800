"""The volume scanner against astropy.wcs: tiles written here with astropy (north-up MER-like,
rotated, east-right, across RA 0, near the pole, non-square SIN) are mounted with
`insitu serve --volume v=DIR`; the centres, corner polygons, fields of view and pixel scales
that `v.mosaic_product` and `ivoa.obscore` return over TAP must match astropy's
`pixel_to_world_values`, `calc_footprint` and `proj_plane_pixel_scales`.
"""

import csv
import io
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

TOL_DEG = 1e-9
READY = re.compile(r"on (http://127\.0\.0\.1:\d+)/tap\b")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# name: (naxis1, naxis2, crval, pixel scale deg, rotation deg, east_left, projection, tile id)
TILES = {
    "mer/EUC_MER_BGSUB-MOSAIC-VIS_TILE102018211-F95D3B_20241017T142513.473158Z_00.00.fits":
        (80, 80, (267.38, 65.5), 0.1 / 3600, 0.0, True, "TAN", None),
    "rotated/r30.fits": (60, 90, (150.0, 2.2), 0.2 / 3600, 30.0, True, "TAN", 7),
    "flipped/east_right.fits": (50, 50, (10.0, -30.0), 0.5 / 3600, 0.0, False, "TAN", None),
    "wrap.fits": (100, 40, (0.0005, 12.0), 1.0 / 3600, -12.0, True, "TAN", None),
    "pole/near_pole.fits": (70, 70, (45.0, 89.99), 1.0 / 3600, 5.0, True, "TAN", None),
    "sin.fits": (40, 70, (200.0, -45.0), 2.0 / 3600, 0.0, True, "SIN", None),
}


def tile_wcs(n1, n2, crval, scale, rotation, east_left, projection) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    w.wcs.crval = crval
    w.wcs.crpix = [(n1 + 1) / 2 + 3.25, (n2 + 1) / 2 - 1.5]  # off-centre on purpose
    c, s = np.cos(np.radians(rotation)), np.sin(np.radians(rotation))
    sx = -scale if east_left else scale
    w.wcs.cd = [[sx * c, -scale * s], [sx * s, scale * c]]
    w.wcs.radesys = "ICRS"
    return w


def write_volume(root):
    wcss = {}
    for rel, (n1, n2, crval, scale, rot, east_left, proj, tile) in TILES.items():
        w = tile_wcs(n1, n2, crval, scale, rot, east_left, proj)
        header = w.to_header()
        header["FILTER"] = "VIS"
        header["INSTRUME"] = "TEST"
        if tile is not None:
            header["TILEID"] = tile
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.zeros((n2, n1), dtype=np.float32)
        fits.PrimaryHDU(data=data, header=header).writeto(path)
        wcss[rel] = WCS(fits.getheader(path))
    return wcss


class Server:
    def __init__(self, binary, volume, work):
        self.cmd = [str(binary), "serve", "--listen", "127.0.0.1:0",
                    "--volume", f"v={volume}",
                    "--cache-dir", str(work / "cache"), "--state-dir", str(work / "state")]
        self.lines = []
        self.base = None
        self.ready = threading.Event()

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("insitu serve did not start:\n" + "\n".join(self.lines[-30:]))
        return self

    def _read(self):
        for line in self.proc.stderr:
            line = ANSI.sub("", line.rstrip("\n"))
            self.lines.append(line)
            m = READY.search(line)
            if m and self.base is None:
                self.base = m.group(1)
                self.ready.set()

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def query(self, adql):
        params = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": "csv"})
        with urllib.request.urlopen(f"{self.base}/tap/sync?{params}", timeout=60) as r:
            text = r.read().decode()
        return list(csv.DictReader(io.StringIO(text)))


def sky_diff(a, b):
    """Angular distance, degrees."""
    return SkyCoord(*a, unit="deg").separation(SkyCoord(*b, unit="deg")).deg


def winding(points, centre):
    """Twice the signed area seen from the sphere's centre (east left, north up), in the
    gnomonic plane at `centre`: > 0 for counter-clockwise (DALI 1.1 polygon winding)."""
    c = SkyCoord(*centre, unit="deg")
    frame = c.skyoffset_frame()
    pts = SkyCoord([p[0] for p in points], [p[1] for p in points], unit="deg").transform_to(frame)
    x = -pts.lon.deg  # lon grows east; east is to the left
    y = pts.lat.deg
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def test_centres_and_footprints_match_astropy(insitu, tmp_path):
    volume = tmp_path / "volume"
    wcss = write_volume(volume)
    with Server(insitu, volume, tmp_path) as server:
        rows = server.query("SELECT ra, dec, s_region, datalabs_path, file_name, naxis1, naxis2, "
                            "tile_index FROM v.mosaic_product")
        obscore = server.query("SELECT obs_publisher_did, s_ra, s_dec, s_fov, s_resolution, "
                               "s_region FROM ivoa.obscore")
    assert len(rows) == len(TILES) and len(obscore) == len(TILES)
    by_rel = {}
    for row in rows:
        folder = row["datalabs_path"]
        assert folder == "v" or folder.startswith("v/")
        rel = (folder[2:] + "/" if folder != "v" else "") + row["file_name"]
        by_rel[rel] = row
    assert set(by_rel) == set(TILES)
    for rel, row in by_rel.items():
        n1, n2 = TILES[rel][0], TILES[rel][1]
        assert (int(row["naxis1"]), int(row["naxis2"])) == (n1, n2)
        w = wcss[rel]
        centre = w.pixel_to_world_values((n1 - 1) / 2, (n2 - 1) / 2)
        got = (float(row["ra"]), float(row["dec"]))
        assert sky_diff(got, centre) < TOL_DEG, rel

        words = row["s_region"].split()
        assert words[:2] == ["POLYGON", "ICRS"], row["s_region"]
        poly = np.array(words[2:], dtype=float).reshape(4, 2)
        foot = w.calc_footprint(axes=(n1, n2))
        # The same four corners, in calc_footprint's order or reversed (to wind CCW).
        forward = max(sky_diff(p, f) for p, f in zip(poly, foot))
        backward = max(sky_diff(p, f) for p, f in zip(poly, foot[::-1]))
        assert min(forward, backward) < TOL_DEG, (rel, poly, foot)
        assert winding(poly, centre) > 0, (rel, poly)

        tile = TILES[rel][7]
        want_tile = tile if tile is not None else (102018211 if "TILE102018211" in rel else None)
        assert row["tile_index"] == ("" if want_tile is None else str(want_tile))

    for row in obscore:
        rel = row["obs_publisher_did"].split("?", 1)[1]
        assert row["obs_publisher_did"] == f"ivo://insitu/v?{rel}"
        n1, n2 = TILES[rel][0], TILES[rel][1]
        w = wcss[rel]
        centre = w.pixel_to_world_values((n1 - 1) / 2, (n2 - 1) / 2)
        assert sky_diff((float(row["s_ra"]), float(row["s_dec"])), centre) < TOL_DEG
        assert row["s_region"] == by_rel[rel]["s_region"]
        # s_fov: the diameter of the circle around the centre through the outer pixel edges.
        edges = w.pixel_to_world_values([-0.5, -0.5, n1 - 0.5, n1 - 0.5],
                                        [-0.5, n2 - 0.5, n2 - 0.5, -0.5])
        radius = max(sky_diff(centre, (a, d)) for a, d in zip(*edges))
        assert abs(float(row["s_fov"]) - 2 * radius) < TOL_DEG, rel
        scale = np.sqrt(np.prod(proj_plane_pixel_scales(w))) * 3600
        assert abs(float(row["s_resolution"]) - scale) < 1e-9, rel
