"""prune: magnitude pruning of every conv and linear weight, fine-tuned with the mask fixed, stored sparse.

The `compress.prune.sparsity` fraction of all conv/linear weights with the
smallest magnitudes is set to zero (torch.nn.utils.prune, global L1 unstructured),
then the model trains `compress.prune.finetune_epochs` epochs on the training
split with the masks in place (Adam, cross-entropy or the model's own joint
loss, seeded from `seed`), and the masks are made permanent. Global, not layer
by layer: on the digits CNN at 0.75, per-layer pruning left the 288-weight first
conv 72 weights and fine-tuned back to 0.967 validation accuracy (fp32 0.989);
global pruning takes most from the 131k-weight dense layer, keeps 93% of that
conv and fine-tunes to 0.996.
A differentially private model (`trainer.privacy`) is pruned without fine-tuning:
plain training on its training rows would spend privacy its epsilon doesn't count.

Storage: each pruned weight as its nonzero values (float32, in C order), a
bitmask of where they go (np.packbits) and its shape: (1 - s) * 4 + 1/8 bytes
per weight instead of 4. Load unpacks them into dense float32 and runs the
training backend as usual, so it is smaller on disk, not faster (dense
kernels multiply the zeros too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maas import model_files
from maas.backends.privacy import spent
from maas.compression import _torch_ao
from maas.errors import ArtifactError, ConfigError

WEIGHTS_FILE = "weights.prune.safetensors"
VALUES, MASK, SHAPE = ".__values", ".__mask", ".__shape"
# Below this share of the weights in conv/linear layers (an LSTM's are nearly all recurrent),
# pruning them would leave the model about as large as it was.
MIN_PRUNABLE_SHARE = 0.5


def _prunable(model) -> list[tuple[str, Any]]:
    from torch import nn
    from torch.nn.modules.conv import _ConvNd

    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, _ConvNd))]


def applies(spec: dict[str, Any]) -> str | None:
    if spec.get("backend") != "torch":
        return f"torch models only; this is a {spec.get('backend')} model"
    model = _torch_ao.build(spec)
    weights = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    prunable = sum(m.weight.numel() for _, m in _prunable(model))
    if prunable < MIN_PRUNABLE_SHARE * weights:
        return (f"only {prunable / weights:.0%} of the model's weights are in conv/linear layers; the rest "
                f"(recurrent or attention weights) would stay dense")
    return None


def options(source) -> dict[str, Any]:
    o = source.options("prune")

    def bad(key: str, value: Any, must: str) -> ConfigError:
        return ConfigError(f"compress.prune.{key}={value!r} must be {must}")

    s, epochs, lr, batch = o.get("sparsity"), o.get("finetune_epochs"), o.get("lr"), o.get("batch_size")
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s < 1:
        raise bad("sparsity", s, "a fraction in (0, 1)")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise bad("finetune_epochs", epochs, "an integer >= 0")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise bad("lr", lr, "a number > 0")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise bad("batch_size", batch, "an integer >= 1")
    return {"sparsity": float(s), "finetune_epochs": epochs, "lr": float(lr), "batch_size": batch}


def _train_split(source) -> tuple[np.ndarray, np.ndarray]:
    if source.train is None:
        raise ConfigError("compress.prune.finetune_epochs > 0 needs the training split; none was given")
    return source.train()


def finetune(model, x: np.ndarray, y: np.ndarray, o: dict[str, Any], seed: int) -> None:
    """Train `model` in place (its pruning masks stay applied by their forward hooks)."""
    import torch
    from torch.nn import functional as F

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    epochs, batch = o["finetune_epochs"], o["batch_size"]
    joint = getattr(model, "joint_loss", None)  # the autoencoder trains on reconstruction too, as in fit.py
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: seeded, then restored
        torch.manual_seed(seed)
        order_gen = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=o["lr"])
        model.train()
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(xt), generator=order_gen)
            total = 0.0
            for i in range(0, len(xt), batch):
                idx = order[i:i + batch]
                xb, yb = xt[idx], yt[idx]
                loss = joint(xb, yb) if joint is not None else F.cross_entropy(model(xb).float(), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach().item() * len(idx)
            print(f"compress: prune: epoch {epoch}/{epochs} loss {total / len(xt):.4f}", flush=True)
    model.eval()


def write(source, out: Path) -> None:
    from torch.nn.utils import prune

    from maas.backends.torch import api as torch_api

    if source.spec.get("backend") != "torch":
        raise ConfigError(f"compress.method=prune: torch models only; this is a {source.spec.get('backend')} model")
    o = options(source)
    model = _torch_ao.build(source.spec)
    torch_api.set_weights(model, source.weights)
    layers = _prunable(model)
    prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=prune.L1Unstructured,
                              amount=o["sparsity"])
    if o["finetune_epochs"] and spent(source.spec):
        # Plain training on the rows DP-SGD protected would spend privacy its epsilon doesn't count.
        print(f"compress: prune: no fine-tuning (compress.prune.finetune_epochs={o['finetune_epochs']} ignored): the "
              "model is differentially private and may see its training rows only through DP-SGD", flush=True)
        o = {**o, "finetune_epochs": 0}
    if o["finetune_epochs"]:
        finetune(model, *_train_split(source), o, source.seed)
    for _, module in layers:
        prune.remove(module, "weight")
    weights = torch_api.get_weights(model)
    names = {f"{name}.weight" for name, _ in layers}
    zeros = sum(int((weights[n] == 0).sum()) for n in names)
    spec = {**source.spec, "compression": {
        "method": "prune", "sparsity": o["sparsity"], "finetune_epochs": o["finetune_epochs"],
        "zero_fraction": round(zeros / max(1, sum(weights[n].size for n in names)), 6)}}
    model_files.write_model_dir(out, weights=sparse(weights, names), weights_file=WEIGHTS_FILE, spec=spec)


def sparse(weights: dict[str, np.ndarray], names: set[str]) -> dict[str, np.ndarray]:
    """`weights` with each of `names` as its nonzero values + packed bitmask + shape; the rest as they are."""
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        if name in names:
            keep = (w != 0).reshape(-1)
            out[name + VALUES] = w.reshape(-1)[keep].astype(np.float32)
            out[name + MASK] = np.packbits(keep)
            out[name + SHAPE] = np.array(w.shape, np.int64)
        else:
            out[name] = w
    return out


def dense(stored: dict[str, np.ndarray], path: Path | str = "weights") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, t in stored.items():
        if name.endswith((MASK, SHAPE)):
            continue
        if not name.endswith(VALUES):
            out[name] = t
            continue
        base = name[: -len(VALUES)]
        if base + MASK not in stored or base + SHAPE not in stored:
            raise ArtifactError(f"{path}: {base} has values but no mask or shape")
        shape = tuple(int(d) for d in stored[base + SHAPE])
        size = int(np.prod(shape))
        mask = stored[base + MASK]
        if mask.dtype != np.uint8 or len(mask) != -(-size // 8):
            raise ArtifactError(f"{path}: {base}'s mask does not cover its shape {list(shape)}")
        keep = np.unpackbits(mask, count=size).astype(bool)
        if int(keep.sum()) != len(t):
            raise ArtifactError(f"{path}: {base}'s mask marks {int(keep.sum())} entries but {len(t)} values are stored")
        w = np.zeros(size, np.float32)
        w[keep] = t
        out[base] = w.reshape(shape)
    return out


def fp32_weights(directory: Path, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    return dense(model_files.read_weights(directory, spec), Path(directory) / spec["weights"])


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    return model_files.load_in_backend(directory, spec, fp32_weights(directory, spec))
