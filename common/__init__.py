"""The shared base every trinity-data package may import; it imports none of them.

One module per idea, pure Python (no compiled core, no Ray at import time):

* :mod:`common.errors`: ``TrinityError`` and ``ConfigError``, the roots of every error.
* :mod:`common.fs`: fsspec locations, atomic writes (temporary name, then rename), and
  the one lister that expands files, folders and globs.
* :mod:`common.config`: YAML config files from any URI, the ``--set KEY=VALUE`` rule,
  and the one pydantic-error formatter.
* :mod:`common.cluster`: the one way to join or start a Ray cluster.

Nothing is imported here eagerly, so ``import common.errors`` costs only that module.
"""
