"""RSDBLoader's documented signature and LoaderConfig name the same options, defaults included."""

from __future__ import annotations

import inspect

from rsdb.loader import _REMOTE_ARGS, LoaderConfig, RSDBLoader

# options that LoaderConfig does not validate: typed and checked by their own code
OWN_CHECKS = {"phases", "schedule", *_REMOTE_ARGS}


def _keyword_params():
    params = inspect.signature(RSDBLoader.__init__).parameters
    return {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_signature_and_config_name_the_same_options():
    assert set(_keyword_params()) == set(LoaderConfig.model_fields) | OWN_CHECKS


def test_signature_defaults_are_the_config_defaults():
    params = _keyword_params()
    for name, field in LoaderConfig.model_fields.items():
        assert params[name].default == field.default, name


def test_pickled_kwargs_are_every_option(tmp_path):
    import rsdb

    rsdb.write_shards(tmp_path, [[1, 2, 3], [4, 5]])
    loader = RSDBLoader({"s": str(tmp_path)}, seq_len=4, batch_size=1, buffer_docs=2, seed=3)
    kwargs = loader.__getstate__()["kwargs"]
    assert set(kwargs) == set(LoaderConfig.model_fields) | set(_REMOTE_ARGS)
    assert kwargs["seed"] == 3 and kwargs["fields"] == tuple(rsdb.loader.FIELDS)


def test_docstring_documents_every_option():
    doc = RSDBLoader.__doc__
    missing = [n for n in _keyword_params() if f"{n}:" not in doc and f"{n}," not in doc]
    assert not missing, f"RSDBLoader's Args do not document {missing}"


def test_pickled_kwargs_are_the_validated_config(tmp_path):
    import rsdb

    rsdb.write_shards(tmp_path, [[1, 2, 3], [4, 5]])
    loader = RSDBLoader({"s": str(tmp_path)}, seq_len=4, batch_size=1, buffer_docs=2, populate=True,
                        fields=("loss_mask",))
    kwargs = loader.__getstate__()["kwargs"]
    assert kwargs["populate"] == "shard" and kwargs["fields"] == ("tokens", "loss_mask")
    assert LoaderConfig(**{k: kwargs[k] for k in LoaderConfig.model_fields}) == loader.config


def test_next_hands_out_fresh_arrays_a_caller_may_keep(tmp_path):
    import numpy as np

    import rsdb

    rsdb.write_shards(tmp_path, [list(range(1, 200)), list(range(300, 420))])
    loader = RSDBLoader({"s": str(tmp_path)}, seq_len=8, batch_size=2, buffer_docs=2, seed=1)
    kept = [next(loader) for _ in range(6)]  # kept batches, never copied
    again = RSDBLoader({"s": str(tmp_path)}, seq_len=8, batch_size=2, buffer_docs=2, seed=1)
    for b in kept:
        ref = next(again)
        assert all(np.array_equal(b[k], ref[k]) for k in ref)
    assert len({b["tokens"].ctypes.data for b in kept}) == len(kept)
