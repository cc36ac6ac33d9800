"""`insitu query --format votable|votable-binary2`: astropy.io.votable must parse the output
(verify="exception": any VOTable warning fails) and find exactly the source table's values,
null masks, units, UCDs and descriptions.

The source is a small FITS binary table written here with astropy: TNULL integers, NaN floats,
a logical with an undefined value, strings, unsigned integers, a vector column. Non-ASCII text,
which FITS cannot hold, comes from a UTF-8 CSV table.
"""

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse

from conftest import command_line, error_line, run_insitu

N = 9
FORMATS = ["votable", "votable-binary2"]


def run_ok(*args):
    r = run_insitu(*args)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()}\n  repro: {command_line(args)}"
    return r


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The FITS table, and what each column holds: (values, null mask)."""
    rng = np.random.default_rng(4)
    i16 = rng.integers(-30000, 30000, N).astype(np.int16)
    i16[[1, 6]] = -999
    i32 = rng.integers(-2**31, 2**31, N).astype(np.int32)
    i32[[0, 8]] = [-2**31 + 1, 2**31 - 1]
    i32[4] = 77
    u16 = rng.integers(0, 65536, N).astype(np.uint16)
    u16[2] = 65535
    mag = rng.normal(20, 2, N).astype(np.float32)
    mag[[3, 5]] = np.nan
    ra = rng.uniform(0, 360, N)
    ra[7] = -0.0
    names = np.array(["m31", "a<b&c", "x'y\"z", "", "  lead", "n5", "n6", "n7", "last"])
    vec = rng.normal(size=(N, 3)).astype(np.float32)
    vec[4, 1] = np.nan
    flag = rng.integers(0, 2, N).astype(bool)
    cols = [
        fits.Column("flag", "L", array=flag),
        fits.Column("id", "K", array=np.arange(N, dtype=np.int64) * 10**12),
        fits.Column("ub", "B", array=rng.integers(0, 256, N).astype(np.uint8)),
        fits.Column("i16", "I", array=i16, null=-999, unit="adu"),
        fits.Column("i32", "J", array=i32, null=77),
        fits.Column("u16", "I", bzero=32768, array=u16),
        fits.Column("mag", "E", array=mag, unit="mag"),
        fits.Column("ra", "D", array=ra, unit="deg"),
        fits.Column("name", "8A", array=names),
        fits.Column("vec", "3E", array=vec, unit="km/s"),
    ]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["TUCD7"] = "phot.mag;em.opt.V"
    hdu.header["TCOMM7"] = "V magnitude"
    hdu.header["TUCD8"] = "pos.eq.ra;meta.main"
    hdu.header["TCOMM8"] = "right ascension <ICRS> & co"
    path = tmp_path_factory.mktemp("votable") / "t.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    # FITS 4.0 §7.3.3: a logical byte that is neither T nor F is undefined (null). astropy
    # cannot write one, so row 3's byte is set to 0 in place (flag is the first column).
    with fits.open(path) as hl:
        start = hl[1].fileinfo()["datLoc"]
        row_bytes = hl[1].header["NAXIS1"]
    raw = bytearray(path.read_bytes())
    raw[start + 3 * row_bytes] = 0
    path.write_bytes(bytes(raw))
    with fits.open(path, logical_as_bytes=True) as hl:
        stored = list(hl[1].data["flag"])
    # (numpy drops the trailing NUL of the undefined byte)
    assert [bytes(v) for v in stored] == [b"" if i == 3 else (b"T" if f else b"F")
                                          for i, f in enumerate(flag)]
    with fits.open(path) as hl:
        t = hl[1].data
    nothing = np.zeros(N, bool)
    want = {
        "flag": (flag, np.arange(N) == 3),
        "id": (np.arange(N, dtype=np.int64) * 10**12, nothing),
        "ub": (np.asarray(t["ub"]), nothing),
        "i16": (i16, i16 == -999),
        "i32": (i32, i32 == 77),
        "u16": (u16, nothing),
        "mag": (mag, nothing),
        "ra": (ra, nothing),
        "name": (np.array([n.rstrip() for n in names]), nothing),
        "vec": (vec, nothing),
    }
    return path, want


def query(path, fmt, adql, text=False):
    out = run_ok("query", "--table", f"s.t={path}", "--format", fmt, adql).stdout
    doc = parse(io.BytesIO(out.encode()), verify="exception")
    return (doc, out) if text else doc


@pytest.mark.parametrize("fmt", FORMATS)
def test_astropy_reads_exactly_the_source_values(source, fmt, insitu):
    path, want = source
    adql = "SELECT * FROM s.t ORDER BY id"
    doc, text = query(path, fmt, adql, text=True)
    assert ("<BINARY2>" in text) == (fmt == "votable-binary2") and ("<TABLEDATA>" in text) == (fmt == "votable")
    resource = doc.resources[0]
    assert resource.type == "results"
    infos = {i.name: i.value for i in resource.infos}
    assert infos["QUERY_STATUS"] == "OK" and infos["QUERY"] == adql
    table = doc.get_first_table()
    got = table.array
    assert list(got.dtype.names) == list(want)
    for name, (values, null) in want.items():
        column = got[name]
        mask = np.ma.getmaskarray(column)
        if name in ("mag", "ra", "vec"):
            # NaN is VOTable's float null (§5.5): astropy may mask it or keep it; either way
            # the NaNs are where the source has them and every other value is bit for bit.
            data = np.ma.filled(column, np.nan)
            assert data.dtype == values.dtype, name
            nan = np.isnan(values)
            assert np.array_equal(np.isnan(data), nan) and not (mask & ~nan).any(), name
            bits = f"u{values.itemsize}"
            np.testing.assert_array_equal(data[~nan].view(bits), values[~nan].view(bits), err_msg=name)
            continue
        assert list(mask) == list(null), f"{name} null mask"
        data = np.asarray(column)[~null]
        expected = values[~null]
        if name == "name":
            if fmt == "votable":
                # astropy strips the text of a TD, though VOTable 1.4 §5.1 makes the white
                # space of char cells significant: check the document itself for that.
                assert "<TD>  lead</TD>" in text
                expected = [str(v).strip() for v in expected]
            assert [str(v) for v in data] == [str(v) for v in expected]
        else:
            np.testing.assert_array_equal(data.astype(np.int64), expected.astype(np.int64),
                                          err_msg=name)
    field = {f.name: f for f in table.fields}
    assert str(field["ra"].unit) == "deg" and field["ra"].ucd == "pos.eq.ra;meta.main"
    assert field["ra"].description == "right ascension <ICRS> & co"
    assert field["mag"].ucd == "phot.mag;em.opt.V" and field["mag"].description == "V magnitude"
    assert str(field["mag"].unit) == "mag" and str(field["i16"].unit) == "adu"
    assert field["vec"].arraysize == "3" and field["vec"].datatype == "float"
    # The widenings of votable_type: int16 → short, uint16 → int, uint8 → unsignedByte.
    assert (field["i16"].datatype, field["u16"].datatype, field["ub"].datatype) == \
        ("short", "int", "unsignedByte")


def test_both_serialisations_agree_with_a_filter_and_an_empty_result(source, insitu):
    path, want = source
    tables = [query(path, fmt, "SELECT id, name, mag FROM s.t WHERE i16 IS NULL ORDER BY id")
              .get_first_table().array for fmt in FORMATS]
    null = want["i16"][1]
    for t in tables:
        assert list(t["id"]) == list(want["id"][0][null])
        assert [str(v) for v in t["name"]] == list(want["name"][0][null])
    for fmt in FORMATS:
        empty = query(path, fmt, "SELECT id, name FROM s.t WHERE id < 0").get_first_table()
        assert len(empty.array) == 0 and [f.name for f in empty.fields] == ["id", "name"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_ascii_text_goes_out_as_unicode_char(tmp_path, fmt, insitu):
    csv = tmp_path / "u.csv"
    words = ["café", "日本語", "plain", "rocket 🚀", "Ωmega"]
    csv.write_text("id,word\n" + "".join(f"{i},{w}\n" for i, w in enumerate(words)), encoding="utf-8")
    out = run_ok("query", "--table", f"u.c={csv}", "--format", fmt,
                 "SELECT id, word FROM u.c ORDER BY id").stdout
    table = parse(io.BytesIO(out.encode()), verify="exception").get_first_table()
    assert table.get_field_by_id_or_name("word").datatype == "unicodeChar"
    assert [str(w) for w in table.array["word"]] == words


def test_fits_output_reads_back_in_astropy(source, insitu):
    """`--format fits` (TAP's RESPONSEFORMAT=fits): a binary table astropy reads with the same
    values, nulls, units and UCDs as the source."""
    from astropy.table import Table
    path, want = source
    out = path.parent / "o.fits"
    run_ok("query", "--table", f"s.t={path}", "--format", "fits", "-o", str(out),
           "SELECT id, ub, i16, u16, mag, ra, name FROM s.t ORDER BY id")
    with fits.open(out) as hl:
        hl.verify("exception")
        header = hl[1].header
        t = Table.read(hl[1])
    assert len(t) == N
    for name in ("id", "ub", "u16", "ra"):
        np.testing.assert_array_equal(np.asarray(t[name]), want[name][0], err_msg=name)
    np.testing.assert_array_equal(np.asarray(t["mag"]), want["mag"][0])  # NaN where NaN
    i16, null = want["i16"]
    assert list(np.ma.getmaskarray(t["i16"])) == list(null)
    np.testing.assert_array_equal(np.asarray(t["i16"])[~null], i16[~null])
    assert [str(v) for v in t["name"]] == list(want["name"][0])
    units = {header[f"TTYPE{k}"]: header.get(f"TUNIT{k}") for k in range(1, header["TFIELDS"] + 1)}
    assert units["ra"] == "deg" and units["mag"] == "mag" and units["i16"] == "adu"
    ucds = {header[f"TTYPE{k}"]: header.get(f"TUCD{k}") for k in range(1, header["TFIELDS"] + 1)}
    assert ucds["ra"] == "pos.eq.ra;meta.main"
    # a binary format needs a file
    args = ("query", "--table", f"s.t={path}", "--format", "fits", "SELECT id FROM s.t")
    assert "give -o OUT" in error_line(run_insitu(*args), args)
