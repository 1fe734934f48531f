"""Checkpoints: a directory with `model.safetensors` (weights) and `config.json`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from avatar_runtime.errors import FailedPrecondition
from avatar_runtime.reconstruct.portrait4d.config import Portrait4DConfig
from avatar_runtime.reconstruct.portrait4d.model import Portrait4D

WEIGHTS, CONFIG = "model.safetensors", "config.json"
WEIGHTS_ENV = "AVATAR_PORTRAIT4D_WEIGHTS"


def save_checkpoint(model: Portrait4D, directory: Path | str, meta: dict | None = None) -> Path:
    """Write weights + config (+ `meta`, e.g. training data and CPU-hours) atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / WEIGHTS)
    config = json.loads(model.config.to_json())
    (directory / CONFIG).write_text(json.dumps({"model": config, "meta": meta or {}}, indent=1))
    return directory


def load_checkpoint(directory: Path | str | None = None, device: str = "cpu") -> Portrait4D:
    """Load a checkpoint directory (default: $AVATAR_PORTRAIT4D_WEIGHTS).

    Raises FailedPrecondition when there are no weights: the runtime ships none, and a
    randomly initialised network must never pass for a model.
    """
    directory = directory or os.environ.get(WEIGHTS_ENV)
    if not directory or not (Path(directory) / WEIGHTS).is_file() or not (Path(directory) / CONFIG).is_file():
        raise FailedPrecondition(
            f"the portrait4d reconstructor needs trained weights, and none are installed "
            f"(looked in {str(directory) if directory else 'nowhere'}): train them with "
            f"`python -m avatar_runtime.train` and point {WEIGHTS_ENV} at the checkpoint "
            f"directory ({WEIGHTS} + {CONFIG}), or use the `fit` reconstructor")
    directory = Path(directory)
    config = Portrait4DConfig.from_json(json.dumps(json.loads((directory / CONFIG).read_text())["model"]))
    model = Portrait4D(config)
    model.load_state_dict(load_file(str(directory / WEIGHTS), device=device))
    return model.to(device).eval()
