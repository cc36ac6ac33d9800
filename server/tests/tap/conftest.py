"""Real TAP clients against `insitu serve`: start the server on FITS tables generated here
with astropy, and give the tests its URL and the same data as numpy arrays (the oracle).

The binary comes from $INSITU_BIN (default <repo>/target/debug/insitu). Every server gets a
fresh --cache-dir and --state-dir and listens on an ephemeral port (`--listen 127.0.0.1:0`),
read back from the log line `... on http://127.0.0.1:PORT/tap` printed when it is ready.
"""

import io
import os
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from astropy.io import fits

REPO = Path(__file__).resolve().parents[3]

# Long enough for a cold debug binary on a busy 2-core machine; a healthy start takes < 2 s.
START_TIMEOUT_S = 60
ANSI = re.compile(r"\x1b\[[0-9;]*m")
READY = re.compile(r"on (http://127\.0\.0\.1:\d+)/tap\b")
VOTABLE_NS = "{http://www.ivoa.net/xml/VOTable/v1.3}"


def insitu_bin() -> Path:
    return Path(os.environ.get("INSITU_BIN", REPO / "target" / "debug" / "insitu")).resolve()


class Server:
    """One `insitu serve` process; its stderr log is collected by a thread."""

    def __init__(self, workdir: Path, args=(), state_dir: Path | None = None, env=None):
        self.workdir = workdir
        self.args = [str(a) for a in args]
        self.env = {**os.environ, **(env or {})}
        self.state_dir = state_dir or workdir / "state"
        self.cache_dir = workdir / "cache"
        self.proc = None
        self.base = None  # http://127.0.0.1:PORT
        self.lines = []
        self._ready = threading.Event()

    @property
    def tap(self) -> str:
        return self.base + "/tap"

    def command(self):
        return [str(insitu_bin()), "serve", "--listen", "127.0.0.1:0",
                "--cache-dir", str(self.cache_dir), "--state-dir", str(self.state_dir), *self.args]

    def start(self) -> "Server":
        binary = insitu_bin()
        if not binary.is_file():
            pytest.fail(f"insitu binary not found at {binary}: run `cargo build --bins` or set INSITU_BIN")
        self.lines, self.base = [], None
        self._ready.clear()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace", env=self.env)
        self._reader = threading.Thread(target=self._read_log, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"insitu serve did not start (exit {self.proc.returncode}):\n"
                            f"  {' '.join(self.command())}\n{self.log()}")
        return self

    def _read_log(self, proc):
        for line in proc.stderr:
            line = ANSI.sub("", line.rstrip("\n"))
            self.lines.append(line)
            m = READY.search(line)
            if m and self.base is None:
                self.base = m.group(1)
                self._ready.set()

    def log(self) -> str:
        return "\n".join(self.lines[-40:])

    def stop(self, timeout=20) -> int:
        """SIGTERM, as a service manager would, and the exit status of the graceful stop."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"insitu serve did not stop {timeout} s after SIGTERM:\n{self.log()}")
        self._reader.join(timeout)  # every log line read
        return code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def insitu():
    path = insitu_bin()
    if not path.is_file():
        pytest.fail(f"insitu binary not found at {path}: run `cargo build --bins` or set INSITU_BIN")
    return path


# --- generated tables ------------------------------------------------------------------------

def sphere_points(rng, n):
    """Uniform on the sphere, in degrees."""
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return ra, dec


def write_bintable(path: Path, columns) -> Path:
    """columns: (name, format, array, unit, ucd, description); TUNITn, TUCDn and TCOMMn are
    the FITS keywords insitu reads the column metadata from."""
    cols = [fits.Column(name=n, format=f, array=a, unit=u) for n, f, a, u, _, _ in columns]
    hdu = fits.BinTableHDU.from_columns(cols)
    for i, (_, _, _, _, ucd, desc) in enumerate(columns, start=1):
        if ucd:
            hdu.header[f"TUCD{i}"] = ucd
        if desc:
            hdu.header[f"TCOMM{i}"] = desc
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


@dataclass
class Catalogue:
    """x.cat: a source catalogue; x.ref: a smaller table whose cat_id refers to x.cat.id."""
    cat_path: Path
    ref_path: Path
    id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray
    cls: np.ndarray
    ref_id: np.ndarray
    ref_cat_id: np.ndarray
    ref_z: np.ndarray

    # (name, unit, ucd, description) of x.cat as written, for the metadata tests
    CAT_META = [("id", None, "meta.id;meta.main", "source identifier"),
                ("ra", "deg", "pos.eq.ra;meta.main", "right ascension (ICRS)"),
                ("dec", "deg", "pos.eq.dec;meta.main", "declination (ICRS)"),
                ("mag", "mag", "phot.mag;em.opt.V", "V magnitude"),
                ("cls", None, "src.class", "source class, 0 to 4")]


N_CAT = 20_000
N_REF = 3_000


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> Catalogue:
    d = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(20240404)
    ra, dec = sphere_points(rng, N_CAT)
    ids = np.arange(1, N_CAT + 1, dtype=np.int64) * 7  # not the row number
    mag = rng.uniform(12, 24, N_CAT).astype(np.float32)
    cls = rng.integers(0, 5, N_CAT).astype(np.int32)
    meta = {m[0]: m[1:] for m in Catalogue.CAT_META}
    cat = write_bintable(d / "cat.fits", [
        ("id", "K", ids, *meta["id"]), ("ra", "D", ra, *meta["ra"]), ("dec", "D", dec, *meta["dec"]),
        ("mag", "E", mag, *meta["mag"]), ("cls", "J", cls, *meta["cls"])])
    ref_id = np.arange(N_REF, dtype=np.int64) + 1_000_000
    # some cat ids twice, some never, a few that match nothing
    ref_cat_id = rng.choice(ids, N_REF, replace=True)
    ref_cat_id[:50] = -1
    ref_z = rng.uniform(0, 3, N_REF)
    ref = write_bintable(d / "ref.fits", [
        ("ref_id", "K", ref_id, None, "meta.id;meta.main", "reference id"),
        ("cat_id", "K", ref_cat_id, None, "meta.id", "x.cat id"),
        ("z", "D", ref_z, None, "src.redshift", "redshift")])
    return Catalogue(cat, ref, ids, ra, dec, mag, cls, ref_id, ref_cat_id, ref_z)


@pytest.fixture(scope="session")
def server(tmp_path_factory, catalogue, insitu):
    """The shared server on x.cat and x.ref."""
    s = Server(tmp_path_factory.mktemp("serve"),
               ["--table", f"x.cat={catalogue.cat_path}", "--table", f"x.ref={catalogue.ref_path}"])
    s.start()
    yield s
    s.stop()


# --- oracles and HTTP helpers ----------------------------------------------------------------

def unit_vectors(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def cone_ids(cat: Catalogue, ra0, dec0, r):
    from astropy.coordinates import SkyCoord
    sep = SkyCoord(cat.ra, cat.dec, unit="deg").separation(SkyCoord(ra0, dec0, unit="deg")).deg
    return set(cat.id[sep <= r].tolist())


@dataclass
class ErrorDoc:
    status: int
    message: str


def dali_error(resp: requests.Response) -> ErrorDoc:
    """The DALI error document of a refused request: asserts a 4xx status and a VOTable with
    INFO name=QUERY_STATUS value=ERROR (DALI 1.1 §4.4), and returns its message."""
    assert 400 <= resp.status_code < 500, \
        f"expected a 4xx error, got {resp.status_code}: {resp.text[:400]}"
    ctype = resp.headers.get("content-type", "")
    assert "xml" in ctype, f"error is not a VOTable ({ctype!r}): {resp.text[:400]}"
    root = ET.fromstring(resp.content)
    assert root.tag.endswith("VOTABLE"), root.tag
    infos = [e for e in root.iter() if e.tag.endswith("INFO") and e.get("name") == "QUERY_STATUS"]
    assert infos, f"no QUERY_STATUS INFO: {resp.text[:400]}"
    assert infos[-1].get("value") == "ERROR", resp.text[:400]
    message = (infos[-1].text or "").strip()
    assert message, f"the error has no message: {resp.text[:400]}"
    return ErrorDoc(resp.status_code, message)


def votable_bytes(table) -> bytes:
    """An astropy Table as VOTable bytes (TABLEDATA), the way clients upload it."""
    buf = io.BytesIO()
    table.write(buf, format="votable")
    return buf.getvalue()
