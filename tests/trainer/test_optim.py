"""The learning-rate schedule: warm-up sized to the data, then the chosen schedule."""

import pytest

from seqrec.options import TrainConfig
from seqrec.trainer.optim import lr_factor, warmup_length


def test_warmup_scales_with_the_epoch_unless_steps_are_given():
    cfg = TrainConfig()
    assert cfg.warmup_steps is None
    assert warmup_length(cfg, 48) == 5  # ML-1M: 0.1 of a 48-step epoch, rounded up
    assert warmup_length(cfg, 10_000) == 1000
    assert warmup_length(TrainConfig(warmup_epochs=0), 48) == 0
    assert warmup_length(TrainConfig(warmup_steps=100, warmup_epochs=3), 48) == 100
    assert warmup_length(TrainConfig(warmup_steps=0), 48) == 0


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_factor_ramps_linearly_then_follows_the_schedule(schedule):
    cfg = TrainConfig(schedule=schedule)
    ramp = [lr_factor(s, cfg, 100, 4) for s in range(4)]
    assert ramp == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, cfg, 100, 4) == 1.0
    end = lr_factor(99, cfg, 100, 4)
    assert end == 1.0 if schedule == "constant" else end < 0.02
    assert lr_factor(0, cfg, 100, 0) == 1.0  # no warm-up: full rate from the first step
