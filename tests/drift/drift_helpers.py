"""Data shared by the drift tests: the runbook's two vectors and the training split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The seed runbook's sample request (in distribution) and its drift-provoking vector.
RUNBOOK_SAMPLE = np.array(
    [
        *(13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766),
        *(0.2699, 0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01486, 0.01405, 0.002377),
        *(15.11, 19.26, 99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259),
    ]
)
OUT_OF_RANGE = np.array(
    [
        *(100, 150, 200, 300, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4),
        *(1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5),
        *(100, 120, 140, 160, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9),
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Split:
    """The training split (the drift reference) and the held-out rows, as train.py makes them."""

    reference: np.ndarray
    held_out: np.ndarray
