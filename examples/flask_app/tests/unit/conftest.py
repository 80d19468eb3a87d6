import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(HERE))
# Hypothesis keeps a cache folder; not in the app's folder, which is the image's build context.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "digits-api-hypothesis"))

from train import train  # noqa: E402

from digits_api import create_app  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    train(out)
    return out


@pytest.fixture
def client(model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("APP_COMMIT", "abc123")
    monkeypatch.setenv("MODEL_VERSION", "7")
    return create_app(model_dir).test_client()
