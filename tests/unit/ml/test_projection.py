"""The torch-free text projection places new items exactly as HybridSequentialModel.add_items.

Given a fitted model (one network and an ensemble of two, with and without the text
profile), when new items are projected from their text with pure numpy, then their
vectors equal the item_vectors() rows that add_items() creates, so a serving process can
score items newer than the version without torch or a retrain.
"""
from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from recommender.ml.hybrid import HybridSequentialModel
from recommender.ml.projection import (
    identity_projection,
    load_projection,
    output_dim,
    project_new_items,
    save_projection,
)

FAST = {**HybridSequentialModel.test_params, "epochs": 3, "new_item_boost": 1.5}


def _new_text(n: int, d: int, seed: int = 7) -> np.ndarray:
    t = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


@pytest.fixture(scope="module", params=[{"n_models": 1}, {"n_models": 2}, {"n_models": 2, "content": False}],
                ids=["one", "ensemble", "no-content"])
def fitted(request, synthetic):
    data, _ = synthetic
    return HybridSequentialModel(random_state=0, **{**FAST, **request.param}).fit(data)


def test_projection_equals_add_items(fitted, tmp_path):
    # given new items known only by their text
    model = copy.deepcopy(fitted)
    text = _new_text(5, model._text.shape[1])
    arrays = model.text_projection()
    # when they are projected without torch (also after a save/load round trip) and added with torch
    save_projection(tmp_path / "tp", arrays)
    loaded = load_projection(tmp_path / "tp")
    projected = project_new_items(text, loaded)
    new = model.add_items(text)
    expected = model.item_vectors()[new]
    # then the vectors are the same, in the same space as the trained items
    assert projected.shape == expected.shape and output_dim(arrays) == expected.shape[1]
    assert projected.dtype == np.float32
    assert np.abs(projected - expected).max() < 1e-4
    # and they score the same for every user, the new-item boost included
    users = model.user_vectors()
    assert np.abs(users @ projected.T - users @ expected.T).max() < 1e-4


def test_identity_projection_appends_the_text():
    text = _new_text(3, 6)
    out = project_new_items(text, identity_projection(6))
    assert out.shape == (3, 6) and np.array_equal(out, text)


def test_projection_module_does_not_import_torch():
    code = "import sys, recommender.ml.projection; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
