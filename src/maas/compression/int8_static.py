"""int8_static: int8 convolutions and linears with calibrated activation ranges (torch.ao FX graph mode).

prepare_fx with the x86 qconfig mapping folds each BatchNorm into its conv and
fuses the ReLUs, observes activation ranges on `compress.int8_static.calibration_rows`
validation rows, and convert_fx swaps in int8 modules (per-channel weights,
fixed activation scales). Fixed scales make a row's answer independent of its
batch-mates, so the predictor runs the usual blocks.

Storage without pickle (torch serialises quantized modules only through it):
the converted model's state as plain arrays in safetensors. A quantized tensor
becomes its integers plus its scales, zero points and axis; activation scales,
zero points and biases are stored as they are. Load builds the same fp32
architecture, converts it the same way (calibrated on zeros: every value that
calibration sets is then overwritten) and loads the stored state into it.
`write` reloads what it stored and refuses it unless it answers bit for bit as
the model it quantized.

No fp32_weights: the fp32 weights are gone (the BatchNorms are folded into
int8 kernels), so `model.init_from` refuses this variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maas import model_files
from maas.compression import _torch_ao
from maas.errors import ArtifactError, ConfigError

WEIGHTS_FILE = "weights.int8_static.safetensors"
ARCHS = ("cnn", "mlp")  # every conv and linear of these becomes int8, and forward() is all they serve
# Checked by converting each: FX traces them all, but these would keep their core in fp32 or lose a served output.
REASONS = {
    "lstm": "torch.ao static int8 leaves LSTM layers in fp32 (only the final Linear would be int8); "
            "int8_dynamic quantizes them",
    "gru": "torch.ao static int8 leaves GRU layers in fp32 (only the final Linear would be int8); "
           "int8_dynamic quantizes them",
    "transformer": "FX traces TransformerEncoderLayer without quantizing its attention, so only the patch "
                   "embedding and the head would be int8",
    "autoencoder": "the converted graph keeps forward() only, so the served anomaly scores (reconstruct) "
                   "would be lost",
}
# Suffixes of the arrays a quantized tensor is stored as.
Q_VALUES, Q_SCALES, Q_ZERO_POINTS, Q_AXIS = ".__qvalues", ".__qscales", ".__qzero_points", ".__qaxis"
NONE = ".__none"  # an absent item of a tuple (a Linear without bias)


def applies(spec: dict[str, Any]) -> str | None:
    reason = _torch_ao.torch_reason(spec)
    if reason:
        return reason
    arch = _torch_ao.arch(spec)
    if arch in REASONS:
        return REASONS[arch]
    if arch not in ARCHS:
        return f"static int8 is set up for {' and '.join(ARCHS)} models, not {arch!r}"
    return None


def calibration_rows(source) -> int:
    rows = source.options("int8_static").get("calibration_rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ConfigError(f"compress.int8_static.calibration_rows={rows!r} must be an integer >= 1")
    return rows


def _convert(model, spec: dict[str, Any], calibration: np.ndarray):
    """`model` (fp32) as a converted int8 GraphModule, its activation ranges observed on `calibration`."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    _torch_ao.use_engine()
    example = (torch.zeros(1, *spec["input_shape"]),)
    with _torch_ao.quiet(), torch.no_grad():
        prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), example)
        prepared(torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32)))
        return convert_fx(prepared)


def write(source, out: Path) -> None:
    from maas.backends.torch import api as torch_api

    if source.calibration is None or not len(source.calibration):
        raise ConfigError("compress.method=int8_static needs validation rows to calibrate on; the val split is empty")
    calibration = source.calibration[:calibration_rows(source)]
    model = _torch_ao.build(source.spec)
    torch_api.set_weights(model, source.weights)
    q = _convert(model, source.spec, calibration)
    spec = {**source.spec, "compression": {"method": "int8_static", "engine": "x86",
                                           "calibration_rows": len(calibration)}}
    model_files.write_model_dir(out, weights=encode(q.state_dict()), weights_file=WEIGHTS_FILE, spec=spec)
    again = load(out, model_files.read_spec(out))
    if not np.array_equal(again.predictor.predict(calibration).proba, torch_api.predictor(q).predict(calibration).proba):
        raise RuntimeError("int8_static: the stored model does not answer as the quantized one it was made from")


def load(directory: Path, spec: dict[str, Any]) -> model_files.LoadedModel:
    from maas.backends.torch import api as torch_api

    if spec.get("backend") != "torch":
        raise ArtifactError(f"{directory}: int8_static models are torch models; model.yaml says "
                            f"backend {spec.get('backend')!r}")
    stored = model_files.read_weights(directory, spec)
    try:
        q = _convert(_torch_ao.build(spec), spec, np.zeros((1, *spec["input_shape"]), np.float32))
    except ConfigError as e:
        raise ArtifactError(f"{directory / model_files.MODEL_FILE}: {e}") from None
    state = decode(stored, q.state_dict(), directory / spec["weights"])
    try:
        q.load_state_dict(state)
    except (RuntimeError, ValueError) as e:  # shapes that don't fit the converted architecture
        raise ArtifactError(f"{directory / spec['weights']}: stored int8 state doesn't fit the architecture: {e}") \
            from None
    return model_files.LoadedModel(torch_api.predictor(q.eval()), q, spec)


def encode(state: dict[str, Any]) -> dict[str, np.ndarray]:
    """A converted model's state_dict as plain arrays by name (no torch object survives)."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        _encode(key, value, out)
    return out


def _encode(key: str, value: Any, out: dict[str, np.ndarray]) -> None:
    import torch

    if isinstance(value, torch.dtype):
        return  # a packed Linear's weight dtype: the converted architecture already has it
    if isinstance(value, tuple):  # a packed Linear's (weight, bias)
        for i, item in enumerate(value):
            if item is None:
                out[f"{key}.{i}{NONE}"] = np.zeros(0, np.int8)
            else:
                _encode(f"{key}.{i}", item, out)
        return
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"int8_static: cannot store {key!r} of type {type(value).__name__}")
    if not value.is_quantized:
        out[key] = value.detach().cpu().numpy()
        return
    out[key + Q_VALUES] = value.int_repr().numpy()
    if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        out[key + Q_SCALES] = value.q_per_channel_scales().numpy().astype(np.float64)
        out[key + Q_ZERO_POINTS] = value.q_per_channel_zero_points().numpy().astype(np.int64)
        out[key + Q_AXIS] = np.array([value.q_per_channel_axis()], np.int64)
    elif value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        out[key + Q_SCALES] = np.array([value.q_scale()], np.float64)
        out[key + Q_ZERO_POINTS] = np.array([value.q_zero_point()], np.int64)
    else:
        raise TypeError(f"int8_static: cannot store {key!r} quantized as {value.qscheme()}")


def decode(stored: dict[str, np.ndarray], template: dict[str, Any], path: Path) -> dict[str, Any]:
    """The state_dict to load: `template` (the freshly converted model's) with every value taken from
    `stored`; an array missing, left over or of the wrong integer type is refused."""
    from collections import OrderedDict

    used: set[str] = set()
    state = OrderedDict((key, _decode(key, value, stored, used, path)) for key, value in template.items())
    # Each quantized module reads its state by the version of its layout that the template records.
    state._metadata = getattr(template, "_metadata", None)  # type: ignore[attr-defined]
    extra = sorted(set(stored) - used)
    if extra:
        raise ArtifactError(f"{path}: arrays the int8 architecture has no place for: {', '.join(extra[:5])}")
    return state


def _take(stored: dict[str, np.ndarray], name: str, used: set[str], path: Path) -> np.ndarray:
    if name not in stored:
        raise ArtifactError(f"{path}: array {name!r} is missing; the file was not written by int8_static for "
                            f"this architecture")
    used.add(name)
    return stored[name]


def _decode(key: str, like: Any, stored: dict[str, np.ndarray], used: set[str], path: Path) -> Any:
    import torch

    if isinstance(like, torch.dtype):
        return like
    if isinstance(like, tuple):
        items = []
        for i, item in enumerate(like):
            if f"{key}.{i}{NONE}" in stored:
                used.add(f"{key}.{i}{NONE}")
                items.append(None)
            else:
                items.append(_decode(f"{key}.{i}", item, stored, used, path))
        return tuple(items)
    if not like.is_quantized:
        return torch.from_numpy(np.require(_take(stored, key, used, path), requirements="C").copy())
    values = _take(stored, key + Q_VALUES, used, path)
    want = {torch.qint8: np.int8, torch.quint8: np.uint8}.get(like.dtype)
    if values.dtype != want:
        raise ArtifactError(f"{path}: {key} holds {values.dtype} integers; the architecture needs {like.dtype}")
    ints = torch.from_numpy(values.copy())
    scales = torch.from_numpy(_take(stored, key + Q_SCALES, used, path).astype(np.float64))
    zero_points = torch.from_numpy(_take(stored, key + Q_ZERO_POINTS, used, path).astype(np.int64))
    if key + Q_AXIS in stored:
        axis = int(_take(stored, key + Q_AXIS, used, path)[0])
        return torch._make_per_channel_quantized_tensor(ints, scales, zero_points, axis)
    return torch._make_per_tensor_quantized_tensor(ints, float(scales[0]), int(zero_points[0]))
