"""Generate the bundles' icon files from the SVGs in resources/icons.

Nothing generated is committed: the PyInstaller spec runs this at build time (into its work
folder), so the SVGs stay the only source. Rendering uses Qt's SVG renderer (PySide6 is a
dependency anyway); the .ico and .icns containers are written here with the standard library
(both are a small header and a table of PNGs), so no Pillow or iconutil is needed and any OS
can build any OS's icons.

    python packaging/make_icons.py OUT_DIR [--resources DIR]

writes into OUT_DIR:
    portwatch.ico                      Windows: 16..256 px, PNG-compressed entries
    portwatch.icns                     macOS: 16..1024 px (incl. @2x), PNG entries
    hicolor/<N>x<N>/apps/portwatch.png Linux: freedesktop icon theme sizes, plus
    hicolor/scalable/apps/portwatch.svg  the SVG itself
    macos/<state>Template.png, ...@2x  macOS menu-bar template images (black + alpha) of the
                                       tray states: all, some, none, unhealthy, trouble
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
APP_ID = "portwatch"  # icon name in the freedesktop theme; matches Icon= in the .desktop file
APP_SVG = "app.svg"
TRAY_STATES = ("all", "some", "none", "unhealthy", "trouble")

ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
TEMPLATE_SIZE = 22  # points; the menu bar is 22 pt tall, the @2x file is 44 px
# icns element types holding PNG data, with their pixel size (Apple's "icns" format).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"icp6", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic09", 512),
    (b"ic10", 1024),  # 512@2x
    (b"ic11", 32),  # 16@2x
    (b"ic12", 64),  # 32@2x
    (b"ic13", 256),  # 128@2x
    (b"ic14", 512),  # 256@2x
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QImageLike = Any  # PySide6.QtGui.QImage; Qt is imported lazily, only when rendering


@dataclass(frozen=True)
class Generated:
    ico: Path
    icns: Path
    hicolor: Path  # the folder holding <N>x<N>/apps/portwatch.png and scalable/
    templates: list[Path]

    @property
    def png_256(self) -> Path:
        return self.hicolor / "256x256" / "apps" / f"{APP_ID}.png"


class _Renderer:
    """SVG -> PNG bytes with QtSvg. Needs no display: QImage, not QPixmap."""

    def __init__(self) -> None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtGui import QGuiApplication

        self._app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])

    def png(self, svg: Path, size: int, template: bool = False) -> bytes:
        from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
        from PySide6.QtGui import QImage, QPainter
        from PySide6.QtSvg import QSvgRenderer

        renderer = QSvgRenderer(str(svg))
        if not renderer.isValid():
            raise ValueError(f"{svg}: not a valid SVG")
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        if template:
            image = _to_template(image)
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not image.save(buffer, "PNG"):
            raise RuntimeError(f"could not encode {svg} at {size} px as PNG")
        buffer.close()
        return bytes(data.data())


def _to_template(image: QImageLike) -> QImageLike:
    # The app draws its macOS tray icons the same way at run time: one function for both.
    from trayapp.ui.icons import template_image

    return template_image(image)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico whose images are PNGs (fine for Windows Vista and later)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))  # reserved, type 1 = icon, count
    offset = len(header) + 16 * len(sizes)
    entries, blobs = [], []
    for size in sizes:
        blob = pngs[size]
        # width, height (0 means 256), colours, reserved, planes, bits per pixel, size, offset
        entries.append(
            struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(blob), offset)
        )
        blobs.append(blob)
        offset += len(blob)
    return header + b"".join(entries) + b"".join(blobs)


def read_ico(data: bytes) -> dict[int, bytes]:
    """The images of an .ico written by ico_bytes, by size (for tests and checks)."""
    reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    if reserved != 0 or kind != 1:
        raise ValueError("not an icon file")
    images = {}
    for n in range(count):
        w, _h, _c, _r, _p, _bpp, length, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * n)
        images[w or 256] = data[offset : offset + length]
    return images


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns holding the PNG of the right size for each ICNS_TYPES element."""
    body = b"".join(
        kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES
    )
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def read_icns(data: bytes) -> dict[bytes, bytes]:
    """The elements of an .icns, by type (for tests and checks)."""
    if data[:4] != b"icns" or struct.unpack(">I", data[4:8])[0] != len(data):
        raise ValueError("not an icns file, or its length is wrong")
    elements, pos = {}, 8
    while pos < len(data):
        kind = data[pos : pos + 4]
        (length,) = struct.unpack(">I", data[pos + 4 : pos + 8])
        if length < 8 or pos + length > len(data):
            raise ValueError(f"bad icns element {kind!r}")
        elements[kind] = data[pos + 8 : pos + length]
        pos += length
    return elements


def generate(out_dir: Path, resources: Path | None = None) -> Generated:
    """Write every icon file into out_dir (created; stale files of ours are replaced)."""
    icons = (resources or REPO / "resources") / "icons"
    app_svg = icons / APP_SVG
    if not app_svg.is_file():
        raise FileNotFoundError(f"{app_svg} is missing")
    out_dir.mkdir(parents=True, exist_ok=True)
    render = _Renderer()
    sizes = sorted({*ICO_SIZES, *HICOLOR_SIZES, *(s for _, s in ICNS_TYPES)})
    pngs = {size: render.png(app_svg, size) for size in sizes}

    ico = out_dir / f"{APP_ID}.ico"
    ico.write_bytes(ico_bytes({s: pngs[s] for s in ICO_SIZES}))
    icns = out_dir / f"{APP_ID}.icns"
    icns.write_bytes(icns_bytes(pngs))

    hicolor = out_dir / "hicolor"
    shutil.rmtree(hicolor, ignore_errors=True)
    for size in HICOLOR_SIZES:
        target = hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(pngs[size])
    scalable = hicolor / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(app_svg, scalable)

    templates = []
    macos = out_dir / "macos"
    macos.mkdir(exist_ok=True)
    for state in TRAY_STATES:
        for scale, suffix in ((1, ""), (2, "@2x")):
            target = macos / f"{state}Template{suffix}.png"
            target.write_bytes(render.png(icons / f"{state}.svg", TEMPLATE_SIZE * scale, True))
            templates.append(target)
    return Generated(ico=ico, icns=icns, hicolor=hicolor, templates=templates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the icon files into")
    parser.add_argument(
        "--resources", type=Path, default=REPO / "resources", help="the resources folder"
    )
    args = parser.parse_args(argv)
    result = generate(args.out_dir, args.resources)
    for path in (result.ico, result.icns, result.hicolor, *result.templates):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
