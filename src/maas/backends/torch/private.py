"""DP-SGD for the torch trainer through Opacus (`trainer.privacy`; its settings: maas.backends.privacy).

What Opacus changes, and how maas keeps its promises around it:

- The model. Opacus trains only modules whose per-example gradients it can compute, and
  `ModuleValidator.fix` swaps the others (BatchNorm -> GroupNorm, LSTM -> DPLSTM, ...). The
  model maas stores is rebuilt from model.yaml at load time, so what trains must be what the
  config builds: `model.norm=group` builds the very GroupNorm Opacus would put in (and so
  needs no fix), and a fixed model is accepted only if its weights, under the config-built
  model's names, reproduce that model's outputs. DPLSTM and DPGRU keep nn.LSTM's and nn.GRU's
  weight names and compute the same function, so lstm and gru train; the transformer's
  DPMultiheadAttention stores other weights (qlinear, ...) and is refused.
- The wrapper. GradSampleModule wraps the loss module (state_dict keys gain `_module.`);
  maas reads only the inner model's state_dict, so stored weights keep their plain names.
- The batches. Poisson sampling, as Opacus's accounting assumes: in each step every training
  row is taken with probability batch_size/rows, so batch sizes vary around batch_size. The
  loader yields row indices, so augmentation and indexing stay the trainer's, and it draws
  from the trainer's generator, which resume already saves.
- The budget. `make_private_with_epsilon` picks the noise multiplier that spends
  target_epsilon in trainer.epochs; the accountant reports what was spent so far after each
  epoch (early stopping spends less). Its history goes into the resume state, so a resumed
  run goes on counting from where it stopped.
- The noise is drawn from torch's default generator, seeded, as the rest of training is:
  reproducible, not cryptographically secure. Opacus's secure_mode needs torchcsprng, which
  maas does not ship; docs/privacy.md says what that means.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from maas.backends.privacy import Privacy
from maas.errors import ConfigError

SAME_OUTPUT_ATOL = 1e-5  # DPLSTM vs nn.LSTM: the same function, summed in another order (~1e-8 apart)

# Opacus's warnings that say nothing to a maas user (docs/privacy.md says what each means).
_QUIET = (
    r"Secure RNG turned off",                     # secure_mode: see the module docstring
    r"Optimal order is the largest alpha",        # the RDP bound while the noise multiplier is searched for
    r"Full backward hook is firing when gradients are computed with respect to module outputs",  # input needs no grad
    r"Using a non-full backward hook",
)


@contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        yield


def trainable(model: nn.Module, probe: np.ndarray, arch: str) -> nn.Module:
    """The module Opacus trains in place of the config-built `model`: `model` itself when Opacus
    takes it as it is, else its `ModuleValidator.fix`ed copy, once that copy is shown to be `model`
    under other classes (its weights, by `model`'s names, give `model`'s outputs on `probe`)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if not errors:
        return model
    if any("BatchNorm" in str(e) for e in errors):
        raise ConfigError(f"trainer.privacy.enabled=true can't train model.arch={arch} with BatchNorm: "
                          "set model.norm=group")
    with quiet():
        fixed = ModuleValidator.fix(model)
    remaining = ModuleValidator.validate(fixed, strict=False)
    problem = _differs(fixed, model, probe)
    if problem:
        swapped = sorted({type(m).__name__ for m in model.modules() if type(m) in ModuleValidator.FIXERS})
        raise ConfigError(f"trainer.privacy.enabled=true can't train model.arch={arch}: Opacus trains it only after "
                          f"swapping its {', '.join(swapped)} for its own module, and the swapped model {problem}, so "
                          "the stored weights could not be served; train it without privacy, or choose cnn, mlp, "
                          "autoencoder, lstm or gru")
    if remaining:
        raise ConfigError(f"trainer.privacy.enabled=true can't train model.arch={arch}: {remaining[0]}")
    return fixed


def config_state(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A trained module's weights under the config-built `model`'s names (a fixed module may keep aliases)."""
    return {k: state[k] for k in model.state_dict()}


def _differs(fixed: nn.Module, model: nn.Module, probe: np.ndarray) -> str | None:
    own, theirs = model.state_dict(), fixed.state_dict()
    missing = [k for k in own if k not in theirs or theirs[k].shape != own[k].shape]
    if missing:
        return f"stores no weight named {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}"
    rebuilt = copy.deepcopy(model)
    rebuilt.load_state_dict(config_state(theirs, model))
    x = torch.from_numpy(np.ascontiguousarray(probe, dtype=np.float32))
    with torch.no_grad():
        gap = (rebuilt.eval()(x) - fixed.eval()(x)).abs().max().item()
    return None if gap <= SAME_OUTPUT_ATOL else f"answers up to {gap:.2g} apart from the config-built one"


@dataclass
class Private:
    """One DP-SGD run: the wrapped loss module, the noisy optimizer, the Poisson batches, the accountant."""

    engine: Any                 # opacus.PrivacyEngine
    net: nn.Module              # GradSampleModule around the loss module
    optimizer: Any              # opacus.optimizers.DPOptimizer around the trainer's optimizer
    loader: Any                 # opacus.data_loader.DPDataLoader over row indices
    privacy: Privacy
    rows: int

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def batches(self) -> Iterator[torch.Tensor]:
        with quiet():
            for (idx,) in self.loader:
                yield idx

    def epsilon(self) -> float:
        """The epsilon spent so far at trainer.privacy.delta (0 before the first step)."""
        if not self.engine.accountant.history:
            return 0.0
        with quiet():
            return float(self.engine.get_epsilon(self.privacy.delta))

    def state_dict(self) -> dict:
        return {"accountant": [list(step) for step in self.engine.accountant.history]}

    def load_state_dict(self, state: dict) -> None:
        self.engine.accountant.history = [tuple(step) for step in state["accountant"]]

    def record(self) -> dict:
        """What model.yaml, the train metrics and the model card say about the guarantee."""
        import opacus

        history = self.engine.accountant.history
        return {"epsilon": self.epsilon(), "delta": self.privacy.delta,
                "target_epsilon": self.privacy.target_epsilon, "accountant": self.privacy.accountant,
                "noise_multiplier": float(self.optimizer.noise_multiplier),
                "max_grad_norm": self.privacy.max_grad_norm, "sample_rate": float(self.loader.sample_rate),
                "steps": int(sum(step[2] for step in history)), "training_rows": self.rows,
                "sampling": "poisson", "secure_rng": False, "library": f"opacus {opacus.__version__}"}

    def close(self) -> None:
        """Take Opacus's hooks and per-example gradient buffers off the model."""
        self.net.cleanup()


def make_private(net: nn.Module, optimizer: torch.optim.Optimizer, *, rows: int, batch_size: int, epochs: int,
                 privacy: Privacy, generator: torch.Generator) -> Private:
    """Wrap the loss module and optimizer for DP-SGD over `rows` training rows, the noise set to spend
    privacy.target_epsilon at privacy.delta in `epochs` epochs of Poisson-sampled batches."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from maas.backends.privacy import check_rows

    check_rows(rows, privacy)
    with quiet():
        engine = PrivacyEngine(accountant=privacy.accountant)
    # Rows by index: the trainer gathers and augments the batch itself. Opacus takes the sample rate
    # (1 / len(indices)) and the generator from this loader.
    indices = DataLoader(TensorDataset(torch.arange(rows)), batch_size=batch_size, generator=generator)
    try:
        with quiet():
            wrapped, dp_optimizer, loader = engine.make_private_with_epsilon(
                module=net, optimizer=optimizer, data_loader=indices, target_epsilon=privacy.target_epsilon,
                target_delta=privacy.delta, epochs=epochs, max_grad_norm=privacy.max_grad_norm,
                poisson_sampling=True)
    except ValueError as e:  # e.g. a budget no noise multiplier in Opacus's search range meets
        raise ConfigError(f"trainer.privacy: Opacus can't spend target_epsilon={privacy.target_epsilon:g} at "
                          f"delta={privacy.delta:g} in {epochs} epochs of {rows} rows: {e}") from e
    return Private(engine, wrapped, dp_optimizer, loader, privacy, rows)
