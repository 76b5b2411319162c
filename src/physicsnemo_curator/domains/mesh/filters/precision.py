"""Cast the floating-point arrays of meshes to one precision."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from physicsnemo_curator.core.base import Filter, Param
from physicsnemo_curator.domains.mesh._arrays import FLOAT_DTYPES, cast_floating
from physicsnemo_curator.domains.mesh.container import Mesh


class PrecisionFilter(Filter[Any]):
    """Cast points and every floating-point field to ``target_dtype``.

    Integer arrays (cells, labels) are left alone. A
    :class:`~physicsnemo_curator.domains.mesh.Mesh` is replaced by a new mesh
    (the input is not modified); another object with ``point_data`` and
    ``cell_data`` mappings has its fields cast in place. Torch tensors stay
    tensors on their device.

    Parameters
    ----------
    target_dtype : str
        ``"float16"``, ``"float32"`` or ``"float64"``.
    """

    name: ClassVar[str] = "Precision"
    description: ClassVar[str] = "Cast points and floating-point fields to one precision"

    def __init__(self, target_dtype: str = "float32") -> None:
        target_dtype = str(target_dtype).removeprefix("torch.").removeprefix("numpy.")
        if target_dtype not in FLOAT_DTYPES:
            raise ValueError(f"PrecisionFilter target_dtype must be one of {', '.join(FLOAT_DTYPES)}, got {target_dtype!r}.")
        self.target_dtype = target_dtype

    @classmethod
    def params(cls) -> list[Param]:
        return [Param("target_dtype", str, "float32", "Floating-point type: float16, float32 or float64.")]

    def __call__(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield self.cast(item)

    def cast(self, item: Any) -> Any:
        """Return ``item`` with its floating-point arrays cast to :attr:`target_dtype`."""
        dtype = self.target_dtype
        if isinstance(item, Mesh):
            return item.replace(
                points=cast_floating(item.points, dtype, "points"),
                point_data={k: cast_floating(v, dtype, f"point_data[{k!r}]") for k, v in item.point_data.items()},
                cell_data={k: cast_floating(v, dtype, f"cell_data[{k!r}]") for k, v in item.cell_data.items()},
            )
        if not (hasattr(item, "point_data") or hasattr(item, "cell_data")):
            raise TypeError(f"PrecisionFilter needs a Mesh or an object with point_data/cell_data mappings, got {type(item).__name__}.")
        for attribute in ("point_data", "cell_data"):
            fields = getattr(item, attribute, None)
            if fields is not None:
                for key in list(fields.keys()):
                    fields[key] = cast_floating(fields[key], dtype, f"{attribute}[{key!r}]")
        return item
