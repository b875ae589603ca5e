"""Small real datasets shipped in the repository, so the benchmark runs offline on a CPU.

- :func:`load_mfeat` — UCI Multiple Features, 2000 digits in six paired views (CC BY 4.0);
- :func:`load_spoken_written_digits` — FSDD MFCCs paired by class with MNIST images, like
  AV-MNIST (derived file under CC BY-SA 4.0);
- :func:`make_synthetic_av` — a seeded audio-visual generator in the regime where naive
  late fusion falls below the best single modality;
- :func:`bigbuckbunny_path` — a real 5.3 s H.264 + AAC clip for decoding tests (CC BY 3.0).

Provenance, licences and hashes: ``benchmarks/data/embedded/files/PROVENANCE.md`` and
``MANIFEST.json``; rebuild with ``python -m benchmarks.data.embedded.rebuild``.
"""

from ._dataset import MultiModalTensorDataset
from ._digits import load_spoken_written_digits
from ._media import BIGBUCKBUNNY_INFO, bigbuckbunny_path, probe_media
from ._mfeat import load_mfeat
from ._regimes import EMBEDDED_DATASETS, load_embedded
from ._synthetic import make_synthetic_av

__all__ = [
    "BIGBUCKBUNNY_INFO",
    "EMBEDDED_DATASETS",
    "MultiModalTensorDataset",
    "bigbuckbunny_path",
    "load_embedded",
    "load_mfeat",
    "load_spoken_written_digits",
    "make_synthetic_av",
    "probe_media",
]
