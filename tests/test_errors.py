"""errors.run: a UserError ends in its message and exit code 2, Ctrl-C in one line and 130, a bug
keeps its exception (and so its traceback)."""

import pytest

import errors


def raising(exc):
    def main(argv=None):
        raise exc

    return main


def test_user_error_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        errors.run(raising(errors.UserError("--lr -1: must be > 0")))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("error: --lr -1: must be > 0") and err.count("\n") == 1


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    with pytest.raises(SystemExit) as e:
        errors.run(raising(KeyboardInterrupt()))
    assert e.value.code == 130 and "--resume" in capsys.readouterr().err


def test_a_bug_keeps_its_exception_and_main_gets_argv():
    with pytest.raises(ZeroDivisionError):
        errors.run(raising(ZeroDivisionError("a bug")))
    assert errors.run(lambda argv: argv, ["--x"]) == ["--x"]
