"""Place items that appeared after training into a model's item-vector space, without torch.

A model that can place an item by its text alone (``HybridSequentialModel.add_items``)
exports the few arrays that do it (``text_projection()``); the training pipeline saves them
in the artifact as ``text_projection/*.npy`` and serving appends the projected vectors of
newer items to its in-memory index. Pure numpy: serving imports this.

The arrays
----------
weight : (text_dim, k) float32 -- the text part of the item vector is ``text @ weight``
constant : (c,) float32 -- columns every new item has (e.g. trend features and the
    "new product" flag), appended after the projection
passthrough : (1,) int -- 1 when the text itself is appended last (a content score term)

So a new item's vector is ``[text @ weight, constant, text if passthrough]``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ARRAY_NAMES = ("weight", "constant", "passthrough")


def identity_projection(text_dim: int) -> dict[str, np.ndarray]:
    """The arrays of a space whose item vectors are the text vectors themselves."""
    return {
        "weight": np.zeros((text_dim, 0), np.float32),
        "constant": np.zeros(0, np.float32),
        "passthrough": np.ones(1, np.int64),
    }


def text_dim(arrays: dict[str, np.ndarray]) -> int:
    return int(np.asarray(arrays["weight"]).shape[0])


def output_dim(arrays: dict[str, np.ndarray]) -> int:
    w = np.asarray(arrays["weight"])
    return int(w.shape[1] + np.asarray(arrays["constant"]).shape[0] + (w.shape[0] if _passthrough(arrays) else 0))


def _passthrough(arrays: dict[str, np.ndarray]) -> bool:
    p = arrays.get("passthrough")
    return bool(p is not None and np.asarray(p).reshape(-1)[:1].any())


def project_new_items(text: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """(n, d) float32 item vectors of items known only by their (n, text_dim) text embeddings."""
    w = np.asarray(arrays["weight"], dtype=np.float32)
    text = np.asarray(text, dtype=np.float32).reshape(-1, w.shape[0])
    const = np.asarray(arrays["constant"], dtype=np.float32).reshape(-1)
    parts = [text @ w, np.broadcast_to(const, (len(text), len(const)))]
    if _passthrough(arrays):
        parts.append(text)
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def save_projection(folder: str | Path, arrays: dict[str, np.ndarray]) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ARRAY_NAMES:
        np.save(folder / f"{name}.npy", np.asarray(arrays[name]), allow_pickle=False)


def load_projection(folder: str | Path) -> dict[str, np.ndarray] | None:
    """The arrays saved by :func:`save_projection`, or None when the folder is absent."""
    folder = Path(folder)
    if not all((folder / f"{n}.npy").exists() for n in ARRAY_NAMES):
        return None
    return {n: np.load(folder / f"{n}.npy", allow_pickle=False) for n in ARRAY_NAMES}
