import io
import pickle
import zipfile

import numpy as np
import pytest

from duma import params
from duma.params import ParamsError


def sample():
    return {
        "weights": np.arange(12, dtype=np.float32).reshape(3, 4),
        "bias": np.array([1.5, -2.0]),
        "labels": np.array(["cat", "dog"]),
        "empty": np.zeros((0, 3)),
        "scalar_array": np.array(3.25),
        "name": "mlp",
        "epochs": 3,
        "lr": 0.01,
        "np_float": np.float64(0.5),
        "np_int": np.int32(7),
        "flag": True,
        "nothing": None,
        "nan": float("nan"),
        "inf": float("-inf"),
        "blob": b"\x00\x01binary",
        "layers": [{"units": 4, "w": np.ones((2, 2), dtype=np.int64)}, ("tuple", 1)],
        "nested": {"$dict": "a key that looks like a tag", "deep": {"x": [1, [2, [3]]]}},
    }


def check_round_trip(loaded):
    original = sample()
    assert set(loaded) == set(original)
    for key in ["weights", "bias", "labels", "empty", "scalar_array"]:
        assert loaded[key].dtype == original[key].dtype
        assert loaded[key].shape == original[key].shape
        np.testing.assert_array_equal(loaded[key], original[key])
    assert loaded["name"] == "mlp" and loaded["epochs"] == 3 and loaded["lr"] == 0.01
    assert loaded["np_float"] == 0.5 and type(loaded["np_float"]) is float
    assert loaded["np_int"] == 7 and type(loaded["np_int"]) is int
    assert loaded["flag"] is True and loaded["nothing"] is None
    assert np.isnan(loaded["nan"]) and loaded["inf"] == float("-inf")
    assert loaded["blob"] == b"\x00\x01binary"
    assert loaded["layers"][0]["units"] == 4
    np.testing.assert_array_equal(loaded["layers"][0]["w"], np.ones((2, 2), dtype=np.int64))
    assert loaded["layers"][1] == ["tuple", 1]
    assert loaded["nested"] == {"$dict": "a key that looks like a tag", "deep": {"x": [1, [2, [3]]]}}


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "trial.params"
    size = params.save(sample(), path)
    assert size == path.stat().st_size
    check_round_trip(params.load(path))
    assert [p.name for p in tmp_path.iterdir()] == ["trial.params"]  # no temporary file left


def test_round_trip_through_bytes():
    data = params.dumps(sample())
    assert params.is_params(data)
    check_round_trip(params.loads(data))


def test_the_file_is_a_zip_with_a_json_manifest_and_npy_arrays(tmp_path):
    path = tmp_path / "p"
    params.save({"w": np.ones(3), "n": 1}, path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["arrays/0.npy", "duma-params.json"]
    # Readable by numpy's own npz loader too, without pickle.
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["arrays/0"], np.ones(3))


def test_object_arrays_are_refused():
    with pytest.raises(ParamsError, match=r"params\['w'\].*dtype `object`"):
        params.dumps({"w": np.array([{"a": 1}, None], dtype=object)})
    with pytest.raises(ParamsError, match=r"params\['l'\]\[0\]"):
        params.dumps({"l": [np.array([1, "a", None], dtype=object)]})


def test_arbitrary_objects_and_bad_keys_are_refused():
    class Model:
        pass

    with pytest.raises(ParamsError, match=r"params\['model'\] is a .*Model.*pickle is never used"):
        params.dumps({"model": Model()})
    with pytest.raises(ParamsError, match="keys must be strings"):
        params.dumps({"m": {1: "a"}})
    with pytest.raises(ParamsError, match="should be a dict"):
        params.dumps([1, 2])
    with pytest.raises(ParamsError):
        params.dumps({"s": {1, 2}})


def test_pickles_are_never_loaded(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    data = pickle.dumps({"w": Boom()})
    with pytest.raises(ParamsError, match="pickle"):
        params.loads(data)
    path = tmp_path / "pickled"
    path.write_bytes(data)
    with pytest.raises(ParamsError, match="pickle"):
        params.load(path)


def test_a_crafted_object_array_inside_the_zip_is_not_unpickled():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("duma-params.json", '{"format":"duma-params","version":1,"params":{"w":{"$array":"arrays/0.npy"}}}')
        npy = io.BytesIO()
        np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        zf.writestr("arrays/0.npy", npy.getvalue())
    with pytest.raises(ParamsError, match="without pickle"):
        params.loads(buf.getvalue())


@pytest.mark.parametrize(
    "manifest, reason",
    [
        ('{"format":"other","version":1,"params":{}}', "not in Duma's parameters format"),
        ('{"format":"duma-params","version":99,"params":{}}', "version 99"),
        ('{"format":"duma-params","version":1,"params":{"w":{"$array":"../etc/passwd"}}}', "invalid entry"),
        ('{"format":"duma-params","version":1,"params":{"w":{"$what":1}}}', "unknown node"),
        ("not json", "corrupt"),
    ],
)
def test_corrupt_or_foreign_files_fail_clearly(manifest, reason):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("duma-params.json", manifest)
    with pytest.raises(ParamsError, match=reason):
        params.loads(buf.getvalue())


def test_non_zip_input_fails_clearly(tmp_path):
    with pytest.raises(ParamsError, match="no zip header"):
        params.loads(b"DUMAPRMS\x01\x00")
    with pytest.raises(ParamsError, match="cannot read"):
        params.load(tmp_path / "missing")
    with pytest.raises(ParamsError, match="corrupt"):
        params.loads(b"PK\x03\x04truncated")
