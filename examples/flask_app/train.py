"""Train the digits model offline and write it in the app's safe format.

Data: scikit-learn's bundled 8x8 handwritten digits (no download). Model: a
small MLP; its weights are saved as plain arrays (``weights.npz``, no pickle)
with a ``model.json`` describing them. Held-out samples for the smoke tests are
written to ``tests/data``.

    python train.py --out build/model [--samples tests/data] [--scramble]

``--scramble`` writes a deliberately broken model (permuted output classes):
a stand-in for a bad model version, used to show that verify blocks it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

SEED = 7


def train(out: Path, samples: Path | None = None, scramble: bool = False) -> float:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=SEED, stratify=digits.target
    )
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, random_state=SEED)
    clf.fit(x_train / 16.0, y_train)
    accuracy = float(clf.score(x_test / 16.0, y_test))
    arrays = {}
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        arrays[f"W{i}"], arrays[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
    classes = [int(c) for c in clf.classes_]
    if scramble:
        classes = classes[1:] + classes[:1]
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "weights.npz", **arrays)
    info = {
        "format": "mlp-npz-v1",
        "name": "digits",
        "classes": classes,
        "n_features": 64,
        "max_value": 16.0,
        "hidden_layers": [64],
        "held_out_accuracy": round(accuracy, 4),
        "data": "scikit-learn load_digits, 25% held out (stratified, seed 7)",
    }
    (out / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    if samples is not None:
        proba = clf.predict_proba(x_test / 16.0)
        _write_samples(samples, x_test, y_test, proba.argmax(axis=1), proba.max(axis=1))
    return accuracy


def _write_samples(
    folder: Path, x_test: np.ndarray, y_test: np.ndarray, predicted: np.ndarray, confidence: np.ndarray
) -> None:
    """For each digit, the first held-out sample the model gets right with confidence >= 0.9.

    The smoke tests prove that the container reproduces the trained model on
    data it never saw; the model's accuracy itself is checked here (>= 0.95).
    """
    folder.mkdir(parents=True, exist_ok=True)
    picks = [int(np.flatnonzero((y_test == d) & (predicted == d) & (confidence >= 0.9))[0]) for d in range(10)]
    batch = {"instances": [[int(v) for v in x_test[i]] for i in picks]}
    (folder / "heldout.json").write_text(json.dumps(batch) + "\n")
    (folder / "heldout_labels.json").write_text(json.dumps({"labels": [int(y_test[i]) for i in picks]}) + "\n")
    seven = picks[7]
    (folder / "seven.json").write_text(json.dumps({"pixels": [int(v) for v in x_test[seven]]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/model"))
    parser.add_argument("--samples", type=Path, default=None)
    parser.add_argument("--scramble", action="store_true")
    args = parser.parse_args()
    accuracy = train(args.out, args.samples, args.scramble)
    if not args.scramble and accuracy < 0.95:
        raise SystemExit(f"held-out accuracy {accuracy:.3f} is below 0.95")
    print(f"wrote {args.out} (held-out accuracy {accuracy:.4f}{', SCRAMBLED' if args.scramble else ''})")


if __name__ == "__main__":
    main()
