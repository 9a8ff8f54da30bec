"""Approximate Entropy: brute-force and antropy references, CSR grouping, the `seqrec apen` CLI."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import cycle_sequences, write_csv_log
from seqrec import cli
from seqrec.errors import SeqrecError
from seqrec.scaling.apen import apen_csr, approximate_entropy, dataset_apen


def brute_apen(x, m: int, r: float) -> float:
    """Pincus' definition written out with plain loops (self-matches counted, natural log)."""
    n = len(x)

    def phi(k: int) -> float:
        templates = [x[i : i + k] for i in range(n - k + 1)]
        total = 0.0
        for a in templates:
            dist = [
                max(abs(float(u) - float(v)) for u, v in zip(a, b, strict=True)) for b in templates
            ]
            hits = sum(1 for dd in dist if dd <= r)
            total += math.log(hits / len(templates))
        return total / len(templates)

    return phi(m) - phi(m + 1)


def random_sequences(rng, count=12):
    for _ in range(count):
        n = int(rng.integers(3, 40))
        yield rng.integers(1, int(rng.integers(2, 8)), n)  # small alphabets: many repeats
        yield rng.normal(size=n).round(1)  # floats with ties


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("r", [0.0, 0.5, 1.0, 2.0])
def test_matches_brute_force(m, r):
    rng = np.random.default_rng(m * 10 + int(r * 2))
    for x in random_sequences(rng):
        if len(x) < m + 1:
            continue
        assert approximate_entropy(x, m, r) == pytest.approx(brute_apen(x, m, r), abs=1e-12)


ANTROPY = """
import json, sys
import numpy as np
from antropy import app_entropy
cases = json.load(sys.stdin)
print(json.dumps([float(app_entropy(np.array(x, float), order=m, tolerance=float(r)))
                  for x, m, r in cases]))
"""


def test_matches_antropy_exactly():
    """antropy (an independent ApEn: sklearn KDTree counts, Chebyshev, natural log) with the same
    r agrees to the last bit. It runs in a subprocess with numba's JIT off: importing antropy
    otherwise compiles numba kernels for ~15 s, and numba stays out of the test process."""
    if importlib.util.find_spec("antropy") is None:
        pytest.skip("antropy is not installed (pip install antropy)")
    rng = np.random.default_rng(7)
    cases = [
        (x.tolist(), m, r)
        for m in (2, 3)  # antropy refuses order < 2
        for r in (0.0, 0.25, 1.0, 3.0)
        for x in random_sequences(rng, 4)
        if len(x) >= m + 1
    ]
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", ANTROPY],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    ref = json.loads(proc.stdout)
    ours = [approximate_entropy(np.array(x), m, r) for x, m, r in cases]
    assert len(ref) == len(cases) > 40
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_known_values():
    assert approximate_entropy(np.full(30, 7), 2, 0) == 0.0  # perfectly regular
    # no repeated item: every template matches only itself -> ln((n-m)/(n-m+1)) < 0
    n, m = 20, 2
    distinct = np.arange(1, n + 1)
    expected = math.log((n - m) / (n - m + 1))
    assert approximate_entropy(distinct, m, 0) == pytest.approx(expected)
    assert approximate_entropy(distinct, m, 0, absolute=True) == pytest.approx(-expected)
    # on integer ids any r < 1 is an exact match ([PL]'s r = 0.2)
    x = np.random.default_rng(0).integers(1, 4, 25)
    assert approximate_entropy(x, 2, 0.2) == approximate_entropy(x, 2, 0.0)


def csr(seqs):
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])].astype(np.int64)
    return offsets, np.concatenate(seqs).astype(np.int32)


def test_csr_groups_truncates_and_skips():
    rng = np.random.default_rng(3)
    seqs = [rng.integers(1, 5, int(n)) for n in rng.integers(1, 30, 60)]
    offsets, items = csr(seqs)
    m, last_n = 2, 12
    res = apen_csr(offsets, items, m=m, r=0, last_n=last_n)
    used = [i for i, s in enumerate(seqs) if min(len(s), last_n) >= m + 1]
    assert res.users.tolist() == used
    assert res.n_skipped == len(seqs) - len(used)
    expected = [brute_apen(seqs[i][-last_n:], m, 0) for i in used]
    np.testing.assert_allclose(res.values, expected, atol=1e-12)
    assert res.mean == pytest.approx(np.mean(expected))
    assert res.params == {"m": 2, "r": 0.0, "last_n": 12, "absolute": False}
    # a tiny element budget splits groups and rows into blocks: same numbers
    tiny = apen_csr(offsets, items, m=m, r=1, last_n=None, max_elements=7)
    whole = apen_csr(offsets, items, m=m, r=1, last_n=0)
    np.testing.assert_allclose(tiny.values, whole.values, atol=1e-12)
    assert whole.params["last_n"] is None
    assert np.all(apen_csr(offsets, items, absolute=True).values >= 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"m": 0}, "m must be an integer >= 1"),
        ({"r": -1.0}, "r must be a finite number >= 0"),
        ({"r": float("nan")}, "r must be a finite number >= 0"),
        ({"last_n": 2}, "last_n >= m + 1"),
    ],
)
def test_bad_parameters(kwargs, message):
    offsets, items = csr([np.arange(1, 10)])
    with pytest.raises(SeqrecError, match=re.escape(message)):
        apen_csr(offsets, items, **kwargs)
    with pytest.raises(SeqrecError, match="at least 3 values"):
        approximate_entropy([1, 2], 2, 0)


def test_dataset_and_cli(tmp_path, monkeypatch, capsys):
    log = write_csv_log(tmp_path / "log.csv", cycle_sequences())
    res = dataset_apen(str(log), ["data.min_user_count=0"], last_n=6)
    assert res.n_users == 40 and res.n_skipped == 0
    # cycle walks never repeat an item and have >= 6 items: all users at ln((6-2)/(6-2+1))
    np.testing.assert_allclose(res.values, math.log(4 / 5))

    out = tmp_path / "apen.json"
    monkeypatch.setattr(
        sys, "argv", ["seqrec", "apen", str(log), "--last-n", "6", "--json", str(out)]
    )
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "users used" in printed and "-0.223144" in printed
    summary = json.loads(out.read_text())
    assert summary["users_used"] == 40 and summary["params"]["m"] == 2

    monkeypatch.setattr(sys, "argv", ["seqrec", "apen", str(log), "--r", "-1"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "tolerance r" in err[0]
