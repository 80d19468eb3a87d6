"""HTTP API: /healthz, /version and /score.

/score answers 4xx with a JSON error to any body it cannot score (not JSON, not UTF-8, NaN or
Infinity, nested too deep, integers too long, wrong shape or values): never 5xx.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from digits_api.model import DigitsModel

MAX_BODY = 64 * 1024
MAX_BATCH = 256
MAX_DEPTH = 32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")


class BadInput(Exception):
    """A request that parsed as JSON but does not hold valid pixel rows (HTTP 422)."""


class BadBody(Exception):
    """A request body that is not strict JSON this app will parse (HTTP 400)."""


def create_app(model_dir: str | os.PathLike[str] | None = None) -> Flask:
    """Build the app; the model loads once, at start-up, so a bad model fails fast."""
    folder = Path(model_dir or os.environ.get("MODEL_DIR", "/app/model"))
    model = DigitsModel.load(folder)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    version = {
        "commit": os.environ.get("APP_COMMIT", "unknown"),
        "model": {
            "name": os.environ.get("MODEL_NAME", model.info.get("name", "unknown")),
            "version": os.environ.get("MODEL_VERSION", "unknown"),
            "digest": os.environ.get("MODEL_DIGEST", "unknown"),
            "format": model.info["format"],
        },
    }

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.get("/version")
    def get_version() -> Any:
        return jsonify(version)

    @app.post("/score")
    def score() -> Any:
        if not request.is_json:
            return jsonify(error="body must be JSON with Content-Type: application/json"), 400
        try:
            payload = parse_json(request.get_data(cache=False))
        except BadBody as exc:
            return jsonify(error=str(exc)), 400
        try:
            single, rows = _rows(payload, model.n_features, model.max_value)
        except BadInput as exc:
            return jsonify(error=str(exc)), 422
        labels, confidences = model.predict(rows)
        if single:
            return jsonify(label=labels[0], confidence=confidences[0])
        return jsonify(labels=labels, confidences=confidences)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return jsonify(error=exc.description), exc.code

    return app


def parse_json(body: bytes) -> Any:
    """Strict JSON from a UTF-8 body: no NaN/Infinity, at most :data:`MAX_DEPTH` levels of nesting.

    The depth is checked before parsing, because Python's parser recurses once per level.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"body must be UTF-8 (invalid byte at offset {exc.start})") from None
    depth = deepest = 0
    for bracket in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        raise BadBody(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise BadBody(f"body is not valid JSON: {str(exc)[:120]}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _rows(payload: Any, n_features: int, max_value: float) -> tuple[bool, np.ndarray]:
    if not isinstance(payload, dict) or ("pixels" in payload) == ("instances" in payload):
        raise BadInput('send {"pixels": [64 numbers]} or {"instances": [[64 numbers], ...]}')
    single = "pixels" in payload
    rows = [payload["pixels"]] if single else payload["instances"]
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_BATCH:
        raise BadInput(f"instances must be a list of 1 to {MAX_BATCH} rows")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != n_features:
            raise BadInput(f"row {i}: expected a list of {n_features} numbers")
        for v in row:
            # A comparison, not float(v): an integer of thousands of digits must not overflow.
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= max_value:
                raise BadInput(f"row {i}: pixel values must be numbers from 0 to {max_value:g}")
    return single, np.asarray(rows, dtype=np.float32)
