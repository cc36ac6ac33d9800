"""ADQL cross-matches and cone searches through `insitu query`, against astropy.

Two random catalogues (fixed seed) are written as FITS binary tables (columns id K, ra D,
dec D) and as CSV. Besides a uniform all-sky part they hold clusters at both poles (points
exactly on each pole included), clusters straddling RA = 0/360 (points at RA 0 exactly and just
under 360), and partners: B points at separations from 0.05" to 0.2 deg of A points, so that
every radius tested has pairs near the poles and across the wrap.

- cross-matches: the (id1, id2) pairs of every join are exactly `search_around_sky`'s, for
  1", 10" and 0.1 deg, in the DISTANCE and the CONTAINS forms, with the tables swapped, on FITS
  and on CSV, and a LEFT OUTER JOIN keeps every left row once per match (or once, with empty
  right columns, when it has none);
- cone searches: 20 cones (poles, RA wrap, tiny to larger than a hemisphere) select exactly the
  rows astropy's `separation() <= r` selects, on the FITS table (whose cone searches go through
  the HEALPix index) and on the CSV one.

Pairs whose separation is within EDGE_DEG of the radius are left out of both sides, so float
rounding cannot decide a test; there are a handful at most and the tests check so.

Ten 3,000 x 3,000 joins and two 20-cone queries: ~7 s on two cores with a debug binary and the
spatial join (a nested-loop join, 9 M pair tests per query, took 8-15 s a query in a debug build).
"""

import csv
import io

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.io import fits

from conftest import command_line, run_insitu

EDGE_DEG = 1e-9
N_A = 3000
N_B = 3000
B_ID0 = 1_000_000  # B's ids start here, so a swapped column cannot go unnoticed
RADII = {"1arcsec": 1 / 3600, "10arcsec": 10 / 3600, "0.1deg": 0.1}


# --- catalogues --------------------------------------------------------------------------------

def offset(rng, ra0, dec0, sep_deg, n=None):
    """Points at the given separations (deg) from (ra0, dec0) in random directions (exact
    spherical offsets, valid at the poles)."""
    sep_deg = np.asarray(sep_deg, dtype=float)
    n = sep_deg.size if n is None else n
    c = SkyCoord(np.broadcast_to(ra0, n), np.broadcast_to(dec0, n), unit="deg")
    o = c.directional_offset_by(rng.uniform(0, 360, n) * u.deg, np.broadcast_to(sep_deg, n) * u.deg)
    return o.ra.deg, o.dec.deg


def cluster(rng, ra0, dec0, radius_deg, n):
    """n points uniform in a disc of the given radius around (ra0, dec0)."""
    return offset(rng, ra0, dec0, radius_deg * np.sqrt(rng.uniform(0, 1, n)), n)


def all_sky(rng, n):
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


# (ra, dec, radius deg, share of the catalogue): both poles, RA 0/360 at several declinations
CLUSTERS = [(0.0, 90.0, 0.5, 0.10), (0.0, -90.0, 0.5, 0.10), (0.0, 90.0, 0.003, 0.02),
            (0.0, -89.9, 0.05, 0.04), (0.0, 0.0, 0.5, 0.10), (359.95, 45.0, 0.5, 0.08),
            (0.02, -60.0, 0.3, 0.06), (180.0, 89.95, 0.1, 0.05)]
# exact poles and exact RA 0 / just under 360
SPECIAL = [(0.0, 90.0), (123.25, 90.0), (0.0, -90.0), (301.5, -90.0), (0.0, 0.0),
           (359.9999999, 0.0), (0.0, 45.0), (359.99999999, 45.0 + 1e-4)]


def build(rng, n, partners_of=None, n_partners=0):
    ras, decs = [np.array([p[0] for p in SPECIAL])], [np.array([p[1] for p in SPECIAL])]
    for ra0, dec0, rad, share in CLUSTERS:
        r, d = cluster(rng, ra0, dec0, rad, int(share * n))
        ras.append(r)
        decs.append(d)
    if partners_of is not None:
        pra, pdec = partners_of
        pick = rng.choice(len(pra), n_partners, replace=False)
        # separations log-uniform from 0.05" to 0.2 deg: pairs at every radius tested
        sep = np.exp(rng.uniform(np.log(0.05 / 3600), np.log(0.2), n_partners))
        r, d = offset(rng, pra[pick], pdec[pick], sep)
        ras.append(r)
        decs.append(d)
    rest = n - sum(len(a) for a in ras)
    r, d = all_sky(rng, rest)
    ras.append(r)
    decs.append(d)
    ra, dec = np.concatenate(ras), np.concatenate(decs)
    ra = np.where(ra >= 360.0, ra - 360.0, ra)  # directional_offset_by gives [0, 360)
    order = rng.permutation(n)
    return ra[order], dec[order]


def write_fits(path, ids, ra, dec):
    cols = [fits.Column("id", "K", array=ids), fits.Column("ra", "D", array=ra, unit="deg"),
            fits.Column("dec", "D", array=dec, unit="deg")]
    fits.BinTableHDU.from_columns(cols).writeto(path)


def write_csv(path, ids, ra, dec):
    with open(path, "w") as f:
        f.write("id,ra,dec\n")
        for i, a, d in zip(ids.tolist(), ra.tolist(), dec.tolist()):
            f.write(f"{i},{a!r},{d!r}\n")  # repr: the shortest text that reads back exactly


class Catalogues:
    def __init__(self, folder):
        rng = np.random.default_rng(20261125)
        self.ra_a, self.dec_a = build(rng, N_A)
        self.ra_b, self.dec_b = build(rng, N_B, partners_of=(self.ra_a, self.dec_a),
                                      n_partners=N_B // 3)
        self.id_a = np.arange(N_A, dtype=np.int64)
        self.id_b = B_ID0 + np.arange(N_B, dtype=np.int64)
        self.sky_a = SkyCoord(self.ra_a, self.dec_a, unit="deg")
        self.sky_b = SkyCoord(self.ra_b, self.dec_b, unit="deg")
        self.path = {}
        for name, ids, ra, dec in (("a", self.id_a, self.ra_a, self.dec_a),
                                   ("b", self.id_b, self.ra_b, self.dec_b)):
            for ext, writer in (("fits", write_fits), ("csv", write_csv)):
                p = folder / f"{name}.{ext}"
                writer(p, ids, ra, dec)
                self.path[name, ext] = p
        self._pairs = {}

    def pairs(self, radius):
        """(astropy's pairs at `radius`, the ambiguous pairs within EDGE_DEG of it)."""
        if radius not in self._pairs:
            i, j, sep, _ = search_around_sky(self.sky_a, self.sky_b, (radius + 10 * EDGE_DEG) * u.deg)
            sep = sep.deg
            # search_around_sky's own test, chord <= 2 sin(r/2), at exactly `radius`
            ia, jb, _, _ = search_around_sky(self.sky_a, self.sky_b, radius * u.deg)
            inside = set(zip(self.id_a[ia].tolist(), self.id_b[jb].tolist()))
            near = np.abs(sep - radius) <= EDGE_DEG
            edge = set(zip(self.id_a[i[near]].tolist(), self.id_b[j[near]].tolist()))
            self._pairs[radius] = (inside, edge)
        return self._pairs[radius]


@pytest.fixture(scope="module")
def cats(tmp_path_factory):
    return Catalogues(tmp_path_factory.mktemp("adql_oracle"))


# --- running queries ---------------------------------------------------------------------------

def query_rows(cats, adql, a_fmt, b_fmt, timeout=300):
    args = ("query", "--table", f"s.a={cats.path['a', a_fmt]}", "--table", f"s.b={cats.path['b', b_fmt]}",
            "--format", "csv", adql)
    r = run_insitu(*args, timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()}\n  repro: {command_line(args)}"
    reader = csv.reader(io.StringIO(r.stdout))
    header = next(reader)
    return header, list(reader), command_line(args)


def as_pairs(rows):
    return [(int(a), int(b)) for a, b in rows]


def check_pairs(got_list, radius, cats, repro):
    want, edge = cats.pairs(radius)
    assert len(edge) <= 3, f"{len(edge)} pairs within {EDGE_DEG} deg of the radius: regenerate"
    got = set(got_list)
    assert len(got) == len(got_list), f"duplicate pairs in insitu's result\n  repro: {repro}"
    missing = sorted((want - got) - edge)
    extra = sorted((got - want) - edge)
    assert not missing and not extra, (
        f"r={radius} deg: {len(got)} pairs from insitu, {len(want)} from astropy; "
        f"missing {len(missing)} e.g. {describe(cats, missing[:3])}, "
        f"extra {len(extra)} e.g. {describe(cats, extra[:3])}\n  repro: {repro}")


def describe(cats, pairs):
    out = []
    for ia, ib in pairs:
        a, b = cats.sky_a[ia], cats.sky_b[ib - B_ID0]
        out.append(f"A{ia}({float(a.ra.deg)!r},{float(a.dec.deg)!r})-B{ib}({float(b.ra.deg)!r},{float(b.dec.deg)!r}) "
                   f"sep={float(a.separation(b).deg)!r}")
    return out


def join_on(form, left, right, radius):
    """The ON clause matching `left` rows to `right` rows within `radius`."""
    if form == "distance":
        return f"DISTANCE({left}.ra, {left}.dec, {right}.ra, {right}.dec) < {radius!r}"
    return (f"1=CONTAINS(POINT('ICRS', {left}.ra, {left}.dec), "
            f"CIRCLE('ICRS', {right}.ra, {right}.dec, {radius!r}))")


# --- the catalogues are what they are meant to be ------------------------------------------------

def test_catalogues_cover_poles_wrap_and_every_radius(cats):
    for ra, dec in ((cats.ra_a, cats.dec_a), (cats.ra_b, cats.dec_b)):
        assert (dec == 90).sum() >= 2 and (dec == -90).sum() >= 2
        assert (dec > 89.5).sum() > 100 and (dec < -89.5).sum() > 100
        assert (ra < 0.1).sum() > 50 and (ra > 359.9).sum() > 50
        assert ((ra >= 0) & (ra < 360)).all()
    for radius in RADII.values():
        want, _ = cats.pairs(radius)
        ra = np.array([cats.ra_a[i] for i, _ in want])
        dec = np.array([cats.dec_a[i] for i, _ in want])
        assert len(want) >= 50
        assert (np.abs(dec) > 89).any() and ((ra < 0.5) | (ra > 359.5)).any(), radius
    # exact pole points match each other whatever their RA
    pole_a = cats.id_a[cats.dec_a == 90]
    pole_b = cats.id_b[cats.dec_b == 90]
    pairs = cats.pairs(RADII["1arcsec"])[0]
    assert all((int(i), int(j)) in pairs for i in pole_a for j in pole_b)


# --- cross-matches -------------------------------------------------------------------------------

# (form, tables swapped in FROM, format of a, format of b, radius name)
JOINS = [
    ("distance", False, "fits", "fits", "1arcsec"),
    ("distance", False, "fits", "fits", "10arcsec"),
    ("distance", False, "fits", "fits", "0.1deg"),
    ("contains", False, "csv", "csv", "1arcsec"),
    ("contains", False, "csv", "csv", "10arcsec"),
    ("contains", False, "fits", "csv", "0.1deg"),
    ("distance", True, "csv", "fits", "10arcsec"),
    ("contains", True, "fits", "fits", "0.1deg"),
]


@pytest.mark.parametrize("form,swapped,a_fmt,b_fmt,rname", JOINS,
                         ids=[f"{f}-{'b_join_a' if s else 'a_join_b'}-{a}-{b}-{r}" for f, s, a, b, r in JOINS])
def test_cross_match_pairs_equal_search_around_sky(cats, form, swapped, a_fmt, b_fmt, rname):
    radius = RADII[rname]
    if swapped:
        adql = (f"SELECT a.id AS id1, b.id AS id2 FROM s.b AS b JOIN s.a AS a "
                f"ON {join_on(form, 'b', 'a', radius)}")
    else:
        adql = (f"SELECT a.id AS id1, b.id AS id2 FROM s.a AS a JOIN s.b AS b "
                f"ON {join_on(form, 'a', 'b', radius)}")
    header, rows, repro = query_rows(cats, adql, a_fmt, b_fmt)
    assert header == ["id1", "id2"], repro
    check_pairs(as_pairs(rows), radius, cats, repro)


@pytest.mark.parametrize("form,a_fmt,b_fmt", [("distance", "fits", "csv"), ("contains", "csv", "fits")])
def test_left_outer_join_keeps_every_left_row(cats, form, a_fmt, b_fmt):
    radius = RADII["10arcsec"]
    adql = ("SELECT a.id AS id1, a.ra AS ra1, b.id AS id2, b.dec AS dec2 FROM s.a AS a "
            f"LEFT OUTER JOIN s.b AS b ON {join_on(form, 'a', 'b', radius)}")
    header, rows, repro = query_rows(cats, adql, a_fmt, b_fmt)
    assert header == ["id1", "ra1", "id2", "dec2"], repro
    matched = [r for r in rows if r[2] != ""]
    unmatched = [r for r in rows if r[2] == ""]
    assert all(r[3] == "" for r in unmatched), f"unmatched rows with a right column: {unmatched[:3]}"
    assert all(r[3] != "" for r in matched), repro
    check_pairs([(int(r[0]), int(r[2])) for r in matched], radius, cats, repro)
    # the left columns are the left row's, the right ones the right row's
    for r in matched[:200]:
        assert float(r[1]) == cats.ra_a[int(r[0])] and float(r[3]) == cats.dec_b[int(r[2]) - B_ID0], r
    want, edge = cats.pairs(radius)
    have_match = {i for i, _ in want} | {i for i, _ in edge}
    got_unmatched = [int(r[0]) for r in unmatched]
    assert len(got_unmatched) == len(set(got_unmatched)), "an unmatched left row appears twice"
    assert set(got_unmatched) == set(cats.id_a.tolist()) - have_match, repro
    assert {int(r[0]) for r in rows} == set(cats.id_a.tolist()), "left rows lost"
    assert 0 < len(unmatched) < N_A and len(matched) > 0


# --- cone searches -------------------------------------------------------------------------------

def cones():
    """20 cones: (ra0, dec0, radius deg), most centred on or near the catalogues' clusters."""
    rng = np.random.default_rng(7)
    fixed = [(0.0, 90.0, 0.3), (250.0, 90.0, 0.0021), (0.0, -90.0, 1.5), (90.0, -89.8, 0.25),
             (0.0, 0.0, 0.4), (359.9, 0.1, 0.25), (0.05, 45.0, 0.3), (359.99, -60.0, 0.2),
             (180.0, 89.95, 0.08), (0.0, 30.0, 35.0), (10.0, -5.0, 100.0), (359.5, 89.0, 2.0)]
    ra, dec = all_sky(rng, 20 - len(fixed))
    rnd = [(float(a), float(d), float(r)) for a, d, r in
           zip(ra, dec, np.exp(rng.uniform(np.log(0.5), np.log(30), ra.size)))]
    return fixed + rnd


def cone_union(table, cone_list):
    return " UNION ALL ".join(
        f"SELECT {k} AS cone, id FROM {table} WHERE "
        f"1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra0!r}, {dec0!r}, {r!r}))"
        for k, (ra0, dec0, r) in enumerate(cone_list))


@pytest.mark.parametrize("fmt", ["fits", "csv"])
def test_cone_searches_equal_astropy_separation(cats, fmt):
    cone_list = cones()
    args = ("query", "--table", f"s.b={cats.path['b', fmt]}", "--format", "csv",
            cone_union("s.b", cone_list))
    r = run_insitu(*args, timeout=300)
    repro = command_line(args)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()}\n  repro: {repro}"
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["cone", "id"], repro
    got = {}
    for k, i in rows[1:]:
        got.setdefault(int(k), []).append(int(i))
    total = 0
    for k, (ra0, dec0, radius) in enumerate(cone_list):
        sep = cats.sky_b.separation(SkyCoord(ra0, dec0, unit="deg")).deg
        edge = set(cats.id_b[np.abs(sep - radius) <= EDGE_DEG].tolist())
        assert len(edge) <= 1
        want = set(cats.id_b[sep <= radius].tolist()) - edge
        mine = got.get(k, [])
        assert len(mine) == len(set(mine)), f"cone {k}: duplicate rows"
        mine = set(mine) - edge
        assert mine == want, (
            f"cone {k} ({ra0!r}, {dec0!r}, r={radius!r}): insitu {len(mine)} rows, astropy "
            f"{len(want)}; missing {sorted(want - mine)[:5]}, extra {sorted(mine - want)[:5]}\n"
            f"  single-cone repro: {command_line(args[:4] + ('--format', 'csv', cone_union('s.b', [(ra0, dec0, radius)])))}")
        total += len(want)
    assert total > 500 and sum(1 for k in range(len(cone_list)) if got.get(k)) >= 15
