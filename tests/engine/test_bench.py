"""`exda bench` end to end on the test models at 32 px, one repeat: every row present, ratios that
follow from the latencies, the fast path within 45 dB of fp32 eager, the tables printed."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from exda.cli import main
from exda.engine import bench
from exda.inference.backends import available_backends

MODELS = ["restormer_test", "exda_restormer_test"]
MIN_PSNR = 45.0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One small run (onnxruntime as the only backend, to keep it quick); its JSON and printed text."""
    out = tmp_path_factory.mktemp("bench") / "speed.json"
    argv = ["bench", "--models", *MODELS, "--sizes", "32", "--repeats", "1", "--warmup", "0",
            "--train-models", "exda_restormer_test", "--train-batch", "1", "--train-patch", "32",
            "--matmul-size", "128", "--threads", "1", "--out", str(out)]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(bench, "BACKEND_PATHS", {"onnxruntime": ("onnxruntime", False)})
        assert main(argv) == 0
    return json.loads(out.read_text()), printed.getvalue()


@pytest.mark.slow
def test_every_row_is_there(report):
    result, _ = report
    paths = {"restormer_test": ["eager", "fast"], "exda_restormer_test": ["eager", "fast"]}
    if "onnxruntime" in available_backends():
        paths["exda_restormer_test"].append("onnxruntime")
    expected = [(model, path, 32) for model in MODELS for path in paths[model]]
    assert [(r["model"], r["path"], r["size"]) for r in result["inference"]] == expected
    assert [(r["model"], r["mode"]) for r in result["training"]] == [("exda_restormer_test", "fp32"),
                                                                     ("exda_restormer_test", "fast")]
    for row in result["inference"] + result["training"]:
        assert "error" not in row, row
    assert result["machine"]["cpu"] and result["machine"]["threads"] == 1
    assert result["matmul"]["fp32_gflops"] > 0 and result["matmul"]["bf16_gflops"] > 0
    assert result["options"]["repeats"] == 1 and result["reference_model"] == "exda_restormer_test"


@pytest.mark.slow
def test_latencies_memory_and_ratios(report):
    result, _ = report
    rows = {(r["model"], r["path"]): r for r in result["inference"]}
    reference = rows[("exda_restormer_test", "eager")]
    for row in result["inference"]:
        assert row["latency_s"] > 0 and row["peak_rss_mib"] > 0 and row["rss_increase_mib"] >= 0
        assert row["vs_reference"] == pytest.approx(row["latency_s"] / reference["latency_s"])
        assert row["gflops_per_s"] == pytest.approx(row["flops"] / row["latency_s"] / 1e9)
        peak = result["matmul"][f"{row['precision']}_gflops"]
        assert row["peak_fraction"] == pytest.approx(row["gflops_per_s"] / peak)
    for path in ("eager", "fast"):
        exda, base = rows[("exda_restormer_test", path)], rows[("restormer_test", path)]
        assert exda["exda_overhead"] == pytest.approx(exda["latency_s"] / base["latency_s"])
        assert base["exda_overhead"] is None
    fp32, fast = result["training"]
    assert fp32["step_s"] > 0 and fast["step_s"] > 0
    assert fast["speedup"] == pytest.approx(fp32["step_s"] / fast["step_s"])
    assert fast["steps_per_hour"] == pytest.approx(3600 / fast["step_s"])


@pytest.mark.slow
def test_fast_path_agrees_with_fp32_eager(report):
    result, _ = report
    for row in result["inference"]:
        if row["path"] != "eager":
            assert row["max_abs_diff"] == 0 or row["agreement_psnr_db"] >= MIN_PSNR, row


@pytest.mark.slow
def test_tables_are_printed(report):
    _, printed = report
    assert "| model | path | precision | size | latency s |" in printed
    assert "| exda_restormer_test | fast |" in printed
    assert "| model | mode | step s | steps/h | speed-up |" in printed


def test_unknown_model_is_one_line_error(capsys):
    assert main(["bench", "--models", "no_such_model", "--skip-train"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_run_benchmark_writes_the_record_after_the_command_and_machine(tmp_path, capsys):
    import torch

    out = tmp_path / "trial.json"
    seen = {}

    def measure():
        seen["grad"] = torch.is_grad_enabled()
        return {"rows": [1, 2]}

    assert bench.run_benchmark("trial", ["--x", "1"], out, measure, lambda r: f"# {r['command']}\n") == 0
    record = json.loads(out.read_text())
    assert list(record) == ["command", "machine", "rows"] and record["rows"] == [1, 2]
    assert record["command"] == "python benchmarks/trial.py --x 1" and "cpu" in record["machine"]
    assert out.with_suffix(".md").read_text() == "# python benchmarks/trial.py --x 1\n"
    assert seen["grad"] is False and torch.is_grad_enabled()
    assert capsys.readouterr().out.endswith(f"wrote {out} and {out.with_suffix('.md')}\n")


def test_run_benchmark_user_error_is_one_line_and_writes_nothing(tmp_path, capsys):
    from exda.errors import UserError

    def measure():
        raise UserError("no photos in /nowhere")

    assert bench.run_benchmark("trial", [], tmp_path / "t.json", measure, str) == 2
    assert capsys.readouterr().err == "trial: no photos in /nowhere\n"
    assert not list(tmp_path.iterdir())
