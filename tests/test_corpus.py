"""Every input of the corpus (tests/corpus.py) through the command line: the answer it must get, and for
all of them no traceback, nothing half-written, the input untouched. Prints the table of what happened."""
from __future__ import annotations

from pathlib import Path

import pytest

from corpus import CASES, inputs_digest, leftovers

ROWS: list[tuple[str, int, int, str]] = []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case, tmp_path, tiny_style, cli):
    folder = tmp_path / "case"
    folder.mkdir()
    src = case.make(folder)
    before = inputs_digest(folder)
    out = Path(case.output) if case.output.startswith("/") else folder / case.output
    args = [a.replace("{dir}", str(folder)) for a in case.args]
    if "--style" not in args:
        args += ["--style", str(tiny_style)]
    rc, _, err = cli(src, out, *args, "--max-side", 32, "-q")
    lines = err.strip().splitlines()
    left = leftovers(folder)
    ROWS.append((case.name, rc, len(lines), ", ".join(left) or "-"))
    assert "Traceback" not in err
    assert rc == case.exit, err
    for words in case.says:
        assert words in err, f"{words!r} not in {err!r}"
    assert left == []
    written = case.output_written if case.output_written is not None else rc == 0
    assert out.exists() == written, f"output {'missing' if written else 'written'}: {err}"
    if rc != 0:
        assert len(lines) >= 1 and lines[-1].startswith("animestream: error:"), err
    changed = {p for p, t in before.items() if Path(p).exists() and Path(p).stat().st_mtime_ns != t}
    assert changed == set(), f"inputs changed: {changed}"


def test_corpus_table(capsys):
    """The table of the cases run above (input, exit code, lines on stderr, leftovers)."""
    if not ROWS:
        pytest.skip("run with the corpus cases")
    width = max(len(r[0]) for r in ROWS)
    with capsys.disabled():
        print(f"\n{'input':<{width}}  exit  stderr lines  leftovers")
        for name, rc, n, left in ROWS:
            print(f"{name:<{width}}  {rc:>4}  {n:>12}  {left}")
    assert all(left == "-" for *_, left in ROWS)
