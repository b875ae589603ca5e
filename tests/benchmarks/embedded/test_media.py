import numpy as np
import pytest

from benchmarks.data.embedded import BIGBUCKBUNNY_INFO, bigbuckbunny_path, probe_media

av = pytest.importorskip("av")


def test_probe_matches_recorded_properties():
    assert probe_media(bigbuckbunny_path(verify=True)) == BIGBUCKBUNNY_INFO


def test_decodes_a_few_frames_and_audio():
    with av.open(str(bigbuckbunny_path())) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 3:
                break
    assert [f.shape for f in frames] == [(720, 1280, 3)] * 3
    assert all(f.dtype == np.uint8 and f.std() > 0 for f in frames)
    with av.open(str(bigbuckbunny_path())) as container:
        chunk = next(container.decode(audio=0)).to_ndarray()
    assert chunk.shape[0] == 6
    assert chunk.dtype == np.float32
    assert np.abs(chunk).max() <= 1.5
