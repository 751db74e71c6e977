"""Read back a written PNG: its pixel size, and how much of a region is drawn in a given colour."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["colour_fraction", "png_size"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the IHDR chunk; fails if the file is not a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path}: not a PNG"
    return struct.unpack(">II", data[16:24])


def colour_fraction(path: Path, colour: str, rows: tuple[float, float] = (0, 1), cols: tuple[float, float] = (0, 1),
                    tol: float = 0.08) -> float:
    """Fraction of the pixels in the region (fractions of height and width, top left = 0) within ``tol``
    of matplotlib ``colour`` in every RGB channel."""
    import matplotlib.colors
    import matplotlib.image

    pixels = matplotlib.image.imread(str(path))[..., :3]  # [H, W, 3] floats in [0, 1]
    h, w = pixels.shape[:2]
    region = pixels[int(rows[0] * h) : int(rows[1] * h), int(cols[0] * w) : int(cols[1] * w)]
    target = np.asarray(matplotlib.colors.to_rgb(colour))
    return float(np.mean(np.all(np.abs(region - target) <= tol, axis=-1)))
