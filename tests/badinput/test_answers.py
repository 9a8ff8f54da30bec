"""Short answers and sampled evaluation: what seqrec says when it cannot give what was asked.

Fewer than k items can be returned when k is the catalogue size or the history covers the
catalogue: the answer says so (``returned`` / ``short`` in the API, the ``returned`` column and
the summary line of `seqrec recommend`), never a silent shorter list. A k outside the
catalogue, a history id given twice, unknown ids without --skip-unknown, and sampled
evaluation with more negatives than a user can draw without replacement are refused in one
line. The HTTP side of short answers is in test_http.py.
"""

from __future__ import annotations

import polars as pl
import pytest

import seqrec
from conftest import ITEM_OFFSET, N_ITEMS

from .harness import case

EVERY = [str(ITEM_OFFSET + j) for j in range(N_ITEMS)]  # the whole catalogue
THREE = EVERY[:3]


@pytest.fixture
def rec(package):
    return seqrec.load(package)


API_REFUSED = [
    # (call on the package's Recommender, words the message must hold)
    case("short-answers", "api-k-above-the-catalogue", lambda r: r.recommend([THREE], k=31),
         ["k=31", "catalogue size 30"]),
    case("short-answers", "api-k-of-zero", lambda r: r.recommend([THREE], k=0), ["k=0"]),
    case("short-answers", "api-a-negative-k", lambda r: r.recommend([THREE], k=-2), ["k=-2"]),
    case("short-answers", "api-k-that-is-not-a-number", lambda r: r.recommend([THREE], k="5"),
         ["k must be an integer", "'5'"]),
    case("short-answers", "api-k-that-is-a-fraction", lambda r: r.recommend([THREE], k=2.5),
         ["k must be an integer", "2.5"]),
    case("short-answers", "api-encode-unknown-ids-without-skip-unknown",
         lambda r: r.encode([["nope", *THREE]]), ["nope", "--skip-unknown"]),
]  # fmt: skip


@pytest.mark.parametrize(("call", "says"), API_REFUSED)
def test_api_refuses_the_request(user, rec, call, says):
    user.api_fails(lambda: call(rec), says=says)


@pytest.mark.badinput("short-answers")
def test_api_run_folder_cannot_answer_an_unknown_history(user, run):
    """short-answers: a run folder has no popularity to fall back on; it says to export."""
    rec = seqrec.load(run)
    user.api_fails(lambda: rec.recommend([["nope"]], k=3), says=["export"])


def _answer(rec, history, k, **kw):
    (ans,) = rec.recommend([history], k=k, **kw)
    return ans


ANSWERS = [
    # (history, k, returned, short, unknown ids reported)
    case("short-answers", "api-k-equal-to-the-catalogue-says-short", THREE, N_ITEMS,
         N_ITEMS - 3, True, []),
    case("short-answers", "api-a-history-covering-the-catalogue-gets-none-and-says-so", EVERY, 5,
         0, True, []),
    case("short-answers", "api-duplicate-ids-in-a-history-count-once", [*THREE, *THREE], 27, 27,
         False, []),
    case("short-answers", "api-unknown-ids-are-reported-not-fatal", ["nope", *THREE, "x"], 5, 5,
         False, ["nope", "x"]),
    case("short-answers", "api-an-all-unknown-history-gets-popularity", ["nope"], 5, 5, False,
         ["nope"]),
    case("short-answers", "api-an-empty-history-gets-popularity", [], 5, 5, False, []),
]  # fmt: skip


@pytest.mark.parametrize(("history", "k", "returned", "short", "unknown"), ANSWERS)
def test_api_short_answers_say_so(user, rec, history, k, returned, short, unknown):
    ans = user.api(lambda: _answer(rec, history, k))
    assert (ans.k, ans.returned, ans.short, len(ans.items)) == (k, returned, short, returned)
    assert ans.unknown_items == unknown
    assert len(set(ans.items)) == len(ans.items)  # no item twice
    assert not set(ans.items) & set(history)  # seen items are never served


@pytest.mark.badinput("short-answers")
def test_api_encode_of_an_empty_history(user, rec):
    """short-answers: encode([[]]) is one empty history, not a polars traceback."""
    (encoded,) = user.api(lambda: rec.encode([[]]))
    assert len(encoded) == 0


# ---------------------------------------------------------------------- seqrec recommend


def _histories(user, text):
    return user.write("hist.txt", text)


RECOMMEND_REFUSED = [
    # (histories file content or None, extra arguments, words the message must hold)
    case("short-answers", "recommend-k-above-the-catalogue", "u1 101 102\n", ["-k", "31"],
         ["k=31"]),
    case("short-answers", "recommend-k-of-zero", "u1 101 102\n", ["-k", "0"], ["k=0"]),
    case("short-answers", "recommend-an-id-given-twice", "u1 101\nu2 102\nu1 103\n", [],
         ["id 'u1' is on lines 1 and 3"]),
    case("short-answers", "recommend-unknown-history-ids", "u1 101 nope\n", [],
         ["nope", "--skip-unknown"]),
    case("short-answers", "recommend-a-line-without-items", "u1 101\nu2\n", [],
         ["hist.txt:2"]),
    case("short-answers", "recommend-an-empty-histories-file", "\n\n", [], ["hist.txt is empty"]),
    case("short-answers", "recommend-histories-that-do-not-exist", None, [], ["hist.txt"]),
    case("short-answers", "recommend-unknown-dataset-users", None, ["--users", "1,2"], ["1"]),
    case("short-answers", "recommend-two-sources-at-once", "u1 101\n", ["--users", "500"],
         ["--users"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "args", "says"), RECOMMEND_REFUSED)
def test_recommend_refuses(user, run, text, args, says):
    source = [] if "--users" in args and text is None else ["--histories", user.root / "hist.txt"]
    if text is not None:
        _histories(user, text)
    user.cli_fails("recommend", run, *source, *args, "--out", user.root / "r.csv", says=says)


@pytest.mark.badinput("short-answers")
def test_recommend_no_source_at_all(user, run):
    """short-answers: one of --users, --histories or --all-users is needed."""
    user.cli_fails("recommend", run, "--out", user.root / "r.csv", says=["--users"])


SHORT_FILES = [
    # (histories file, k, expected `returned` per user, what the summary line must say)
    case("short-answers", "recommend-k-equal-to-the-catalogue-flags-short-users",
         f"u1 {' '.join(THREE)}\n", N_ITEMS, {"u1": N_ITEMS - 3}, "1 user got fewer than 30"),
    case("short-answers", "recommend-a-history-covering-the-catalogue-keeps-a-row",
         f"u1 {' '.join(EVERY)}\nu2 {' '.join(THREE)}\n", 5, {"u1": 0, "u2": 5},
         "1 user got fewer than 5"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "k", "returned", "summary"), SHORT_FILES)
def test_recommend_short_answers_say_so(user, run, text, k, returned, summary):
    hist = _histories(user, text)
    out = user.root / "r.csv"
    res = user.cli_ok("recommend", run, "--histories", hist, "-k", k, "--out", out,
                      "--no-progress", creates=["r.csv"])  # fmt: skip
    assert summary in res.out, res.out
    table = pl.read_csv(out, schema_overrides={"user": pl.Utf8, "item": pl.Utf8})
    got = dict(table.group_by("user").agg(pl.col("returned").first()).iter_rows())
    assert got == returned
    empty = table.filter(pl.col("returned") == 0)
    assert empty["item"].is_null().all() and len(empty) == sum(
        1 for v in returned.values() if v == 0
    )


# ---------------------------------------------------------------------- sampled evaluation

EVALUATE_REFUSED = [
    case("sampled-eval", "zero-negatives", ["--sampled", "uniform", "--negatives", "0"],
         ["--negatives", "at least 1"]),
    case("sampled-eval", "negative-negatives", ["--sampled", "uniform", "--negatives", "-5"],
         ["--negatives", "at least 1"]),
    case("sampled-eval", "more-negatives-than-the-catalogue",
         ["--sampled", "uniform", "--negatives", "1000"], ["--negatives", "1000"]),
    case("sampled-eval", "more-negatives-than-a-user-can-draw",
         ["--sampled", "popularity", "--negatives", str(N_ITEMS - 1)], ["--negatives"]),
    case("sampled-eval", "an-unknown-sampler", ["--sampled", "random"], ["--sampled", "random"]),
    case("sampled-eval", "negatives-without-sampled", ["--negatives", "5"],
         ["--negatives", "--sampled"]),
    case("sampled-eval", "an-unknown-split", ["--split", "train"], ["--split", "train"]),
    case("sampled-eval", "keep-seen-and-mask-window-at-once", ["--keep-seen", "--mask-window"],
         ["contradict"]),
    case("sampled-eval", "wide-and-json-at-once", ["--wide", "--format", "json"],
         ["contradict"]),
    case("sampled-eval", "an-unknown-repeat-rule", ["--repeat-targets", "skip"],
         ["repeat_targets", "'skip'"]),
    case("sampled-eval", "a-repeat-rule-with-seen-items-kept",
         ["--repeat-targets", "miss", "--keep-seen"], ["repeat_targets=miss", "mask"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "says"), EVALUATE_REFUSED)
def test_evaluate_refuses(user, run, args, says):
    user.cli_fails("evaluate", run, *args, says=says)


API_EVALUATE = [
    case("sampled-eval", "api-zero-negatives", {"sampled": "uniform", "negatives": 0},
         ["at least 1"]),
    case("sampled-eval", "api-a-million-negatives", {"sampled": "uniform", "negatives": 10**6},
         ["1000000"]),
    case("sampled-eval", "api-an-unknown-split", {"split": "train"}, ["split", "'train'"]),
    case("sampled-eval", "api-an-unknown-mask-seen", {"mask_seen": "yes"}, ["mask_seen"]),
    case("sampled-eval", "api-drop-with-seen-items-kept",
         {"repeat_targets": "drop", "mask_seen": False}, ["repeat_targets=drop"]),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "says"), API_EVALUATE)
def test_api_evaluate_refuses(user, run, kwargs, says):
    from seqrec.run import Run

    user.api_fails(lambda: Run(run).evaluate(**kwargs), says=says)


@pytest.mark.badinput("sampled-eval")
def test_sampled_metrics_never_fall_below_full_ranking(user, run):
    """sampled-eval: negatives drawn without replacement rank the target at least as high as
    the full catalogue does, so sampled HR@10 >= full HR@10 (the issue's 'below' bug)."""
    from seqrec.run import Run

    full = user.api(lambda: Run(run).evaluate("test"))
    sampled = user.api(lambda: Run(run).evaluate("test", sampled="uniform", negatives=10))
    assert sampled.metrics["HR@10"] >= full.metrics["HR@10"]
    assert sampled.protocol["ranking"] != full.protocol["ranking"]
