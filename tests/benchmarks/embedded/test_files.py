"""The committed files match MANIFEST.json and are described in PROVENANCE.md."""

import pytest

from benchmarks.data.embedded import _store

MANIFEST = _store.read_manifest()
FILES = sorted(MANIFEST["files"])
PROVENANCE = (_store.FILES_DIR / "PROVENANCE.md").read_text(encoding="utf-8")


def test_manifest_lists_the_three_files():
    assert FILES == ["bigbuckbunny.mp4", "mfeat.npz", "spoken_written_digits.npz"]


@pytest.mark.parametrize("name", FILES)
def test_file_matches_manifest(name):
    entry = MANIFEST["files"][name]
    path = _store.embedded_path(name, verify=True)  # checks sha256
    assert path.stat().st_size == entry["bytes"]
    if entry["content_sha256"] is not None:
        assert _store.content_sha256(_store.load_npz(path)) == entry["content_sha256"]


@pytest.mark.parametrize("name", FILES)
def test_provenance_records_file_sources_and_licence(name):
    entry = MANIFEST["files"][name]
    assert f"`{name}`" in PROVENANCE
    assert entry["sha256"] in PROVENANCE
    for source in entry["sources"]:
        assert source["wheel"] in PROVENANCE
        assert source["member"].rsplit("/", 1)[-1].split("-")[0] in PROVENANCE
        assert source["member_sha256"] in PROVENANCE
    for wheel_hash in MANIFEST["wheels"].values():
        assert wheel_hash in PROVENANCE


def test_provenance_names_the_licences():
    for licence in ("CC BY 4.0", "CC BY-SA 4.0", "CC BY 3.0"):
        assert licence in PROVENANCE
    assert "pairing by class only" in PROVENANCE.lower()


def test_total_size_stays_small():
    assert sum(e["bytes"] for e in MANIFEST["files"].values()) < 6_000_000
