import logging
import re

import pytest
import pytorch_lightning as pl
import torch

from gempo.errors import GempoError
from gempo.runs import ProgressLog, format_seconds


class TinyRegression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_progress_log_writes_every_n_steps_and_the_last_with_values_and_eta(tmp_path, caplog):
    trainer = pl.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[ProgressLog(2, ["train/loss", "not/logged"])],
    )
    with caplog.at_level(logging.INFO, logger="gempo.runs"):
        trainer.fit(TinyRegression(), torch.utils.data.DataLoader(torch.randn(16, 2)))
    lines = [r.getMessage() for r in caplog.records if r.name == "gempo.runs"]
    assert [line.split(",")[0] for line in lines] == [
        "step 2/5 (40%)",
        "step 4/5 (80%)",
        "step 5/5 (100%)",
    ]
    assert all(re.search(r"train/loss \d", line) for line in lines)
    assert not any("not/logged" in line for line in lines)
    # the rate is measured from the first logged step on: no ETA before it has a second point
    assert "ETA" not in lines[0]
    assert all(re.search(r"ETA \d+m\d\ds$", line) for line in lines[1:])


def test_format_seconds_reads_as_hours_and_minutes():
    assert format_seconds(95.4) == "1m35s"
    assert format_seconds(3725.0) == "1h02m"
    assert format_seconds(-3.0) == "0m00s"


def test_progress_log_rejects_a_non_positive_interval():
    with pytest.raises(GempoError, match="log_every must be >= 1"):
        ProgressLog(0, [])
