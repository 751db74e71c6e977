"""The data side of long-sequence training (``--training tbptt``), numpy only.

Truncated backpropagation through time: the training rows are cut into ``B``
contiguous streams that run side by side in one batch, fed ``window`` steps
(one *chunk*) per gradient step, with the recurrent state carried from chunk
to chunk and reset to zero at the start of every epoch, as a served stream
starts from zero. Every step is labelled with its target ``horizon`` steps
later (many-to-many); steps whose target is not a training row, and the
padding after a short last stream, are masked out of the loss.

How many streams: as many as ``--batch-size`` allows, but each stream spans at
least :data:`MIN_STREAM_CHUNKS` chunks, so that most of its steps see a state
that has been carried over many chunks, as a served stream's does
(:func:`stream_count`). The bundled sunspots (216 training rows, window 10)
gets 2 streams of 108 steps; a short series gets one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .windows import Dataset

__all__ = ["MIN_STREAM_CHUNKS", "Streams", "make_streams", "stream_count", "streamed_rows"]

MIN_STREAM_CHUNKS = 10  # every parallel training stream spans at least this many chunks of `window` steps


def stream_count(rows: int, window: int, batch_size: int) -> int:
    """Parallel streams for ``rows`` training rows: ``min(batch_size, rows // (MIN_STREAM_CHUNKS * window))``, at least 1."""
    return max(1, min(batch_size, rows // (MIN_STREAM_CHUNKS * window)))


@dataclass(frozen=True)
class Streams:
    """The training rows as ``B`` parallel streams of length ``L`` (padded to whole chunks)."""

    x: np.ndarray  # [B, L, F] float32, normalised model-space inputs
    y: np.ndarray  # [B, L, O] float32, normalised label of each step (0 where masked)
    mask: np.ndarray  # [B, L] float32, 1 where the step's target is a training row
    window: int  # steps per chunk: the truncation length
    length: int  # rows per stream before padding

    @property
    def count(self) -> int:
        """B, the parallel streams."""
        return int(self.x.shape[0])

    @property
    def n_chunks(self) -> int:
        """Gradient steps per epoch."""
        return int(self.x.shape[1]) // self.window

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(x [B, W, F], y [B, W, O], mask [B, W])`` per chunk, in time order."""
        w = self.window
        for i in range(self.n_chunks):
            yield self.x[:, i * w : (i + 1) * w], self.y[:, i * w : (i + 1) * w], self.mask[:, i * w : (i + 1) * w]

    def describe(self) -> dict[str, int]:
        """What the manifest records about the layout."""
        return {"streams": self.count, "stream_rows": self.length, "chunk": self.window,
                "chunks_per_epoch": self.n_chunks, "labelled_steps": int(self.mask.sum())}


def make_streams(dataset: Dataset, batch_size: int) -> Streams:
    """``dataset``'s training rows as parallel streams (see the module docstring)."""
    assert dataset.row_labels is not None  # set by make_dataset
    start, end = dataset.rows["train"]
    n, w = end - start, dataset.window
    b = stream_count(n, w, batch_size)
    length = -(-n // b)  # ceil: the last stream is the shorter one
    padded = -(-length // w) * w  # whole chunks
    x_all = dataset.normalised_inputs()  # [N, F]
    rows = start + np.arange(b)[:, None] * length + np.arange(padded)[None, :]  # [B, P]: series row of each step
    valid = (np.arange(padded) < length)[None, :] & (rows < end)  # [B, P]
    labelled = valid & (rows + dataset.horizon < end)  # the target is a training row
    safe = np.where(valid, rows, 0)
    mask = labelled.astype(np.float32)
    return Streams(
        x=(x_all[safe] * valid[..., None]).astype(np.float32),
        y=(dataset.row_labels[safe] * mask[..., None]).astype(np.float32),
        mask=mask,
        window=w,
        length=length,
    )


def streamed_rows(dataset: Dataset, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Where a stream from the series' first row is scored on ``part`` (``"val"`` or ``"test"``):
    ``(output rows [n], target rows [n])``; the output at row t is scored against the target at ``t + horizon``."""
    start, end = dataset.rows[part]
    target = np.arange(start, end)
    return target - dataset.horizon, target
