"""The one way the add-on draws text in the sidebar and the preferences: each paragraph is wrapped to the room its
region really has, measured with Blender's own font (blf), so no label is cut at any width or interface scale.

Blender's labels do not wrap and cut what does not fit in the middle ("Esc to c…"). A column count cannot say what
fits: the same room holds 30 to 44 characters of the add-on's English, so each line is measured.

The room of a label is the region's width less a margin that grows with the interface scale: the panel's own margin,
the icon in front of the first line (the next lines keep its place, with an empty icon), and each box around it. The
margins were measured in a real Blender 4.3 window with a staircase of labels 2 to 3 px apart, at the scales 1.0,
1.04 and 1.5 (issue 26): the constants below are the largest margin seen plus about 2 px, so a line is at most about
one character shorter than what would just fit.

Blender-as-a-module (the tests) has no window: there the region is None and the scale reads 0.0. :func:`assume`
then says which region and width to measure for; without it the narrowest place, the sidebar at its default width,
is assumed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import blf
import bpy

# --- places and their margins ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A region the add-on draws text into: its margin at scale 1 and its default width at scale 1."""

    name: str
    margin_px: float
    default_width_px: float


SIDEBAR = Place("sidebar", margin_px=55.0, default_width_px=280.0)
"""View3D > Sidebar (region type UI). Measured margin 50-53 px at scale 1 (it includes the category tabs)."""
PREFERENCES = Place("preferences", margin_px=37.0, default_width_px=500.0)
"""Preferences > Add-ons main region (an add-on's draw). Measured 43-47 px in one box at scale 1, of which the box
takes 10. Its default width is the floating Preferences window's (660 px at scale 1) less its navigation bar."""
PREFERENCES_WINDOW_PX = 660.0
"""The floating Preferences window's default width at scale 1 (687 px at Xvfb's 1.0417)."""
ICON_PX = 27.0
"""An icon in front of a label, at scale 1 (measured 27)."""
BOX_PX = 10.0
"""Each box around a label, at scale 1 (measured 10)."""
UI_POINTS = 11.0
"""The interface font's size when the style does not say (Blender's default widget text)."""


@dataclass(frozen=True)
class Room:
    """Where text goes now: the place, its width in pixels and the interface scale."""

    place: Place
    width_px: float
    scale: float

    def for_label(self, icon: bool, boxes: int) -> float:
        """Pixels a label's text may take in this room."""
        return self.width_px - self.scale * (self.place.margin_px + ICON_PX * icon + BOX_PX * boxes)


_assumed: Room | None = None


@contextlib.contextmanager
def assume(place: Place, width_px: float | None = None, scale: float = 1.0) -> Iterator[Room]:
    """Measure as if drawing into this place at this width (default: the place's default width at this scale)
    wherever Blender gives no region (Blender-as-a-module, tests)."""
    global _assumed
    before = _assumed
    _assumed = Room(place, width_px if width_px is not None else place.default_width_px * scale, scale)
    try:
        yield _assumed
    finally:
        _assumed = before


def interface_scale() -> float:
    """Blender's effective interface scale (Resolution Scale times the monitor's); 1.0 where there is no window."""
    system = bpy.context.preferences.system
    return float(system.ui_scale) or float(bpy.context.preferences.view.ui_scale) or 1.0


def current_room() -> Room:
    """The room of the region being drawn, else the assumed one, else the sidebar at its default width."""
    region = getattr(bpy.context, "region", None)
    if region is not None and region.width > 0:
        place = SIDEBAR if region.type == "UI" else PREFERENCES
        return Room(place, float(region.width), interface_scale())
    if _assumed is not None:
        return _assumed
    scale = interface_scale()
    return Room(SIDEBAR, SIDEBAR.default_width_px * scale, scale)


# --- measuring ------------------------------------------------------------------------------------------------------

_fonts: dict[str, int] = {}


def _font_id() -> int:
    """Blender's interface font (0), or the custom one set in Preferences > Interface > Text Rendering."""
    path = bpy.context.preferences.view.font_path_ui
    if not path:
        return 0
    if path not in _fonts:
        loaded = blf.load(bpy.path.abspath(path))
        _fonts[path] = loaded if loaded >= 0 else 0
    return _fonts[path]


def text_width(text: str, scale: float) -> float:
    """Width in pixels of a label's text at this interface scale."""
    styles = bpy.context.preferences.ui_styles
    points = float(styles[0].widget.points) if len(styles) else UI_POINTS
    font = _font_id()
    blf.size(font, points * scale)
    return float(blf.dimensions(font, text)[0])


def wrap(text: str, room_px: float, scale: float) -> list[str]:
    """The lines of a text, each at most room_px wide: greedily by words, a word wider than the room (a path) split
    where it must. Line breaks in the text are kept; an empty paragraph stays an empty line."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if text_width(candidate, scale) <= room_px:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = word
            while text_width(line, scale) > room_px and len(line) > 1:
                cut = len(line) - 1
                while cut > 1 and text_width(line[:cut], scale) > room_px:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def fits(text: str, icon: bool = False, boxes: int = 0) -> bool:
    """Whether one label's text fits the current room."""
    room = current_room()
    return text_width(text, room.scale) <= room.for_label(icon, boxes)


# --- drawing --------------------------------------------------------------------------------------------------------


def draw_wrapped(layout: bpy.types.UILayout, text: str, icon: str = "NONE", boxes: int = 0) -> None:
    """A paragraph as labels that fit the region: the icon before the first line, an empty one before the next.
    ``boxes``: how many boxes the layout sits in (each narrows the room)."""
    room = current_room()
    lines = wrap(text, room.for_label(icon != "NONE", boxes), room.scale)
    column = layout.column(align=True)
    for index, line in enumerate(lines):
        column.label(text=line, icon=icon if index == 0 else "BLANK1" if icon != "NONE" else "NONE")


def fitted(text: str, icon: bool = False, boxes: int = 0) -> str:
    """One line shortened at its end with '…' to fit the room (for a progress bar's text, which cannot wrap)."""
    room = current_room()
    width = room.for_label(icon, boxes)
    if text_width(text, room.scale) <= width:
        return text
    while text and text_width(text + "…", room.scale) > width:
        text = text[:-1]
    return text.rstrip() + "…"
