"""RSDB compiled core (private; import rsdb instead)"""

from collections.abc import Sequence
import enum
from typing import Annotated

from numpy.typing import NDArray


def core_version() -> int: ...

class Status(enum.Enum):
    """What fill() returned (error_* say where a problem is)"""

    OK = 0
    """batch complete"""

    NEED_VIEW = 1
    """register error_view with set_view, then call fill again"""

    BAD_DOC = 2
    """a document's offsets are out of range"""

    BAD_TOKEN = 3
    """a token id is >= the view's bound"""

    EMPTY_SOURCE = 4
    """a weighted source has no tokens in this stream"""

class DType(enum.Enum):
    """Token dtype of a shard view"""

    U32 = 0

    I32 = 1

    U16 = 2

def populate(array: Annotated[NDArray, dict(shape=(None,), order='C', device='cpu', writable=False)], begin: int, count: int) -> int:
    """
    Map elements [begin, begin + count) of a (memory-mapped) array into the page table; returns 0 on success.
    """

def permute(i: int, n: int, keys: Sequence[int]) -> int: ...

def epoch_keys(seed: int, source: int, stream: int, epoch: int) -> list[int]:
    """
    The Feistel keys of a source's per-epoch order in one stream (what the loader permutes with).
    """

class Core:
    def __init__(self, seq_len1: int, batch_size: int, buffer_docs: int, max_chunk: int, refill_batch: int, seed: int, stream_index: int, num_streams: int, epochs: int, n_sources: int, n_phases: int, prefetch: bool = True, populate_window: int = 0, block_shards: int = 0) -> None: ...

    def add_range(self, source: int, view: int, begin: int, end: int, doc_base: int) -> None: ...

    def add_unit(self, source: int, view: int, n_docs: int, doc_base: int) -> None: ...

    def piece_tokens(self, source: int, streams: int, stream: int, epoch: int, begin: int, end: int) -> int: ...

    def piece_docs(self, source: int, streams: int, stream: int, epoch: int, begin: int, end: int) -> list[int]: ...

    def slice_docs(self, source: int, streams: int, stream: int) -> int: ...

    def first_use(self, source: int, epoch: int, walk: int = 2000000) -> list[int]:
        """
        Shards of a source in the order this stream first reads them in an epoch: flat (position, view) pairs.
        """

    def views_in_use(self) -> list[int]:
        """
        Views that live pool slots, carried work or a source's current block may still read.
        """

    def release_view(self, view: int) -> bool:
        """
        Forget a view's pointers so it can be unmapped; False if a live pool slot still reads it.
        """

    def view_ready(self, view: int) -> bool: ...

    def reshape(self, batch_size: int, seq_len1: int) -> None: ...

    def set_view(self, view: int, offsets: Annotated[NDArray, dict(shape=(None,), order='C', device='cpu', writable=False)], tokens: Annotated[NDArray, dict(shape=(None,), order='C', device='cpu', writable=False)], dtype: DType, bound: int) -> None: ...

    def set_weights(self, weights: Sequence[float]) -> None: ...

    def fill(self, tokens: int, position_ids: int, doc_ids: int, source_ids: int, loss_mask: int, cu_seqlens: int, n_segments: int, phase: int, phase_tokens_left: int = -1, doc_ids_64: bool = False) -> Status: ...

    def get_state(self) -> dict: ...

    def set_state(self, arg: dict, /) -> str: ...

    @property
    def error_view(self) -> int: ...

    @property
    def error_doc(self) -> int: ...

    @property
    def error_value(self) -> int: ...

    @property
    def error_source(self) -> int: ...

    @property
    def n_active(self) -> int: ...

    @property
    def batches(self) -> int: ...

    @property
    def cu_width(self) -> int: ...

    @property
    def emitted(self) -> list[int]: ...

    def n_local(self, source: int) -> int: ...

    def all_exhausted(self) -> bool: ...

    def source_progress(self) -> list: ...
