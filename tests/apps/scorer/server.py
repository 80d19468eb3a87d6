"""A tiny scorer: serves its model folder's manifest and a label read from the model."""

import hashlib
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

MODEL = Path(os.environ["SCORER_MODEL"])


def files() -> dict[str, str]:
    return {
        p.relative_to(MODEL).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(MODEL.rglob("*"))
        if p.is_file()
    }


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/ready":
            self._send(200, {"ready": True})
        elif self.path == "/model":
            found = files()
            self._send(200, {"count": len(found), "files": found})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path == "/predict":
            label = (MODEL / "labels.txt").read_text().splitlines()[0]
            self._send(200, {"label": label})
        else:
            self._send(404, {"error": "not found"})

    def log_message(self, *args: object) -> None:
        pass


HTTPServer(("0.0.0.0", 9090), Handler).serve_forever()
