"""The runner's JSON codec: orjson where the environment has it (Duma's base environment and
this test virtualenv do), the standard library otherwise — the same values either way."""

import json

import pytest

from duma.runner import protocol

FRAMES = [
    {"id": 7, "cmd": "predict", "queries": [[0.1, -2.5e-7, 3.0, 1e300, -0.0, 12345678901234567]]},
    {"queries": [{"b": 1, "a": [True, False, None], "é": "ünïcode ✓"}], "id": None},
    {"queries": [[-9223372036854775808, 18446744073709551615, 0.30000000000000004]]},
    {"queries": ["x" * 1000, "", "\u2028", "\ud7ff"]},
]


@pytest.fixture(params=["orjson", "json"])
def codec(request, monkeypatch):
    if request.param == "orjson":
        assert protocol._orjson is not None, "orjson belongs in this virtualenv (scripts/setup)"
    else:
        monkeypatch.setattr(protocol, "_orjson", None)
    return request.param


@pytest.mark.parametrize("frame", FRAMES)
def test_a_frame_reads_as_the_standard_library_reads_it(codec, frame):
    body = json.dumps(frame, ensure_ascii=False).encode("utf-8")
    decoded = protocol.decode_json(body)
    assert decoded == json.loads(body)
    assert list(decoded) == list(frame)  # key order kept


def test_what_is_not_utf8_json_is_a_value_error(codec):
    for body in (b'{"a": 1', b"\xff\xfe{}", b"NaN-ish", b""):
        with pytest.raises(ValueError):
            protocol.decode_json(body)


@pytest.mark.parametrize(
    "predictions",
    [[[0.1, 0.9]], [1, "two", None, True, {"k": [1.5e-7]}], [2**70, -(2**70)]],
)
def test_predictions_encode_to_the_same_values(codec, predictions):
    assert json.loads(protocol.encode_checked_json(predictions)) == predictions


def test_what_orjson_refuses_goes_to_the_standard_encoder(codec):
    assert json.loads(protocol.encode_checked_json([2**70])) == [2**70]
    with pytest.raises(ValueError):  # a lone surrogate cannot be UTF-8, whichever codec
        protocol.encode_checked_json(["\udc80"])
    with pytest.raises(ValueError):  # the standard encoder keeps refusing NaN
        protocol.encode_json([float("nan")])
