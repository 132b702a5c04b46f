"""Just enough PNG to check a screenshot (Pillow is not installed): the pixels of an 8-bit,
non-interlaced RGB or RGBA image, decoded with zlib and the five scanline filters."""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]

    def colours(self) -> Counter[tuple[int, ...]]:
        """How many pixels have each colour (RGB; alpha dropped)."""
        counts: Counter[tuple[int, ...]] = Counter()
        step = self.channels
        for row in self.rows:
            counts.update(zip(row[0::step], row[1::step], row[2::step], strict=True))
        return counts


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, prior: bytes, bpp: int) -> bytearray:
    if kind == 0:
        return line
    if kind == 2:
        return bytearray((x + b) & 0xFF for x, b in zip(line, prior, strict=True))
    out = bytearray(len(line))
    for i, x in enumerate(line):
        a = out[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        if kind == 1:
            out[i] = (x + a) & 0xFF
        elif kind == 3:
            out[i] = (x + ((a + b) >> 1)) & 0xFF
        elif kind == 4:
            out[i] = (x + _paeth(a, b, c)) & 0xFF
        else:
            raise ValueError(f"unknown PNG filter {kind}")
    return out


def read_png(path: Path) -> Image:
    data = path.read_bytes()
    if not data.startswith(SIGNATURE):
        raise ValueError(f"{path} is not a PNG")
    pos, header, idat = len(SIGNATURE), None, bytearray()
    while pos < len(data):
        (length, kind) = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ValueError(f"{path} has no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced RGB/RGBA is read here")
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytes] = []
    prior = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(
            raw[start], bytearray(raw[start + 1 : start + 1 + stride]), prior, channels
        )
        rows.append(bytes(line))
        prior = rows[-1]
    return Image(width, height, channels, rows)
