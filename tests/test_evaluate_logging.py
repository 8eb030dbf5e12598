"""The evaluator logs each phase through :mod:`logging` (and prints nothing); notes are warnings."""

from __future__ import annotations

import logging
import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IBERIA = ROOT / "examples" / "data" / "iberia"


def test_an_evaluation_logs_its_phases(tiny_bundle, tmp_path, caplog, capsys, monkeypatch):
    from downscale.evaluate.runner import evaluate

    racmo = IBERIA / "cordex"
    config = tmp_path / "evaluate.yaml"
    config.write_text(
        textwrap.dedent(f"""
        name: logged
        emulators: [{{name: tiny, bundle: {tiny_bundle}, recipe: {ROOT / "recipes" / "perfect-model-iberia.yaml"}}}]
        tests:
          - name: cv
            target: {{tas: {racmo}/tas_*historical*.nc, pr: {racmo}/pr_*historical*.nc}}
            period: {{season: DJF, years: [2000, 2000]}}
          - name: nowhere
            target: {{tas: {tmp_path}/no-such-file_*.nc, pr: {tmp_path}/no-such-file_*.nc}}
            period: {{season: DJF, years: [2000, 2000]}}
        baselines: [bilinear]
        metrics: [rmse]
    """)
    )
    # the CLI (run earlier in the same process by other tests) stops `downscale` records at its own handler
    monkeypatch.setattr(logging.getLogger("downscale"), "propagate", True)
    caplog.set_level(logging.INFO, logger="downscale")

    result = evaluate(config, tmp_path / "report")

    assert capsys.readouterr().out == ""  # no progress bar unless asked, nothing printed
    records = [r for r in caplog.records if r.name.startswith("downscale.evaluate")]
    info = [r.getMessage() for r in records if r.levelno == logging.INFO]
    text = "\n".join(info)
    assert re.search(r"evaluation logged: 2 \(emulator, test\) pairs, 1 metrics", text), text
    assert re.search(r"emulator tiny: bundle .* loaded in \d+\.\d s", text), text
    assert re.search(r"emulator tiny: baselines bilinear fitted on tas, pr in \d+\.\d s", text), text
    assert re.search(r"\[1/2\] tiny × cv: perfect test case loaded: \d+ days of tas, pr, .* in \d+\.\d s", text), text
    assert re.search(r"\[1/2\] tiny × cv: predicted with 2 methods \(emulator, bilinear; 1 member\) in", text), text
    assert f"[1/2] tiny × cv: {len(result.rows)} scores computed in" in text
    assert f"[1/2] tiny × cv: {len(result.figures)} figures drawn in" in text and len(result.figures) == 6
    assert re.search(rf"report written to .*report\.html: {len(result.rows)} scores, 6 figures, 1 note\(s\)", text), (
        text
    )
    # what a user must know: the test that could not be read is skipped, with a warning and a note
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("tiny × nowhere skipped: "), warnings
    assert result.notes == warnings
