"""Timing of a recording's picture against its sound, from per-frame mouth openings.

Lips move before the sound they make: the mouth opens and closes some 50-150 ms ahead of
the acoustics. A mouth model trained on well-synced recordings keeps that lead (its window
reaches 200 ms past the frame), so its opening predicted from a recording's sound lines up
with the real opening at lag 0 when the recording is in sync, and it draws each mouth before
its sound is heard, as a person does. The best-correlating lag of a short clip, however,
wanders by a frame or two from lag 0 by chance; taking it as a recording error removes the
natural lead and teaches the model to draw mouths late.

So `av_offset` calls a recording out of sync only on evidence: the best lag must lie inside
the search range (a maximum at its edge is a sign of a spurious peak, not a measurement),
agree within a frame on both halves of the recording, and beat lag 0 by `MIN_OFFSET_GAIN`
(calibrated on the pool: docs/quality.md has the figures). Everything else is taken as in sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_AV_OFFSET = 6  # frames (240 ms) either way searched; an offset of this size is not trusted
MIN_OFFSET_GAIN = 0.1  # the opening r the best lag must add to lag 0's (calibrated on the pool, see docs/quality.md)
HALVES_AGREE = 1  # frames by which each half's best lag may differ from the whole recording's


def correlation_by_lag(generated: np.ndarray, real: np.ndarray, max_lag: int) -> dict[int, float]:
    """Pearson r of two per-frame signals at every lag in [-max_lag, max_lag] (positive:
    ``generated`` trails ``real``); nan where either side is constant."""
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        a, b = (generated[lag:], real[: len(real) - lag]) if lag >= 0 else (generated[:lag], real[-lag:])
        out[lag] = float(np.corrcoef(a, b)[0, 1]) if len(a) >= 3 and a.std() > 0 and b.std() > 0 else float("nan")
    return out


def best_lag(by_lag: dict[int, float]) -> int:
    """The lag of the highest finite r (the smaller lag on a tie); 0 when none is finite."""
    finite = {lag: r for lag, r in by_lag.items() if np.isfinite(r)}
    return max(finite, key=lambda lag: (finite[lag], -abs(lag))) if finite else 0


def lagged_correlation(generated: np.ndarray, real: np.ndarray, max_lag: int = 3) -> tuple[float, int]:
    """Pearson r at lag 0 and the lag in [-max_lag, max_lag] with the highest r.

    A positive lag means the generated signal trails the real one by that many frames.
    """
    scores = correlation_by_lag(generated, real, max_lag)
    return scores[0], best_lag(scores)


@dataclass
class OffsetEvidence:
    """What `av_offset` weighs: the best lag of the whole recording and of each half, and
    how much r the best lag adds to lag 0's."""

    best: int
    halves: tuple[int, int]
    gain: float

    def offset(self, min_gain: float = MIN_OFFSET_GAIN) -> int:
        trusted = self.best != 0 and abs(self.best) < MAX_AV_OFFSET and self.gain >= min_gain and all(abs(h - self.best) <= HALVES_AGREE for h in self.halves)
        return self.best if trusted else 0


def offset_evidence(predicted: np.ndarray, real: np.ndarray) -> OffsetEvidence:
    """The lags at which ``real`` follows ``predicted`` best, over the whole and each half."""
    by_lag = correlation_by_lag(real, predicted, MAX_AV_OFFSET)  # lag L: real[t + L] against predicted[t]
    best = best_lag(by_lag)
    half = len(real) // 2
    halves = tuple(best_lag(correlation_by_lag(real[p], predicted[p], MAX_AV_OFFSET)) for p in (slice(0, half), slice(half, None)))
    return OffsetEvidence(best, halves, float(np.nan_to_num(by_lag[best] - by_lag[0], nan=0.0)))


def av_offset(predicted: np.ndarray, real: np.ndarray, min_gain: float = MIN_OFFSET_GAIN) -> int:
    """By how many frames a recording's picture trails its sound (negative: leads it), from
    an opening ``predicted`` from its sound and its ``real`` opening; 0 unless the evidence
    holds (see the module docstring)."""
    return offset_evidence(predicted, real).offset(min_gain)
