"""`lthray`: the menu, `config`, and every bad input refused in one line with exit 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from lthray.config import TrialConfig, to_flat
from sweeps import command


def test_a_bare_lthray_prints_the_menu(capsys):
    assert command.main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("trial", "sweep", "confirm", "report", "select", "export", "presets",
                                        "config"))


def test_the_installed_command_answers_help():
    exe = Path(sys.executable).parent / "lthray"
    if not exe.exists():
        pytest.skip("the console script is installed by `pip install -e .` (make install)")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage: lthray COMMAND" in done.stdout


def test_config_lists_every_key_with_its_value_and_meaning(capsys):
    assert command.main(["config", "--preset", "smoke"]) == 0
    lines = capsys.readouterr().out.splitlines()
    keys = {ln.split()[0] for ln in lines}
    assert keys == set(to_flat(TrialConfig()))
    epochs = next(ln for ln in lines if ln.startswith("train.epochs "))
    assert " 2 " in epochs and "per level" in epochs  # the smoke preset's value, and config.py's comment
    method = next(ln for ln in lines if ln.startswith("prune.method "))
    assert "one of imp, random" in method  # the smoke preset varies it
    documented = [ln for ln in lines if len(ln.split("  ")) > 2 and ln.split("  ")[-1].strip()]
    assert len(documented) >= 0.6 * len(lines)  # most keys have a meaning in config.py


@pytest.mark.parametrize("argv, words", [
    (["nope"], "'nope' is not an lthray command"),
    (["config", "--preset", "nope"], "--preset='nope' is not one of"),
    (["confirm"], "name the search sweep"),
    (["presets", "x"], "takes no arguments"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    assert command.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_a_bad_flag_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        command.main(["config", "--bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unrecognized arguments: --bogus")


def test_presets_lists_each_with_what_it_is_for(capsys):
    assert command.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "smoke" in out and "fashion" in out and "the reference study" in out
