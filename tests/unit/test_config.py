"""Every configuration dataclass: dict round trip, unknown keys and Literal choices refused, CLI flags and
form fields from the real type hints."""

import argparse

import pytest

from labelloop.al.simulation import SimulationConfig
from labelloop.config import ConfigMixin
from labelloop.data.dataset import ExportConfig
from labelloop.errors import ConfigError
from labelloop.finetune.config import RunConfig
from labelloop.llm import LLMLabelerConfig, PromptTemplate
from labelloop.quality.weak import WeakRules

CONFIGS = [RunConfig, ExportConfig, SimulationConfig, LLMLabelerConfig, PromptTemplate, WeakRules]


@pytest.mark.parametrize("cls", CONFIGS)
def test_contract_round_trip_unknown_keys_and_help(cls: type[ConfigMixin]):
    config = cls()
    assert cls.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=f"unknown {cls.config_name} settings \\['bogus'\\]"):
        cls.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="take the keys"):
        cls.from_dict(["not", "a", "mapping"])
    assert all(o.help for o in cls.options()), "every field explains itself"


def test_flags_come_from_type_hints_and_only_given_flags_override():
    parser = argparse.ArgumentParser()
    RunConfig.add_arguments(parser)
    args = parser.parse_args(["--task", "ner", "--lora-r", "4", "--class-weighting", "false",
                              "--target-modules", "query, value", "--learning-rate", "1e-4"])
    config = RunConfig.from_args(args, RunConfig(epochs=7.0))
    assert (config.task, config.lora_r, config.class_weighting) == ("ner", 4, False)
    assert config.target_modules == ["query", "value"] and config.learning_rate == 1e-4 and config.epochs == 7.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--task", "poetry"])  # Literal choices become argparse choices
    help_text = parser.format_help()
    assert "--method {lora,full,auto,setfit}" in help_text and "(default: auto)" in help_text


def test_literal_choices_are_checked_however_the_config_is_built():
    with pytest.raises(ConfigError, match="task must be one of classification, multi-label, ner, sft"):
        RunConfig(task="poetry")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="policy must be one of"):
        ExportConfig.from_dict({"policy": "whatever"})


def test_form_fields_have_readable_labels_and_kinds():
    options = {o.name: o for o in RunConfig.options()}
    assert options["lora_alpha"].label.startswith("LoRA scaling")
    assert options["method"].choices == ("lora", "full", "auto", "setfit")
    assert options["learning_rate"].kind == "float" and options["learning_rate"].optional
    assert options["target_modules"].kind == "list" and options["qlora"].kind == "bool"


def test_simulation_flags_keep_their_names():
    parser = argparse.ArgumentParser()
    SimulationConfig.add_arguments(parser)
    config = SimulationConfig.from_args(parser.parse_args(["--strategy", "margin,entropy+cluster", "--rounds", "3"]))
    assert config.strategies == ("margin", "entropy+cluster") and config.rounds == 3
