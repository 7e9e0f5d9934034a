import pytest
import torch

from gempo.nets import ConvDenoiser, MLPVelocityField
from gempo.paths import MaskedPath
from gempo.policies import ContinuousFlowPolicy, MaskedDiffusionPolicy
from gempo.samplers import euler_sample, masked_ancestral_sample, masked_nelbo
from tests.gempo.enumerable import ExactConditionalDenoiser, random_joint


def test_euler_integrates_constant_and_linear_fields():
    x_0, shift = torch.randn(6, 2), torch.randn(6, 2)
    torch.testing.assert_close(euler_sample(lambda x, t, c: c, x_0, shift, steps=7), x_0 + shift)
    decayed = euler_sample(lambda x, t, c: -x, x_0, torch.zeros(6, 0), steps=4)
    torch.testing.assert_close(decayed, x_0 * (1 - 0.25) ** 4)


def test_continuous_policy_samples_shapes_and_is_unbounded():
    field = MLPVelocityField(3, cond_dim=5, hidden=16, depth=1)
    torch.nn.init.constant_(field.net[-1].bias, 50.0)  # a constant velocity of 50
    policy = ContinuousFlowPolicy(field, dim=3, steps=4)
    cond = torch.randn(8, 5)
    torch.manual_seed(0)
    x = policy.sample(cond)
    torch.manual_seed(0)
    x_0 = torch.randn(8, 3)
    assert x.shape == (8, 3) and x.dtype == torch.float32
    torch.testing.assert_close(x, x_0 + 50.0)


def test_error_clip_caps_each_elements_squared_error():
    field = MLPVelocityField(2, cond_dim=0, hidden=8, depth=1)  # zero velocity at init
    x_1, cond = torch.tensor([[10.0, 0.0]]), torch.zeros(1, 0)
    clipped = ContinuousFlowPolicy(field, dim=2, error_clip=5.0)
    plain = ContinuousFlowPolicy(field, dim=2)
    torch.manual_seed(0)
    loss_clipped = clipped.per_sample_loss(x_1, cond).flow_matching
    torch.manual_seed(0)
    point = plain.path.sample(x_1, torch.rand(1))
    expected = (point.velocity.pow(2)).clamp(max=5.0).mean(-1)
    torch.testing.assert_close(loss_clipped, expected)
    assert loss_clipped.item() < plain.path.per_sample_loss(torch.zeros(1, 2), point).item()


def test_masked_sampler_shapes_dtype_and_reproducibility():
    policy = MaskedDiffusionPolicy(
        ConvDenoiser(4, channels=8, dilations=(1,), time_dim=8), 4, 12, steps=5
    )
    torch.manual_seed(3)
    a = policy.sample(torch.zeros(7, 0))
    torch.manual_seed(3)
    b = policy.sample(torch.zeros(7, 0))
    assert a.shape == (7, 12) and a.dtype == torch.long
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() < 4, "no [MASK] left after the last step"


def test_masked_sampler_draws_from_the_model_joint():
    vocab, length = 3, 3
    probs = random_joint(vocab, length)
    model = ExactConditionalDenoiser(probs, vocab, length)
    x = masked_ancestral_sample(model, MaskedPath(vocab), 4000, length, steps=40)
    empirical = torch.bincount(model.index(x), minlength=vocab**length).double() / len(x)
    # one step per token or fewer would give the product of marginals (TV ~0.4 here)
    assert 0.5 * (empirical - probs).abs().sum() < 0.06


@pytest.mark.parametrize("seed", [0, 1])
def test_nelbo_equals_exact_log_likelihood_when_enumerable(seed):
    vocab, length = 3, 3
    probs = random_joint(vocab, length, seed)
    model = ExactConditionalDenoiser(probs, vocab, length)
    x = model.sequences.repeat(200, 1)  # every sequence, 200 independent estimates each
    nelbo = masked_nelbo(model, MaskedPath(vocab), x, num_times=16)
    estimate = nelbo.reshape(200, -1).double().mean(0)
    exact = -probs.log()
    stderr = nelbo.reshape(200, -1).double().std(0) / 200**0.5
    assert torch.all((estimate - exact).abs() < 4 * stderr + 0.02), (estimate - exact).abs().max()
