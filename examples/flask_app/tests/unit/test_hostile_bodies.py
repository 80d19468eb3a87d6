"""/score never answers 5xx, whatever the body: every refusal is a 4xx with a JSON error."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digits_api.app import MAX_BODY, MAX_DEPTH

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**1000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=70) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=200,
)
ROWS = st.lists(st.one_of(JSON_SCALARS, st.integers(0, 16), st.floats(0, 16)), min_size=60, max_size=68)
SHAPED = st.one_of(
    st.fixed_dictionaries({"pixels": ROWS}),
    st.fixed_dictionaries({"instances": st.lists(ROWS, max_size=3)}),
    st.fixed_dictionaries({"pixels": JSON_VALUES}),
    st.fixed_dictionaries({"instances": JSON_VALUES}),
)
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _assert_clean_refusal_or_answer(resp) -> None:
    assert resp.status_code < 500, resp.get_data()[:300]
    assert resp.is_json, resp.get_data()[:300]
    body = resp.get_json()
    assert isinstance(body, dict)
    if resp.status_code >= 400:
        assert isinstance(body.get("error"), str)


@FUZZ
@given(payload=st.one_of(JSON_VALUES, SHAPED))
def test_score_never_fails_on_any_json(client, payload) -> None:
    text = json.dumps(payload)  # NaN and Infinity come out as the non-standard tokens, on purpose
    resp = client.post("/score", data=text, content_type="application/json")
    _assert_clean_refusal_or_answer(resp)


@FUZZ
@given(data=st.binary(max_size=2048), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_score_never_fails_on_any_bytes(client, data: bytes, content_type: str) -> None:
    resp = client.post("/score", data=data, content_type=content_type)
    _assert_clean_refusal_or_answer(resp)


def test_json_nested_20000_deep_is_400(client) -> None:
    resp = client.post("/score", data="[" * 20_000 + "]" * 20_000, content_type="application/json")
    assert resp.status_code == 400
    assert "nested" in resp.get_json()["error"]


def test_nesting_inside_pixels_is_400(client) -> None:
    body = '{"pixels": ' + "[" * 20_000 + "]" * 20_000 + "}"
    resp = client.post("/score", data=body, content_type="application/json")
    assert resp.status_code == 400


def test_nesting_within_the_limit_is_an_ordinary_shape_error(client) -> None:
    depth = MAX_DEPTH - 1
    resp = client.post("/score", data="[" * depth + "]" * depth, content_type="application/json")
    assert resp.status_code == 422


def test_a_4300_digit_integer_pixel_is_422(client) -> None:
    row = ["9" * 4300] + ["1"] * 63
    resp = client.post("/score", data='{"pixels": [' + ",".join(row) + "]}", content_type="application/json")
    assert resp.status_code == 422
    assert "pixel values" in resp.get_json()["error"]


def test_a_4301_digit_integer_is_400(client) -> None:
    row = ["9" * 4301] + ["1"] * 63
    resp = client.post("/score", data='{"pixels": [' + ",".join(row) + "]}", content_type="application/json")
    assert resp.status_code == 400


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_constants_are_400(client, token: str) -> None:
    resp = client.post("/score", data='{"pixels": [' + ",".join([token] * 64) + "]}", content_type="application/json")
    assert resp.status_code == 400
    assert token in resp.get_json()["error"]


def test_non_utf8_is_400(client) -> None:
    resp = client.post("/score", data=b'{"pixels": "\xff\xfe"}', content_type="application/json")
    assert resp.status_code == 400


def test_a_body_at_the_size_limit_is_refused_by_shape_not_by_crash(client) -> None:
    body = "[" + ",".join(["0"] * ((MAX_BODY - 2) // 2)) + "]"
    assert len(body) <= MAX_BODY
    resp = client.post("/score", data=body, content_type="application/json")
    assert resp.status_code == 422


def test_a_valid_row_still_scores(client) -> None:
    resp = client.post("/score", data=json.dumps({"pixels": [0] * 64}), content_type="application/json")
    assert resp.status_code == 200
    assert set(resp.get_json()) == {"label", "confidence"}
