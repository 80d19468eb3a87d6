"""The push stage shows a byte progress bar while layers still upload (on a terminal only)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

from rich.console import Console

from shipway.engine import _BlobUpload
from shipway.manifest import Blob, Image
from shipway.progress import Reporter

CHUNK = b"x" * 64_000


class SlowRegistry:
    """Reads every layer it is given, one chunk per 20 ms, as a registry upload would."""

    def __init__(self) -> None:
        self.bytes_uploaded = 0
        self.read = 0

    def upload_blobs(self, image: Image) -> int:
        for blob in image.layers:
            assert blob.opener is not None
            for chunk in blob.opener():
                self.read += len(chunk)
                time.sleep(0.02)
        self.bytes_uploaded += self.read
        return self.read


def layer(chunks: int) -> Blob:
    def opener() -> Iterator[bytes]:
        yield from (CHUNK for _ in range(chunks))

    return Blob(digest=f"sha256:{chunks:064d}", size=chunks * len(CHUNK), opener=opener)


def test_push_shows_a_bar_of_the_bytes_still_to_send_on_a_terminal() -> None:
    out = io.StringIO()
    reporter = Reporter(Console(file=out, width=120, force_terminal=True))
    registry = SlowRegistry()
    upload = _BlobUpload(registry, Image(config=b"{}", layers=(layer(10), layer(15))))  # type: ignore[arg-type]
    upload.wait(reporter)
    assert registry.read == 25 * len(CHUNK)
    assert upload.streamed == registry.read
    assert registry.bytes_uploaded == registry.read
    assert "push layers" in out.getvalue()


def test_no_bar_in_ci_logs() -> None:
    out = io.StringIO()
    reporter = Reporter(Console(file=out, width=120, force_terminal=False))
    upload = _BlobUpload(SlowRegistry(), Image(config=b"{}", layers=(layer(5),)))  # type: ignore[arg-type]
    upload.wait(reporter)
    assert out.getvalue() == ""
