"""The compiled core checks the arrays it is given: dtype, contiguity, bounds; enums for codes."""

from __future__ import annotations

import numpy as np
import pytest

from rsdb import _core


def _core_for_one_view():
    return _core.Core(seq_len1=5, batch_size=1, buffer_docs=1, max_chunk=0, refill_batch=1, seed=0,
                      stream_index=0, num_streams=1, epochs=1, n_sources=1, n_phases=1)


def test_set_view_checks_dtypes_and_contiguity():
    core = _core_for_one_view()
    core.add_unit(0, 0, 2, 0)
    offsets = np.array([0, 3, 5], np.int64)
    tokens = np.arange(5, dtype=np.uint16)
    core.set_view(0, offsets, tokens, _core.DType.U16, 1 << 16)  # accepted
    with pytest.raises(ValueError, match="dtype"):
        core.set_view(0, offsets, tokens, _core.DType.U32, 1 << 16)
    with pytest.raises(ValueError, match="int64"):
        core.set_view(0, offsets.astype(np.int32), tokens, _core.DType.U16, 1 << 16)
    with pytest.raises(TypeError):  # never converted: a strided view is refused, not copied
        core.set_view(0, np.arange(6, dtype=np.int64)[::2], tokens, _core.DType.U16, 1 << 16)


def test_read_only_maps_are_accepted_and_populate_checks_bounds():
    tokens = np.arange(10, dtype=np.uint32)
    tokens.flags.writeable = False
    assert _core.populate(tokens, 2, 8) in (0, -1)  # -1 where the kernel lacks MADV_POPULATE_READ
    with pytest.raises(ValueError, match="out of bounds"):
        _core.populate(tokens, 5, 6)


def test_status_codes_are_an_enum():
    assert [s.name for s in _core.Status] == ["OK", "NEED_VIEW", "BAD_DOC", "BAD_TOKEN", "EMPTY_SOURCE"]
    assert [d.name for d in _core.DType] == ["U32", "I32", "U16"]
