#!/usr/bin/env python3
"""Cross-matches and cone searches: insitu against astropy and PostgreSQL + Q3C, in one run.

Usage: compare_crossmatch.py [--quick] [--skip-q3c] [--skip TOOL ...] [--threads N]
                             [--insitu-bin PATH] [--insitu-timeout S] [--radius ARCSEC]
                             [--cone-radius ARCSEC] [--seed N] [--results FILE]

Every tool works on the same generated catalogues: points uniform on the sphere inside a
10 deg^2 patch (RA 150..153.34, Dec 2..5: the RA width is set so that the area, counted with
the cos(dec) of the sphere, is 10 deg^2), ids = row numbers, a fixed seed per table:

  xmatch 1M x 1M      all pairs closer than --radius (1") between two 1,000,000-row tables
  xmatch 100k x 10M   the same between a 100,000-row and a 10,000,000-row table
  1,000 cones         the rows of the 10M table within --cone-radius (10") of 1,000 centres

  insitu   the release `insitu query` (default target/release/insitu) on FITS binary tables
           written once (and on Parquet when pyarrow imports), timed as a whole process
           (open, read, join, CSV output to /dev/shm); peak RSS from GNU time (%M). Cross-matches:
           `... JOIN ... ON DISTANCE(a.ra, a.dec, b.ra, b.dec) < r`. Cones: the 1,000 centres
           uploaded as a 1,000-row FITS table and cross-matched with
           `ON 1=CONTAINS(POINT(t.ra, t.dec), CIRCLE(c.ra, c.dec, r))` in ONE process; and a
           sample of single-cone processes (`WHERE 1=CONTAINS(...)`, one process per cone,
           start-up and per-process HEALPix index build included), whose median is also
           shown multiplied by 1,000 (labelled extrapolated). Each insitu run is killed after
           --insitu-timeout seconds and reported as such.
  astropy  `search_around_sky(coords1, coords2, r)` on SkyCoords built from in-memory arrays
           (reading the FITS files and building the SkyCoords are timed apart, not counted);
           the KD-trees are built inside the timed call (storekdtree=False), after a warm-up
           call on two points (imports and first-call costs not counted). Cones: one
           search_around_sky(centres, table) call, and `table.separation(c) <= r` on a sample
           of cones (extrapolated to 1,000). Each workload runs in its own process (its peak RSS:
           VmHWM).
  q3c      PostgreSQL (15) + Q3C in a throw-away cluster (initdb into the work folder, as
           user postgres when run as root), reached over TCP on 127.0.0.1 with psql. Tables
           loaded with COPY (binary, exact doubles); then per table CREATE INDEX ON
           (q3c_ang2ipix(ra, dec)), CLUSTER, ANALYZE, timed apart ("index"). Cross-matches:
           COPY (SELECT a.id, b.id FROM a, b WHERE q3c_join(a.ra, a.dec, b.ra, b.dec, r)) TO
           STDOUT. Cones: 1,000 `q3c_radial_query` statements in one psql session, and one
           q3c_join of the 1,000-row centres table with the big one.

Times are wall-clock seconds of one run. The pairs (and cone rows) of every tool are compared
as sets and must be the same (a pair whose separation is within 1e-9 deg of the radius may
differ between tools; such pairs are counted, reported and left out): the script fails
otherwise. Ratios are "other tool's seconds / insitu's seconds" (> 1: insitu is faster),
like for like: a join or one call for every pair or cone against the same, and cones one at a
time against cones one at a time.

--quick: 2% of the sizes (20k x 20k, 2k x 200k, 100 cones) on a 0.2 deg^2 patch (same
densities, so the same pairs per row); under a minute. --threads N: insitu pinned to N cores
(taskset, TOKIO_WORKER_THREADS), Postgres max_parallel_workers_per_gather = N - 1; astropy is
single-threaded. Work files (catalogues, Postgres cluster, results) go to $INSITU_BENCH_WORK
(default /tmp/insitu-xmatch-bench); catalogues are kept for the next run, the Postgres cluster
is removed at the end. Results: a table on stdout, written as markdown to --results (default
$INSITU_BENCH_WORK/results_xmatch_<sizes>.md) with the raw records beside it as JSON.
"""

import argparse
import glob
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FULL_AREA_DEG2 = 10.0
CENTRE = (151.67, 3.5)  # RA, Dec of the patch centre; full patch Dec 2..5
FULL_DEC_HALF = 1.5
EDGE_DEG = 1e-9
FULL = {"a": 1_000_000, "b": 1_000_000, "s": 100_000, "big": 10_000_000, "cones": 1000}


# ---------------------------------------------------------------------------------------------
# Catalogues


def work_dir() -> Path:
    return Path(os.environ.get("INSITU_BENCH_WORK", "/tmp/insitu-xmatch-bench"))


def sink_dir() -> Path:
    default = Path("/dev/shm/insitu-xmatch-sink") if Path("/dev/shm").is_dir() else work_dir() / "sink"
    return Path(os.environ.get("INSITU_BENCH_SINK", default))


def patch(scale: float):
    """(ra_min, ra_max, dec_min, dec_max) of a patch of FULL_AREA_DEG2 * scale square degrees."""
    half = FULL_DEC_HALF * np.sqrt(scale)
    dec0, dec1 = CENTRE[1] - half, CENTRE[1] + half
    band = np.degrees(np.sin(np.radians(dec1)) - np.sin(np.radians(dec0)))  # deg^2 per deg of RA
    width = FULL_AREA_DEG2 * scale / band
    return CENTRE[0] - width / 2, CENTRE[0] + width / 2, dec0, dec1


def uniform_patch(rng, n, box):
    ra0, ra1, dec0, dec1 = box
    ra = rng.uniform(ra0, ra1, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(dec0)), np.sin(np.radians(dec1)), n)))
    return ra, dec


def pg_binary_copy(path: Path, ids, ra, dec):
    """PostgreSQL's binary COPY format for (id bigint, ra float8, dec float8): exact doubles."""
    rows = np.empty(len(ids), dtype=[("n", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"),
                                     ("ra", ">f8"), ("l3", ">i4"), ("dec", ">f8")])
    rows["n"], rows["l1"], rows["l2"], rows["l3"] = 3, 8, 8, 8
    rows["id"], rows["ra"], rows["dec"] = ids, ra, dec
    with open(path, "wb") as f:
        f.write(b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big"))
        f.write(rows.tobytes())
        f.write((-1).to_bytes(2, "big", signed=True))


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
        return True
    except ImportError:
        return False


def ensure_catalogues(sizes: dict, scale: float, seed: int) -> dict:
    """name -> {"fits", "pg", "parquet"?, "n"}; generated once per (sizes, seed)."""
    from astropy.io import fits

    tag = "_".join(f"{k}{v}" for k, v in sizes.items()) + f"_seed{seed}"
    folder = work_dir() / f"cats_{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    box = patch(scale)
    want_parquet = have_pyarrow()
    out = {}
    for k, (name, n) in enumerate(sizes.items()):
        paths = {"fits": folder / f"{name}.fits", "pg": folder / f"{name}.pgcopy", "n": n}
        if want_parquet:
            paths["parquet"] = folder / f"{name}.parquet"
        missing = [p for key, p in paths.items() if key != "n" and not p.exists()]
        if missing:
            t0 = time.perf_counter()
            rng = np.random.default_rng([seed, k])
            ra, dec = uniform_patch(rng, n, box)
            ids = np.arange(n, dtype=np.int64)
            cols = [fits.Column("id", "K", array=ids), fits.Column("ra", "D", array=ra, unit="deg"),
                    fits.Column("dec", "D", array=dec, unit="deg")]
            tmp = paths["fits"].with_suffix(".fits.tmp")
            fits.BinTableHDU.from_columns(cols).writeto(tmp, overwrite=True)
            tmp.rename(paths["fits"])
            pg_binary_copy(paths["pg"], ids, ra, dec)
            if want_parquet:
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({"id": ids, "ra": ra, "dec": dec}), paths["parquet"])
            print(f"  wrote {name}: {n:,} rows ({time.perf_counter() - t0:.1f} s)", flush=True)
        out[name] = paths
    # Postgres runs as another user: let it read the folder
    for p in [work_dir(), folder, *folder.iterdir()]:
        p.chmod(p.stat().st_mode | 0o055)
    return out


def read_coords(path):
    from astropy.io import fits

    with fits.open(path, memmap=False) as hl:
        d = hl[1].data
        return np.array(d["ra"], dtype=float), np.array(d["dec"], dtype=float)


def prewarm(*paths):
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


# ---------------------------------------------------------------------------------------------
# Timed processes


GNU_TIME = "/usr/bin/time"


def run_timed(cmd, stdout=None, stdin=None, timeout=None, env=None, rss=False):
    """Run cmd; wall time, exit code, peak RSS and whether it was killed on timeout.

    With rss=True the peak RSS is GNU time's (%M), when /usr/bin/time exists: wait4()'s
    ru_maxrss of a child of this Python process also counts the pages of the forked Python
    before exec, so it is the larger of the two; it is the fallback, reported as an upper bound.
    """
    rss_file = None
    if rss and os.access(GNU_TIME, os.X_OK):
        rss_file = sink_dir() / f"rss.{os.getpid()}"
        cmd = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd]
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL
    inp = open(stdin, "rb") if stdin else subprocess.DEVNULL
    err_path = sink_dir() / f"stderr.{os.getpid()}"
    err = open(err_path, "wb")
    killed = threading.Event()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stdin=inp, stderr=err, env=env, start_new_session=True)

    def kill():
        killed.set()
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    except KeyboardInterrupt:
        kill()
        raise
    wall = time.perf_counter() - t0
    if timer:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    for f in (out, inp, err):
        if hasattr(f, "close"):
            f.close()
    stderr = err_path.read_text(errors="replace")
    err_path.unlink()
    maxrss, exact = ru.ru_maxrss * 1024, False
    if rss_file is not None:
        try:
            maxrss, exact = int(rss_file.read_text().split()[-1]) * 1024, True
        except (OSError, ValueError, IndexError):
            pass
        rss_file.unlink(missing_ok=True)
    return {"wall": wall, "rc": p.returncode, "maxrss": maxrss, "maxrss_exact": exact,
            "timed_out": killed.is_set(), "stderr": stderr.strip()}


def fmt_bytes(n, exact=True):
    return "n/a" if n is None else f"{'<= ' if not exact else ''}{n / 2**20:,.0f} MiB"


def peak_rss_self():
    """This process's own peak RSS (VmHWM: since its exec, unlike ru_maxrss)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------------
# Pairs: read, compare


def read_pairs(path: Path, skip_header: bool) -> np.ndarray:
    """(k, 2) int64 array of the first two integer columns of a CSV file."""
    with open(path) as f:
        if skip_header:
            f.readline()
        text = f.read()
    if not text.strip():
        return np.empty((0, 2), dtype=np.int64)
    arr = np.array(text.replace("\n", ",").rstrip(",").split(","), dtype=np.int64)
    return arr.reshape(-1, 2)


def pair_keys(pairs: np.ndarray) -> np.ndarray:
    return np.unique(pairs[:, 0] * (1 << 32) + pairs[:, 1])


class Catalogue:
    """Coordinates of a table by id (= row), for the separations of disagreeing pairs."""

    def __init__(self, path):
        self.path = path
        self._radec = None

    def radec(self):
        if self._radec is None:
            self._radec = read_coords(self.path)
        return self._radec


def separations(cat1, cat2, keys):
    i, j = keys >> 32, keys & 0xFFFFFFFF
    r1, d1 = cat1.radec()
    r2, d2 = cat2.radec()
    from astropy.coordinates import angular_separation

    return np.degrees(angular_separation(*np.radians([r1[i], d1[i], r2[j], d2[j]])))


def compare(results: dict, cat1, cat2, radius_deg):
    """results: tool label -> (k, 2) pairs. Asserts one set (within the edge tolerance)."""
    keys = {label: pair_keys(p) for label, p in results.items()}
    labels = list(keys)
    dups = {label: len(results[label]) - len(keys[label]) for label in labels}
    ref = keys[labels[0]]
    edge_total = 0
    problems = []
    for label in labels[1:]:
        diff = np.setxor1d(ref, keys[label])
        if diff.size:
            sep = separations(cat1, cat2, diff)
            edge = np.abs(sep - radius_deg) <= EDGE_DEG
            edge_total += int(edge.sum())
            if (~edge).any():
                bad = diff[~edge][:5]
                problems.append(
                    f"{labels[0]} vs {label}: {int((~edge).sum())} pairs differ, e.g. "
                    + ", ".join(f"({k >> 32},{k & 0xFFFFFFFF}) sep={s!r} deg "
                                f"in {labels[0] if np.isin(k, ref) else label}"
                                for k, s in zip(bad, sep[~edge][:5])))
    for label, d in dups.items():
        if d:
            problems.append(f"{label}: {d} duplicate pairs")
    if problems:
        raise AssertionError(f"results differ (r = {radius_deg!r} deg): " + "; ".join(problems))
    return edge_total


# ---------------------------------------------------------------------------------------------
# insitu


def insitu_env(threads):
    env = dict(os.environ)
    env.pop("RUST_BACKTRACE", None)
    if threads:
        env["TOKIO_WORKER_THREADS"] = str(threads)
    return env


def insitu_cmd(binary, threads, tables: dict, adql: str):
    cmd = [str(binary), "query"]
    for name, path in tables.items():
        cmd += ["--table", f"x.{name}={path}"]
    cmd += ["--format", "csv", adql]
    if threads:
        cmd = ["taskset", "-c", f"0-{threads - 1}"] + cmd
    return cmd


def run_insitu(binary, threads, tables, adql, out, timeout):
    prewarm(*tables.values())
    r = run_timed(insitu_cmd(binary, threads, tables, adql), stdout=out, timeout=timeout,
                  env=insitu_env(threads), rss=True)
    r["input_bytes"] = sum(Path(p).stat().st_size for p in tables.values())
    if r["timed_out"]:
        r["note"] = f"did not finish: killed after {timeout:g} s (--insitu-timeout)"
    elif r["rc"] != 0:
        r["note"] = f"failed (exit {r['rc']}): {r['stderr'][-300:]}"
    return r


def xmatch_adql(radius_deg, left="a", right="b"):
    return (f"SELECT {left}.id AS id1, {right}.id AS id2 FROM x.{left} AS {left} "
            f"JOIN x.{right} AS {right} "
            f"ON DISTANCE({left}.ra, {left}.dec, {right}.ra, {right}.dec) < {radius_deg!r}")


def cones_adql(radius_deg):
    return ("SELECT c.id AS cone, t.id AS id FROM x.cones AS c JOIN x.big AS t "
            f"ON 1=CONTAINS(POINT('ICRS', t.ra, t.dec), CIRCLE('ICRS', c.ra, c.dec, {radius_deg!r}))")


def single_cone_adql(k, ra0, dec0, radius_deg):
    return (f"SELECT {k} AS cone, id FROM x.big WHERE "
            f"1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra0!r}, {dec0!r}, {radius_deg!r}))")


# ---------------------------------------------------------------------------------------------
# astropy, each workload in its own process


def astropy_worker(args) -> int:
    import astropy.units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    rec = {}
    # first-call costs (lazy imports, frame machinery) out of the timed call
    w = SkyCoord([1.0, 2.0], [3.0, 4.0], unit="deg")
    search_around_sky(w, w, 1 * u.deg, storekdtree=False)
    w.separation(w[0])
    t0 = time.perf_counter()
    r1, d1 = read_coords(args.worker_in1)
    r2, d2 = read_coords(args.worker_in2)
    rec["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    c1 = SkyCoord(r1, d1, unit="deg")
    c2 = SkyCoord(r2, d2, unit="deg")
    rec["skycoord_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    i, j, _, _ = search_around_sky(c1, c2, args.worker_radius * u.deg, storekdtree=False)
    rec["search_s"] = time.perf_counter() - t0
    np.save(args.worker_out, np.stack([i.astype(np.int64), j.astype(np.int64)], axis=1))
    if args.worker_single:
        times = []
        for k in range(min(args.worker_single, len(c1))):
            t0 = time.perf_counter()
            sel = np.nonzero(c2.separation(c1[k]).deg <= args.worker_radius)[0]
            times.append(time.perf_counter() - t0)
            rec.setdefault("single_rows", []).append([k, sel.tolist()])
        rec["single_s"] = times
    rec["maxrss"] = peak_rss_self()
    print(json.dumps(rec))
    return 0


def run_astropy(in1, in2, radius_deg, out_npy, single=0):
    cmd = [sys.executable, __file__, "--worker", "astropy", "--worker-in1", str(in1),
           "--worker-in2", str(in2), "--worker-radius", repr(radius_deg),
           "--worker-out", str(out_npy), "--worker-single", str(single)]
    out = sink_dir() / "astropy.json"
    r = run_timed(cmd, stdout=out)
    if r["rc"] != 0:
        raise RuntimeError(f"astropy worker failed: {r['stderr'][-2000:]}")
    rec = json.loads(out.read_text())
    out.unlink()
    rec["pairs"] = np.load(out_npy)
    return rec


# ---------------------------------------------------------------------------------------------
# PostgreSQL + Q3C


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir():
    for d in ["/usr/lib/postgresql/15/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if Path(d, "initdb").exists():
            return Path(d)
    return None


def q3c_available():
    pgbin = pg_bindir()
    if pgbin is None:
        return "no PostgreSQL server found (apt-get install postgresql)"
    version = pgbin.parent.name
    if not glob.glob(f"/usr/share/postgresql/{version}/extension/q3c.control"):
        return f"Q3C is not installed (apt-get install postgresql-{version}-q3c)"
    return None


class Postgres:
    """A throw-away cluster in the work folder, on a free port of 127.0.0.1."""

    def __init__(self, threads):
        self.bin = pg_bindir()
        self.dir = work_dir() / "pg"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        if self.as_user:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = self.dir / "data"
        subprocess.run(self.as_user + [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                       "--auth=trust", "-E", "UTF8", "--no-instructions"],
                       check=True, capture_output=True)
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        workers = max(0, (threads or os.cpu_count()) - 1)
        self.settings = {
            "listen_addresses": "'127.0.0.1'", "port": self.port,
            "unix_socket_directories": f"'{self.dir}'",
            "shared_buffers": f"{max(128, min(4096, mem // 4 // 2**20))}MB",
            "work_mem": "256MB", "maintenance_work_mem": "1GB",
            "max_parallel_workers_per_gather": workers,
            "max_parallel_maintenance_workers": workers,
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_wal_size": "8GB",
        }
        with open(self.data / "postgresql.conf", "a") as f:
            for k, v in self.settings.items():
                f.write(f"{k} = {v}\n")
        subprocess.run(self.as_user + [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                                       str(self.dir / "log"), "-w", "start"],
                       check=True, capture_output=True)
        self.sql("CREATE EXTENSION q3c")

    def psql(self, *args):
        return self.as_user + [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                               "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                               "-d", "postgres", *args]

    def sql(self, statement, stdout=None, stdin=None):
        r = run_timed(self.psql("-c", statement), stdout=stdout, stdin=stdin)
        if r["rc"] != 0:
            raise RuntimeError(f"psql failed: {statement[:200]}: {r['stderr']}")
        return r["wall"]

    def value(self, statement):
        return subprocess.run(self.psql("-At", "-c", statement), check=True, capture_output=True,
                              text=True).stdout.strip()

    def load(self, name, pgcopy):
        self.sql(f"DROP TABLE IF EXISTS {name}; "
                 f"CREATE TABLE {name} (id bigint, ra double precision, dec double precision)")
        t_load = self.sql(f"COPY {name} FROM STDIN (FORMAT binary)", stdin=pgcopy)
        t_index = self.sql(f"CREATE INDEX {name}_q3c ON {name} (q3c_ang2ipix(ra, dec))")
        t_cluster = self.sql(f"CLUSTER {name} USING {name}_q3c")
        t_analyze = self.sql(f"ANALYZE {name}")
        return {"load": t_load, "index": t_index, "cluster": t_cluster, "analyze": t_analyze}

    def stop(self):
        subprocess.run(self.as_user + [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                       "-w", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def q3c_join_sql(left, right, radius_deg):
    return (f"COPY (SELECT {left}.id, {right}.id FROM {left}, {right} "
            f"WHERE q3c_join({left}.ra, {left}.dec, {right}.ra, {right}.dec, {radius_deg!r})) "
            f"TO STDOUT (FORMAT csv)")


# ---------------------------------------------------------------------------------------------
# Report


def fmt_s(r):
    if r is None:
        return "n/a"
    return f"{r:,.3f}" if r < 10 else f"{r:,.1f}"


def ratio(other, mine):
    if other is None or mine is None or mine <= 0:
        return ""
    return f"{other / mine:.2f}"


def machine_line(versions):
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    v = ", ".join(f"{k} {val}" for k, val in versions.items() if val)
    return (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}, numpy {np.__version__}, {v}; "
            f"{time.strftime('%Y-%m-%d %H:%M')}")


def insitu_version(binary):
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        rev, dirty = "", ""
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(Path(binary).stat().st_mtime))
    return f"{binary} (built {built}; repo at {rev}{'+changes' if dirty else ''})"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2%% of the sizes, same densities (< 1 min)")
    ap.add_argument("--skip-q3c", action="store_true", help="no PostgreSQL + Q3C")
    ap.add_argument("--skip", nargs="*", default=[], choices=["insitu", "astropy", "q3c", "parquet"])
    ap.add_argument("--threads", type=int, help="cores for insitu and Postgres (default: all)")
    ap.add_argument("--insitu-bin", type=Path, default=REPO / "target" / "release" / "insitu")
    ap.add_argument("--insitu-timeout", type=float, default=150.0,
                    help="seconds before an insitu run is killed (default 150)")
    ap.add_argument("--radius", type=float, default=1.0, help="cross-match radius, arcsec (default 1)")
    ap.add_argument("--cone-radius", type=float, default=10.0, help="cone radius, arcsec (default 10)")
    ap.add_argument("--single-cones", type=int, default=20,
                    help="single-cone insitu processes timed (default 20)")
    ap.add_argument("--single-cones-astropy", type=int, default=5,
                    help="single-cone astropy separation() calls timed (default 5)")
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--results", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-in1", help=argparse.SUPPRESS)
    ap.add_argument("--worker-in2", help=argparse.SUPPRESS)
    ap.add_argument("--worker-radius", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    ap.add_argument("--worker-single", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "astropy":
        return astropy_worker(args)

    skip = set(args.skip) | ({"q3c"} if args.skip_q3c else set())
    scale = 0.02 if args.quick else 1.0
    sizes = {k: max(1, int(round(v * scale))) for k, v in FULL.items()}
    if args.quick:
        sizes["cones"] = 100
        args.single_cones = min(args.single_cones, 5)
        args.single_cones_astropy = min(args.single_cones_astropy, 3)
    r_deg = args.radius / 3600.0
    rc_deg = args.cone_radius / 3600.0
    binary = args.insitu_bin.resolve()
    if "insitu" not in skip and not binary.is_file():
        print(f"no insitu binary at {binary}: run `cargo build --release -p insitu-server` "
              "or pass --insitu-bin", file=sys.stderr)
        return 2
    if "q3c" not in skip:
        why = q3c_available()
        if why:
            print(f"Q3C skipped: {why}", file=sys.stderr)
            skip.add("q3c")
    if args.threads and not shutil.which("taskset"):
        print("--threads needs taskset (util-linux)", file=sys.stderr)
        return 2
    parquet = have_pyarrow() and "parquet" not in skip and "insitu" not in skip

    import astropy
    import scipy

    sink_dir().mkdir(parents=True, exist_ok=True)
    box = patch(scale)
    print(f"catalogues: uniform in RA {box[0]:.4f}..{box[1]:.4f}, Dec {box[2]:.4f}..{box[3]:.4f} "
          f"({FULL_AREA_DEG2 * scale:g} deg^2), seed {args.seed}; sizes "
          + ", ".join(f"{k} {v:,}" for k, v in sizes.items()), flush=True)
    cats = ensure_catalogues(sizes, scale, args.seed)
    coords = {name: Catalogue(c["fits"]) for name, c in cats.items()}
    n = {k: f"{v:,}" if v < 1000 or v % 1000 else (f"{v // 1_000_000}M" if v % 1_000_000 == 0 else f"{v // 1000}k")
         for k, v in sizes.items()}
    workloads = [
        ("xm1", f"xmatch {n['a']} x {n['b']}, r = {args.radius:g}\"", "a", "b", r_deg),
        ("xm2", f"xmatch {n['s']} x {n['big']}, r = {args.radius:g}\"", "s", "big", r_deg),
        ("cones", f"{sizes['cones']:,} cones r = {args.cone_radius:g}\" on {n['big']}", "cones", "big", rc_deg),
    ]

    rows = []  # (workload, tool, variant, seconds, count, note, extra)
    records = {"sizes": sizes, "patch": box, "radius_arcsec": args.radius,
               "cone_radius_arcsec": args.cone_radius, "threads": args.threads, "runs": []}
    pairs = {w[0]: {} for w in workloads}
    # (workload, tool, kind) -> seconds, for the ratios: "batch" (one join or one call for all
    # the pairs or cones) and "each" (1,000 single cones, measured or extrapolated)
    primary = {}

    def add(wid, tool, variant, seconds, count, note="", ref=None, **extra):
        if ref and seconds is not None:
            primary[wid, tool, ref] = seconds
        extra["ref"] = ref
        rows.append((wid, tool, variant, seconds, count, note, extra))
        records["runs"].append({"workload": wid, "tool": tool, "variant": variant, "seconds": seconds,
                                "count": count, "note": note, **extra})
        label = f"{tool} {variant}".strip()
        print(f"  {wid:6s} {label:58s} {fmt_s(seconds):>9s} s  {'' if count is None else f'{count:,}':>10s}"
              f"  {note}", flush=True)

    # --- insitu ---------------------------------------------------------------------------------
    if "insitu" not in skip:
        print(f"insitu: {insitu_version(binary)}", flush=True)
        formats = ["fits"] + (["parquet"] if parquet else [])
        for fmt in formats:
            for wid, label, t1, t2, rad in workloads:
                adql = cones_adql(rad) if wid == "cones" else xmatch_adql(rad, t1, t2)
                out = sink_dir() / f"insitu_{wid}.csv"
                r = run_insitu(binary, args.threads, {t1: cats[t1][fmt], t2: cats[t2][fmt]}, adql, out,
                               args.insitu_timeout)
                ok = not r.get("note")
                variant = ("one query, centres as a table (CONTAINS join)" if wid == "cones" else "DISTANCE join")
                variant += f" [{fmt}]"
                count = None
                if ok:
                    p = read_pairs(out, skip_header=True)
                    count = len(p)
                    if fmt == "fits":
                        pairs[wid]["insitu"] = p
                    else:
                        pairs[wid][f"insitu-{fmt}"] = p
                out.unlink(missing_ok=True)
                add(wid, "insitu", variant, r["wall"] if ok else None, count, r.get("note", ""),
                    ref="batch" if fmt == "fits" else None,
                    maxrss=r["maxrss"], maxrss_exact=r["maxrss_exact"], input_bytes=r["input_bytes"], command=" ".join(
                        insitu_cmd(binary, args.threads, {t1: cats[t1][fmt], t2: cats[t2][fmt]}, adql)[:-1])
                    + f" {json.dumps(adql)}")
                if ok:
                    print(f"         peak RSS {fmt_bytes(r['maxrss'], r['maxrss_exact'])} for "
                          f"{fmt_bytes(r['input_bytes'])} of input",
                          flush=True)
        # single-cone processes on the FITS table
        cra, cdec = coords["cones"].radec()
        times, single_rows = [], []
        for k in range(min(args.single_cones, sizes["cones"])):
            out = sink_dir() / "insitu_cone.csv"
            r = run_insitu(binary, args.threads, {"big": cats["big"]["fits"]},
                           single_cone_adql(k, float(cra[k]), float(cdec[k]), rc_deg), out, args.insitu_timeout)
            if r.get("note"):
                add("cones", "insitu", "single-cone process", None, None, r["note"])
                break
            times.append(r["wall"])
            single_rows.append(read_pairs(out, skip_header=True))
            out.unlink(missing_ok=True)
        if times and len(times) == min(args.single_cones, sizes["cones"]):
            med = float(np.median(times))
            got = np.concatenate(single_rows)
            pairs["cones"]["insitu single-cone sample"] = got
            add("cones", "insitu", f"single-cone processes: median of {len(times)}", med, len(got),
                f"per cone; min {min(times):.3f} s, max {max(times):.3f} s", maxrss=r["maxrss"])
            add("cones", "insitu", f"  x {sizes['cones']:,} (extrapolated, one process per cone)",
                med * sizes["cones"], None, "", ref="each")

    # --- astropy --------------------------------------------------------------------------------
    if "astropy" not in skip:
        print(f"astropy {astropy.__version__}, scipy {scipy.__version__}", flush=True)
        for wid, label, t1, t2, rad in workloads:
            single = args.single_cones_astropy if wid == "cones" else 0
            rec = run_astropy(cats[t1]["fits"], cats[t2]["fits"], rad, sink_dir() / f"astropy_{wid}.npy", single)
            (sink_dir() / f"astropy_{wid}.npy").unlink(missing_ok=True)
            pairs[wid]["astropy"] = rec["pairs"]
            variant = ("search_around_sky(centres, table)" if wid == "cones" else "search_around_sky")
            add(wid, "astropy", variant, rec["search_s"], len(rec["pairs"]),
                f"+ {rec['skycoord_s']:.2f} s SkyCoord, {rec['read_s']:.2f} s FITS read (not counted); "
                f"peak RSS {fmt_bytes(rec['maxrss'])}", ref="batch", maxrss=rec["maxrss"])
            if single:
                med = float(np.median(rec["single_s"]))
                sample = np.array([[k, i] for k, sel in rec["single_rows"] for i in sel], dtype=np.int64)
                pairs[wid]["astropy separation() sample"] = sample.reshape(-1, 2)
                add(wid, "astropy", f"separation() <= r per cone: median of {single}", med, len(sample), "per cone")
                add(wid, "astropy", f"  x {sizes['cones']:,} (extrapolated)", med * sizes["cones"], None, "",
                    ref="each")

    # --- Q3C ------------------------------------------------------------------------------------
    if "q3c" not in skip:
        pg = None
        try:
            t0 = time.perf_counter()
            pg = Postgres(args.threads)
            version = pg.value("SHOW server_version")
            q3cv = pg.value("SELECT extversion FROM pg_extension WHERE extname = 'q3c'")
            print(f"PostgreSQL {version}, Q3C {q3cv} (cluster started in {time.perf_counter() - t0:.1f} s; "
                  + ", ".join(f"{k}={v}" for k, v in pg.settings.items()
                              if k not in ("listen_addresses", "port", "unix_socket_directories")) + ")",
                  flush=True)
            records["postgres"] = {"version": version, "q3c": q3cv, "settings": pg.settings}
            loads = {}
            for name in ("a", "b", "s", "big", "cones"):
                loads[name] = pg.load(name, cats[name]["pg"])
                t = loads[name]
                print(f"  loaded {name} ({sizes[name]:,} rows): COPY {t['load']:.2f} s; index "
                      f"{t['index']:.2f} s + CLUSTER {t['cluster']:.2f} s + ANALYZE {t['analyze']:.2f} s",
                      flush=True)
            records["postgres"]["loads"] = loads
            for wid, label, t1, t2, rad in workloads:
                out = sink_dir() / f"q3c_{wid}.csv"
                wall = pg.sql(q3c_join_sql(t1, t2, rad), stdout=out)
                p = read_pairs(out, skip_header=False)
                out.unlink(missing_ok=True)
                pairs[wid]["q3c"] = p
                idx = loads[t2]["index"] + loads[t2]["cluster"] + loads[t2]["analyze"]
                variant = ("q3c_join(centres table, table)" if wid == "cones" else "q3c_join")
                add(wid, "q3c", variant, wall, len(p),
                    f"index + CLUSTER + ANALYZE of {t2} ({sizes[t2]:,} rows): {idx:.2f} s, not counted",
                    ref="batch")
            # 1,000 cones as 1,000 statements in one session
            cra, cdec = coords["cones"].radec()
            script = sink_dir() / "q3c_cones.sql"
            with open(script, "w") as f:
                for k in range(sizes["cones"]):
                    f.write(f"COPY (SELECT {k}, id FROM big WHERE q3c_radial_query(ra, dec, {float(cra[k])!r}, "
                            f"{float(cdec[k])!r}, {rc_deg!r})) TO STDOUT (FORMAT csv);\n")
            script.chmod(0o644)
            out = sink_dir() / "q3c_cones.csv"
            r = run_timed(pg.psql("-f", str(script)), stdout=out)
            if r["rc"] != 0:
                raise RuntimeError(f"psql failed: {r['stderr']}")
            p = read_pairs(out, skip_header=False)
            out.unlink(missing_ok=True)
            script.unlink(missing_ok=True)
            pairs["cones"]["q3c radial_query"] = p
            add("cones", "q3c", f"{sizes['cones']:,} q3c_radial_query statements, one psql session", r["wall"],
                len(p), "", ref="each")
        finally:
            if pg is not None:
                pg.stop()

    # --- agreement ------------------------------------------------------------------------------
    print("checking that every tool found the same pairs ...", flush=True)
    for wid, label, t1, t2, rad in workloads:
        full = {k: v for k, v in pairs[wid].items() if "sample" not in k}
        if len(full) >= 2:
            edge = compare(full, coords[t1], coords[t2], rad)
            records.setdefault("edge_pairs", {})[wid] = edge
            print(f"  {label}: {', '.join(f'{k} {len(v):,}' for k, v in full.items())} -- same set"
                  + (f" ({edge} pairs within {EDGE_DEG} deg of r left out)" if edge else ""), flush=True)
        samples = {k: v for k, v in pairs[wid].items() if "sample" in k}
        for k, v in samples.items():
            ref_name = next(iter(full), None)
            if ref_name is None:
                continue
            cones_in = np.unique(v[:, 0]) if len(v) else np.empty(0, dtype=np.int64)
            n_cones = args.single_cones if k.startswith("insitu") else args.single_cones_astropy
            ref = full[ref_name]
            ref = ref[ref[:, 0] < n_cones]
            compare({ref_name: ref, k: v}, coords[t1], coords[t2], rad)
            print(f"  {label}: {k} ({len(cones_in)} cones with rows, {len(v)} rows) -- same as {ref_name}")

    # --- table ----------------------------------------------------------------------------------
    versions = {"astropy": astropy.__version__, "scipy": scipy.__version__,
                "PostgreSQL": records.get("postgres", {}).get("version"),
                "Q3C": records.get("postgres", {}).get("q3c")}
    lines = [f"Cross-match and cone-search comparison ({'--quick, ' if args.quick else ''}"
             f"{FULL_AREA_DEG2 * scale:g} deg^2 patch, seed {args.seed}, "
             f"threads {args.threads or os.cpu_count()})", "",
             machine_line(versions), "",
             "| workload | tool | what is timed | seconds | pairs / rows | astropy s / insitu s | Q3C s / insitu s | notes |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for wid, tool, variant, seconds, count, note, extra in rows:
        label = next(w[1] for w in workloads if w[0] == wid)
        ra_ = rq_ = ""
        if tool == "insitu" and extra.get("ref"):
            ra_ = ratio(primary.get((wid, "astropy", extra["ref"])), seconds)
            rq_ = ratio(primary.get((wid, "q3c", extra["ref"])), seconds)
        if tool == "insitu" and extra.get("maxrss") and "[" in variant and seconds is not None:
            note = (note + "; " if note else "") + (f"peak RSS {fmt_bytes(extra['maxrss'], extra['maxrss_exact'])} for "
                                                     f"{fmt_bytes(extra['input_bytes'])} of input")
        lines.append(f"| {label} | {tool} | {variant} | {fmt_s(seconds)} | "
                     f"{'' if count is None else f'{count:,}'} | {ra_} | {rq_} | {note} |")
    lines += ["", "Ratios: other tool's seconds / insitu's (on FITS), like for like: a join or "
              "one call for all the pairs or cones (insitu's join, astropy's search_around_sky, "
              "Q3C's q3c_join) against each other; and cones one at a time (insitu: one process "
              "per cone, extrapolated from the sample; astropy: separation() per cone, "
              f"extrapolated; Q3C: {sizes['cones']:,} q3c_radial_query statements in one session, "
              "measured) against each other. Q3C's index build is not in its query times: see "
              "its load and index line below."]
    if "loads" in records.get("postgres", {}):
        lines.append("")
        lines.append("Q3C load and index (seconds): " + "; ".join(
            f"{k} COPY {v['load']:.2f}, index {v['index']:.2f}, CLUSTER {v['cluster']:.2f}, ANALYZE {v['analyze']:.2f}"
            for k, v in records["postgres"]["loads"].items()))
    text = "\n".join(lines)
    print()
    print(text)
    tag = "quick" if args.quick else "full"
    results = args.results or work_dir() / f"results_xmatch_{tag}.md"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text + "\n")
    results.with_suffix(".json").write_text(json.dumps(records, indent=1, default=str))
    print(f"\nwritten: {results} (+ .json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
