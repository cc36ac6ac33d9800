"""Formats around the cutouts: a FITS binary table catalogue gives the same cutouts as the
CSV one, the multi-extension output holds the same HDUs as the folder, and a plane range of a
cube is cut with its spectral reference pixel moved."""

import numpy as np
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS
from astropy.table import Table

from conftest import FITS_DIR, load_source, pixel_positions, run_insitu, run_ok, sky_positions, write_catalog


def _rows(path, n=40, seed=7):
    src = load_source(path, 0)
    rng = np.random.default_rng(seed)
    pixels = pixel_positions(src.raw.shape[-2:], rng, n)
    return [(f"s{i:03d}", ra, dec) for i, (ra, dec, _) in enumerate(sky_positions(src, pixels))]


def test_fits_table_catalogue_equals_csv(tmp_path, insitu):
    image = FITS_DIR / "proj_tan.fits"
    rows = _rows(image)
    csv = write_catalog(tmp_path / "cat.csv", rows)
    table = Table(rows=rows, names=("id", "ra", "dec"), dtype=("U16", "f8", "f8"))
    fits_cat = tmp_path / "cat.fits"
    table.write(fits_cat)
    run_ok("cutout", image, "--catalog", csv, "--size", 9, "--out-dir", tmp_path / "a", "--quiet", "--skip-bad")
    run_ok("cutout", image, "--catalog", fits_cat, "--size", 9, "--out-dir", tmp_path / "b", "--quiet",
           "--skip-bad")
    a = sorted(p.name for p in (tmp_path / "a").iterdir())
    b = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert a == b and len(a) > 0
    for name in a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_mef_output_holds_the_folder_cutouts(tmp_path, insitu):
    image = FITS_DIR / "blank_int16.fits"
    rows = _rows(image, n=30, seed=3)
    csv = write_catalog(tmp_path / "cat.csv", rows)
    run_ok("cutout", image, "--catalog", csv, "--size", 8, "--out-dir", tmp_path / "d", "--quiet", "--skip-bad")
    run_ok("cutout", image, "--catalog", csv, "--size", 8, "--mef", tmp_path / "all.fits", "--quiet",
           "--skip-bad")
    written = sorted(p.stem for p in (tmp_path / "d").iterdir())
    with fits.open(tmp_path / "all.fits", do_not_scale_image_data=True) as mef:
        assert mef[0].header["NCUTOUT"] == len(written) == len(mef) - 1
        names = [h.header["EXTNAME"] for h in mef[1:]]
        assert sorted(names) == written
        for ext in mef[1:]:
            with fits.open(tmp_path / "d" / f"{ext.header['EXTNAME']}.fits",
                           do_not_scale_image_data=True) as one:
                np.testing.assert_array_equal(ext.data, one[0].data)
                for key in ("CRPIX1", "CRPIX2", "BLANK", "BITPIX"):
                    assert ext.header[key] == one[0].header[key], key


def test_cube_plane_range(tmp_path, insitu):
    image = FITS_DIR / "cube.fits"
    out = tmp_path / "planes.fits"
    run_ok("cutout", image, "--pixel=10.3,12.6", "--size", 7, "--planes", "1:4", "-o", out, "--quiet")
    with fits.open(image) as src, fits.open(out) as got:
        data = got[0].data
        assert data.shape == (3, 7, 7)
        for k, plane in enumerate(range(1, 4)):
            want = Cutout2D(src[0].data[plane], (10.3, 12.6), 7, mode="partial").data
            np.testing.assert_array_equal(data[k], want)
        # Cutout plane 0 is source plane 1: same spectral coordinate.
        w_src, w_out = WCS(src[0].header), WCS(got[0].header)
        spec_src = w_src.sub([3]).pixel_to_world_values(1.0)
        spec_out = w_out.sub([3]).pixel_to_world_values(0.0)
        assert np.isclose(spec_src, spec_out, rtol=0, atol=1e-9 * max(1.0, abs(float(spec_src))))


def test_bulk_over_tiles_picks_the_tile_holding_each_row(tmp_path, insitu):
    """Two tiles of one image (left and right halves): each row is cut from the tile that
    holds it, bit-identical to Cutout2D on the whole image; a row off both tiles is bad."""
    from astropy.coordinates import SkyCoord

    with fits.open(FITS_DIR / "bitpix-32.fits") as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.copy()
    ny, nx = data.shape
    half = nx // 2
    tiles = []
    for k, (lo, hi) in enumerate([(0, half), (half, nx)]):
        h = header.copy()
        h["CRPIX1"] = header["CRPIX1"] - lo
        path = tmp_path / f"tile{k}.fits"
        fits.PrimaryHDU(data[:, lo:hi], h).writeto(path)
        tiles.append(path)
    wcs = WCS(header)
    size = 5
    pixels = [(6.2, 20.3), (half - 4.6, 30.1), (half + 3.7, 12.4), (nx - 6.3, ny - 7.2)]
    rows = []
    for i, (x, y) in enumerate(pixels):
        sky = wcs.pixel_to_world(x, y).icrs
        rows.append((f"p{i}", float(sky.ra.deg), float(sky.dec.deg)))
    off = wcs.pixel_to_world(nx + 50.3, ny / 2).icrs
    rows.append(("off", float(off.ra.deg), float(off.dec.deg)))
    cat = write_catalog(tmp_path / "cat.csv", rows)
    out = tmp_path / "out"
    args = ("cutout", *tiles, "--catalog", cat, "--size", size, "--mode", "strict", "--out-dir", out)
    r = run_insitu(*args)
    assert r.returncode != 0 and "not on any of the 2 images" in r.stderr and "row 5" in r.stderr, r.stderr
    assert not out.exists()
    run_ok(*args, "--skip-bad", "--quiet")
    for name, ra, dec in rows[:-1]:
        want = Cutout2D(data, SkyCoord(ra, dec, unit="deg"), size, wcs=wcs, mode="strict").data
        got = fits.getdata(out / f"{name}.fits")
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert not (out / "off.fits").exists()


def test_size_in_arcsec_rounds_as_cutout2d(tmp_path, insitu):
    """`--size-arcsec` gives Cutout2D's shape (np.round of size / proj_plane_pixel_scales) and
    pixels, on fixtures with different pixel scales."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import proj_plane_pixel_scales

    for name in ("bitpix-32.fits", "proj_tan.fits", "sip.fits", "galactic.fits"):
        with fits.open(FITS_DIR / name) as hdul:
            header, data = hdul[0].header, hdul[0].data
        wcs = WCS(header)
        scale = proj_plane_pixel_scales(wcs.celestial)[0] * 3600.0
        ny, nx = data.shape[-2:]
        sky = wcs.celestial.pixel_to_world(nx / 2 + 0.3, ny / 2 - 0.2).icrs
        for pixels in (3.5, 6.2, 9.5):
            arcsec = pixels * scale
            out = tmp_path / f"{name}_{pixels}.fits"
            run_ok("cutout", FITS_DIR / name, f"--ra={float(sky.ra.deg)!r}", f"--dec={float(sky.dec.deg)!r}",
                   "--size-arcsec", repr(float(arcsec)), "-o", out, "--quiet")
            want = Cutout2D(data, SkyCoord(sky.ra, sky.dec), arcsec * u.arcsec, wcs=wcs.celestial,
                            mode="partial").data
            got = fits.getdata(out)
            assert got.shape == want.shape, (name, pixels, got.shape, want.shape)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {pixels}")
