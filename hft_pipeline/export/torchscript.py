"""A window's model, of any kind -> a self-contained inference artifact (TorchScript + JSON).

The artifact folder holds ``model.ts`` (TorchScript), ``scaler.json`` (the window's, byte for
byte), ``features.json`` (the ordered input names) and ``config.json``. ``ArtifactPredictor``
reads only those files, with torch and numpy, so a serving process needs none of this project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hft_pipeline.features.schema import DIRECTION_CLASSES
from hft_pipeline.layout import atomic_directory
from hft_pipeline.training.model import AnyModel, load_model, load_model_config

ARTIFACT_FILES = ("model.ts", "scaler.json", "features.json", "config.json")
VERIFY_BATCH = 16  # sequences in verify_artifact's fixed random batch
VERIFY_SEED = 0


def script_model(model: AnyModel) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of the eager model (any kind of ``model.MODEL_KINDS``) in eval mode.

    Scripting, not tracing: the transformer's causal mask and position slice depend on the
    sequence length, which a trace would freeze at the example's.

    torch 2.x marks TorchScript deprecated in favour of torch.export, but a ``.ts`` file is what
    the serving side loads (C++ libtorch included); the warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model.eval())


def load_torchscript(path: Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """``torch.jit.load`` in eval mode, its deprecation warning silenced (see script_model)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def export_artifact(window_dir: Path, artifact_dir: Path) -> dict[str, Any]:
    """Writes the window's model as an inference artifact, all files or none.

    Parameters
    ----------
    window_dir : Path
        A trained window folder (model.pt, model_config.json, scaler.json).
    artifact_dir : Path
        Destination folder; replaced as a whole.

    Returns
    -------
    dict
        artifact_dir, files, sha256 (per file), n_features, context, horizon, window_start,
        window_end, feature_columns.
    """
    window_dir, artifact_dir = Path(window_dir), Path(artifact_dir)
    config, document = load_model_config(window_dir / "model_config.json")
    scripted = script_model(load_model(window_dir, "cpu"))
    artifact_config = {
        "model_kind": document["model_kind"],
        "model": config.to_dict(),
        "horizon": config.horizon,
        # Every horizon the model forecasts, the primary one (``forward``'s) first.
        "horizons": list(config.horizons),
        "context": config.context,
        "direction_classes": list(DIRECTION_CLASSES),
        "label_columns": document.get("label_columns"),
        "window_start": document.get("window_start"),
        "window_end": document.get("window_end"),
        "symbols": document.get("symbols"),
        "source_window": str(window_dir),
        "torch_version": torch.__version__,
        "inputs": "raw features (batch, seq, n_features) in features.json order, scaled with "
        "scaler.json: (x - mean) / std, NaN -> 0",
        "outputs": "forward: the primary horizon's direction logits (batch, 3); return / "
        "return_scale (batch,); volatility / volatility_scale (batch,). forward_horizons: every "
        "horizon's, (batch, H, 3), (batch, H), (batch, H), scaled by the scaler's return_scale "
        "and volatility_scale then extra_return_scales and extra_volatility_scales",
    }
    with atomic_directory(artifact_dir) as folder:
        scripted.save(str(folder / "model.ts"))
        shutil.copyfile(window_dir / "scaler.json", folder / "scaler.json")
        (folder / "features.json").write_text(json.dumps(document["feature_columns"], indent=2))
        (folder / "config.json").write_text(json.dumps(artifact_config, indent=2))
        digests = {name: sha256(folder / name) for name in ARTIFACT_FILES}
    return {
        "artifact_dir": str(artifact_dir),
        "files": list(ARTIFACT_FILES),
        "sha256": digests,
        "n_features": config.n_features,
        "context": config.context,
        "horizon": config.horizon,
        "window_start": document.get("window_start"),
        "window_end": document.get("window_end"),
        "feature_columns": list(document["feature_columns"]),
    }


def verify_artifact(artifact_dir: Path, window_dir: Path) -> float:
    """Max abs difference over all outputs of ``forward`` and ``forward_horizons`` between the
    artifact's TorchScript model and the window's eager model, on a fixed random batch
    (VERIFY_BATCH, context, n_features)."""
    config, _ = load_model_config(Path(window_dir) / "model_config.json")
    eager = load_model(Path(window_dir), "cpu")
    scripted = load_torchscript(Path(artifact_dir) / "model.ts")
    generator = torch.Generator().manual_seed(VERIFY_SEED)
    x = torch.randn(VERIFY_BATCH, config.context, config.n_features, generator=generator)
    with torch.no_grad():
        expected = (*eager(x), *eager.forward_horizons(x))
        found = (*scripted(x), *scripted.forward_horizons(x))
    return max(float((a - b).abs().max()) for a, b in zip(expected, found, strict=True))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # (batch, 3) down / flat / up, or (3,) for one sequence
    forward_return: np.ndarray  # (batch,) log return over the horizon, or () for one
    volatility: np.ndarray  # (batch,) realized volatility over the horizon, or () for one


class ArtifactPredictor:
    """Raw features -> predictions, from an artifact folder alone (torch, numpy, json).

    Parameters
    ----------
    artifact_dir : Path
        A folder written by :func:`export_artifact`.
    device : str, default "cpu"
    """

    def __init__(self, artifact_dir: Path, device: str = "cpu") -> None:
        artifact_dir = Path(artifact_dir)
        missing = [name for name in ARTIFACT_FILES if not (artifact_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{artifact_dir} lacks {missing}; re-run the export")
        self.device = torch.device(device)
        self.model = load_torchscript(artifact_dir / "model.ts", self.device)
        scaler = json.loads((artifact_dir / "scaler.json").read_text())
        self.feature_columns: list[str] = json.loads((artifact_dir / "features.json").read_text())
        self.config: dict[str, Any] = json.loads((artifact_dir / "config.json").read_text())
        self.mean = np.asarray(scaler["mean"], dtype=np.float64)  # (n_features,)
        self.std = np.asarray(scaler["std"], dtype=np.float64)  # (n_features,)
        self.return_scale = float(scaler["return_scale"])
        self.volatility_scale = float(scaler["volatility_scale"])
        self.context = int(self.config["context"])

    def scale(self, features: np.ndarray) -> np.ndarray:
        """(..., n_features) raw -> float32 standardized, NaN (warm-up) -> 0 (the mean)."""
        scaled = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def predict(self, features: Any) -> Prediction:
        """Predicts from raw features of one sequence (seq, n_features) or a batch
        (batch, seq, n_features); a DataFrame is read in features.json order. The model
        was trained on sequences of ``self.context`` bars, the last one being "now"."""
        if hasattr(features, "columns"):
            features = features[self.feature_columns].to_numpy(dtype=np.float64)
        raw = np.asarray(features, dtype=np.float64)
        if raw.ndim not in (2, 3) or raw.shape[-1] != len(self.feature_columns):
            raise ValueError(
                f"expected (seq, {len(self.feature_columns)}) or (batch, seq, "
                f"{len(self.feature_columns)}) raw features, found shape {raw.shape}"
            )
        single = raw.ndim == 2
        x = torch.from_numpy(self.scale(raw[None] if single else raw)).to(self.device)
        with torch.no_grad():
            logits, forward_return, volatility = self.model(x)  # (batch, 3), (batch,), (batch,)
        probabilities = torch.softmax(logits.double(), dim=-1).cpu().numpy()
        forward_return = forward_return.double().cpu().numpy() * self.return_scale
        volatility = volatility.double().cpu().numpy() * self.volatility_scale
        if single:
            return Prediction(probabilities[0], forward_return[0], volatility[0])
        return Prediction(probabilities, forward_return, volatility)
