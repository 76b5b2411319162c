"""The three kinds of pipeline component: :class:`Source`, :class:`Filter` and :class:`Sink`.

A source yields items for an index, filters transform the stream of items, and
a sink writes them and returns the written paths. Components never need
profiling code: the pipeline wraps each stage's generator and times it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Param:
    """Description of one constructor parameter of a component.

    Parameters
    ----------
    name : str
        The keyword argument name.
    type : type or str
        The expected type, used for display and validation in UIs.
    default : object, optional
        The default value; absent means the parameter is required.
    description : str
        One sentence for users.
    """

    name: str
    type: Any = str
    default: Any = _MISSING
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


class _Component:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__

    @classmethod
    def params(cls) -> list[Param]:
        """Return the constructor parameters of this component.

        The default reads the signature of ``__init__``; override it to add
        types and descriptions.
        """
        out = []
        try:
            signature = inspect.signature(cls.__init__, eval_str=True)
        except (NameError, TypeError, SyntaxError):
            signature = inspect.signature(cls.__init__)
        for parameter in list(signature.parameters.values())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            default = _MISSING if parameter.default is parameter.empty else parameter.default
            annotation = parameter.annotation if parameter.annotation is not parameter.empty else Any
            out.append(Param(parameter.name, annotation, default))
        return out

    def config(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this component.

        The default reads the attributes named after :meth:`params`, then
        ``_<name>``; override it when a component stores them differently.
        """
        values = {}
        for param in self.params():
            for attribute in (param.name, f"_{param.name}"):
                if hasattr(self, attribute):
                    values[param.name] = getattr(self, attribute)
                    break
            else:
                if param.required:
                    raise AttributeError(
                        f"{type(self).__name__} does not keep its parameter {param.name!r} as an "
                        f"attribute; store it as self.{param.name} or override config()."
                    )
        return values


class Source(_Component, Generic[T]):
    """A collection of indexed inputs.

    Subclasses implement ``__len__`` and ``__getitem__(index)``, which yields
    the items of one index (usually one).
    """

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __getitem__(self, index: int) -> Iterator[T]:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def partition_indices(self, indices: Sequence[int]) -> list[list[int]] | None:
        """Return groups of indices that one worker must process in order, or ``None``."""
        return None

    def filter(self, flt: Filter[Any]) -> Any:
        """Start a pipeline from this source with ``flt`` as its first filter."""
        from physicsnemo_curator.core.pipeline import Pipeline

        return Pipeline(source=self, filters=[flt])

    def write(self, sink: Sink[Any]) -> Any:
        """Start a pipeline from this source that writes straight to ``sink``."""
        from physicsnemo_curator.core.pipeline import Pipeline

        return Pipeline(source=self, sink=sink)


class Filter(_Component, Generic[T]):
    """A generator stage: ``__call__(items)`` yields transformed items.

    Stateful filters that accumulate across indices follow this lifecycle.
    After each index the runner calls :meth:`artifacts` and records the
    returned paths for that index. When a worker finishes its share, it calls
    :meth:`flush` and records those paths too. After the run,
    :func:`~physicsnemo_curator.run.gather_pipeline` calls :meth:`merge` once
    with every worker's flushed paths.
    """

    def __call__(self, items: Iterable[T]) -> Iterator[T]:
        yield from items

    def artifacts(self) -> list[str]:
        """Return the files this filter wrote for the index that just ran."""
        return []

    def flush(self) -> list[str]:
        """Write what the filter buffered in this worker and return the paths written."""
        return []

    @classmethod
    def merge(cls, shard_paths: Sequence[str], config: dict[str, Any]) -> list[str]:
        """Combine the shards written by several workers; return the final paths."""
        return list(shard_paths)

    @classmethod
    def dashboard_panel(cls, artifact_paths: Sequence[str], selected_index: int | None = None) -> Any:
        """Return a view of this filter's artifacts for the dashboard, or ``None``.

        The default needs no Panel and returns ``None``, which makes the
        dashboard show the generic artifact listing.
        """
        return None

    @classmethod
    def dashboard_layout_hints(cls) -> dict[str, Any]:
        """Return layout hints for :meth:`dashboard_panel` (``{"min_height": ..., "sizing_mode": ...}``)."""
        return {}


class Sink(_Component, Generic[T]):
    """The last stage: ``__call__(items, index)`` writes items and returns the paths."""

    def __call__(self, items: Iterable[T], index: int) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(items, index)")

    def partition_indices(self, indices: Sequence[int]) -> list[list[int]] | None:
        """Return groups of indices that one worker must process in order, or ``None``."""
        return None
