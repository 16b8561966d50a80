"""KServe's ModelServer serving the benchmark's model: a small ``kserve.Model`` for scikit-learn.

What KServe's own sklearnserver does, with ``predict_proba`` so the answer is the runtime's
probabilities: ``load`` reads a joblib file, ``predict`` decodes V1 (``{"instances": ...}``) or V2
(Open Inference Protocol) with kserve's helpers and encodes the answer in the same protocol. Runs
in its own virtualenv (``bench/runtime_bench.py`` creates it); it does not import the runtime.

    python bench/runtime_kserve_server.py --model_dir DIR --model_name NAME --http_port 8004
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
from kserve import Model, ModelServer, model_server
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearnProba(Model):
    """A scikit-learn classifier answering class probabilities."""

    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.model: Any = None

    def load(self) -> bool:
        self.model = joblib.load(self.model_dir / "model.joblib")
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        rows = get_predict_input(payload)
        return get_predict_response(payload, self.model.predict_proba(rows), self.name)


def main() -> None:
    """Parse KServe's own server flags plus --model_dir and serve (KServe's defaults)."""
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", type=Path, required=True)
    args, _ = parser.parse_known_args()
    model = SKLearnProba(args.model_name, args.model_dir)
    model.load()
    ModelServer().start([model])


if __name__ == "__main__":
    main()
