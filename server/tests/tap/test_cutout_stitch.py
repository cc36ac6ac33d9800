"""`GET /cutout` against astropy, on the demo volume `euclid_demo` (2×2 adjacent 512² VIS, NIR_Y
and NIR_H tiles, each with its own tangent point) that `insitu serve` writes into its cache dir
when started with no table or volume.

Oracles: inside one tile, `astropy.nddata.Cutout2D` of that tile (data and WCS, exactly);
across the corner of the four tiles, for every output pixel its sky position by the cutout's
own WCS (astropy), the tile holding it (astropy `world_to_pixel_values`: pixel position in
[-0.5, N - 0.5)) and that tile's nearest pixel (floor(p + 0.5)), read from the tile files.
"""

import io
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

from conftest import Server

DEMO_FOLDER = "demo-volume-v2"
# The block's centre: the corner the four tiles share (see server/src/volumes/demo.rs).
CORNER = (267.38, 65.5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, insitu):
    s = Server(tmp_path_factory.mktemp("cutout"))
    s.start()
    yield s
    s.stop()


def demo_tiles(server: Server, band: str):
    """(did, WCS, data) of every demo tile of a band, read from the server's cache dir."""
    root = server.cache_dir / DEMO_FOLDER
    tiles = []
    for path in sorted(root.glob(f"MER/*/EUC_MER_BGSUB-MOSAIC-{band}_TILE*.fits")):
        with fits.open(path) as hdul:
            did = f"ivo://insitu/euclid_demo?{path.relative_to(root).as_posix()}"
            tiles.append((did, WCS(hdul[0].header), hdul[0].data.astype(np.float32)))
    assert len(tiles) == 4, f"demo tiles of {band} not found under {root}"
    return tiles


def get_cutout(server: Server, **params) -> fits.HDUList:
    r = requests.get(server.base + "/cutout", params=params, timeout=60)
    assert r.status_code == 200, r.text[:400]
    assert r.headers["content-type"] == "application/fits"
    return fits.open(io.BytesIO(r.content))


def tile_list(header) -> list:
    return [header[f"INTILE{n}"] for n in range(1, 100) if f"INTILE{n}" in header]


# 0.3″ north-west of the corner, and the corner itself: there the tiles (each on its own
# tangent plane) leave a hairline gap no tile holds, and the cutout is cut on the nearest tile.
@pytest.mark.parametrize("band,offset", [("VIS", (-0.3, 0.3)), ("NIR_H", (-0.3, 0.3)),
                                         ("VIS", (0.0, 0.0))])
def test_corner_cutout_is_the_nearest_pixel_of_the_tile_holding_it(demo, band, offset):
    tiles = demo_tiles(demo, band)
    # A 20″ cutout reaches 10″ into every tile.
    ra = CORNER[0] + offset[0] / 3600 / np.cos(np.radians(CORNER[1]))
    dec = CORNER[1] + offset[1] / 3600
    hdul = get_cutout(demo, ra=ra, dec=dec, size="20arcsec", band=band)
    assert [h.name for h in hdul[1:]] == [band]
    hdu = hdul[1]
    out = hdu.data
    assert out.dtype.kind == "f" and out.shape == (200, 200)
    # The oracle: each output pixel's sky position, through the cutout's own WCS.
    ny, nx = out.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky_ra, sky_dec = WCS(hdu.header).pixel_to_world_values(xx, yy)
    expected = np.full(out.shape, np.nan, dtype=np.float32)
    best = np.full(out.shape, -2.0)
    source = np.full(out.shape, -1)
    target = SkyCoord(sky_ra, sky_dec, unit="deg")
    for k, (_, wcs, data) in enumerate(tiles):
        x, y = wcs.world_to_pixel_values(sky_ra, sky_dec)
        ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
        n2, n1 = data.shape
        holds = (ix >= 0) & (iy >= 0) & (ix < n1) & (iy < n2)
        # Several tiles holding a pixel: the nearest centre wins (none overlap in the demo).
        c_ra, c_dec = wcs.pixel_to_world_values((n1 - 1) / 2, (n2 - 1) / 2)
        closeness = np.cos(target.separation(SkyCoord(c_ra, c_dec, unit="deg")).rad)
        take = holds & (closeness > best)
        expected[take] = data[iy[take].astype(int), ix[take].astype(int)]
        best[take] = closeness[take]
        source[take] = k
    assert np.array_equal(out, expected, equal_nan=True), \
        f"{np.sum(~((out == expected) | (np.isnan(out) & np.isnan(expected))))} pixels differ"
    # The corner lies inside the cutout: all four tiles give pixels, and no pixel is missing.
    assert set(source.ravel()) == {0, 1, 2, 3}
    assert not np.isnan(out).any()
    # The tile list: the grid tile first (the one holding the position, when one does), then
    # the others; the cutout is on the grid tile's tangent plane.
    listed = tile_list(hdu.header)
    holding = [did for did, wcs, data in tiles
               if all(-0.5 <= p < n - 0.5 for p, n in
                      zip(wcs.world_to_pixel_values(ra, dec), data.shape[::-1]))]
    assert holding == listed[:1] if offset != (0.0, 0.0) else holding == []
    grid = next(wcs for did, wcs, _ in tiles if did == listed[0])
    assert np.array_equal(WCS(hdu.header).wcs.crval, grid.wcs.crval)
    assert sorted(listed) == sorted(did for did, _, _ in tiles)
    # No server path in the answer.
    assert str(demo.cache_dir) not in repr(hdu.header)


@pytest.mark.parametrize("size,astropy_size", [
    ("3.3arcsec", 3.3 * u.arcsec), ("4", 4 * u.arcsec), ("0.05arcmin", 3 * u.arcsec), ("25px", 25)])
def test_cutout_inside_one_tile_is_cutout2d(demo, size, astropy_size):
    tiles = demo_tiles(demo, "VIS")
    did, wcs, data = tiles[2]
    ra, dec = wcs.pixel_to_world_values(100.37, 300.81)
    hdul = get_cutout(demo, ra=float(ra), dec=float(dec), size=size, band="VIS")
    hdu = hdul["VIS"]
    oracle = Cutout2D(data, SkyCoord(ra, dec, unit="deg"), astropy_size, wcs=wcs, mode="partial")
    assert hdu.data.shape == oracle.data.shape
    assert np.array_equal(hdu.data, oracle.data, equal_nan=True)
    got = WCS(hdu.header)
    assert np.array_equal(got.wcs.crpix, oracle.wcs.wcs.crpix)
    assert np.array_equal(got.wcs.crval, oracle.wcs.wcs.crval)
    assert np.array_equal(got.pixel_scale_matrix, oracle.wcs.pixel_scale_matrix)
    assert tile_list(hdu.header) == [did]


def test_one_extension_per_band(demo):
    tiles = demo_tiles(demo, "NIR_H")
    ra, dec = tiles[0][1].pixel_to_world_values(50.0, 60.0)
    hdul = get_cutout(demo, ra=float(ra), dec=float(dec), size="1.5")
    assert hdul[0].header["NAXIS"] == 0
    assert [h.name for h in hdul[1:]] == ["NIR_H", "NIR_Y", "VIS"]
    hdul = get_cutout(demo, ra=float(ra), dec=float(dec), size="1.5", band="vis,nir_h")
    assert [h.name for h in hdul[1:]] == ["VIS", "NIR_H"]
    assert all(h.data.shape == (15, 15) for h in hdul[1:])


def test_errors_are_json(demo):
    for params, status in [({"ra": 10, "dec": -20, "size": 1}, 404),
                           ({"ra": CORNER[0], "dec": CORNER[1], "size": "big"}, 400),
                           ({"ra": CORNER[0], "dec": CORNER[1], "size": 1, "band": "NIR_J"}, 404),
                           ({"ra": CORNER[0], "dec": CORNER[1]}, 400)]:
        r = requests.get(demo.base + "/cutout", params=params, timeout=60)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        message = r.json()["error"]
        assert message and str(Path(demo.cache_dir)) not in message
