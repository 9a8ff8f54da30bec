"""The user encoder of a trained model, exported for serving without Python (ONNX or .pt2).

What is exported is `last_hidden`, the function every seqrec scoring path ranks with: history
ids -> user vectors. A server in any language then needs only a runtime for the encoder, the
item table and the id map, all of which the export folder holds:

  OUT_DIR/
    encoder.onnx           items int64 [batch, length] -> user_vectors float32 [batch, D]
      (+ encoder.onnx.data   the weights, when they pass ONNX's 2 GiB protobuf limit)
    or encoder.pt2         the same function as a `torch.export` program (`torch.export.load`,
                           or AOTInductor for C++)
    item_vectors.safetensors  "item_vectors" [n_items + 1, D]: what user vectors are scored
                           against (row 0 = PAD, never served); computed by the model, so side
                           information and cosine outputs are already applied
    item_ids.json          internal id (list index) -> original item id; index 0 (PAD) is null
    encoder.json           format, model, input contract, files and their sha256, and the
                           parity measured at export

Input contract (the evaluator's `history_batch`): internal ids 1..n_items, oldest first, the
last ``max_len`` of a history, right-padded with 0 to a common length 1 <= length <= max_len;
every row holds at least one item. Before anything is written the exported file is run
(onnxruntime, or the loaded .pt2 program) on random histories of several widths and compared
with PyTorch; a model whose export fails or disagrees is refused in one line naming it.
Models that read more than item ids (timestamps, behaviours, domains) are refused up front.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from seqrec.data.batches import SeqBatch
from seqrec.errors import SeqrecError
from seqrec.fsutil import describe, foreign_entries, read_format, swap_dir, unwritable
from seqrec.run.artifact import Run
from seqrec.run.package import sha256_file
from seqrec.version import __version__

FORMAT = "seqrec-encoder"
FORMAT_VERSION = 1
SPEC = "encoder.json"
ITEM_VECTORS = "item_vectors.safetensors"
ITEM_IDS = "item_ids.json"
MODEL_FILES = {"onnx": "encoder.onnx", "pt2": "encoder.pt2"}
EXPORT_FILES = frozenset({SPEC, ITEM_VECTORS, ITEM_IDS, "encoder.onnx.data", *MODEL_FILES.values()})
PARITY_ATOL = 1e-4
"""Largest |exported - PyTorch| accepted at export (float32 kernels differ by ~1e-6)."""
_EXTERNAL_BYTES = 1 << 30  # weights beyond this go to encoder.onnx.data


class UserEncoder(nn.Module):
    """``items [B, L] -> last_hidden [B, D]``, with the batch the evaluator would build."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros(items.shape[0], dtype=torch.int64, device=items.device)
        batch = SeqBatch(items=items, targets=zeros, lengths=(items != 0).sum(1), users=zeros)
        return self.model.last_hidden(batch)


def random_histories(n_items: int, batch: int, width: int, seed: int) -> np.ndarray:
    """[batch, width] right-padded histories of 1..width items (the parity test's input)."""
    rng = np.random.default_rng(seed)
    items = rng.integers(1, n_items + 1, (batch, width))
    lengths = rng.integers(1, width + 1, batch)
    lengths[0] = width  # one full row, so the batch really is this wide
    items[np.arange(width)[None, :] >= lengths[:, None]] = 0
    return items.astype(np.int64)


def check_export_target(out_dir: Path, overwrite: bool) -> None:
    """New, empty, or (``overwrite``) an earlier encoder export holding only its own files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SeqrecError(f"{out_dir} is a file; choose a folder path for the export")
    why = unwritable(out_dir, "export folder")
    if why is not None:
        raise SeqrecError(why)
    if not (out_dir.exists() and any(out_dir.iterdir())):
        return
    foreign = foreign_entries(out_dir, EXPORT_FILES.__contains__)
    if foreign or read_format(out_dir / SPEC, FORMAT) is None:
        names = foreign or sorted(p.name for p in out_dir.iterdir())
        raise SeqrecError(
            f"{out_dir} holds files that are not a seqrec encoder export ({describe(names)}); "
            "choose an empty or new folder"
        )
    if not overwrite:
        raise SeqrecError(
            f"{out_dir} already exists; pass --overwrite to replace it or choose another folder"
        )


def _refuse_inputs(model: nn.Module, name: str) -> None:
    needs = model.needs
    read = {"timestamps": needs.timestamps, "behaviours": needs.behaviors, "domains": needs.domains}
    extra = [what for what, on in read.items() if on]
    if extra:
        raise SeqrecError(
            f"model {name} reads event {' and '.join(extra)} besides item ids, which the "
            "exported encoder does not take; serve it with `seqrec serve` instead"
        )


def _quiet():
    """The exporters print progress and, on failure, whole graphs: keep the terminal to the
    one line a refusal needs."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.callback(logging.disable, logging.root.manager.disable)  # torch logs through handlers
    logging.disable(logging.WARNING)  # made before the redirect, so it cannot catch them
    return stack


def _first_line(err: BaseException) -> str:
    """The innermost cause's first line (the exporters wrap the reason in advice about their
    own steps), without terminal colour codes."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}"


def _export(
    enc: UserEncoder, fmt: str, path: Path, max_len: int, n_items: int, fixed: bool = False
) -> dict:
    """Write the encoder file: batch always free; length free (1..max_len) or, ``fixed``,
    exactly max_len."""
    example = torch.from_numpy(random_histories(n_items, 2, max_len, 0))
    dims: tuple[dict, ...] = ({0: torch.export.Dim("batch", min=1)},)
    if not fixed:
        dims[0][1] = torch.export.Dim("length", min=1, max=max_len)
    if fmt == "pt2":
        torch.export.save(torch.export.export(enc, (example,), dynamic_shapes=dims), path)
        return {}
    big = sum(p.numel() * p.element_size() for p in enc.parameters()) > _EXTERNAL_BYTES
    program = torch.onnx.export(
        enc, (example,), None, dynamo=True, input_names=["items"],
        output_names=["user_vectors"], dynamic_shapes=dims, verbose=False,
    )  # fmt: skip
    program.save(str(path), external_data=big)
    opset = next(o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": int(opset), "external_data": f"{path.name}.data" if big else None}


def _runner(fmt: str, path: Path):
    """A callable running the exported file on numpy ids, and its name; None when the
    runtime is not installed (the export is then written unverified, and says so)."""
    if fmt == "pt2":
        program = torch.export.load(path).module()
        return (
            lambda x: program(torch.from_numpy(x)).detach().numpy()
        ), f"torch {torch.__version__}"
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "not checked: onnxruntime is not installed"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda x: session.run(None, {"items": x})[0]), f"onnxruntime {ort.__version__}"


@torch.inference_mode()
def _parity(enc: UserEncoder, fmt: str, path: Path, run_: Run, fixed: bool) -> dict[str, Any]:
    """Max |exported - PyTorch| over random histories of several widths (``fixed``: all
    max_len wide, short rows padded); refuses past `PARITY_ATOL` or when the exported file
    cannot run a shape its contract allows."""
    name, max_len = run_.config.model.name, run_.config.data.max_len
    run, runtime = _runner(fmt, path)
    if run is None:
        return {"runtime": runtime}
    worst, rows = 0.0, 0
    for seed, (b, w) in enumerate([(1, 1), (3, max_len), (5, max(1, max_len // 2)), (2, 2)]):
        x = random_histories(run_.n_items, b, max_len if fixed else min(w, max_len), seed + 1)
        try:
            got = run(x)
        except Exception as err:  # a runtime's own error types: every one is a refusal here
            raise SeqrecError(
                f"model {name} cannot be exported to {fmt}: the exported encoder fails on a "
                f"[{b}, {x.shape[1]}] batch ({_first_line(err)}); serve it with `seqrec serve`"
            ) from None
        worst = max(worst, float(np.abs(got - enc(torch.from_numpy(x)).numpy()).max()))
        rows += b
    if not worst <= PARITY_ATOL:
        raise SeqrecError(
            f"model {name} cannot be exported to {fmt}: the exported encoder differs from "
            f"PyTorch by {worst:.2e} (> {PARITY_ATOL}); serve it with `seqrec serve`"
        )
    return {"runtime": runtime, "histories": rows, "max_abs_diff": worst}


def _encoder_file(enc: UserEncoder, fmt: str, tmp: Path, run: Run) -> tuple[dict, dict]:
    """(export info, parity) of the encoder file written into ``tmp``. A free length first;
    a model whose export fixes the width (Caser's window, BERT4Rec's appended mask) is
    exported again at length max_len, which its `last_hidden` does not depend on, and the
    contract says so."""
    name, max_len = run.config.model.name, run.config.data.max_len
    failure: BaseException | None = None
    for fixed in (False, True):
        try:
            with _quiet():
                info = _export(enc, fmt, tmp / MODEL_FILES[fmt], max_len, run.n_items, fixed)
                parity = _parity(enc, fmt, tmp / MODEL_FILES[fmt], run, fixed)
            return {**info, "length": f"exactly {max_len}" if fixed else f"1..{max_len}"}, parity
        except Exception as err:  # the exporters raise many types; each means "cannot"
            failure = err
            for p in tmp.iterdir():
                p.unlink()
    if isinstance(failure, SeqrecError):
        raise failure
    raise SeqrecError(
        f"model {name} cannot be exported to {fmt} ({_first_line(failure)}); "
        "serve it with `seqrec serve`"
    ) from None


def _spec(run: Run, model, fmt: str, info: dict, parity: dict, dim: int) -> dict[str, Any]:
    cfg = run.config
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seqrec_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": cfg.model.name,
        "source": {"path": str(run.path), "kind": run.kind},
        "encoder": {"file": MODEL_FILES[fmt], "format": fmt, **info},
        "inputs": [{"name": "items", "dtype": "int64", "shape": ["batch", "length"]}],
        "outputs": [{"name": "user_vectors", "dtype": "float32", "shape": ["batch", dim]}],
        "max_len": cfg.data.max_len,
        "padding": {
            "side": "right",
            "value": 0,
            "length": f"{info['length']} (the last {cfg.data.max_len} items of a history, "
            "oldest first)",
            "rows": "every row holds at least one item",
        },
        "n_items": run.n_items,
        "item_vectors": {
            "file": ITEM_VECTORS,
            "tensor": "item_vectors",
            "shape": [run.n_items + 1, dim],
        },
        "item_ids": {"file": ITEM_IDS, "index": "internal id; 0 is PAD (null)"},
        "scoring": "score = user_vectors @ item_vectors.T; never serve row 0; seqrec also "
        "masks the history's own items",
        "parity": parity,
    }


def export_encoder(
    source: Run | str | os.PathLike, dest: str | os.PathLike, fmt: str = "onnx",
    overwrite: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Export a run's (or package's) user encoder to ``dest``; returns encoder.json's content."""
    if fmt not in MODEL_FILES:
        raise SeqrecError(f"--format must be one of package, {', '.join(MODEL_FILES)}, not '{fmt}'")
    if fmt == "onnx":
        for module in ("onnx", "onnxscript"):
            try:
                __import__(module)
            except ImportError:
                raise SeqrecError(
                    f"--format onnx needs {module}, which is not installed; "
                    "`pip install 'seqrec[export]'` or use --format pt2"
                ) from None
    run = source if isinstance(source, Run) else Run(source)
    dest = Path(dest)
    check_export_target(dest, overwrite)
    model = run.load_model()
    _refuse_inputs(model, run.config.model.name)
    enc = UserEncoder(model).eval()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        tmp.chmod(0o755)
        info, parity = _encoder_file(enc, fmt, tmp, run)
        table = model.item_weights.detach().float().cpu().contiguous()
        save_file({"item_vectors": table}, tmp / ITEM_VECTORS, {"format": FORMAT})
        ids = [None, *run.item_ids[1:].astype(str).tolist()]
        (tmp / ITEM_IDS).write_text(json.dumps(ids, ensure_ascii=False))
        spec = _spec(run, model, fmt, info, parity, int(table.shape[1]))
        spec["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / SPEC).write_text(json.dumps(spec, indent=2, default=float) + "\n")
        if dest.exists():  # checked again: a file added meanwhile is never lost
            check_export_target(dest, overwrite=True)
        swap_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return spec
