import json
import zipfile

import numpy as np
import pytest

from benchmarks.data.embedded import _store


def test_save_npz_is_deterministic_and_loadable(tmp_path):
    arrays = {"b": np.arange(10, dtype=np.float16), "a": np.ones((3, 4), dtype=np.uint8)}
    first, second = tmp_path / "1.npz", tmp_path / "2.npz"
    _store.save_npz(first, arrays)
    _store.save_npz(second, dict(reversed(arrays.items())))
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert [i.filename for i in archive.infolist()] == ["a.npy", "b.npy"]
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    loaded = _store.load_npz(first)
    assert loaded.keys() == arrays.keys()
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)


def test_save_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="object"):
        _store.save_npz(tmp_path / "x.npz", {"x": np.array([1, "a"], dtype=object)})


def test_content_sha256_depends_on_content_not_order():
    a = {"x": np.zeros(3, np.float32), "y": np.ones(2, np.uint8)}
    b = {"y": np.ones(2, np.uint8), "x": np.zeros(3, np.float32)}
    assert _store.content_sha256(a) == _store.content_sha256(b)
    assert _store.content_sha256(a) != _store.content_sha256({**a, "x": np.zeros(3, np.float64)})
    assert _store.content_sha256(a) != _store.content_sha256(
        {**a, "x": np.zeros((3, 1), np.float32)}
    )


def test_embedded_path_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(_store, "FILES_DIR", tmp_path)
    monkeypatch.setattr(_store, "MANIFEST_PATH", tmp_path / "MANIFEST.json")
    with pytest.raises(FileNotFoundError, match="rebuild"):
        _store.embedded_path("missing.npz")
    (tmp_path / "f.bin").write_bytes(b"abc")
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"files": {"f.bin": {"sha256": "0" * 64}}}))
    assert _store.embedded_path("f.bin") == tmp_path / "f.bin"
    with pytest.raises(ValueError, match="sha256"):
        _store.embedded_path("f.bin", verify=True)
