"""key=value for the small commands: switches, lists, positionals by name, subcommands; old flags with a note."""

from __future__ import annotations

import pytest

from nnlight.exchange.model_cli import _parser as model_parser
from nnlight.utils.command_line import key_value_arguments


def test_key_value_settings_read_as_the_flags_did(capsys: pytest.CaptureFixture) -> None:
    parser = model_parser()
    new = parser.parse_args(key_value_arguments(parser, [
        "export", "dataset=Dataset900_Demo", "model=3d_fullres/baseline", "output=m.zip", "folds=[0,1]",
        "format=onnx"]))
    old = parser.parse_args(key_value_arguments(parser, [
        "export", "--dataset", "Dataset900_Demo", "--model", "3d_fullres/baseline", "--output", "m.zip",
        "--folds", "0", "1", "--format", "onnx"]))
    assert vars(new) == vars(old) and new.folds == ["0", "1"]
    err = capsys.readouterr().err
    assert "note: --dataset is the old style and goes away in the next release; write dataset=<value>" in err
    install = parser.parse_args(key_value_arguments(parser, ["install", "file=model.zip"]))
    assert str(install.file) == "model.zip"  # a positional by its name


def test_switches_take_true_or_false_and_anything_else_is_refused(capsys: pytest.CaptureFixture) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--2d", dest="two_d", action="store_true")
    assert parser.parse_args(key_value_arguments(parser, ["2d=true"])).two_d
    assert not parser.parse_args(key_value_arguments(parser, ["2d=false"])).two_d
    with pytest.raises(SystemExit):
        key_value_arguments(parser, ["2d=maybe"])
    assert "2d=maybe: write 2d=true or 2d=false" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        key_value_arguments(parser, ["3d=true"])
    assert "3d=true: no such setting; choose one of 2d" in capsys.readouterr().err


def test_every_unknown_key_is_named_at_once_with_the_closest_valid_one(capsys: pytest.CaptureFixture) -> None:
    parser = model_parser()
    with pytest.raises(SystemExit):
        key_value_arguments(parser, ["export", "datset=D", "model=best", "ouput=m.zip", "colour=red"])
    err = capsys.readouterr().err
    assert ("datset=D: no such setting; did you mean dataset?; ouput=m.zip: no such setting; did you mean output?; "
            "colour=red: no such setting; choose one of checkpoint, dataset, folds") in err


def test_values_quoted_as_hydra_commands_need_them_are_read_without_their_quotes() -> None:
    """What nnlight-train prints for predict (``"model='3d_fullres/baseline[...]'"``) works for nnlight-model too."""
    parser = model_parser()
    args = parser.parse_args(key_value_arguments(parser, [
        "export", "dataset=Dataset900_Demo", "model='3d_fullres/baseline[trainer.max_epochs=2,loss=dice]'",
        'output="m.zip"', "folds=['0','1']"]))
    assert args.model == "3d_fullres/baseline[trainer.max_epochs=2,loss=dice]" and str(args.output) == "m.zip"
    assert args.folds == ["0", "1"]
