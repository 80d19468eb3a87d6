"""`--report report.html`: one self-contained HTML page for a run or a release.

Stages and timings, the image's layers (size, and whether the previous build
already had them), the model (name, version, digest, files), the commit, and
every verify check with the start of its response. No external resource: the
page opens from a CI artifact, offline, and nothing in it runs script.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipway.domain import BuildRecord, ReleaseRecord

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;color:#1d232a;
padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:1.75rem 0 .5rem;border-bottom:1px solid #d8dee4}
.status{display:inline-block;padding:.1rem .6rem;border-radius:1rem;font-weight:600;color:#fff}
.ok,.built,.deployed,.noop,.reused{background:#1a7f37}.failed,.rolled_back{background:#cf222e}.skipped{background:#9a6700}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #eaeef2;
vertical-align:top}th{background:#f6f8fa;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px;word-break:break-all}
.bar{background:#0969da;height:.6rem;border-radius:.3rem;min-width:2px}.muted{color:#57606a}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dt{font-weight:600}dd{margin:0}
.error{background:#ffebe9;border:1px solid #ff8182;padding:.6rem;border-radius:.4rem;white-space:pre-wrap}
"""


@dataclass
class Layer:
    """One image layer as the report shows it."""

    diff_id: str
    size: int | None = None
    state: str = ""
    """``reused`` (the previous build had it), ``new``, or ``model``; empty when unknown."""


@dataclass
class ReportContext:
    """What the report adds to the record: layer sizes and reuse, the config file, the command."""

    command: str
    config: str = ""
    layers: list[Layer] = field(default_factory=list)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _status(value: str) -> str:
    return f'<span class="status {_e(value)}">{_e(value)}</span>'


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _stages(record: BuildRecord | ReleaseRecord) -> str:
    total = sum(s.seconds for s in record.stages) or 1.0
    rows = "".join(
        f"<tr><td>{_e(s.name)}</td><td>{_status(s.status)}</td><td class=num>{s.seconds:.1f} s</td>"
        f'<td><div class=bar style="width:{max(s.seconds / total * 100, 0.5):.1f}%"></div></td>'
        f"<td>{_e(s.detail)}</td></tr>"
        for s in record.stages
    )
    head = "<tr><th>stage</th><th>status</th><th>time</th><th style='width:25%'></th><th>detail</th></tr>"
    return f"<h2>Stages</h2><table>{head}{rows}</table>" if rows else "<h2>Stages</h2><p class=muted>none ran</p>"


def _checks(record: BuildRecord | ReleaseRecord) -> str:
    if not record.checks:
        return "<h2>Verify checks</h2><p class=muted>none ran</p>"
    rows = "".join(
        f"<tr><td class=mono>{_e(c.check)}</td><td>{_status('ok' if c.ok else 'failed')}</td>"
        f"<td>{_e(c.detail)}</td><td class=mono>{_e(c.response) or '<span class=muted>(empty)</span>'}</td></tr>"
        for c in record.checks
    )
    head = "<tr><th>check</th><th>result</th><th>detail</th><th>response (start)</th></tr>"
    return f"<h2>Verify checks</h2><table>{head}{rows}</table>"


def _layers(layers: list[Layer]) -> str:
    if not layers:
        return ""
    rows = "".join(
        f"<tr><td class=num>{i}</td><td class=mono>{_e(layer.diff_id)}</td><td class=num>{_size(layer.size)}</td>"
        f"<td>{_e(layer.state) or '-'}</td></tr>"
        for i, layer in enumerate(layers, 1)
    )
    head = "<tr><th>#</th><th>layer (diff ID)</th><th>size</th><th>this build</th></tr>"
    return f"<h2>Layers</h2><table>{head}{rows}</table>"


def _build_facts(record: BuildRecord) -> str:
    src = record.source
    commit = src.commit + (" (dirty)" if src.dirty else "")
    facts = [
        ("commit", f"<code>{_e(commit)}</code>"),
        ("branch", _e(src.branch or "-")),
        ("source", _e(src.url or "-")),
        ("image", f"<code>{_e(record.image or record.local_image_id or '-')}</code>"),
        ("base image", _e(record.base_image or "-")),
    ]
    if record.model is not None:
        m = record.model
        facts += [
            ("model", f"{_e(m.name)} version <b>{_e(m.version)}</b>"),
            ("model digest", f"<code>{_e(m.digest)}</code>"),
            ("model files", "<br>".join(f"<code>{_e(f.path)}</code> {_size(f.size)}" for f in m.files)),
        ]
    return _dl(facts)


def _release_facts(record: ReleaseRecord) -> str:
    facts = [
        ("environment", _e(record.environment)),
        ("image", f"<code>{_e(record.image or '-')}</code>"),
        ("previous", f"<code>{_e(record.previous or '-')}</code>"),
    ]
    if record.message:
        facts.append(("message", _e(record.message)))
    return _dl(facts)


def _dl(facts: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"


def render(record: BuildRecord | ReleaseRecord, ctx: ReportContext) -> str:
    """The whole page as one string: inline CSS, no script, no external resource."""
    if isinstance(record, BuildRecord):
        outcome = getattr(record, "action", "built") if record.status == "ok" else "failed"
        title = f"shipway {ctx.command}: {record.app}"
        facts = _build_facts(record)
        status = record.status
    else:
        outcome = record.action
        title = f"shipway {ctx.command}: {record.app} ({record.environment})"
        facts = _release_facts(record)
        status = "failed" if record.error else "ok"
    error = f"<h2>Error</h2><div class=error>{_e(record.error)}</div>" if record.error else ""
    created = record.created.strftime("%Y-%m-%d %H:%M:%S UTC")
    total = sum(s.seconds for s in record.stages)
    data = json.dumps(record.model_dump(mode="json"), indent=1, sort_keys=True)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f"<p>{_status(status)} {_status(outcome)} <span class=muted>{_e(created)} · {total:.1f} s in stages"
        f"{' · ' + _e(ctx.config) if ctx.config else ''}</span></p>"
        f"{error}<h2>Summary</h2>{facts}{_stages(record)}"
        f"{_layers(ctx.layers) if isinstance(record, BuildRecord) else ''}{_checks(record)}"
        f"<h2>Record</h2><details><summary>the JSON record</summary><pre class=mono>{_e(data)}</pre></details>"
        "</body></html>\n"
    )


def write(path: Path, record: BuildRecord | ReleaseRecord, ctx: ReportContext) -> None:
    """Write the report; its folder is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(record, ctx), encoding="utf-8")


def layers_for(record: BuildRecord, records_dir: Path, sizes: dict[str, int]) -> list[Layer]:
    """The record's layers with sizes (when known) and whether the app's previous build had them."""
    this = record.model_dump(mode="json")["created"]
    previous: set[str] | None = None
    for path in sorted((records_dir / "builds").glob("*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("app") == record.app and data.get("layers") and str(data.get("created", "")) < this:
            previous = set(data["layers"])
            break
    model_layer = getattr(record, "model_layer", None)
    out = []
    for diff_id in record.layers:
        if diff_id == model_layer:
            state = "model"
        elif previous is None:
            state = ""
        else:
            state = "reused" if diff_id in previous else "new"
        out.append(Layer(diff_id, sizes.get(diff_id), state))
    return out
