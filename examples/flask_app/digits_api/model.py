"""The digits model: a small neural network stored as plain weight arrays.

Format ``mlp-npz-v1``: ``weights.npz`` holds ``W0, b0, W1, b1, ...`` (float32)
loaded with ``allow_pickle=False``; ``model.json`` describes the input. The
forward pass is ReLU between layers and softmax at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "mlp-npz-v1"


class ModelFormatError(Exception):
    """The model folder does not hold a model this app can serve."""


@dataclass(frozen=True)
class DigitsModel:
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    classes: tuple[int, ...]
    n_features: int
    max_value: float
    info: dict

    @classmethod
    def load(cls, folder: Path) -> DigitsModel:
        try:
            info = json.loads((folder / "model.json").read_text())
        except FileNotFoundError:
            raise ModelFormatError(f"{folder}/model.json is missing") from None
        if info.get("format") != FORMAT:
            raise ModelFormatError(f"unsupported model format {info.get('format')!r}, expected {FORMAT!r}")
        with np.load(folder / "weights.npz", allow_pickle=False) as arrays:
            n = len(arrays.files) // 2
            layers = tuple((arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n))
        if not layers or layers[0][0].shape[0] != info["n_features"] or layers[-1][0].shape[1] != len(info["classes"]):
            raise ModelFormatError("weights do not match model.json")
        return cls(layers, tuple(info["classes"]), int(info["n_features"]), float(info["max_value"]), info)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of raw pixel rows (values 0..max_value)."""
        h = x.astype(np.float32) / self.max_value
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0)
        h = h - h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> tuple[list[int], list[float]]:
        proba = self.predict_proba(x)
        best = proba.argmax(axis=1)
        return [self.classes[i] for i in best], [round(float(p), 4) for p in proba.max(axis=1)]
