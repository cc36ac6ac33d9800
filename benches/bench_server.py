"""`insitu serve` run for a benchmark: started on a free loopback port with its cache and state
in a work folder (emptied first), its log (one line per request) kept in `server.log` there,
its peak memory (VmHWM) and CPU time read from /proc, stopped with SIGTERM. Shared by
`load_tap.py`, `load_cutout.py` and `tensors_vs_python.py`; standard library only, so that the
scripts' worker processes in other venvs can import it too.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = re.compile(r"on (http://127\.0\.0\.1:\d+)/tap\b")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def vm_status(key, pid="self") -> int:
    """A /proc/PID/status figure in KiB (VmHWM, VmRSS), -1 when missing."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


class Server:
    """`insitu serve` with `args` (e.g. `--table`, `--volume`) and extra environment `env`."""

    def __init__(self, binary: Path, work: Path, args=(), env=None):
        for sub in ("cache", "state"):
            shutil.rmtree(work / sub, ignore_errors=True)
        self.cache = work / "cache"
        self.log_path = work / "server.log"
        cmd = [str(binary), "serve", "--listen", "127.0.0.1:0", "--cache-dir", str(self.cache),
               "--state-dir", str(work / "state"), *map(str, args)]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     env={**os.environ, **(env or {})})
        self.base = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.write(line)  # one line per request: kept, never printed
                m = READY.search(ANSI.sub("", line))
                if m and self.base is None:
                    self.base = m.group(1)
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 120
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"insitu serve did not start; see {self.log_path}")

    def status(self, key) -> int:
        return vm_status(key, self.proc.pid)

    def cpu_s(self) -> float:
        """utime + stime of the server (all its threads), in seconds."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def reset_peak(self):
        # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0, same user).
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def log_lines(self) -> list:
        """The log so far, without terminal colours."""
        self.log.flush()
        return [ANSI.sub("", line) for line in self.log_path.read_text().splitlines()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
