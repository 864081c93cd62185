"""One mixin that every configuration dataclass shares: dicts and JSON both ways, errors for unknown keys and
for values outside a ``Literal``, and the command line's flags and the dashboard's form fields, all read from
the fields' real type hints and their ``metadata={"help": ...}``.

Use it by subclassing next to ``@dataclass``::

    @dataclass
    class ExportConfig(ConfigMixin):
        policy: Literal["any", "agreement"] = field(default="any", metadata={"help": "which labels count"})

    ExportConfig.add_arguments(parser)            # --policy {any,agreement}
    config = ExportConfig.from_args(args)         # only the flags given override the defaults
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

from labelloop.errors import ConfigError

C = TypeVar("C", bound="ConfigMixin")


@dataclass(frozen=True)
class Option:
    """One field as a flag or a form widget. ``kind`` is bool, int, float, str, list or dict."""

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    optional: bool = False
    flag_name: str = ""
    label_text: str = ""

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name).replace("_", "-")

    @property
    def label(self) -> str:
        """A form label: ``metadata["label"]``, or the help text's first clause (``lora_alpha`` -> "LoRA scaling")."""
        text = self.label_text or self.help.split(";")[0].split(":")[0].split(" (")[0].strip() or self.name
        return text[0].upper() + text[1:]


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """The type inside ``X | None`` and whether None is allowed."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(typing.get_args(hint))
    return hint, False


def _kind(hint: Any) -> tuple[str, tuple[str, ...]]:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "str", tuple(str(a) for a in typing.get_args(hint))
    if origin in (list, tuple) or hint in (list, tuple):
        return "list", ()
    if origin is dict or hint is dict:
        return "dict", ()
    return {bool: "bool", int: "int", float: "float"}.get(hint, "str"), ()


class ConfigMixin:
    """Serialisation, validation, CLI flags and form fields for a configuration dataclass."""

    config_name: typing.ClassVar[str] = "configuration"  # what errors call it: "run", "prompt template", ...

    @classmethod
    def options(cls) -> list[Option]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            inner, optional = _unwrap(hints[f.name])
            kind, choices = _kind(inner)
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            out.append(Option(f.name, kind, default, f.metadata.get("help", ""), choices, optional,
                              f.metadata.get("flag", ""), f.metadata.get("label", "")))
        return out

    def check_choices(self) -> None:
        """Raise :class:`ConfigError` for a value outside its field's ``Literal`` choices."""
        for option in self.options():
            value = getattr(self, option.name)
            if option.choices and not (value is None and option.optional) and value not in option.choices:
                raise ConfigError(f"{option.name} must be one of {', '.join(option.choices)}, not {value!r}")

    @classmethod
    def from_dict(cls: type[C], data: Any) -> C:
        """Build from a dict (a parsed JSON or YAML file); unknown keys are an error that lists the known ones."""
        options = {o.name: o for o in cls.options()}
        if not isinstance(data, dict):
            raise ConfigError(f"the {cls.config_name} settings take the keys {sorted(options)}, not a "
                              f"{type(data).__name__}")
        unknown = sorted(set(data) - set(options))
        if unknown:
            raise ConfigError(f"unknown {cls.config_name} settings {unknown}; the {cls.config_name} settings take the "
                              f"keys {sorted(options)}")
        values = {k: tuple(v) if isinstance(v, list) and isinstance(options[k].default, tuple) else v
                  for k, v in data.items()}
        try:
            config = cls(**values)
        except TypeError as e:
            raise ConfigError(f"{cls.config_name} settings: {e}") from e
        config.check_choices()
        return config

    def to_dict(self) -> dict:
        return json.loads(self.to_json())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)  # type: ignore[call-overload]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
        """One flag per field, with its help text and default; values stay None unless given."""
        for o in cls.options():
            if o.name in exclude or o.kind == "dict":
                continue
            shown = ",".join(map(str, o.default)) if isinstance(o.default, (list, tuple)) else o.default
            text = f"{o.help} (default: {shown if shown not in (None, '') else 'none'})"
            if o.kind == "bool":
                parser.add_argument(o.flag, dest=o.name, choices=["true", "false"], default=None, help=text)
            elif o.kind == "list":
                parser.add_argument(o.flag, dest=o.name, default=None, help=text + "; comma-separated")
            else:
                parser.add_argument(o.flag, dest=o.name, default=None, choices=o.choices or None, help=text,
                                    type={"int": int, "float": float}.get(o.kind, str))

    @classmethod
    def from_args(cls: type[C], args: argparse.Namespace, base: C | None = None) -> C:
        """``base`` (default: the defaults) with every flag that was given applied."""
        values = base.to_dict() if base is not None else {}
        for o in cls.options():
            given = getattr(args, o.name, None)
            if given is None:
                continue
            if o.kind == "bool":
                given = given == "true"
            elif o.kind == "list":
                given = [x.strip() for x in given.split(",") if x.strip()] or None
            values[o.name] = given
        return cls.from_dict(values)
