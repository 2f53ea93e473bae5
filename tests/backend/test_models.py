"""The model options, defined once (hymotion.shared.models): every command's --model help names each of them with
the same words, and the add-on's menu lists the same options."""

from __future__ import annotations

import argparse

import pytest

from hymotion import bake, cli
from hymotion.shared.models import MODEL_OPTIONS, VARIANTS, enum_items


def _help(parser: argparse.ArgumentParser, option: str) -> str:
    (action,) = [action for action in parser._actions if option in action.option_strings]
    assert action.help is not None, f"{option} has no help"
    return action.help


def _subparser(name: str) -> argparse.ArgumentParser:
    (commands,) = [action for action in cli.build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return commands.choices[name]


@pytest.mark.parametrize("parser", [
    lambda: _subparser("generate"), lambda: _subparser("serve"), lambda: _subparser("farm"), bake.build_parser,
], ids=["generate", "serve", "farm", "hymotion-bake"])
def test_every_model_option_is_described_with_the_same_words(parser):
    text = _help(parser(), "--model")
    for option in MODEL_OPTIONS:
        assert f"{option.name} ({option.description})" in text
    assert "model folder" in text


@pytest.mark.parametrize("parser", [
    lambda: _subparser("download"), lambda: _subparser("bench"), lambda: _subparser("doctor"),
], ids=["download", "bench", "doctor"])
def test_every_variant_option_offers_the_released_models(parser):
    (action,) = [action for action in parser()._actions if "--variant" in action.option_strings]
    assert tuple(action.choices) == VARIANTS
    for option in MODEL_OPTIONS:
        assert (f"{option.name} ({option.description})" in action.help) is (option.name in VARIANTS)


def test_the_addon_menu_lists_the_same_options():
    assert [item[0] for item in enum_items()] == [option.name for option in MODEL_OPTIONS]
    assert all(item[2][0].isupper() for item in enum_items())
