"""Locations of the visual components' front-end modules, in a wheel and in a checkout.

The wheel ships the repository's ``js/`` folder as ``physicsnemo_curator/_js``;
an editable install reads the files from ``js/`` at the repository root.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

COMPONENTS = ("progress", "timeline", "stage_bars", "artifact_preview", "monitor")
"""Names of the visual components; each is one ES module ``<name>.js``."""

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent

_SOURCES_MARKER = "/*__PSNC_COMPONENT_SOURCES__*/null"


def js_dir() -> Path:
    """Return the folder that contains the component modules.

    Raises
    ------
    FileNotFoundError
        When neither the wheel's ``_js`` folder nor a checkout's ``js/`` has them.
    """
    candidates = (_PACKAGE_ROOT / "_js", _PACKAGE_ROOT.parent.parent / "js")
    for folder in candidates:
        if (folder / "progress.js").is_file():
            return folder
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"The widget JavaScript files were not found (looked in {searched}). "
        f"Reinstall physicsnemo-curator, or run from a checkout that has js/."
    )


def js_path(name: str) -> Path:
    """Return the path of component ``name`` (``"timeline"`` or ``"timeline.js"``)."""
    stem = name[:-3] if name.endswith(".js") else name
    if stem not in COMPONENTS:
        raise ValueError(f"Unknown visual component {name!r}; the components are {', '.join(COMPONENTS)}.")
    return js_dir() / f"{stem}.js"


@lru_cache(maxsize=None)
def esm(name: str) -> str:
    """Return the ES module text of component ``name``, ready for ``_esm``.

    ``monitor`` composes the other four: they are embedded in its text, and
    it loads them from ``blob:`` URLs in the browser, so the module needs no
    network and no import map in either host (anywidget or Panel's
    ``AnyWidgetComponent``).
    """
    text = js_path(name).read_text(encoding="utf-8")
    if Path(name).stem == "monitor":
        sources = {part: js_path(part).read_text(encoding="utf-8") for part in COMPONENTS if part != "monitor"}
        if _SOURCES_MARKER not in text:
            raise RuntimeError(f"{js_path(name)} lacks the marker {_SOURCES_MARKER}; the file is damaged.")
        text = text.replace(_SOURCES_MARKER, json.dumps(sources).replace("</", "<\\/"))
    return text
