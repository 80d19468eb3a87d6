"""A keyword-sentiment service on the standard library: a differently shaped app for shipway's tests.

Unlike examples/flask_app it has no dependencies, listens on 9100, answers
readiness on /ready, keeps its model under /srv/lexicon/weights, and reads an
API key from /run/secrets/api_key (reporting only a fingerprint of it).
"""

from __future__ import annotations

import hashlib
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

WEIGHTS = Path(os.environ.get("LEXICON_WEIGHTS", "/srv/lexicon/weights"))
SECRET = Path("/run/secrets/api_key")


def load_lexicon(folder: Path) -> dict[str, float]:
    """The model: word -> weight, from lexicon.json."""
    data = json.loads((folder / "lexicon.json").read_text())
    return {str(k): float(v) for k, v in data["weights"].items()}


def score(lexicon: dict[str, float], text: str) -> float:
    words = [w.strip(".,!?").lower() for w in text.split()]
    return round(sum(lexicon.get(w, 0.0) for w in words), 3)


class Handler(BaseHTTPRequestHandler):
    lexicon: ClassVar[dict[str, float]] = {}

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/ready":
            self._send(200, {"words": len(self.lexicon)})
        elif self.path == "/key-fingerprint":
            key = SECRET.read_bytes() if SECRET.is_file() else b""
            self._send(200, {"fingerprint": hashlib.sha256(key).hexdigest()[:16] if key else None})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/v1/predict":
            self._send(404, {"error": "not found"})
            return
        try:
            length = min(int(self.headers.get("Content-Length", "0")), 65536)
            body = json.loads(self.rfile.read(length) or b"{}")
            text = body["text"]
            if not isinstance(text, str):
                raise TypeError("text must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, {"error": str(exc)[:100]})
            return
        self._send(200, {"score": score(self.lexicon, text)})

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def main() -> None:
    Handler.lexicon = load_lexicon(WEIGHTS)
    ThreadingHTTPServer(("0.0.0.0", 9100), Handler).serve_forever()


if __name__ == "__main__":
    main()
