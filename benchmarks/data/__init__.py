"""Datasets in their published on-disk formats, decoding, clip sampling, metrics, embedded data."""
