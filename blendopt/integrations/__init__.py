"""Glue for training frameworks, imported only on request (:mod:`.lightning`)."""
