"""The evaluate report as tables a person can read at a glance."""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.table import Table

SPEECH_ROWS = [
    ("mouth_psnr_db", "mouth PSNR (dB)", "higher is better"),
    ("mouth_ssim", "mouth SSIM", "higher is better"),
    ("mouth_aperture_r", "mouth opening r (lag 0)", "vs the real frames at lag 0; 1 is perfect"),
    ("best_lag", "best lag (frames)", "where r peaks (diagnostic): 0 is in sync, + the render is late"),
    ("lmd_percent_face_width", "mouth LMD (% face width)", "lower is better"),
    ("mouth_movement", "mouth movement", "std of the opening while speaking; near real moves naturally, low mumbles"),
    ("mouth_sharpness", "mouth sharpness", "variance of the Laplacian; near real is sharp"),
    ("jump_rate", "lip jumps", "share of frame-to-frame lip changes above the recording's 99th percentile; real ~0.01"),
    ("change_p95_over_real", "lip change p95 / recording's", "near 1 moves like the person; above, jumpy"),
    ("seam_over_real", "seam / recording's", "gradient along the paste's edge; near 1 shows no seam"),
    ("lower_face_jump_rate", "lower-face jumps", "share of frame-to-frame changes of cheeks and chin above the real tail's 99th percentile; real ~0.01"),
    ("lower_face_p95_over_real", "lower-face change p95 / real", "near 1 is one face; above, hair or outlines come and go"),
    ("foreign_area", "foreign lower face", "share of cheek and chin differing from the frame drawn on beyond the jaw's move; 0 is its own face"),
    ("audio_usage", "audio usage", "grey levels the mouth changes when the audio is swapped; 0 ignores audio"),
    ("sync_confidence", "SyncNet confidence", "higher is better"),
    ("sync_offset", "SyncNet offset (frames)", "0 +- 1 is in sync"),
]
SILENCE_ROWS = [
    ("mouth_aperture_std", "mouth opening std", "lower is stiller"),
    ("mouth_aperture_robust_std", "mouth opening robust std", "1.48 x MAD: ignores landmark slips"),
    ("mouth_aperture_mean", "mouth opening mean", "near 0 is closed"),
    ("mouth_frame_change", "mouth frame-to-frame change", "grey levels; lower is stiller"),
]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.3f}"
    return str(value)


def _table(title: str, rows, columns: dict[str, dict]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric", no_wrap=True)
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("", style="dim")
    for key, label, hint in rows:
        if all(values.get(key) is None for values in columns.values()):
            continue  # a measure this avatar has no model for (e.g. SyncNet rows under mouth conditioning)
        table.add_row(label, *(_cell(values.get(key)) for values in columns.values()), hint)
    return table


def print_report(report: dict, console: Console | None = None) -> None:
    """Print the speech and silence tables of an `evaluate` report to stdout (120 columns
    wide when stdout is a file or pipe, so saved reports keep one line per row)."""
    console = console or (Console() if sys.stdout.isatty() else Console(width=120))
    held = report["held_out"]
    console.print(f"[bold]{report['avatar']}[/bold]: held-out tail of {held['seconds']:.1f} s ({held['frames']} frames from frame {held['first_frame']})")
    delay = report.get("picture_delay_frames", 0)
    if delay:
        at_delay = report["speech"]["generated"].get("mouth_aperture_r_at_recording_delay")
        console.print(
            f"stage mouth found the recording's picture {'trailing' if delay > 0 else 'leading'} its sound by {abs(delay)} frames; "
            f"against the real lips at that delay the opening r is {at_delay:.3f} (the table is at lag 0)"
        )
    if "mouth_model" in report:
        console.print(f"mouth model alone: mouth opening r at lag 0 {report['mouth_model']['mouth_aperture_r']:.3f} (the ceiling for the rendered r)")
    console.print(_table("Held-out speech (generated vs. baselines)", SPEECH_ROWS, report["speech"]))
    lags = report["speech"]["generated"].get("r_by_lag")
    if lags:
        console.print("generated mouth opening r by lag (frames): " + "  ".join(f"{lag:+d}:{r:.2f}" for lag, r in lags.items()))
    console.print(_table("Silence (the mouth should stay closed and still)", SILENCE_ROWS, report["silence"]))
