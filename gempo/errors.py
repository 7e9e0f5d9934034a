"""User-facing errors: one clear line, no traceback from deep inside torch."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf.errors import MissingMandatoryValue

F = TypeVar("F", bound=Callable[..., object])


class GempoError(ValueError):
    """Bad input or configuration. The message names the file/field/value and what was expected."""


def find_user_error(err: BaseException) -> GempoError | None:
    """The :class:`GempoError` behind ``err`` (Hydra's ``instantiate`` wraps it), if any; a
    config value left ``???``, and an override that Hydra's compose API cannot apply (an
    unknown key or group option, a malformed override), become one too."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, GempoError):
            return seen
        if isinstance(seen, MissingMandatoryValue):
            key = seen.full_key or "a ??? option"
            return GempoError(f"{key} has no value; set it on the command line ({key}=...)")
        if isinstance(seen, ConfigCompositionException | OverrideParseException):
            text = " ".join(line.strip() for line in str(seen).splitlines() if line.strip())
            return GempoError(text.split(" Config search path:")[0])  # not the search path
        seen = seen.__cause__ or seen.__context__
    return None


def exit_on_user_error(main: F) -> F:
    """Wrap a command-line entry point so a :class:`GempoError` prints one line and exits 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - re-raised unless it is a user error
            user_error = find_user_error(err)
            if user_error is None:
                raise
            print(f"error: {user_error}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
