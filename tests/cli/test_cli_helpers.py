"""The shared command-line helpers: --config.key=value parsing against ml_collections' types,
and the --json guard that keeps every other byte off stdout (Python prints and C writes)."""

import os
import sys

import ml_collections
import pytest
from ml_collections import config_dict

from jaxvision import cli
from jaxvision.config import base_config


def test_overrides_take_each_keys_type_including_none_valued_keys():
    config = base_config()
    config.lock()
    argv = ["prog", "--workdir=w", "--config.batch_size=256", "--config.data.mean",
            "(0.5, 0.25, 0.125)", "--config.schedule.base_lr=1", "--config.data.flip=false",
            "--config.init_from=/runs/a", "--config.data.name=image_folder", "img.png"]
    rest, overrides = cli.pop_config_overrides(argv)
    assert rest == ["prog", "--workdir=w", "img.png"]
    cli.apply_overrides(config, overrides)
    assert config.batch_size == 256 and isinstance(config.batch_size, int)
    assert config.data.mean == (0.5, 0.25, 0.125)  # default None: any literal
    assert config.schedule.base_lr == 1.0 and isinstance(config.schedule.base_lr, float)
    assert config.data.flip is False
    assert config.init_from == "/runs/a" and config.data.name == "image_folder"


@pytest.mark.parametrize("override, message", [
    (("batch_sise", "8"), "Did you mean --config.batch_size"),
    (("batch_size", "eight"), "is not a int"),
    (("data.flip", "maybe"), "not a boolean"),
])
def test_bad_overrides_name_the_key(override, message):
    config = base_config()
    with pytest.raises(cli.UsageError, match=message):
        cli.apply_overrides(config, [override])


def test_kept_overrides_stay_for_ml_collections():
    config = ml_collections.ConfigDict({"a": 1, "b": config_dict.placeholder(str)})
    rest, popped = cli.pop_config_overrides(
        ["p", "--config.a=2", "--config.b=x"], keep=lambda k: not cli.none_valued(config, k))
    assert rest == ["p", "--config.a=2"] and popped == [("b", "x")]


def test_json_stdout_keeps_only_the_document_on_stdout(capfd):
    with cli.json_stdout(True) as emit:
        print("Downloading and preparing dataset ...")  # as TFDS's termcolor.cprint
        sys.stdout.flush()
        os.write(1, b"a C library writing to fd 1\n")
        emit({"top1": 0.5, "classes": ["a", "b"]})
    out, err = capfd.readouterr()
    assert out == '{"top1": 0.5, "classes": ["a", "b"]}\n'
    assert "Downloading" in err and "C library" in err


def test_json_stdout_refuses_two_documents(capfd):
    with pytest.raises(RuntimeError, match="exactly one"):
        with cli.json_stdout(True) as emit:
            emit(1)
            emit(2)
    assert capfd.readouterr().out == ""


def test_banner_filter_keeps_warnings(capfd):
    with cli.filtered_stderr():
        os.write(2, b"I0000 00:00:1.0 123 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called\n")
        os.write(2, b"W0000 real warning\n")
    err = capfd.readouterr().err
    assert err == "W0000 real warning\n"


def test_routine_logs_are_clean_info_lines_and_process_0s_only():
    import logging as py_logging

    from absl import logging as absl_logging

    from jaxvision import cli

    logger, root = py_logging.getLogger("jaxvision"), py_logging.getLogger()
    levels = logger.level, root.level
    try:
        cli.quiet_logging()
        formatter = absl_logging.get_absl_handler().python_handler.formatter
        assert isinstance(formatter, cli.LogFormatter)

        def shown(name, level, message):
            record = py_logging.LogRecord(name, level, "loop.py", 12, message, (), None)
            if not py_logging.getLogger(name).isEnabledFor(level):
                return None
            return formatter.format(record)

        assert shown("jaxvision.train", py_logging.INFO, "Resuming from x") == (
            "jaxvision: Resuming from x")
        assert shown("jaxvision.train", py_logging.WARNING, "low disk") == (
            "jaxvision: warning: low disk")
        assert shown("absl", py_logging.INFO, "tfds chatter") is None  # other libraries: quiet
        other = shown("absl", py_logging.WARNING, "tfds warning")
        assert other.startswith("W") and "loop.py:12] tfds warning" in other  # absl's format
        cli.show_routine_logs(1, 2)
        assert shown("jaxvision.train", py_logging.INFO, "Resuming from x") is None
        assert shown("jaxvision.train", py_logging.WARNING, "low disk") == (
            "jaxvision[1]: warning: low disk")
    finally:
        formatter.process = None
        logger.setLevel(levels[0])
        root.setLevel(levels[1])


def test_output_folder_is_checked_before_work_and_not_made(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for bad, words in ((a_file, "is a file"), (a_file / "eval", "is inside the file")):
        with pytest.raises(cli.UsageError, match=words) as err:
            cli.output_folder(str(bad))
        assert str(bad) in str(err.value) and "--output" in str(err.value)
    new = tmp_path / "runs" / "eval" / "test"
    assert cli.output_folder(str(new)) == str(new)
    assert not (tmp_path / "runs").exists()  # made by the command when it writes, not before
