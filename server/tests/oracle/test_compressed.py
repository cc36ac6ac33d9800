"""Tile-compressed and gzipped images: insitu's cutouts equal Cutout2D on astropy's
decompressed data (astropy decompresses in Python, insitu through cfitsio: two readers)."""

import pytest
from conftest import FITS_DIR, REAL_DIR, command_line
from test_cutout_oracle import check_bulk

# (fixture id, path, HDU astropy reads, --hdu to pass or None for insitu's default)
COMPRESSED = [
    ("rice_int16", FITS_DIR / "comp_rice_int16.fits", 1, None),
    ("rice_float32", FITS_DIR / "comp_rice_float32.fits", 1, None),
    ("gzip1_float32", FITS_DIR / "comp_gzip1.fits", 1, None),
    ("gzip2_int16", FITS_DIR / "comp_gzip2.fits", 1, 1),
    ("hcompress_int16", FITS_DIR / "comp_hcompress.fits", 1, None),
    ("plio_int16", FITS_DIR / "comp_plio.fits", 1, 1),
    ("gzipped_file", FITS_DIR / "proj_tan.fits.gz", 0, None),
    ("real_m13_rice", REAL_DIR / "m13_rice.fits", 1, None),
]


@pytest.mark.parametrize("fid,path,hdu,hdu_arg", COMPRESSED, ids=[c[0] for c in COMPRESSED])
@pytest.mark.parametrize("mode,size", [("partial", 7), ("partial", 64), ("trim", 8), ("strict", 25)])
def test_compressed_matches_cutout2d(tmp_path, insitu, fid, path, hdu, hdu_arg, mode, size):
    problems, args, n = check_bulk(tmp_path, fid, path, hdu, hdu_arg, mode, size)
    assert n > 0
    assert not problems, f"{len(problems)} problem(s):\n  " + "\n  ".join(problems[:6]) + \
        f"\n  repro: {command_line(args)}"
