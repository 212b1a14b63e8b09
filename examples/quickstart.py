"""Quick start: compile an ONNX model, save one artifact, load it, run it.

    python examples/quickstart.py [model.onnx]

Without an argument it uses the bundled demo CNN.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

import byoc
from byoc.demo import demo_cnn
from byoc.report import backends_table


def main(argv: list[str]) -> None:
    model = onnx.load(argv[0]) if argv else demo_cnn()
    print(backends_table(byoc.backends()))
    mod = byoc.compile(model)  # every available backend, by priority, ref last
    print(mod.explain())
    with tempfile.TemporaryDirectory() as tmp:
        path = mod.save(Path(tmp) / "model.byoc")
        loaded = byoc.load(path)  # constants are memory-mapped, engines build lazily
        rng = np.random.default_rng(0)
        feeds = {
            t.name: rng.standard_normal(
                [d if isinstance(d, int) else 1 for d in t.shape or ()]
            ).astype(t.dtype)
            for t in loaded.inputs
        }
        for name, array in loaded.run(feeds).items():
            print(f"{name}: {array.dtype}{list(array.shape)}")


if __name__ == "__main__":
    main(sys.argv[1:])
