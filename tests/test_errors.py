"""errors.run: a UserError or a full disk ends in its message and exit code 2, Ctrl-C in one line
and 130, a bug keeps its exception (and so its traceback)."""

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


def test_a_full_disk_is_one_message_naming_the_file_and_other_os_errors_stay_bugs(capsys, tmp_path):
    import errno

    def fills_the_disk(argv=None):
        with open(tmp_path / "records.jsonl", "w") as f:
            f.write("{}\n")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "records.jsonl"))

    with pytest.raises(SystemExit) as e:
        errors.run(fills_the_disk)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "no space left" in err and "records.jsonl" in err and err.count("\n") == 1
    with pytest.raises(PermissionError):
        errors.run(raising(PermissionError(errno.EACCES, "Permission denied", "/x")))
