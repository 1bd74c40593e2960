"""Item text, its hash, the embedding cache, and (once, slowly) the packaged sentence model."""
from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest

from recommender.ml import text as T


def test_importing_text_does_not_import_torch():
    import subprocess

    code = "import sys, recommender.ml.text; print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(T.Path(T.__file__).resolve().parents[2]))
    assert out.stdout.strip() == "False False"


def test_item_text_joins_the_parts_and_skips_empty_ones():
    assert T.item_text("Red mug", "Kitchen/Mugs", "Acme", "A big   red\nmug.", "budget") == (
        "Red mug. Kitchen/Mugs. brand Acme. budget price. A big red mug"
    )
    assert T.item_text("  Red   mug  ") == "Red mug"


def test_price_bands_follow_catalog_quantiles():
    prices = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 100.0])
    edges = T.price_band_edges(prices)
    assert T.price_band(1.0, edges) == "budget"
    assert T.price_band(10.0, edges) == "mid-range"
    assert T.price_band(17.5, edges) == "premium"
    assert T.price_band(100.0, edges) == "luxury"
    assert T.price_band(float("nan"), edges) == ""
    assert T.price_band(3.0, T.price_band_edges(np.array([np.nan]))) == ""


def test_text_hash_is_sha256_hex_of_utf8():
    assert T.text_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    assert T.text_hash("café") == hashlib.sha256("café".encode()).hexdigest()


class CountingEmbedder(T.Embedder):
    """An Embedder with a fake deterministic model that counts the texts it really embeds."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.embedded: list[str] = []

    def _encode_uncached(self, texts):
        self.embedded.extend(texts)
        vecs = np.stack([np.random.default_rng(int(T.text_hash(t)[:8], 16)).standard_normal(8) for t in texts])
        return T.l2_normalise(vecs)

    @property
    def dim(self):
        return 8


def test_embedding_cache_avoids_re_embedding(tmp_path):
    first = CountingEmbedder(cache_dir=tmp_path)
    a = first.encode(["red mug", "blue mug", "red mug", ""])
    assert first.embedded == ["blue mug", "red mug"], "duplicates are embedded once, empty texts never"
    assert a.shape == (4, 8) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, rtol=1e-5)
    assert not a[3].any()
    np.testing.assert_array_equal(a[0], a[2])

    second = CountingEmbedder(cache_dir=tmp_path)  # a new process reading the same cache
    b = second.encode(["blue mug", "teapot", "red mug"])
    assert second.embedded == ["teapot"]
    np.testing.assert_array_equal(b[0], a[1])
    np.testing.assert_array_equal(b[2], a[0])
    assert len(list(tmp_path.rglob("vectors.npy"))) == 1 and len(list(tmp_path.rglob("index.json"))) == 1


def test_embedding_cache_ignores_a_mismatched_pair_of_files(tmp_path):
    e = CountingEmbedder(cache_dir=tmp_path)
    e.encode(["x", "y"])
    folder = e.cache_folder()
    np.save(folder / "vectors.npy", np.zeros((1, 8), np.float32))  # torn write: 1 vector, 2 keys
    fresh = CountingEmbedder(cache_dir=tmp_path)
    fresh.encode(["x"])
    assert fresh.embedded == ["x"]


@pytest.mark.slow
def test_packaged_sentence_model_embeds_normalised_384_dims():
    e = T.Embedder()
    v = e.encode(["WHITE HANGING HEART T-LIGHT HOLDER", "RED HANGING HEART T-LIGHT HOLDER", "GARDEN TOOL SET"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2], "two heart holders are closer than a heart holder and tools"


def test_dataset_texts_follow_the_item_index_with_or_without_price_band():
    from ml_testdata import make_dataset

    ds = make_dataset()
    with_band = T.dataset_texts(ds)
    without = T.dataset_texts(ds, with_price_band=False)
    assert len(with_band) == ds.n_items
    assert with_band[0] == f"{ds.titles[0]}. budget price" and with_band[-1] == f"{ds.titles[-1]}. luxury price"
    assert without == list(ds.titles)
