"""Measured figures from one source: the JSON files under docs/figures/, rendered as tables.

Each benchmark writes its figures to ``docs/figures/NAME.json`` (``NAME``: the bench's own
name), so a figure is refreshed by re-running its bench, never by editing prose. A page
asks for them with a block

    <!-- figures: NAME -->          (every table of NAME.json; NAME/TABLE: one of them)
    <!-- /figures -->

and this module fills the block with the tables. It runs twice over the same blocks:

* ``python scripts/figures.py`` (``make figures``) writes the tables into README.md and the
  pages under docs/, so they read the same on GitHub as on the site; ``--check`` (in
  ``make docs``) fails where a page is not what its JSON gives. A block in the README named
  ``headline`` holds the rows of ``HEADLINE`` below;
* as an MkDocs hook (``hooks:`` in mkdocs.yml) it fills every block again at build time, so
  the site never shows a stale table, and a missing file or table, or a malformed marker,
  stops the build.

A figures file is one JSON object::

    {"date": "2026-12-05", "machine": "...", "command": "python bench/...",  # required (null: not yet)
     "source": "...", "note": "...",                                          # optional
     "TABLE": [{"column": value, ...}, ...],      # rows; an empty list reads "not measured yet"
     "TABLE": {"rows": [...], "date": ..., ...},  # rows measured apart: their own date, machine,
                                                  # command, source or note
     "TABLE": {"figure": value, ...},             # one figure a row (nested objects as a.b)
     "figure": value, ...}                        # loose figures, gathered into one table

A TABLE's name is lower-case letters, digits and ``_``, so that a marker can name it.
Values are shown as written (strings may hold Markdown); floats get four significant
digits, so a bench may write full precision.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
README = ROOT / "README.md"
DOCS = ROOT / "docs"

META = ("date", "machine", "command", "source", "note")
REQUIRED = ("date", "machine", "command")
MARKER = re.compile(r"^<!-- figures: ([a-z0-9_]+)(?:/([a-z0-9_]+))? -->$", re.M)
CLOSE = "<!-- /figures -->"
NOT_MEASURED = "*Not measured yet.*"

# The README's headline rows: (what, figures file, path to the value, docs page that shows it).
# A path step is a key, a list index, or {column: value} picking the row that matches.
HEADLINE: tuple[tuple[str, str, tuple, str], ...] = (
    (
        "lip sync: rendered mouth opening vs the real one, Pearson r at lag 0 (56 pool tails, speakers the model never saw; mean of 3 model trainings)",
        "quality",
        ("pool_tails_by_prior_draw", {"priors": "mean of the three draws"}, "rendered, shipped drawing"),
        "quality.md",
    ),
    (
        "the mouth-motion model alone on speakers it never saw, r at lag 0",
        "quality",
        ("summary", {"measure": "prior, held-out speakers, mean r as recorded"}, "value"),
        "quality.md",
    ),
    (
        "lip jumps in the render, % of frame changes above the recording's 99th percentile (56 pool tails)",
        "quality",
        ("pool_tails_one_speaker_out", {"paste": "warp, lips bent, bicubic (shipped)"}, "lip jumps %"),
        "quality.md",
    ),
    (
        "rendering speed, default renderer, `infer` end to end on the bundled sample (its 12 s speech), frames/s (25 is real time)",
        "infer",
        ("mouth_pastes", {"paste": "warp+bend (shipped)"}, "end to end frames/s"),
        "benchmarks.md",
    ),
    (
        "one face: share of the lower face not from the frame drawn on (18 moving-head clips, mean; 0 is its own face)",
        "face_coherence",
        ("summary", {"paste": "warp+bend (shipped)"}, "foreign_area (mean)"),
        "quality.md",
    ),
    (
        "live stream: first speaking frame after its audio, p50 ms (844×844 sample)",
        "stream",
        ("cpu", {"avatar": "bundled sample, 844×844 (full)"}, "first frame p50 ms"),
        "benchmarks.md",
    ),
    (
        "live sessions one machine keeps in real time (844×844 sample)",
        "stream",
        ("cpu", {"avatar": "bundled sample, 844×844 (full)"}, "sessions in real time"),
        "benchmarks.md",
    ),
    (
        "live WebSocket sessions in real time at 480×480",
        "stream",
        ("summary", {"measure": "WebSocket sessions in real time, 480×480"}, "value"),
        "benchmarks.md",
    ),
    (
        "live WebRTC sessions in real time at 480×480, VP8 and Opus encoding included",
        "stream",
        ("summary", {"measure": "WebRTC sessions in real time, 480×480, encoding included"}, "value"),
        "benchmarks.md",
    ),
    (
        "speaking avatars one voice-agent process renders in real time at 480×480 (LiveKit/Pipecat plugins, before the framework's encoding)",
        "agents",
        ("summary", {"measure": "speaking avatars one agent process renders in real time"}, "value"),
        "benchmarks.md",
    ),
    ("render jobs through the queue, jobs/min (4 s of speech each, 1 worker)", "serve", ("render_jobs", {"workers": 1}, "jobs/min"), "benchmarks.md"),
    ("peak memory of `infer`, MB: 1 minute of speech", "long_render", ("runs", {"speech_minutes": 1}, "peak_rss_mb"), "benchmarks.md"),
    ("peak memory of `infer`, MB: 60 minutes of speech (a lecture)", "long_render", ("runs", {"speech_minutes": 60}, "peak_rss_mb"), "benchmarks.md"),
)


class FiguresError(Exception):
    """A figures file or marker that cannot be rendered: the docs build must stop on it."""


def load(name: str) -> dict[str, Any]:
    path = FIGURES / f"{name}.json"
    if not path.is_file():
        raise FiguresError(f"{path.relative_to(ROOT)} is missing (run its bench, or fix the marker)")
    data = json.loads(path.read_text())
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise FiguresError(f"{path.relative_to(ROOT)} lacks {', '.join(missing)}")
    return data


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 10_000:
            return f"{value:,.0f}"
        text = f"{value:.4g}"
        return text if "." in text or "e" in text else text + ".0"  # 2.0 stays a measured 2.0
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return NOT_MEASURED
    rows = [flatten(row) for row in rows]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def caption(meta: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    """When, where and how figures were measured; against ``base`` (the file's), only what differs."""
    base = base or {}
    when = [meta.get(key) for key in REQUIRED]
    parts = []
    if when != [base.get(key) for key in REQUIRED]:
        if not meta.get("date"):
            parts.append(f"`{meta['command']}` writes these figures." if meta.get("command") else "")
        else:
            measured = f"Measured {meta['date']} · {meta.get('machine') or 'machine not recorded'}"
            parts.append(measured + (f" · `{meta['command']}`." if meta.get("command") else "."))
    if meta.get("source") and meta.get("source") != base.get("source"):
        parts.append(f"*{meta['source'][0].upper()}{meta['source'][1:]}.*")
    if meta.get("note"):
        parts.append(meta["note"])
    return " ".join(part for part in parts if part)


Table = tuple[dict[str, Any], list[dict[str, Any]]]


def tables(data: dict[str, Any]) -> dict[str, Table]:
    """Each table of a figures file as (its metadata: the file's, overridden by its own, with
    only its own note; its rows)."""
    meta = {key: data.get(key) for key in REQUIRED + ("source",)}
    found: dict[str, Table] = {}
    loose: dict[str, Any] = {}
    for key, value in data.items():
        if key in META:
            continue
        if isinstance(value, list) and all(isinstance(row, dict) for row in value):
            found[key] = (meta, value)
        elif isinstance(value, dict) and isinstance(value.get("rows"), list):
            found[key] = (meta | {k: value[k] for k in META if k in value}, value["rows"])
        elif isinstance(value, dict):
            found[key] = (meta, [{"figure": k, "value": v} for k, v in flatten(value).items()])
        else:
            loose[key] = value
    if loose:
        found["figures"] = (meta, [{"figure": k, "value": v} for k, v in loose.items()])
    return found


def render(name: str, only: str | None = None) -> str:
    """The Markdown for a marker: the file's caption, then its tables (or the one named)."""
    data = load(name)
    found = tables(data)
    if only is not None:
        if only not in found:
            raise FiguresError(f"docs/figures/{name}.json has no table {only!r} (it has {', '.join(found)})")
        meta, rows = found[only]
        return "\n\n".join(part for part in (caption(meta), table(rows)) if part)
    file_meta = {key: data.get(key) for key in META}
    parts = [caption(file_meta)]
    for key, (meta, rows) in found.items():
        if len(found) > 1:
            parts.append(f"**{key.replace('_', ' ')}**")
        parts.append(caption(meta, file_meta))
        parts.append(table(rows))
    return "\n\n".join(part for part in parts if part)


def fill(markdown: str, where: str) -> str:
    """Every figures block of a page filled from its JSON (a marker with no closing line yet gets one)."""
    lines, out, i, fenced = markdown.split("\n"), [], 0, False
    while i < len(lines):
        line = lines[i]
        fenced ^= line.lstrip().startswith("```")  # a marker shown as an example is not one
        if fenced or not line.lstrip().startswith("<!-- figures"):
            out.append(line)
            i += 1
            continue
        marker = MARKER.fullmatch(line)
        if not marker:
            raise FiguresError(f"{where}: malformed figures marker {line!r} (want <!-- figures: NAME --> or <!-- figures: NAME/TABLE -->)")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("<!-- ")), None)
        has_body = end is not None and lines[end] == CLOSE
        name, only = marker.groups()
        try:
            if name == "headline":
                if where != "README.md":
                    raise FiguresError("the headline block belongs to the README")
                body = headline()
            else:
                body = render(name, only)
        except FiguresError as e:
            raise FiguresError(f"{where}: {e}") from None
        out += [line, "", body, "", CLOSE]
        i = end + 1 if has_body else i + 1
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs hook: a FiguresError becomes a PluginError, which stops the build."""
    from mkdocs.exceptions import PluginError

    try:
        return fill(markdown, page.file.src_uri)
    except FiguresError as e:
        raise PluginError(str(e)) from None


def lookup(data: Any, path: tuple) -> Any:
    for step in path:
        if isinstance(step, dict):
            data = next((row for row in data if all(row.get(k) == v for k, v in step.items())), None)
            if data is None:
                raise FiguresError(f"no row {step} in the path {path}")
        elif isinstance(step, int) and isinstance(data, list) and not data:
            return None
        else:
            try:
                data = data[step]
            except (KeyError, IndexError, TypeError):
                raise FiguresError(f"no {step!r} in the path {path}") from None
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            data = data["rows"]
    return data


def headline() -> str:
    """The README's table of current headline figures, each with where and when it was measured."""
    lines = ["| what | figure | measured |", "| --- | --- | --- |"]
    for what, name, path, page in HEADLINE:
        data = load(name)
        value = lookup(data, path)
        meta = tables(data)[path[0]][0]
        when = f"{meta['date']}, {meta['machine']}" if value is not None else NOT_MEASURED
        shown = cell(value) if value is not None else "—"
        lines.append(f"| {what} | **{shown}** | {when} ([{page.removesuffix('.md')}](docs/{page})) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write (or check) the figures tables of README.md and docs/ from docs/figures/*.json.")
    parser.add_argument("--check", action="store_true", help="fail where a page's tables are not what the figures files give")
    args = parser.parse_args()
    stale = []
    for path in [README, *sorted(DOCS.rglob("*.md"))]:
        text = path.read_text()
        where = path.relative_to(ROOT if path == README else DOCS).as_posix()
        try:
            filled = fill(text, where)
        except FiguresError as e:
            sys.exit(str(e))
        if filled == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(filled)
            print(f"{path.relative_to(ROOT)}: figures rewritten")
    if stale:
        sys.exit(f"figures out of date in {', '.join(stale)}: run `make figures`")


if __name__ == "__main__":
    main()
