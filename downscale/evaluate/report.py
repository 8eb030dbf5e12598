"""The evaluation's outputs, built from the tidy rows in one place.

``metrics.csv`` and ``metrics.json`` hold one row per (emulator, test, variable, method, metric);
``report.md`` and ``report.html`` are the scorecard: per emulator, one row per (variable, metric) and the tests
side by side (CV and out-of-sample), each with its methods, ranked (bold / shaded: the best method of the row);
a short "where the emulator wins" summary comes first.  The HTML is self-contained (figures embedded as
base64 PNG); the Markdown links the PNGs under ``figures/``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from downscale.evaluate.config import EvaluateConfig

__all__ = ["COLUMNS", "scorecard", "summary", "write_report"]

COLUMNS = [
    "emulator",
    "test",
    "title",
    "kind",
    "domain",
    "period",
    "variable",
    "method",
    "metric",
    "value",
    "units",
    "better",
    "needs",
    "rank",
]
_BETTER = {"lower": "lower is better", "higher": "higher is better", "one": "1 is best"}
_SHADES = ["#b8e0b0", "#e8f3c4", "#fbe3b8", "#f7c1ad", "#f3a6a0"]


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}" if a >= 0.01 else f"{v:.2e}"


def _methods(rows: list[dict[str, Any]]) -> list[str]:
    order = ["emulator", "bilinear", "bilinear_bc", "quantile_mapping"]
    found = list(dict.fromkeys(r["method"] for r in rows))
    return [m for m in order if m in found] + [m for m in found if m not in order]


def _tests(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys((r["test"], r["title"], r["kind"]) for r in rows))


def scorecard(rows: list[dict[str, Any]], emulator: str) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """The scorecard of one emulator: its columns ``(test, method)`` and one dict per (variable, metric)
    with ``cells[(test, method)] = (value, rank)``."""
    mine = [r for r in rows if r["emulator"] == emulator]
    methods = _methods(mine)
    columns = [
        (t, m) for t, _, _ in _tests(mine) for m in methods if any(r["test"] == t and r["method"] == m for r in mine)
    ]
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for r in mine:
        key = (r["variable"], r["metric"])
        entry = table.setdefault(
            key,
            {
                "variable": r["variable"],
                "metric": r["metric"],
                "units": r["units"],
                "better": r["better"],
                "cells": {},
                "n": {},
            },
        )
        entry["cells"][(r["test"], r["method"])] = (r["value"], r.get("rank"))
        entry["n"][r["test"]] = entry["n"].get(r["test"], 0) + 1
    return columns, list(table.values())


def summary(rows: list[dict[str, Any]], emulator: str) -> list[dict[str, Any]]:
    """Per test: on how many (variable, metric) rows the emulator ranks first, and beats each baseline."""
    out = []
    mine = [r for r in rows if r["emulator"] == emulator]
    for test, title, kind in _tests(mine):
        here = [r for r in mine if r["test"] == test]
        keys = list(dict.fromkeys((r["variable"], r["metric"]) for r in here))
        rank = {(r["variable"], r["metric"], r["method"]): r.get("rank") for r in here}
        beats: dict[str, tuple[int, int]] = {}
        entry: dict[str, Any] = {"test": test, "title": title, "kind": kind, "rows": 0, "first": 0, "beats": beats}
        for var, metric in keys:
            mine_rank = rank.get((var, metric, "emulator"))
            if mine_rank is None:
                continue
            others = [m for (v, k, m) in rank if v == var and k == metric and m != "emulator"]
            if not others:
                continue
            entry["rows"] += 1
            entry["first"] += int(mine_rank == 1)
            for m in others:
                r = rank[(var, metric, m)]
                wins, total = beats.get(m, (0, 0))
                beats[m] = (wins + int(r is None or mine_rank < r), total + 1)
        out.append(entry)
    return out


def _summary_lines(rows: list[dict[str, Any]], emulator: str) -> list[str]:
    lines = []
    for s in summary(rows, emulator):
        beats = "; ".join(f"beats {m} on {w}/{n}" for m, (w, n) in s["beats"].items())
        lines.append(f"**{s['title']}** ({s['kind']}): best of all methods on {s['first']}/{s['rows']} rows; {beats}.")
    return lines


def _test_titles(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {t: (title, kind) for t, title, kind in _tests(rows)}


# --------------------------------------------------------------------------- markdown
def _markdown(
    config: EvaluateConfig, rows: list[dict[str, Any]], figures: list[dict[str, Any]], run_info: dict[str, Any]
) -> str:
    out = [f"# Evaluation: {config.name}", ""]
    if config.description:
        out += [config.description.strip(), ""]
    out += [
        f"Generated {run_info['created']} in {run_info['seconds']:.0f} s by `downscale evaluate`. "
        "Every number is in `metrics.csv` / `metrics.json`; figures are under `figures/`.",
        "",
    ]
    if run_info.get("command"):
        out += ["Regenerate with:", "", "```bash", run_info["command"], "```", ""]
    titles = _test_titles(rows)
    out += ["## Tests", "", "| test | kind | period | domain | what it measures |", "|---|---|---|---|---|"]
    for t in config.tests:
        if t.name in titles:
            out.append(
                f"| {t.label} | {t.kind} | {t.period.describe()}"
                f"{' vs ' + t.reference.period.describe() if t.reference else ''} | {t.domain or ''} | "
                f"{(t.note or '').strip()} |"
            )
    out += ["", f"*Imperfect tests.* {run_info['imperfect_note']}", ""]
    out += [
        "How to read the scorecards: one row per (variable, metric); each test has one column per method; "
        "**bold** marks the best method of the row within a test (lower is better for errors and biases, higher "
        "for correlations, 1 for ratios). `emulator` is the neural emulator; `bilinear` is bilinear "
        "interpolation of the coarse predictor; `bilinear_bc` adds a per-cell bias correction and "
        "`quantile_mapping` a per-cell empirical quantile mapping, both fitted on the emulator's own training "
        "pairs (so in imperfect tests they know no more about the GCM than the emulator does). Biases are "
        "spatial means of |bias| of the index's climatology; `crps` of a deterministic method is its mean "
        "absolute error.",
        "",
    ]
    for spec in config.emulators:
        if not any(r["emulator"] == spec.name for r in rows):
            continue
        info = run_info["emulators"].get(spec.name, {})
        out += [
            f"## Emulator `{spec.name}`",
            "",
            f"Bundle `{info.get('bundle', spec.bundle)}` (id `{info.get('bundle_id', '?')}`); "
            + ", ".join(f"{k} {v}" for k, v in info.get("periods", {}).items()),
            "",
        ]
        out += ["### Where it wins", ""] + [f"- {line}" for line in _summary_lines(rows, spec.name)] + [""]
        columns, table = scorecard(rows, spec.name)
        tests = list(dict.fromkeys(t for t, _ in columns))
        out += ["### Scorecard", ""]
        head = "| variable | metric | units | " + " | ".join(f"{titles[t][0]}: {m}" for t, m in columns) + " |"
        out += [head, "|---|---|---|" + "---:|" * len(columns)]
        for entry in table:
            cells = []
            for col in columns:
                value, rank = entry["cells"].get(col, (None, None))
                text = _fmt(value)
                cells.append(f"**{text}**" if rank == 1 and entry["n"].get(col[0], 0) > 1 else text)
            out.append(f"| {entry['variable']} | {entry['metric']} | {entry['units']} | " + " | ".join(cells) + " |")
        out.append("")
        for tname in tests:
            figs = [f for f in figures if f["emulator"] == spec.name and f["test"] == tname]
            if figs:
                out += [f"#### Figures: {titles[tname][0]}", ""]
                out += [f"![{f['variable']} {f['caption']}]({f['path']})" for f in figs] + [""]
    if run_info.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in run_info["notes"]] + [""]
    return "\n".join(out)


# --------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;max-width:1600px}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td.l{text-align:left}th.group{text-align:center;background:#e4e8f0}
td.best{font-weight:bold}.note{background:#fff8e1;border-left:4px solid #f0c36d;padding:0.4em 0.8em;margin:0.6em 0}
.figs{display:flex;flex-wrap:wrap;gap:8px}.figs figure{margin:0;border:1px solid #ddd;padding:4px}
.figs figcaption{font-size:11px;color:#555}.legend span{padding:1px 8px;margin-right:4px;font-size:12px}
code{background:#f4f4f4;padding:0 3px}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _html(
    config: EvaluateConfig,
    rows: list[dict[str, Any]],
    figures: list[dict[str, Any]],
    run_info: dict[str, Any],
    out_dir: Path,
) -> str:
    titles = _test_titles(rows)
    h = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Evaluation: {_e(config.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation: {_e(config.name)}</h1>",
    ]
    if config.description:
        h.append(f"<p>{_e(config.description.strip())}</p>")
    h.append(
        f"<p>Generated {_e(run_info['created'])} in {run_info['seconds']:.0f} s by <code>downscale evaluate</code>. "
        "Every number is also in <code>metrics.csv</code> / <code>metrics.json</code>.</p>"
    )
    if run_info.get("command"):
        h.append(f"<p>Regenerate with: <code>{_e(run_info['command'])}</code></p>")
    h.append(
        "<h2>Tests</h2><table><tr><th>test</th><th>kind</th><th>period</th><th>domain</th>"
        "<th>what it measures</th></tr>"
    )
    for t in config.tests:
        if t.name in titles:
            period = t.period.describe() + (f" vs {t.reference.period.describe()}" if t.reference else "")
            h.append(
                f"<tr><td class=l>{_e(t.label)}</td><td class=l>{t.kind}</td><td class=l>{_e(period)}</td>"
                f"<td class=l>{_e(t.domain or '')}</td><td class=l style='white-space:normal'>"
                f"{_e((t.note or '').strip())}</td></tr>"
            )
    h.append("</table>")
    h.append(f"<div class=note><b>Imperfect tests.</b> {_e(run_info['imperfect_note'])}</div>")
    h.append(
        "<p class=legend>Cells are shaded by rank within each test (best → worst): "
        + "".join(f"<span style='background:{c}'>{i + 1}</span>" for i, c in enumerate(_SHADES[:4]))
        + " Bold: best of the row. <code>bilinear</code>: bilinear interpolation of the coarse predictor; "
        "<code>bilinear_bc</code>: with a per-cell bias correction; <code>quantile_mapping</code>: with a "
        "per-cell empirical quantile mapping; both fitted on the emulator's own training pairs (so in imperfect "
        "tests they know no more about the GCM than the emulator does). Biases are spatial means of |bias| of "
        "the index's climatology; <code>crps</code> of a deterministic method is its mean absolute error.</p>"
    )
    for spec in config.emulators:
        if not any(r["emulator"] == spec.name for r in rows):
            continue
        info = run_info["emulators"].get(spec.name, {})
        h.append(f"<h2>Emulator <code>{_e(spec.name)}</code></h2>")
        h.append(
            f"<p>Bundle <code>{_e(info.get('bundle', spec.bundle))}</code> (id <code>"
            f"{_e(info.get('bundle_id', '?'))}</code>); "
            + _e(", ".join(f"{k} {v}" for k, v in info.get("periods", {}).items()))
            + "</p>"
        )
        h.append("<h3>Where it wins</h3><ul>")
        for line in _summary_lines(rows, spec.name):
            h.append("<li>" + _e(line).replace("**", "") + "</li>")
        h.append("</ul>")
        columns, table = scorecard(rows, spec.name)
        tests = list(dict.fromkeys(t for t, _ in columns))
        h.append(
            "<h3>Scorecard</h3><table><tr><th rowspan=2>variable</th><th rowspan=2>metric</th><th rowspan=2>units</th>"
        )
        for tname in tests:
            n = sum(1 for c in columns if c[0] == tname)
            h.append(f"<th class=group colspan={n}>{_e(titles[tname][0])} ({titles[tname][1]})</th>")
        h.append("</tr><tr>" + "".join(f"<th>{_e(m)}</th>" for _, m in columns) + "</tr>")
        for entry in table:
            tr = [
                f"<tr><td class=l>{_e(entry['variable'])}</td>"
                f"<td class=l title='{_e(_BETTER[entry['better']])}'>{_e(entry['metric'])}</td>"
                f"<td class=l>{_e(entry['units'])}</td>"
            ]
            for col in columns:
                value, rank = entry["cells"].get(col, (None, None))
                n = entry["n"].get(col[0], 0)
                style, cls = "", ""
                if rank is not None and n > 1:
                    style = f" style='background:{_SHADES[min(rank - 1, len(_SHADES) - 1)]}'"
                    cls = " class=best" if rank == 1 else ""
                tr.append(f"<td{cls}{style}>{_fmt(value)}</td>")
            h.append("".join(tr) + "</tr>")
        h.append("</table>")
        for tname in tests:
            figs = [f for f in figures if f["emulator"] == spec.name and f["test"] == tname]
            if not figs:
                continue
            h.append(f"<h4>Figures: {_e(titles[tname][0])}</h4><div class=figs>")
            for f in figs:
                data = base64.b64encode((out_dir / f["path"]).read_bytes()).decode()
                h.append(
                    f"<figure><img src='data:image/png;base64,{data}' alt='{_e(f['caption'])}'>"
                    f"<figcaption>{_e(f['variable'])}: {_e(f['caption'])}</figcaption></figure>"
                )
            h.append("</div>")
    if run_info.get("notes"):
        h.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in run_info["notes"]) + "</ul>")
    h.append("</body></html>")
    return "\n".join(h)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {
                **r,
                "value": "" if r["value"] is None or not math.isfinite(r["value"]) else repr(r["value"]),
                "rank": "" if r.get("rank") is None else r["rank"],
            }
        )
    return buf.getvalue()


def write_report(
    out_dir: Path,
    config: EvaluateConfig,
    rows: list[dict[str, Any]],
    figures: list[dict[str, Any]],
    run_info: dict[str, Any],
) -> list[Path]:
    """Write ``metrics.csv``, ``metrics.json``, ``report.md`` and ``report.html`` (atomically) into ``out_dir``."""
    from downscale.atomic import write_atomic

    out_dir = Path(out_dir)
    return [
        write_atomic(out_dir / "metrics.csv", _csv(rows)),
        write_atomic(out_dir / "metrics.json", rows_to_json(rows, {**run_info, "figures": figures})),
        write_atomic(out_dir / "report.md", _markdown(config, rows, figures, run_info)),
        write_atomic(out_dir / "report.html", _html(config, rows, figures, run_info, out_dir)),
    ]


def rows_to_json(rows: list[dict[str, Any]], run_info: dict[str, Any]) -> str:
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    return json.dumps({**run_info, "rows": clean}, indent=1, default=str)
