"""User errors: a GempoError anywhere in the chain, or a ``???`` config value, is one line."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gempo.errors import GempoError, exit_on_user_error, find_user_error
from gempo.runs import compose_config


def test_missing_config_value_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = OmegaConf.create({"oracle": {"_target_": "builtins.dict", "finetune": "???"}})

    @exit_on_user_error
    def main() -> None:
        instantiate(cfg.oracle)

    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: oracle.finetune has no value; set it on the command line (oracle.finetune=...)"
    )


def test_wrapped_gempo_error_is_found_and_other_errors_are_not() -> None:
    inner = GempoError("model.steps: invalid value 0")
    try:
        try:
            raise inner
        except GempoError as err:
            raise RuntimeError("instantiate failed") from err
    except RuntimeError as outer:
        assert find_user_error(outer) is inner
    assert find_user_error(KeyError("x")) is None


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("agent.actor.nosuch=1", "Could not override 'agent.actor.nosuch'."),
        ("env=nosuch", "Could not find 'env/nosuch' Available options in 'env': ant "),
        ("agent.actor.lr", "Error parsing override 'agent.actor.lr'"),
    ],
)
def test_an_override_compose_cannot_apply_is_one_line(
    override: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    @exit_on_user_error
    def main() -> None:  # a script composing a config, as the benchmarks do
        compose_config("control_train", [override])

    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err and err.count("\n") == 1
    assert "search path" not in err
