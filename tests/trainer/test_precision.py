"""train.precision=bf16 and train.compile against the fp32 eager step (trainer/precision.py).

A few steps of SASRec and HSTU on the generated cycle data: bf16 autocast losses agree with
fp32 within BF16_RTOL (bf16 keeps 8 mantissa bits, ~4e-3 relative per rounding; a few layers and
steps stay well inside 5e-2), and the weights file is fp32 and loads into a plain model. The
compiled step matches eager within COMPILE_ATOL with dropout off (Inductor draws its own
dropout masks), and the saved state-dict keys carry no ``_orig_mod.`` prefix.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from seqrec.errors import SeqrecError
from seqrec.recipe import build_config
from seqrec.run import Run
from seqrec.trainer.precision import FastPath, check_compile
from seqrec.trainer.run import train_run

pytestmark = pytest.mark.usefixtures("in_tmp_dir")

BF16_RTOL = 5e-2
COMPILE_ATOL = 1e-5
STEPS = 6


def run_losses(log, tmp_path, name, model, **train):
    raw = tiny_config(
        log,
        model=model,
        train={"max_steps": STEPS, "log_every": 1, "epochs": 2, **train},
    )
    run = tmp_path / name
    res = train_run(build_config(raw), run, progress=False)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return np.array([e["loss"] for e in lines if "loss" in e]), res, run


MODELS = {"sasrec": {"name": "sasrec"}, "hstu": {"name": "hstu"}}


@pytest.mark.parametrize("family", sorted(MODELS))
def test_bf16_losses_match_fp32_and_weights_load_in_fp32(cycle_log, tmp_path, family):
    ref, res32, _ = run_losses(cycle_log, tmp_path, "fp32", MODELS[family])
    bf, res16, run = run_losses(cycle_log, tmp_path, "bf16", MODELS[family], precision="bf16")
    assert len(ref) == len(bf) == STEPS
    print(f"{family} bf16 vs fp32 max rel loss diff {np.max(np.abs(bf / ref - 1)):.2e}")
    np.testing.assert_allclose(bf, ref, rtol=BF16_RTOL)
    assert not np.array_equal(bf, ref)  # autocast really ran in bf16
    assert (res32["precision"], res16["precision"]) == ("fp32", "bf16")
    assert res16["compile"] is False
    weights = load_file(run / "best.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values())
    model = Run(run).load_model()
    assert set(model.state_dict()) == set(weights)
    # evaluation stays fp32: the test metrics come from fp32 scoring of the saved weights
    assert all(np.isfinite(v) for v in res16["test"].values() if isinstance(v, float))


def compile_works() -> str | None:
    try:
        check_compile()
    except SeqrecError as e:
        return str(e)
    return None


@pytest.mark.parametrize("family", sorted(MODELS))
def test_compiled_steps_match_eager_and_keep_state_dict_keys(cycle_log, tmp_path, family):
    if why := compile_works():
        pytest.skip(f"torch.compile cannot run on this machine: {why}")
    model = {**MODELS[family], "dropout": 0.0}  # Inductor's dropout masks differ from eager's
    eager, _, run_e = run_losses(cycle_log, tmp_path, "eager", model)
    torch._dynamo.utils.counters.clear()
    comp, res, run_c = run_losses(cycle_log, tmp_path, "compiled", model, compile=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # probe + the model
    print(f"{family} compiled vs eager max abs loss diff {np.max(np.abs(comp - eager)):.2e}")
    np.testing.assert_allclose(comp, eager, rtol=0, atol=COMPILE_ATOL)
    assert res["compile"] is True and res["precision"] == "fp32"
    keys_e = set(load_file(run_e / "best.safetensors"))
    keys_c = set(load_file(run_c / "best.safetensors"))
    assert keys_c == keys_e and not any("_orig_mod" in k for k in keys_c)
    ck = torch.load(run_c / "checkpoint.pt", weights_only=False)
    assert not any("_orig_mod" in k for k in ck["model"])
    Run(run_c).load_model()


def test_bf16_is_refused_where_autocast_cannot_run_it():
    cfg = build_config(tiny_config("unused.csv", train={"precision": "bf16"})).train
    with pytest.raises(SeqrecError, match=r"train\.precision=bf16"):
        FastPath(cfg, torch.device("meta"))


def test_a_broken_compiler_fails_in_one_line_naming_the_option(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong traceback text")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(SeqrecError, match=r"set train\.compile=false") as err:
        check_compile()
    assert "\n" not in str(err.value)


def test_defaults_leave_the_loss_call_untouched():
    cfg = build_config(tiny_config("unused.csv")).train
    fast = FastPath(cfg, torch.device("cpu"))
    module = torch.nn.Linear(2, 2)
    assert fast.compile(module) is module
    out = torch.ones(())
    assert fast.loss(lambda: out) is out
    assert fast.fields() == {"precision": "fp32", "compile": False}
