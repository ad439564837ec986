"""Command-line basics."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from media import ROOT
from stream import weights


def test_module_help_exits_0_and_documents_max_side():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "stream", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "--max-side" in proc.stdout
    assert "usage: animestream" in proc.stdout


def test_weights_list_shows_the_defaults_and_the_lites(cli):
    rc, out, err = cli("weights", "list")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "ORIGIN"]
    default = next(line for line in lines if line.startswith("hayao "))
    assert default.split()[1] == "(default)" and "dB vs animeganv2_hayao" in default
    assert next(line for line in lines if line.startswith("hayao-lite ")).split()[1:3] == ["(live", "default)"]
    row = next(line for line in lines if line.startswith("shinkai "))
    assert "default" not in row and "built-in" in row and "dB vs animeganv3_shinkai_37" in row
    # the INT8 column: its score against the teacher where the calibration records one
    shinkai = weights.resolve("shinkai")
    float_db, int8_db = shinkai.meta["quality"]["psnr_vs_teacher"], weights.int8_psnr(shinkai)
    assert lines[0].split()[3] == "INT8" and f"{float_db:.1f} dB vs animeganv3_shinkai_37  {int8_db:.1f} dB" in row
    lite = next(line for line in lines if line.startswith("shinkai-lite "))
    assert "built-in" in lite and "27.2 dB vs animeganv3_shinkai_37  27.2 dB" in lite
    hayao = weights.resolve("hayao")
    assert default.split()[-3:-1] == [f"{weights.int8_psnr(hayao):.1f}", "dB"]  # hayao's INT8 column
    assert hayao.meta["quality"]["psnr_vs_teacher"] - weights.int8_psnr(hayao) <= 0.3  # why auto takes INT8
    assert "non-commercial" in row and not any(line.startswith("paprika") for line in lines)  # retired


def test_list_styles_flag_is_the_same_as_weights_list(cli):
    rc1, out1, _ = cli("weights", "list")
    rc2, out2, _ = cli("--list-styles")
    assert rc1 == rc2 == 0 and out1 == out2


def test_missing_output_is_a_usage_error(cli, capsys):
    from stream.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["only_input.mp4"])
    assert exc.value.code == 2
    assert "give an OUTPUT" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["a.mp4", "b.mp4", "--max-side", "-5"], ["a.mp4", "b.mp4", "--crf", "60"],
                                  ["a.mp4", "b.mp4", "--precision", "int4"]])
def test_bad_option_values_are_usage_errors(argv, capsys):
    from stream.cli import main
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_version(capsys):
    from stream import __version__
    from stream.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_stats_json_into_a_missing_folder_is_refused_before_any_work(cli, clip, tiny_style, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(SystemExit) as e:
        cli(clip, out, "--style", tiny_style, "--stats-json", tmp_path / "missing" / "s.json")
    assert e.value.code == 2
    assert not out.exists()
