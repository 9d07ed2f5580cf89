"""Option groups: a set of options defined once and shared by every command that takes them.

A command declares one parameter where the group belongs in its ``--help``; ``option_group`` replaces
that parameter with the group's options and calls the command with the parameter set to what the
group's builder makes of them (a checked value), so a bad option is a one-line error before the
command does anything. The executor options (executor.py) and the sampling options (sampling.py) are
the two groups.
"""

from __future__ import annotations

import functools
import inspect
import typing
from types import SimpleNamespace
from typing import Any, Callable


def _resolved_annotations(command: Callable[..., Any], skip: set[str]) -> dict[str, Any]:
    """The command's parameter types as objects. Under ``from __future__ import annotations`` they are
    strings, from which Typer would lose the option names and help inside ``Annotated``. A type that
    names something imported for type checkers only (another group's parameter, which that group's
    decorator replaces) stays a string."""
    resolved = {}
    for name, annotation in command.__annotations__.items():
        if name in skip or name == "return":
            continue
        try:
            namespace = SimpleNamespace(__annotations__={name: annotation}, __globals__=command.__globals__)
            resolved[name] = typing.get_type_hints(namespace, include_extras=True)[name]
        except NameError:
            resolved[name] = annotation
    return resolved


def option_group(parameter: str, options: tuple[tuple[str, Any, Any], ...], build: Callable[..., Any]):
    """A decorator putting ``options`` ((name, annotated type, default) in --help order) in place of
    the command's ``parameter``, which receives ``build(*values)``. Decorators of several groups stack."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        if parameter not in signature.parameters:
            raise TypeError(f"{command.__name__} needs a parameter {parameter} (where its options go)")
        hints = _resolved_annotations(command, {parameter})
        parameters = []
        for p in signature.parameters.values():
            if p.name == parameter:
                parameters += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=hint)
                               for name, hint, default in options]
            else:
                parameters.append(p.replace(annotation=hints.get(p.name, p.annotation)))

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = build(*(kwargs.pop(name) for name, _, _ in options))
            return command(*args, **kwargs, **{parameter: value})

        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty}
        return wrapper

    return decorate
