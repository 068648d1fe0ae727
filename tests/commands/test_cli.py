"""The command line's error contract: one line, exit code 2."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from exda.cli import _one_line, main
from exda.errors import UserError


class _Unreadable(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise UserError("cannot read image broken.png")


def test_worker_user_error_is_reported_on_one_line():
    loader = DataLoader(_Unreadable(), num_workers=1)
    with pytest.raises(UserError) as caught:
        next(iter(loader))
    assert "Traceback" in str(caught.value)  # what torch re-raises from a worker
    assert _one_line(caught.value) == "cannot read image broken.png"


def test_plain_user_error_is_kept():
    assert _one_line(UserError("input not found: x.png")) == "input not found: x.png"


def test_bad_input_exits_2_with_one_line(capsys, tmp_path):
    assert main(["models", "--size", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["exda models: error: --size must be at least 8 px, got 0"]
    assert main(["restore", str(tmp_path / "missing.png"), "--checkpoint", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_models_table_lists_every_model(capsys):
    assert main(["models", "--filter", "_test", "--size", "32"]) == 0
    out = capsys.readouterr().out
    for name in ("restormer_test", "promptir_test", "exda_restormer_test", "exda_promptir_test"):
        assert f"| {name} |" in out
