"""A tiny datalab for the launcher's tests (standard library only): it serves, under its
base URL, what the sandbox lets it do, so a test can ask it from outside.

    probe_datalab.py PORT BASE_URL

GET BASE/health            200 once listening
GET BASE/whoami            uid, gid, cwd, HOME, the INSITU_* environment (JSON)
GET BASE/limits            RLIMIT_AS and the CPUs it may run on (JSON)
GET BASE/write?path=P      try to create P and write to it: {"ok": bool, "error": str}
GET BASE/read?path=P       try to read P: {"ok": bool, "text": str, "error": str}
GET BASE/headers           the request headers the proxy sent (JSON)
"""

import json
import os
import resource
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT, BASE = int(sys.argv[1]), sys.argv[2]


class Probe(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        if not url.path.startswith(BASE):
            return self.answer(404, {"error": f"not under {BASE}"})
        what = url.path[len(BASE):]
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if what == "health":
            return self.answer(200, {"ok": True})
        if what == "whoami":
            return self.answer(200, {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
                                     "home": os.environ.get("HOME"), "pid": os.getpid(),
                                     "env": {k: v for k, v in os.environ.items() if k.startswith("INSITU_")}})
        if what == "limits":
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            return self.answer(200, {"as_soft": soft, "as_hard": hard, "cpus": sorted(os.sched_getaffinity(0))})
        if what == "headers":
            return self.answer(200, {k.lower(): v for k, v in self.headers.items()})
        if what == "write":
            try:
                with open(q["path"], "w") as f:
                    f.write("written by a datalab\n")
                return self.answer(200, {"ok": True, "error": ""})
            except OSError as e:
                return self.answer(200, {"ok": False, "error": f"{type(e).__name__}: {e}"})
        if what == "read":
            try:
                with open(q["path"]) as f:
                    return self.answer(200, {"ok": True, "text": f.read(), "error": ""})
            except OSError as e:
                return self.answer(200, {"ok": False, "text": "", "error": f"{type(e).__name__}: {e}"})
        return self.answer(404, {"error": what})


ThreadingHTTPServer(("127.0.0.1", PORT), Probe).serve_forever()
