"""Model packages: a missing or tampered file, a manifest that is not seqrec's, a folder that is
not a package at all, a run folder given to `seqrec serve`, and bad item metadata at export.

A package is verified (every sha256 in its manifest) before anything is loaded, so each damage
is refused by every reader the same way (`serve`, `recommend`, the API's `load`), in one line
that names the package and the file, and says to export it again.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

import seqrec

from .harness import case


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _manifest(pkg, **changes):
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest.update(changes)
    (pkg / "manifest.json").write_text(json.dumps(manifest))


def _with_files(pkg, **changes):
    manifest = json.loads((pkg / "manifest.json").read_text())
    _manifest(pkg, files={**manifest["files"], **changes})


DAMAGE = [
    # (damages a copy of the package, words the message must hold)
    case("packages", "a-package-missing-its-weights",
         lambda p: (p / "weights.safetensors").unlink(), ["weights.safetensors is missing"]),
    case("packages", "a-package-with-tampered-weights", lambda p: _flip(p / "weights.safetensors"),
         ["weights.safetensors does not match its sha256"]),
    case("packages", "a-package-with-a-tampered-item-table", lambda p: _flip(p / "items.parquet"),
         ["items.parquet does not match its sha256"]),
    case("packages", "a-package-with-an-edited-config",
         lambda p: (p / "config.yaml").write_text("model:\n  hidden: 64\n"),
         ["config.yaml does not match its sha256"]),
    case("packages", "a-package-whose-manifest-is-not-json",
         lambda p: (p / "manifest.json").write_text("{not json"), ["unreadable manifest.json"]),
    case("packages", "a-package-without-a-manifest", lambda p: (p / "manifest.json").unlink(),
         ["pkg"]),  # serve: no manifest.json; recommend reads it as an unfinished run
    case("packages", "a-manifest-of-another-tool", lambda p: _manifest(p, format="other-tool"),
         ["foreign manifest.json"]),
    case("packages", "a-manifest-listing-no-files", lambda p: _manifest(p, files={}),
         ["lists no file hashes"]),
    case("packages", "a-manifest-from-a-newer-seqrec", lambda p: _manifest(p, format_version=99),
         ["format version 99"]),
    case("packages", "a-manifest-naming-pickled-weights",
         lambda p: _manifest(p, weights="weights.pt"), ["safetensors", "never unpickles"]),
    case("packages", "a-manifest-listing-a-file-outside-the-package",
         lambda p: _with_files(p, **{"../secret": "0" * 64}), ["bad file name"]),
]  # fmt: skip

READERS = {
    "serve": lambda pkg, root: ["serve", pkg],
    "recommend": lambda pkg, root: ["recommend", pkg, "--users", "500", "--out", root / "r.csv"],
}


@pytest.mark.parametrize("reader", ["serve", "recommend"])
@pytest.mark.parametrize(("damage", "says"), DAMAGE)
def test_readers_refuse_a_damaged_package(user, package_copy, damage, says, reader):
    damage(package_copy)
    user.cli_fails(*READERS[reader](package_copy, user.root), says=says)


@pytest.mark.badinput("packages")
def test_api_load_refuses_a_tampered_package(user, package_copy):
    """packages: seqrec.load checks every sha256 before it loads a weight."""
    _flip(package_copy / "weights.safetensors")
    user.api_fails(lambda: seqrec.load(package_copy), says=["does not match its sha256"])


NOT_A_PACKAGE = [
    case("packages", "serve-a-run-folder", "run", ["is a training run, not a model package",
         "seqrec export"]),
    case("packages", "serve-a-user-s-own-folder", "photos", ["photos is not a seqrec model package"]),
    case("packages", "serve-a-folder-that-does-not-exist", "nowhere", ["nowhere does not exist"]),
    case("packages", "serve-a-file", "notes.txt", ["notes.txt"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "says"), NOT_A_PACKAGE)
def test_serve_refuses_what_is_not_a_package(user, run_copy, name, says):
    user.folder("photos")
    user.write("notes.txt", "mine\n")
    user.cli_fails("serve", user.root / name, says=says)


@pytest.mark.badinput("packages")
def test_serve_refuses_an_unknown_index(user, package):
    """packages: --index names one of the indexes seqrec has."""
    user.cli_fails("serve", package, "--index", "annoy", says=["--index must be one of"])


@pytest.mark.badinput("packages")
def test_export_refuses_an_unfinished_run(user, unfinished):
    """packages: only an evaluated run becomes a package."""
    user.cli_fails("export", unfinished, user.root / "pkg", says=["has not finished"])


@pytest.mark.badinput("packages")
def test_export_refuses_a_package(user, package):
    """packages: a package is exported already; the message says how to move one."""
    user.cli_fails("export", package, user.root / "pkg2", says=["already a model package"])


def _parquet_bytes(**columns) -> bytes:
    import io

    buf = io.BytesIO()
    pl.DataFrame(columns).write_parquet(buf)
    return buf.getvalue()


METADATA = [
    # (file name, content, extra flags, words the message must hold)
    case("files", "item-metadata-that-does-not-exist", "missing.csv", None, [],
         ["missing.csv does not exist"]),
    case("files", "item-metadata-that-is-empty", "empty.csv", "", [], ["empty.csv is empty"]),
    case("files", "item-metadata-without-an-id-column", "meta.csv", "name,genre\nA,x\n", [],
         ["no item id column", "--metadata-id-col"]),
    case("files", "item-metadata-with-repeated-ids", "dup.csv", "item_id,title\n101,A\n101,B\n",
         [], ["item ids repeat"]),
    case("files", "item-metadata-with-a-ragged-movies-dat", "movies.dat",
         "101::A::Drama\n102::B\n", [], ["id::title::genres"]),
    case("files", "item-metadata-that-is-a-corrupt-parquet", "meta.parquet",
         _parquet_bytes(item_id=["101"], title=["A"])[:-30], [], ["meta.parquet"]),
    case("files", "item-metadata-id-column-that-is-not-there", "meta2.csv",
         "item_id,title\n101,A\n", ["--metadata-id-col", "movie"],
         ["no column 'movie'"]),
    case("files", "header-less-item-metadata-named-by-its-first-value", "nohead.csv",
         "101,Toy Story,Comedy\n102,Jumanji,Adventure\n", ["--metadata-id-col", "101"],
         ["nohead.csv: line 1 is data, not a header"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "flags", "says"), METADATA)
def test_export_refuses_the_item_metadata(user, run, name, content, flags, says):
    path = user.root / name if content is None else user.write(name, content)
    user.cli_fails("export", run, user.root / "pkg", "--item-metadata", path, *flags, says=says)
