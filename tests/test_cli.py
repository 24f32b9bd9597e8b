"""The command line shared by every command: numbers checked as argparse reads them, and --help that states
each default once and truly."""

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from tinyeffnet import bench, evaluate, export, predict, summary, train
from tinyeffnet.cli import (fraction, integer_at_least, make_parser, non_negative_float, non_negative_int,
                            positive_float, positive_int)

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def tool(name):
    """The module of the script ``tools/<name>.py``."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMMANDS = {  # name → main(argv)
    "train": train.main, "evaluate": evaluate.main, "predict": predict.main, "summary": summary.main,
    "export": export.main, "bench": bench.main,
    "tools/train_torch.py": tool("train_torch").main,
    "tools/bench_torch.py": lambda argv, main=tool("bench_torch").main: main(),     # it reads sys.argv
}


# --- the converters ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("convert, good, bad", [
    (positive_int, {"1": 1, "60": 60}, ["0", "-3", "1.5", "nan", "inf", "ten", ""]),
    (non_negative_int, {"0": 0, "7": 7}, ["-1", "0.5", "nan"]),
    (integer_at_least(2), {"2": 2, "100": 100}, ["1", "0"]),
    (positive_float, {"0.1": 0.1, "1e-30": 1e-30, "3": 3.0}, ["0", "-0.1", "nan", "inf", "-inf", "x"]),
    (non_negative_float, {"0": 0.0, "5e-4": 5e-4}, ["-1e-9", "nan", "inf"]),
    (fraction, {"0": 0.0, "0.9": 0.9, "0.999": 0.999}, ["1", "1.5", "-0.1", "nan", "inf"]),
])
def test_converters_accept_what_is_allowed_and_refuse_the_rest(convert, good, bad):
    for text, value in good.items():
        assert convert(text) == value and type(convert(text)) is type(value)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            convert(text)


def test_a_bad_number_is_one_error_line_naming_flag_value_and_range(capsys):
    parser = make_parser("prog", "A command.")
    parser.add_argument("--epochs", type=positive_int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--epochs", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: argument --epochs: must be at least 1, got 0 (see prog --help)\n"


# Every numeric flag of train, at a value that makes no sense for it.
TRAIN_BAD_NUMBERS = [
    ("--epochs", "0"), ("--epochs", "-5"), ("--batch-size", "0"), ("--batch-size", "2.5"), ("--lr", "0"),
    ("--lr", "nan"), ("--lr", "-0.1"), ("--momentum", "1"), ("--momentum", "-0.5"), ("--weight-decay", "-1"),
    ("--weight-decay", "inf"), ("--warmup-epochs", "-1"), ("--warmup-epochs", "nan"), ("--label-smoothing", "1"),
    ("--label-smoothing", "nan"), ("--clip-grad-norm", "0"), ("--clip-grad-norm", "inf"), ("--seed", "-1"),
    ("--subset", "0"), ("--per-class", "-1"), ("--test-subset", "0"), ("--phi", "-1"), ("--phi", "nan"),
    ("--phi", "inf"), ("--resolution", "0"), ("--num-classes", "1"), ("--width", "0"), ("--depth", "nan"),
    ("--alpha", "0"), ("--beta", "-1"), ("--gamma", "inf"),
]


@pytest.mark.parametrize("flag, value", TRAIN_BAD_NUMBERS)
def test_train_refuses_every_senseless_number(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args([flag, value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: argument {flag}: must be") and (f"got {value}" in err or f"got {value!r}" in err)


@pytest.mark.parametrize("flag", ["--threads", "--rounds", "--steps", "--repeats"])
@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_bench_refuses_counts_below_one(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([flag, value])
    assert exit_info.value.code == 2 and f"argument {flag}: must be" in capsys.readouterr().err


# --- --help ------------------------------------------------------------------------------------------------------
def parser_and_help(main, monkeypatch, capsys):
    """Run ``main(["--help"])``; (the parser it built, the help it printed)."""
    parsers = []
    parse_args = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        parsers.append(self)
        return parse_args(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["prog", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return parsers[-1], capsys.readouterr().out


def help_entries(text):
    """--help text → {option string: its entry, continuation lines joined}."""
    entries, current = {}, None
    for line in text.splitlines():
        match = re.match(r"  (-\S+)", line)
        if match:
            current = match.group(1).rstrip(",")
            entries[current] = line
        elif current and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_states_each_default_once_and_truly(name, monkeypatch, capsys):
    parser, text = parser_and_help(COMMANDS[name], monkeypatch, capsys)
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: True)" not in text
    description = " ".join(parser.description.split())
    assert description.endswith("."), f"{name}: the description stops mid-sentence: {description!r}"
    assert description in " ".join(text.split())
    entries = help_entries(text)
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        entry = entries[action.option_strings[0]]
        assert entry.count("default") <= 1, f"{name} {action.option_strings[0]}: {entry}"
        if action.default not in (None, argparse.SUPPRESS) and action.nargs != 0:
            assert "default" in entry and str(action.default) in entry, f"{name} {action.option_strings[0]}: {entry}"


def test_defaults_in_help_come_from_the_constants(monkeypatch, capsys):
    entries = help_entries(parser_and_help(train.main, monkeypatch, capsys)[1])
    assert f"(default: {train.DEFAULT_EPOCHS};" in entries["--epochs"]
    assert (f"(default: the optimizer's, sgd {train.DEFAULT_LR['sgd']}, rmsprop {train.DEFAULT_LR['rmsprop']}, adamw "
            f"{train.DEFAULT_LR['adamw']}; with --pretrained {train.PRETRAINED_LR} for each)") in entries["--lr"]
    assert (f"(default: {train.DEFAULT_OPTIMIZER}, or {train.PRETRAINED_OPTIMIZER} with --pretrained)"
            in entries["--optimizer"])
    assert f"(default: {train.DEFAULT_EMA}, the paper's; off with --pretrained)" in entries["--ema"]
    assert f"(default: {train.DEFAULT_BATCH_SIZE})" in entries["--batch-size"]
    assert "default" not in entries["--no-nesterov"] and "default" not in entries["--pretrained"]
