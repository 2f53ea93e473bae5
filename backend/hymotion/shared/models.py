"""The model options, named and described once: every command's --model / --variant help and choices, the service,
and the add-on's Model menu read them here, so their words never drift apart.

Standard library only: the add-on imports it in Blender.
"""

from __future__ import annotations

from dataclasses import dataclass

LITE = "lite"
STANDARD = "standard"
TINY = "tiny-random"
DEFAULT_MODEL = LITE


@dataclass(frozen=True)
class ModelOption:
    name: str  # what --model takes, and the add-on's enum identifier
    label: str  # the add-on's menu entry
    description: str  # its tooltip, and the help text's words


MODEL_OPTIONS = (
    ModelOption(LITE, "Lite", "HY-Motion 1.0 Lite (0.46B): faster, needs less memory"),
    ModelOption(STANDARD, "Standard", "HY-Motion 1.0 (1B): the full model"),
    ModelOption(
        TINY, "Tiny (random, for testing)", "a tiny model with random weights: instant, but the motion is noise"
    ),
)
VARIANTS = (LITE, STANDARD)  # the released models, which `hymotion download` fetches
MODEL_FOLDER = "or a model folder (one converted by `hymotion convert`, or an official config.yml + latest.ckpt)"


def model_help(default: str = f"default: {DEFAULT_MODEL}") -> str:
    """The --model help of every command; ``default`` says what it takes when --model is left out."""
    options = "; ".join(f"{option.name} ({option.description})" for option in MODEL_OPTIONS)
    return f"model to run: {options}; {MODEL_FOLDER} ({default})"


def variant_help(default: str = f"default: {DEFAULT_MODEL}") -> str:
    """The --variant help (a released model only: no tiny model, no folder)."""
    options = "; ".join(f"{option.name} ({option.description})" for option in MODEL_OPTIONS if option.name in VARIANTS)
    return f"{options} ({default})"


def enum_items() -> list[tuple[str, str, str]]:
    """The add-on's Model menu (an EnumProperty's items): the options without the folder, which has its own field."""
    return [(option.name, option.label, option.description[:1].upper() + option.description[1:])
            for option in MODEL_OPTIONS]
