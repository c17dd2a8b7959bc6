"""What trainers need from a packed RSDB batch: label masks and varlen-attention arguments.

A batch row holds ``L + 1`` tokens of several segments (document chunks); inputs are
``tokens[:, :-1]`` and labels ``tokens[:, 1:]``. Three conventions of other tools meet
here, and each function below returns exactly what one of them expects:

* :func:`label_mask` -- a labels-aligned ``(B, L)`` mask that is False on padding **and**
  where the label is the first token of a segment. Predicting a document's first token
  from the previous document's last token teaches the model nothing it could know;
  Hugging Face's ``DataCollatorWithFlattening`` sets ``-100`` there too.
* :func:`varlen_args` -- ``flash_attn_varlen_func``'s ``cu_seqlens`` (one flat int32
  array over the ``B x L`` inputs) and ``max_seqlen``.
* :func:`hf_packed` -- ``input_ids``/``position_ids``/``labels`` of shape ``(1, B x (L+1))``
  for transformers' packed path (``attn_implementation="flash_attention_2"`` or
  ``"sdpa"`` with position_ids), which finds segments where ``position_ids`` restart.

Every function takes numpy arrays or torch tensors and returns the same kind (torch
results stay on the input's device). Segments are read from ``position_ids == 0`` (or
the loader's ``cu_seqlens``), never from ``doc_ids`` alone: two documents of different
sources can share a ``doc_ids`` value side by side.

>>> import numpy as np
>>> pos = np.array([[0, 1, 2, 0, 1, 0, 1]])
>>> batch = {"position_ids": pos, "loss_mask": np.ones_like(pos, bool)}
>>> label_mask(batch).astype(int).tolist()  # labels are tokens[:, 1:]
[[1, 1, 0, 1, 0, 1]]
>>> cu, max_len = varlen_args(batch)  # inputs are tokens[:, :-1]: 6 tokens
>>> cu.tolist(), max_len
([0, 3, 5, 6], 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["IGNORE_INDEX", "hf_packed", "label_mask", "segment_starts", "varlen_args"]

#: The label value PyTorch's cross_entropy and transformers skip.
IGNORE_INDEX = -100


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _field(batch: Mapping[str, Any], key: str) -> Any:
    if key not in batch:
        raise ConfigError(f"the batch has no {key!r}: build the loader with {key!r} in fields "
                          f"(it has {sorted(batch)})")
    a = batch[key]
    if a.ndim != 2:
        raise ConfigError(f"batch[{key!r}] must be 2-D (batch_size, seq_len + 1), got shape {tuple(a.shape)}")
    return a


def segment_starts(position_ids: Any, padding: Any = None) -> Any:
    """Bool array of ``position_ids``' shape: True where a segment starts (and at every row start).

    ``padding`` (optional, same shape, True on padding tokens) makes a run of padding
    one segment, as in the loader's ``cu_seqlens``; padding's positions are all 0.
    """
    starts = position_ids == 0
    starts[:, 0] = True  # a row always begins a sequence, even mid-document
    if padding is not None:
        starts[:, 1:] &= ~(padding[:, 1:] & padding[:, :-1])
    return starts


def _padding(batch: Mapping[str, Any]) -> Any:
    """True on padding tokens (ids -1), or None if the batch cannot tell."""
    for key in ("source_ids", "doc_ids"):
        if key in batch:
            return batch[key] < 0
    return None


def label_mask(batch: Mapping[str, Any], *, cross_boundary: bool = False) -> Any:
    """Labels-aligned loss mask ``(B, L)`` for labels ``tokens[:, 1:]``.

    Args:
        batch: a loader batch with ``position_ids`` (and ``loss_mask`` if present).
        cross_boundary: True keeps the labels that start a new segment (the loader's
            ``loss_mask[:, 1:]`` alone: predict a document's first token from the
            previous one). The default (False) masks them, as Hugging Face does.

    Returns:
        bool numpy array or torch tensor, False on padding and (by default) where the
        label is the first token of a segment.
    """
    pos = _field(batch, "position_ids")
    mask = batch["loss_mask"][:, 1:] if "loss_mask" in batch else (pos[:, 1:] >= 0)
    if cross_boundary:
        return mask.clone() if _is_torch(mask) else mask.copy()
    return mask & (pos[:, 1:] != 0)


def varlen_args(batch: Mapping[str, Any], *, inputs: bool = True) -> tuple[Any, int]:
    """``(cu_seqlens, max_seqlen)`` for ``flash_attn_varlen_func`` over the whole batch.

    The batch is taken as one packed sequence of ``B x N`` tokens, ``N = L`` (the
    inputs ``tokens[:, :-1]``, default) or ``N = L + 1`` (``inputs=False``: all of each
    row). ``cu_seqlens`` is flat int32, starts at 0 and ends at ``B x N``, one entry per
    segment start (rows never share a segment). Uses the loader's ``cu_seqlens`` field
    when the batch has it, else ``position_ids``.

    Returns:
        ``cu_seqlens`` (numpy int32, or a torch int32 tensor on the batch's device) and
        ``max_seqlen`` (a Python int, as flash-attn wants it).
    """
    if "cu_seqlens" in batch:
        cu = _field(batch, "cu_seqlens")
        rows = cu.shape[0]
        n = _row_len(batch, cu) - (1 if inputs else 0)
        # Each row: strictly increasing starts, then its length L+1 repeated; keep the
        # starts inside the first n tokens and shift row r by r * n.
        if _is_torch(cu):
            import torch

            shifted = cu.to(torch.int64) + torch.arange(rows, device=cu.device)[:, None] * n
            flat = torch.cat([shifted[cu < n], torch.tensor([rows * n], device=cu.device)])
        else:
            shifted = cu.astype(np.int64) + np.arange(rows)[:, None] * n
            flat = np.concatenate([shifted[cu < n], [rows * n]])
    else:
        pos, pad = _field(batch, "position_ids"), _padding(batch)
        if inputs:
            pos, pad = pos[:, :-1], (None if pad is None else pad[:, :-1])
        rows, n = pos.shape
        starts = segment_starts(pos, pad).reshape(-1)
        if _is_torch(pos):
            import torch

            flat = torch.cat([torch.nonzero(starts).reshape(-1), torch.tensor([rows * n], device=pos.device)])
        else:
            flat = np.concatenate([np.flatnonzero(starts), [rows * n]])
    if _is_torch(flat):
        import torch

        flat = flat.to(torch.int32)
        max_seqlen = int((flat[1:] - flat[:-1]).max()) if flat.numel() > 1 else 0
    else:
        flat = flat.astype(np.int32)
        max_seqlen = int(np.diff(flat).max()) if flat.size > 1 else 0
    return flat, max_seqlen


def _row_len(batch: Mapping[str, Any], cu: Any) -> int:
    """L + 1: the width of the batch's token rows (every cu_seqlens row ends with it)."""
    for key in ("tokens", "position_ids", "loss_mask"):
        if key in batch:
            return int(batch[key].shape[1])
    return int(cu[0, -1])


def hf_packed(batch: Mapping[str, Any], *, cross_boundary: bool = False) -> dict[str, Any]:
    """The batch as one packed row for a transformers causal LM.

    Returns ``input_ids``, ``position_ids`` and ``labels``, each ``(1, B x (L+1))`` and
    int64. transformers shifts ``labels`` inside the model, so the whole row goes in;
    ``labels`` is ``IGNORE_INDEX`` (-100) on padding and at every segment start
    (unless ``cross_boundary``), so no token is predicted across a document or a row
    boundary -- the same loss terms as :func:`label_mask` over ``tokens[:, 1:]``.
    """
    tokens = _field(batch, "tokens")
    pos = _field(batch, "position_ids")
    keep = segment_starts(pos, _padding(batch))
    if cross_boundary:
        keep[:, 1:] = False
    keep = ~keep
    if "loss_mask" in batch:
        keep = keep & batch["loss_mask"]
    if _is_torch(tokens):
        import torch

        ids = tokens.to(torch.int64)
        labels = torch.where(keep, ids, torch.full_like(ids, IGNORE_INDEX))
        return {"input_ids": ids.reshape(1, -1), "position_ids": pos.to(torch.int64).reshape(1, -1),
                "labels": labels.reshape(1, -1)}
    ids = tokens.astype(np.int64)
    labels = np.where(keep, ids, IGNORE_INDEX)
    return {"input_ids": ids.reshape(1, -1), "position_ids": pos.astype(np.int64).reshape(1, -1),
            "labels": labels.reshape(1, -1)}
