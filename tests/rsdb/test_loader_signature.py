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
