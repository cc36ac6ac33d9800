"""The `insitu` Python package (the wheel `.ci/test` builds and installs) against astropy:
cutouts equal `Cutout2D` of the physical data (float and scaled integer images, sky and
pixel positions, every mode, positions off the edges), `cutouts` equals a loop of `cutout`,
`tensors` equals Pillow's resize with astropy's interval and stretch, a `Volume` of tiles
cuts as `Cutout2D` does and makes a catalogue's tensors from those cutouts, and bad input
raises clear errors.
"""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.visualization import AsinhStretch, PercentileInterval
from astropy.wcs import WCS
from PIL import Image

import insitu


def header(nx, ny):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.2
    h["CRPIX1"], h["CRPIX2"] = nx / 2 + 0.5, ny / 2 + 0.5
    h["CD1_1"], h["CD2_2"] = -0.1 / 3600, 0.1 / 3600
    h["CD1_2"] = h["CD2_1"] = 0.0
    return h


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("images")
    nx, ny = 300, 220
    data = rng.normal(0, 1, (ny, nx)).astype(np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx]
    data += 50 * np.exp(-np.hypot(xx - 140.3, yy - 101.7) / 9).astype(np.float32)
    float_path = folder / "float.fits"
    fits.PrimaryHDU(data, header(nx, ny)).writeto(float_path)
    stored = rng.integers(-3000, 3000, (ny, nx)).astype(np.int16)
    h = header(nx, ny)
    h["BSCALE"], h["BZERO"] = 0.25, 100.0
    int_path = folder / "scaled.fits"
    fits.PrimaryHDU(stored, h).writeto(int_path)
    with fits.open(int_path) as hdul:  # astropy applies BSCALE/BZERO as insitu does
        physical = hdul[0].data.astype(np.float32)
    return {"float": (float_path, data), "scaled": (int_path, physical), "wcs": WCS(header(nx, ny))}


def astropy_cutout(data, position, size, wcs=None, mode="partial"):
    return Cutout2D(data, position, size, wcs=wcs, mode=mode, fill_value=np.nan, copy=True).data


@pytest.mark.parametrize("kind", ["float", "scaled"])
@pytest.mark.parametrize("px,py,size", [(140.3, 101.7, 32), (0.2, 3.6, 17), (298.9, 219.4, 40),
                                        (-10.0, 50.0, 30), (150.0, 110.0, 1)])
def test_cutouts_equal_cutout2d(images, kind, px, py, size):
    path, data = images[kind]
    wcs = images["wcs"]
    img = insitu.open(path)
    assert img.shape == data.shape
    got = img.cutout(x=px, y=py, size=size)
    np.testing.assert_array_equal(got, astropy_cutout(data, (px, py), size))
    ra, dec = wcs.pixel_to_world_values(px, py)
    sky = SkyCoord(ra, dec, unit="deg")
    got = img.cutout(ra=float(ra), dec=float(dec), size=size)
    np.testing.assert_array_equal(got, astropy_cutout(data, sky, size, wcs))
    got = img.cutout(ra=float(ra), dec=float(dec), size_arcsec=size * 0.1 + 0.04)
    np.testing.assert_array_equal(got, astropy_cutout(data, sky, (size * 0.1 + 0.04) * u.arcsec, wcs))
    if -size / 2 < px < data.shape[1] + size / 2:
        got = img.cutout(x=px, y=py, size=size, mode="trim")
        np.testing.assert_array_equal(got, astropy_cutout(data, (px, py), size, mode="trim"))


def test_bulk_cutouts_equal_single_ones(images):
    path, data = images["float"]
    wcs = images["wcs"]
    rng = np.random.default_rng(1)
    px, py = rng.uniform(-5, 305, 200), rng.uniform(-5, 225, 200)
    ra, dec = wcs.pixel_to_world_values(px, py)
    many = insitu.cutouts(path, ra, dec, size=24)
    assert many.shape == (200, 24, 24) and many.dtype == np.float32
    img = insitu.open(path)
    for k in range(0, 200, 17):
        np.testing.assert_array_equal(many[k], img.cutout(ra=ra[k], dec=dec[k], size=24))
        sky = SkyCoord(ra[k], dec[k], unit="deg")
        np.testing.assert_array_equal(many[k], astropy_cutout(data, sky, 24, wcs))


def test_tensors_equal_pillow_and_astropy(images):
    path, data = images["float"]
    img = insitu.open(path)
    cuts = [img.cutout(x=140.3 + dx, y=101.7, size=s) for dx, s in ((0, 80), (30, 50), (-60, 120))]
    t, device = insitu.tensors([[c, c * 3 + 1] for c in cuts], 64, device="cpu", return_device=True)
    assert t.shape == (3, 2, 64, 64) and t.dtype == np.float32 and device == "CPU"
    for i, c in enumerate(cuts):
        for b, plane in enumerate((c, c * 3 + 1)):
            img64 = np.asarray(Image.fromarray(plane.astype(np.float32), mode="F")
                               .resize((64, 64), Image.LANCZOS), dtype=np.float32)
            lo, hi = PercentileInterval(99.5).get_limits(img64)
            want = AsinhStretch(0.1)(np.clip((img64 - lo) / (hi - lo), 0, 1))
            np.testing.assert_allclose(t[i, b], want, rtol=0, atol=1e-4)
    raw = insitu.tensors([[cuts[0]]], (20, 30), stretch="none", filter="bilinear", device="cpu")
    want = np.asarray(Image.fromarray(cuts[0], mode="F").resize((30, 20), Image.BILINEAR))
    np.testing.assert_allclose(raw[0, 0], want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_gpu_device_gives_the_cpu_tensor(images):
    path, _ = images["float"]
    img = insitu.open(path)
    planes = [[img.cutout(x=100.0 + 7 * k, y=90.0, size=40 + k)] for k in range(5)]
    cpu = insitu.tensors(planes, 32, device="cpu")
    gpu, device = insitu.tensors(planes, 32, device="gpu", return_device=True)
    print(f"\ninsitu.tensors(device='gpu') ran on: {device}")
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-5)


def test_bad_input_raises_clear_errors(images, tmp_path):
    path, _ = images["float"]
    img = insitu.open(path)
    with pytest.raises(OSError):
        insitu.open(tmp_path / "missing.fits")
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    with pytest.raises(OSError):
        insitu.open(broken)
    for kwargs, why in [
        (dict(x=10.0, size=5), "ra and dec, or x and y"),
        (dict(x=10.0, y=10.0), "size"),
        (dict(x=10.0, y=10.0, size=5, mode="loose"), "mode"),
        (dict(x=-100.0, y=10.0, size=5, mode="strict"), "does not overlap"),
        (dict(x=1.0, y=10.0, size=5, mode="strict"), "strict"),
        (dict(x=10.0, y=10.0, size=5, plane=3), "plane"),
    ]:
        with pytest.raises(ValueError, match=why):
            img.cutout(**kwargs)
    with pytest.raises(ValueError, match="trim"):
        img.cutouts(np.zeros(2), np.zeros(2), size=4, mode="trim")
    plane = np.zeros((4, 4), np.float32)
    for kwargs, why in [
        (dict(size=0), "empty"),
        (dict(size=8, filter="cubic"), "filter"),
        (dict(size=8, stretch="gamma"), "stretch"),
        (dict(size=8, percentile=120), "percentiles"),
        (dict(size=8, device="tpu"), "device"),
    ]:
        with pytest.raises(ValueError, match=why):
            insitu.tensors([[plane]], **kwargs)
    with pytest.raises(ValueError, match="channels"):
        insitu.tensors([[plane], [plane, plane]], 8)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A folder of two tiles side by side on one tangent plane, in two bands."""
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("volume")
    nx, ny = 120, 90
    tiles = {}
    for band in ["VIS", "NIR_H"]:
        for k, dx in enumerate([0, nx]):
            h = header(nx, ny)
            h["CRPIX1"] = nx / 2 + 0.5 - dx  # tile k spans x = dx .. dx + nx of the plane
            h["FILTER"] = band
            data = rng.normal(0, 1, (ny, nx)).astype(np.float32)
            data[40:50, 50:60] += 30 * (k + 1)
            fits.PrimaryHDU(data, h).writeto(root / f"{band}_{k}.fits")
            tiles[band, k] = (data, WCS(h))
    return root, tiles


def test_volume_cuts_and_tensors_equal_cutout2d(volume, tmp_path):
    root, tiles = volume
    before = sorted(p.name for p in root.iterdir())
    vol = insitu.Volume(root, cache_dir=tmp_path / "cache")
    assert vol.bands == ["NIR_H", "VIS"] and len(vol) == 4
    assert sorted(p.name for p in root.iterdir()) == before, "nothing is written into the volume"
    # Positions well inside one tile or the other, from their own WCS.
    spots = [(0, 30.2, 44.7), (1, 70.0, 20.4), (0, 55.5, 45.1), (1, 20.3, 60.8)]
    sky = [tiles["VIS", k][1].pixel_to_world(x, y) for k, x, y in spots]
    ra = np.array([c.ra.deg for c in sky] + [10.0])  # the last one is off every tile
    dec = np.array([c.dec.deg for c in sky] + [-30.0])
    bands = ["VIS", "NIR_H"]
    planes = [[astropy_cutout(tiles[b, k][0], c, 24, wcs=tiles[b, k][1]) for b in bands]
              for (k, _, _), c in zip(spots, sky)]
    for (k, _, _), c, item in zip(spots, sky, planes):
        for b, want in zip(bands, item):
            got = vol.cutout(c.ra.deg, c.dec.deg, b, size=24)
            np.testing.assert_array_equal(got, want)
    t = vol.tensors(ra, dec, bands, 32, fov_pixels=24, device="cpu")
    assert t.shape == (5, 2, 32, 32) and t.dtype == np.float32
    want = insitu.tensors(planes, 32, device="cpu")
    np.testing.assert_array_equal(t[:4], want)
    assert np.all(t[4] == 0.0), "a row off the tiles is a plane of fill"
    reused = np.full(t.shape, -7.0, np.float32)
    assert vol.tensors(ra, dec, bands, 32, fov_pixels=24, device="cpu", out=reused) is reused
    np.testing.assert_array_equal(reused, t)
    # A field of view in arcsec per row follows each row, as Cutout2D's angular size.
    fov = np.array([2.0, 3.0, 2.4, 1.5, 2.0])
    t = vol.tensors(ra, dec, ["VIS"], 16, fov_arcsec=fov, stretch="none", filter="bilinear",
                    device="cpu")
    for row, ((k, _, _), c) in enumerate(zip(spots, sky)):
        data, wcs = tiles["VIS", k]
        cut = Cutout2D(data, c, fov[row] * u.arcsec, wcs=wcs, mode="partial",
                       fill_value=np.nan).data
        want = insitu.tensors([[cut]], 16, stretch="none", filter="bilinear", device="cpu")
        np.testing.assert_array_equal(t[row], want[0])


def test_volume_bad_input_raises_clear_errors(volume, tmp_path):
    root, _ = volume
    vol = insitu.Volume(root, cache_dir=tmp_path)
    ra, dec = np.array([150.0]), np.array([2.2])
    for kwargs, why in [
        (dict(bands=["NIR_J"], size=8, fov_pixels=8), "not in the volume"),
        (dict(bands=[], size=8, fov_pixels=8), "bands is empty"),
        (dict(bands=["VIS"], size=8), "fov_arcsec or fov_pixels"),
        (dict(bands=["VIS"], size=8, fov_pixels=0), "positive"),
        (dict(bands=["VIS"], size=0, fov_pixels=8), "empty"),
    ]:
        with pytest.raises(ValueError, match=why):
            vol.tensors(ra, dec, **kwargs)
    with pytest.raises(ValueError, match="one value per row"):
        vol.tensors(ra, np.array([1.0, 2.0]), ["VIS"], 8, fov_pixels=8)
    for out, why in [(np.zeros((2, 1, 8, 8), np.float32), "shape"),
                     (np.zeros((1, 1, 8, 16), np.float32)[..., ::2], "C-contiguous")]:
        with pytest.raises(ValueError, match=why):
            vol.tensors(ra, dec, ["VIS"], 8, fov_pixels=8, out=out)
    with pytest.raises(ValueError, match="no tile"):
        vol.cutout(10.0, -30.0, "VIS", size=8)
    with pytest.raises(OSError, match="not a folder|cannot read"):
        insitu.Volume(tmp_path / "missing", cache_dir=tmp_path)
