"""Config fields that describe themselves: default, help, choices and value check written once
(``option``); the command-line flags generated from them (``add_arguments``), the values a
command line gave (``apply_arguments``) and the check of a whole config section (``validate``).

Value checks (``positive_int``...) parse a flag's text and also test a value read from a file, so
a bad number stops a command with ``argument --NAME: must be ..., got ...`` (exit status 2) and
a bad ``config.json`` with ``SECTION.NAME must be ..., got ...``.
"""
import argparse
import dataclasses
import math
from collections.abc import Callable

FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max, without importing torch here


def checked(convert: Callable[[str], object], test: Callable[[object], bool], what: str):
    """A value check: called on text, ``convert(text)`` refused unless ``test(value)`` (an
    argparse type); ``.test`` and ``.what`` check values that are already parsed."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = what
    parse.test, parse.what = test, what
    return parse


positive_int = checked(int, lambda v: v > 0, "a positive integer")
non_negative_int = checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
non_negative_float = checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
unit_interval = checked(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
fraction = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def option(default, help: str, *, flag: str | None = "", check=None, choices: tuple | None = None,
           const=None, shown: str | None = None, metavar: str | None = None):
    """A dataclass field: ``default`` (a list is copied per instance), the ``help`` of its flag,
    its allowed ``choices`` or value ``check``. ``flag``: "" for ``--`` + the name with dashes,
    another name, or None for a field that no flag sets. ``const``: the value of the bare flag
    (an optional value). ``shown``: how help states the default, when not the value itself;
    ``metavar``: the value's name in help (default: the field's name in capitals)."""
    metadata = dict(help=help, flag=flag, check=check, choices=choices, const=const, shown=shown,
                    metavar=metavar)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field) -> str | None:
    """The command-line flag of ``field`` (None: it has none)."""
    flag = field.metadata.get("flag")
    if flag is None:
        return None
    return flag or "--" + field.name.replace("_", "-")


def validate(section: object, name: str) -> None:
    """Raise ValueError naming ``name.FIELD`` for a value outside its choices or failing its check
    (None passes: an unset optional value)."""
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        choices, check = field.metadata.get("choices"), field.metadata.get("check")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is None:
                continue
            if choices is not None and item not in choices:
                raise ValueError(f"{name}.{field.name} must be one of {choices}, got {item!r}")
            if check is not None and not check.test(item):
                raise ValueError(f"{name}.{field.name} must be {check.what}, got {item!r}")


def add_arguments(parser: argparse.ArgumentParser, section: type, name: str, title: str,
                  only: tuple[str, ...] | None = None) -> None:
    """Add the flags of the dataclass ``section`` (config section ``name``; ``only``: these
    fields) as the argument group ``title``. An absent flag leaves no attribute, so
    ``apply_arguments`` changes only what was given; help states each default."""
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(section):
        flag = flag_of(field)
        if flag is None or (only is not None and field.name not in only):
            continue
        meta = field.metadata
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        shown = meta["shown"] or (" ".join(map(str, default)) if isinstance(default, list) else default)
        arguments = dict(dest=f"{name}.{field.name}", default=argparse.SUPPRESS,
                         help=f"{meta['help']} (default: {shown})")
        if field.type is bool:
            arguments["action"] = argparse.BooleanOptionalAction
        else:
            arguments.update(type=meta["check"] or _scalar_type(field), choices=meta["choices"],
                             metavar=None if meta["choices"] else meta["metavar"] or field.name.upper())
            if isinstance(default, list):
                arguments["nargs"] = "*"
            elif meta["const"] is not None:
                arguments.update(nargs="?", const=meta["const"])
        group.add_argument(flag, **arguments)


def apply_arguments(args: argparse.Namespace, config: object) -> set[str]:
    """Set on ``config`` (sections as attributes) every value the command line gave; returns
    their ``section.field`` names."""
    given = {key for key in vars(args) if "." in key}
    for key in given:
        section, field = key.split(".")
        setattr(getattr(config, section), field, getattr(args, key))
    return given


def _scalar_type(field: dataclasses.Field):
    """The argparse type of an unchecked field: str, int or float (also inside ``X | None``)."""
    kinds = [kind for kind in (int, float, str) if kind is field.type or kind in getattr(field.type, "__args__", ())]
    return kinds[0] if kinds else str
