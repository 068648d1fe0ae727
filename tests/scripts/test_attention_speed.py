"""benchmarks/attention_speed.py: both checkouts' rows, the ratios between them, and the ExDA overhead per code."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "attention_speed.py"
spec = importlib.util.spec_from_file_location("attention_speed", SCRIPT)
attention_speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(attention_speed)


def test_rows_ratios_and_overheads_of_two_checkouts(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    models = ["exda_restormer_tiny", "restormer_tiny"]
    attention_speed.main(["--baseline-code", str(ROOT), "--models", *models, "--paths", "fast", "--size", "32",
                          "--calls", "2", "--threads", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = {(r["model"], r["code"]): r for r in result["rows"]}
    assert set(rows) == {(m, c) for m in models for c in ("this", "baseline")}
    for (model, code), row in rows.items():
        assert len(row["times_s"]) == 2 and row["latency_s"] == row["times_s"][1]
        assert row["speedup_vs_baseline"] == pytest.approx(rows[model, "baseline"]["latency_s"] / row["latency_s"])
        plain = rows["restormer_tiny", code]["latency_s"]
        expected = row["latency_s"] / plain if model == "exda_restormer_tiny" else None
        assert row["exda_overhead"] == (pytest.approx(expected) if expected else None)
    table = out.with_suffix(".md").read_text()
    assert table.count("| exda_restormer_tiny | fast |") == 2


def test_a_folder_that_is_not_a_checkout_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        attention_speed.main(["--baseline-code", str(tmp_path), "--out", str(tmp_path / "x.json")])
    assert stop.value.code == 2
    assert "not an exda checkout" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
