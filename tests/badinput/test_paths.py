"""Output paths: a file where a folder goes, a parent that is a file, a folder the user cannot
write, a user's own folder, an existing output without --overwrite.

Each is refused before any work starts (no training, no scoring), in one line that names the
path and the option; a user's own folder is refused whatever the flags, with a message that
never suggests the destructive flag, and every file in it is still there byte for byte (the
harness's snapshot). What is replaceable (a finished seqrec run, an existing output file, a
package) is refused until --overwrite says so.
"""

from __future__ import annotations

import pytest

import seqrec
from conftest import tiny_config

from .harness import case


@pytest.fixture
def cfg(user, run):
    """A valid one-epoch YAML config on the session run's data (so a case that is wrongly
    accepted trains in a second and shows up as new files)."""
    import yaml

    data = yaml.safe_load((run / "config.yaml").read_text())["data"]["dataset"]
    return user.yaml("tiny.yaml", tiny_config(data, train={"epochs": 1}))


def _file(user):
    return user.write("taken", "a file of mine\n")


def _under_file(user):
    return user.write("taken", "a file of mine\n") / "run"


def _locked(user):
    return user.locked(user.root / "locked") / "run"


def _users_folder(user):
    return user.folder("photos")


def _run_with_a_user_file(user):
    from shutil import copytree

    run = user.root / "run"
    copytree(user.run, run)
    (run / "my-notes.txt").write_text("mine\n")
    return run


TRAIN_OUT = [
    # (makes the --out path, extra flags, words the message must hold, words it must not)
    case("paths", "train-out-is-a-file", _file, [], ["taken", "is a file"], []),
    case("paths", "train-out-under-a-file", _under_file, [], ["taken is a file", "--out"], []),
    case("paths", "train-out-in-a-folder-the-user-cannot-write", _locked, [],
         ["permission denied", "--out"], []),
    case("paths", "train-out-is-a-user-s-own-folder", _users_folder, [],
         ["photos", "notes.txt"], ["--overwrite"]),
    case("paths", "train-overwrite-on-a-user-s-own-folder", _users_folder, ["--overwrite"],
         ["photos", "notes.txt"], ["--overwrite"]),
    case("paths", "train-overwrite-on-a-run-holding-a-user-file", _run_with_a_user_file,
         ["--overwrite"], ["my-notes.txt"], ["--overwrite"]),
]  # fmt: skip


@pytest.mark.parametrize(("make", "flags", "says", "not_says"), TRAIN_OUT)
def test_train_refuses_the_out_path(user, cfg, run, make, flags, says, not_says):
    out = make(user)
    user.cli_fails("train", "-c", cfg, "--out", out, "--no-progress", *flags, says=says,
                   not_says=not_says)  # fmt: skip


@pytest.mark.badinput("paths")
def test_train_out_a_finished_run_needs_overwrite(user, cfg, run_copy):
    """paths: a finished run is replaceable, but only when --overwrite says so."""
    user.cli_fails("train", "-c", cfg, "--out", run_copy, says=["finished run", "--overwrite"])


@pytest.mark.badinput("paths")
def test_train_out_an_unfinished_run_needs_resume(user, cfg, unfinished):
    """paths: an interrupted run is continued or replaced, never silently mixed."""
    user.cli_fails("train", "-c", cfg, "--out", unfinished, says=["unfinished run", "--resume"])


@pytest.mark.badinput("paths")
def test_api_train_overwrite_never_takes_a_user_s_folder(user, cfg):
    """paths: the API's overwrite=True has the CLI's rule."""
    folder = user.folder("mine")
    config = seqrec.config(str(cfg))
    user.api_fails(
        lambda: seqrec.train(config, folder, overwrite=True, progress=False),
        says=["mine", "notes.txt"],
        not_says=["--overwrite", "overwrite="],
    )


def _json_exists(user):
    return user.write("result.json", '{"mine": 1}\n')


def _json_folder(user):
    return user.folder("results")


EVALUATE_JSON = [
    case("paths", "evaluate-json-that-exists", _json_exists, ["result.json already exists",
         "--overwrite"]),
    case("paths", "evaluate-json-that-is-a-folder", _json_folder, ["results is a folder"]),
    case("paths", "evaluate-json-under-a-file", lambda u: _file(u) / "r.json",
         ["taken is a file", "--json"]),
    case("paths", "evaluate-json-in-a-folder-the-user-cannot-write",
         lambda u: _locked(u).parent / "r.json", ["permission denied", "--json"]),
]  # fmt: skip


@pytest.mark.parametrize(("make", "says"), EVALUATE_JSON)
def test_evaluate_refuses_the_json_path(user, run, make, says):
    user.cli_fails("evaluate", run, "--json", make(user), says=says)


def _csv_exists(user):
    return user.write("recs.csv", "mine\n")


RECOMMEND_OUT = [
    case("paths", "recommend-out-that-exists", _csv_exists, ["recs.csv", "--overwrite"]),
    case("paths", "recommend-out-under-a-file", lambda u: _file(u) / "r.csv",
         ["taken is a file"]),
    case("paths", "recommend-out-that-is-a-folder", lambda u: u.folder("recs.csv"),
         ["recs.csv"]),
    case("paths", "recommend-out-with-an-unknown-suffix", lambda u: u.root / "recs.txt",
         ["recs.txt", ".csv"]),
    case("paths", "recommend-out-in-a-folder-the-user-cannot-write",
         lambda u: _locked(u).parent / "r.csv", ["permission denied"]),
]  # fmt: skip


@pytest.mark.parametrize(("make", "says"), RECOMMEND_OUT)
def test_recommend_refuses_the_out_path(user, run, make, says):
    user.cli_fails("recommend", run, "--users", "500", "--out", make(user), says=says)


def _package_exists(user):
    from shutil import copytree

    copytree(user.package, user.root / "pkg")
    return user.root / "pkg"


EXPORT_DEST = [
    # (makes the destination, extra flags, must say, must not say)
    case("paths", "export-to-a-file", _file, [], ["taken is a file"], []),
    case("paths", "export-under-a-file", lambda u: _file(u) / "pkg", [], ["taken is a file"],
         []),
    case("paths", "export-in-a-folder-the-user-cannot-write", lambda u: _locked(u).parent / "p",
         [], ["permission denied"], []),
    case("paths", "export-into-a-user-s-own-folder", _users_folder, [], ["photos", "notes.txt"],
         ["--overwrite"]),
    case("paths", "export-overwrite-on-a-user-s-own-folder", _users_folder, ["--overwrite"],
         ["photos", "notes.txt"], ["--overwrite"]),
    case("paths", "export-over-a-package-needs-overwrite", _package_exists, [],
         ["pkg already exists", "--overwrite"], []),
    case("paths", "export-into-a-run-folder", lambda u: _run_with_a_user_file(u), ["--overwrite"],
         ["run folder"], ["--overwrite"]),
]  # fmt: skip


@pytest.mark.parametrize(("make", "flags", "says", "not_says"), EXPORT_DEST)
def test_export_refuses_the_destination(user, run, package, make, flags, says, not_says):
    dest = make(user)
    user.cli_fails("export", run, dest, *flags, says=says, not_says=not_says)


@pytest.mark.badinput("paths")
def test_api_export_overwrite_never_takes_a_user_s_folder(user, run):
    """paths: Run.export(overwrite=True) has the CLI's rule."""
    from seqrec.run import Run

    folder = user.folder("mine")
    user.api_fails(
        lambda: Run(run).export(folder, overwrite=True),
        says=["mine"],
        not_says=["--overwrite", "overwrite="],
    )


READ_FROM = [
    case("paths", "evaluate-a-folder-that-does-not-exist", ["evaluate", "nowhere"],
         ["nowhere does not exist"]),
    case("paths", "evaluate-a-user-s-own-folder", ["evaluate", "photos"],
         ["photos is not a seqrec run folder"]),
    case("paths", "recommend-from-a-folder-that-does-not-exist",
         ["recommend", "nowhere", "--users", "1", "--out", "r.csv"], ["nowhere"]),
    case("paths", "export-a-user-s-own-folder", ["export", "photos", "pkg"],
         ["photos is not a seqrec run folder"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "says"), READ_FROM)
def test_commands_refuse_what_is_not_a_run(user, args, says):
    user.folder("photos")
    user.cli_fails(*args, says=says)
