import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gempo.errors import GempoError
from gempo.runs import CONFIG_DIR
from gempo.weights import (
    WEIGHT_FUNCTIONS,
    ExpWeight,
    LinearWeight,
    RankWeight,
    TopKWeight,
    build_weight,
    centered_ranks,
    check_finite_rewards,
    normalize_rewards,
)

ADVANTAGES = torch.linspace(-3.0, 3.0, 41).reshape(1, -1)


@pytest.mark.parametrize("name", sorted(WEIGHT_FUNCTIONS))
def test_weights_are_monotone_and_keep_shape(name):
    weight = build_weight(name)
    w = weight(ADVANTAGES.repeat(3, 1))
    assert w.shape == (3, 41)
    assert torch.all(w[:, 1:] >= w[:, :-1] - 1e-6), f"{name} is not monotone non-decreasing"
    assert bool((w < 0).any()) == weight.signed, f"{name}.signed disagrees with its values"


def test_exp_is_group_softmax_with_mean_one():
    a = torch.tensor([[0.0, 1.0, 2.0]])
    w = ExpWeight(tau=0.5)(a)
    expected = 3 * torch.softmax(a / 0.5, dim=-1)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))


def test_linear_on_zscores_has_mean_one_and_negative_mass():
    adv = normalize_rewards(torch.randn(4, 64), "zscore")
    w = LinearWeight(beta=1.0)(adv)
    torch.testing.assert_close(w.mean(dim=-1), torch.ones(4), atol=1e-5, rtol=0)
    assert (w < 0).any()


def test_topk_marks_the_best_with_mean_one():
    w = TopKWeight(k=2)(torch.tensor([[0.1, 0.9, 0.5, 0.7]]))
    torch.testing.assert_close(w, torch.tensor([[0.0, 2.0, 0.0, 2.0]]))
    with pytest.raises(GempoError, match="exceeds the group size"):
        TopKWeight(k=5)(torch.zeros(1, 4))


def test_rank_weight_is_invariant_to_monotone_reward_transforms():
    rewards = torch.randn(2, 16)
    w1 = RankWeight()(normalize_rewards(rewards, "zscore"))
    w2 = RankWeight()(normalize_rewards(torch.exp(3 * rewards) + 7, "zscore"))
    torch.testing.assert_close(w1, w2)


def test_centered_ranks_average_ties():
    r = centered_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0]]))
    torch.testing.assert_close(r, torch.tensor([[2.5, 0.0, 2.5, 1.0]]) * 2 / 3 - 1)


def test_normalizations():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    z = normalize_rewards(rewards, "zscore")
    torch.testing.assert_close(z[0].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(z[0].std(), torch.tensor(1.0), atol=1e-4, rtol=0)
    assert torch.all(z[1] == 0), "a group with equal rewards has zero advantages"
    torch.testing.assert_close(
        normalize_rewards(rewards, "center")[0], torch.tensor([-2.0, -1.0, 0.0, 3.0])
    )
    assert torch.equal(normalize_rewards(rewards, "none"), rewards)
    torch.testing.assert_close(
        normalize_rewards(rewards, "rank")[0], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_weight("softmaxx"), "unknown weight function 'softmaxx'"),
        (lambda: build_weight("exp", tau=0.0), "weight.tau must be > 0, got 0.0"),
        (lambda: build_weight("linear", beta=-1.0), "weight.beta must be > 0"),
        (lambda: build_weight("exp", temperature=1.0), "weight 'exp'"),
        (lambda: check_finite_rewards(torch.tensor([[1.0, float("nan")]])), "1 non-finite value"),
        (lambda: normalize_rewards(torch.tensor([[1.0], [2.0]]), "zscore"), "group_size >= 2"),
        (lambda: normalize_rewards(torch.ones(2, 3), "minmax"), "unknown normalization 'minmax'"),
    ],
)
def test_bad_input_gives_one_clear_error(call, message):
    with pytest.raises(GempoError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_group_of_one_is_fine_without_zscore():
    assert torch.equal(normalize_rewards(torch.tensor([[2.0], [3.0]]), "center"), torch.zeros(2, 1))


@pytest.mark.parametrize("name", sorted(WEIGHT_FUNCTIONS))
def test_every_weight_has_a_config_building_the_registered_class(name):
    cfg = OmegaConf.load(CONFIG_DIR / "weight" / f"{name}.yaml")
    assert type(instantiate(cfg)) is WEIGHT_FUNCTIONS[name]


def test_no_config_without_a_registered_weight():
    names = {p.stem for p in (CONFIG_DIR / "weight").glob("*.yaml")}
    assert names == set(WEIGHT_FUNCTIONS)
