"""Helpers that treat NumPy arrays and torch tensors alike, without importing torch."""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT_DTYPES = ("float16", "float32", "float64")


def is_tensor(value: Any) -> bool:
    """Return whether ``value`` is a torch tensor (checked by type, so torch is never imported)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_numpy(value: Any) -> np.ndarray:
    """Return ``value`` as a NumPy array, copying a tensor to host memory when needed."""
    if is_tensor(value):
        tensor = value.detach().cpu()
        try:
            return tensor.numpy()
        except TypeError:  # bfloat16 and friends have no NumPy dtype
            return tensor.float().numpy()
    return np.asarray(value)


def shape_of(value: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in value.shape)


def field_mean(value: Any) -> float | None:
    """Return the mean over all entries of a numeric field in float64, or ``None`` if it has none."""
    if is_tensor(value):
        if value.numel() == 0 or value.dtype.is_complex or str(value.dtype) == "torch.bool":
            return None
        import torch

        return float(value.detach().to(torch.float64).mean().item())
    array = np.asarray(value)
    if array.size == 0 or array.dtype.kind not in "biuf":
        return None
    return float(array.mean(dtype=np.float64))


def is_floating(value: Any) -> bool:
    if is_tensor(value):
        return bool(value.dtype.is_floating_point)
    return np.asarray(value).dtype.kind == "f"


def cast_floating(value: Any, dtype_name: str, name: str = "array") -> Any:
    """Cast a floating array or tensor to ``dtype_name``; other arrays are returned unchanged.

    Raises OverflowError, naming ``name``, when finite values do not fit the
    target type: a silent cast would turn them into infinities.
    """
    if not is_floating(value):
        return value
    if is_tensor(value):
        import torch

        cast = value.to(getattr(torch, dtype_name))
        overflow = bool((torch.isinf(cast) & torch.isfinite(value)).any())
        largest = float(value[torch.isfinite(value)].abs().max()) if overflow else 0.0
    else:
        source = np.asarray(value)
        with np.errstate(over="ignore"):
            cast = source.astype(dtype_name, copy=False)
        overflow = bool((np.isinf(cast) & np.isfinite(source)).any())
        largest = float(np.abs(source[np.isfinite(source)]).max()) if overflow else 0.0
    if overflow:
        limit = float(np.finfo(dtype_name).max)
        raise OverflowError(
            f"Casting {name} to {dtype_name} would turn finite values into infinity (largest magnitude "
            f"{largest:.4g}, {dtype_name} holds up to {limit:.4g}); rescale the field or choose a wider type such as float32."
        )
    return cast
