import json
from pathlib import Path

import pytest

from digits_api import create_app
from digits_api.model import ModelFormatError

DATA = Path(__file__).resolve().parents[1] / "data"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_version_reports_commit_and_model(client):
    body = client.get("/version").get_json()
    assert body["commit"] == "abc123"
    assert body["model"]["version"] == "7"
    assert body["model"]["format"] == "mlp-npz-v1"


def test_scores_a_held_out_seven(client):
    resp = client.post("/score", json=load("seven.json"))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["label"] == 7
    assert 0.9 <= body["confidence"] <= 1.0


def test_scores_a_batch_of_held_out_digits(client):
    resp = client.post("/score", json=load("heldout.json"))
    assert resp.status_code == 200
    assert resp.get_json()["labels"] == load("heldout_labels.json")["labels"]


def test_bad_json_is_400(client):
    resp = client.post("/score", data="{not json", content_type="application/json")
    assert resp.status_code == 400
    assert "JSON" in resp.get_json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"pixels": [1, 2, 3]},
        {"pixels": ["a"] * 64},
        {"pixels": [17] * 64},
        {"pixels": [-1] * 64},
        {"pixels": [True] * 64},
        {"instances": []},
        {"instances": [[0] * 64, [0] * 63]},
        {"pixels": [0] * 64, "instances": [[0] * 64]},
        [0] * 64,
    ],
)
def test_wrong_shape_or_values_is_422(client, body):
    resp = client.post("/score", json=body)
    assert resp.status_code == 422, resp.get_json()


def test_oversized_body_is_413(client):
    resp = client.post("/score", data="[" + "0," * 40000 + "0]", content_type="application/json")
    assert resp.status_code == 413


def test_unknown_path_is_json_404(client):
    resp = client.get("/nope")
    assert resp.status_code == 404
    assert "error" in resp.get_json()


def test_missing_model_fails_at_start(tmp_path):
    with pytest.raises(ModelFormatError):
        create_app(tmp_path)


def test_scrambled_model_gets_labels_wrong(tmp_path):
    from train import train

    train(tmp_path, scramble=True)
    resp = create_app(tmp_path).test_client().post("/score", json=load("heldout.json"))
    assert resp.get_json()["labels"] != load("heldout_labels.json")["labels"]
