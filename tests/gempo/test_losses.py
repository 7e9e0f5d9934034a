import pytest
import torch

from gempo.errors import GempoError
from gempo.losses import GeMPOObjective, ReweightedLoss
from gempo.nets import ConvDenoiser, MLPVelocityField
from gempo.policies import ContinuousFlowPolicy, MaskedDiffusionPolicy
from gempo.weights import LinearWeight, RankWeight


def small_continuous_policy() -> ContinuousFlowPolicy:
    field = MLPVelocityField(2, cond_dim=3, hidden=32, depth=2)
    torch.nn.init.normal_(field.net[-1].weight, std=0.1)  # not the zero-initialised field
    return ContinuousFlowPolicy(field, dim=2, steps=4)


def test_uniform_weights_give_exactly_the_plain_loss_and_gradient():
    per_sample = torch.rand(16, requires_grad=True)
    loss = ReweightedLoss()(per_sample, torch.ones(16))
    (grad,) = torch.autograd.grad(loss, per_sample)
    plain = per_sample.mean()
    (plain_grad,) = torch.autograd.grad(plain, per_sample)
    assert torch.equal(loss, plain)
    assert torch.equal(grad, plain_grad)


def test_objective_with_equal_rewards_is_plain_flow_matching():
    policy = small_continuous_policy()
    x, cond = torch.randn(12, 2), torch.randn(12, 3)
    objective = GeMPOObjective(LinearWeight(beta=2.0), normalization="zscore")
    torch.manual_seed(5)
    step = objective(policy, x, cond, torch.full((3, 4), 0.7))
    grads = torch.autograd.grad(step.loss, list(policy.parameters()))
    torch.manual_seed(5)
    plain = policy.per_sample_loss(x, cond).flow_matching.mean()
    plain_grads = torch.autograd.grad(plain, list(policy.parameters()))
    torch.testing.assert_close(step.loss, plain)
    for g, p in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(g, p)


def test_negative_loss_clip_stops_repulsion_beyond_the_bound():
    loss_fn = ReweightedLoss(negative_loss_clip=2.0, max_negative_mass=None)
    weights = torch.tensor([1.0, 1.0, -1.0])
    far = torch.tensor([1.0, 1.0, 10.0], requires_grad=True)
    (grad_far,) = torch.autograd.grad(loss_fn(far, weights), far)
    assert grad_far[2] == 0, "a negatively weighted sample past the bound gets no gradient"
    near = torch.tensor([1.0, 1.0, 1.5], requires_grad=True)
    (grad_near,) = torch.autograd.grad(loss_fn(near, weights), near)
    torch.testing.assert_close(grad_near, torch.tensor([1.0, 1.0, -1.0]) / 3)


def test_negative_mass_is_capped_relative_to_positive_mass():
    loss_fn = ReweightedLoss(negative_loss_clip=None, max_negative_mass=0.5)
    torch.testing.assert_close(
        loss_fn.stabilized_weights(torch.tensor([1.0, 1.0, -4.0])), torch.tensor([1.0, 1.0, -1.0])
    )
    small = torch.tensor([2.0, -0.5])
    assert torch.equal(loss_fn.stabilized_weights(small), small), (
        "a cap that does not bind is a no-op"
    )


def test_data_anchor_adds_its_weighted_plain_loss_on_the_data():
    policy = small_continuous_policy()
    x, cond = torch.randn(12, 2), torch.randn(12, 3)
    data = (torch.randn(5, 3), torch.randn(5, 2))
    rewards = torch.randn(3, 4)
    anchored = GeMPOObjective(LinearWeight(), data_alpha=0.3)
    torch.manual_seed(2)
    step = anchored(policy, x, cond, rewards, data=data)
    torch.manual_seed(2)
    base = GeMPOObjective(LinearWeight())(policy, x, cond, rewards)
    plain_on_data = policy.per_sample_loss(data[1], data[0]).flow_matching.mean()
    torch.testing.assert_close(step.loss, base.loss + 0.3 * plain_on_data)
    assert float(step.stats["data_loss"]) == pytest.approx(plain_on_data.item())
    torch.manual_seed(2)
    unused = GeMPOObjective(LinearWeight())(policy, x, cond, rewards, data=data)
    assert torch.equal(unused.loss, base.loss) and "data_loss" not in unused.stats


def test_loss_and_objective_reject_bad_settings():
    with pytest.raises(GempoError, match="negative_loss_clip must be > 0"):
        ReweightedLoss(negative_loss_clip=0.0)
    with pytest.raises(GempoError, match="max_negative_mass must be >= 0"):
        ReweightedLoss(max_negative_mass=-1.0)
    with pytest.raises(GempoError, match="reg.alpha must be >= 0"):
        GeMPOObjective(LinearWeight(), reg_alpha=-0.1)
    with pytest.raises(GempoError, match="reg.data must be >= 0"):
        GeMPOObjective(LinearWeight(), data_alpha=-0.1)


def near_share(x: torch.Tensor, point: torch.Tensor, radius: float = 0.7) -> float:
    return (torch.linalg.norm(x - point, dim=-1) < radius).float().mean().item()


def test_negative_weight_repels_and_positive_weight_attracts_a_flow():
    policy = ContinuousFlowPolicy(MLPVelocityField(2, hidden=64, depth=2), dim=2, steps=8)
    good, bad = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])
    x = torch.cat([good.expand(64, 2), bad.expand(64, 2)])
    weights = torch.cat([torch.ones(64), -torch.ones(64)])
    no_cond = torch.zeros(128, 0)
    before = policy.sample(torch.zeros(4000, 0))
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    loss_fn = ReweightedLoss()
    for _ in range(60):
        loss = loss_fn(policy.per_sample_loss(x, no_cond).flow_matching, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = policy.sample(torch.zeros(4000, 0))
    assert near_share(after, good) > near_share(before, good) + 0.15
    assert near_share(after, bad) < 0.5 * near_share(before, bad)


def test_negative_weight_lowers_and_positive_weight_raises_sequence_likelihood():
    denoiser = ConvDenoiser(4, channels=16, dilations=(1, 2), time_dim=16)
    policy = MaskedDiffusionPolicy(denoiser, vocab_size=4, length=6, steps=6)
    good, bad = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 3, 2, 2, 1, 1])
    x = torch.stack([good] * 32 + [bad] * 32)
    weights = torch.cat([torch.ones(32), -torch.ones(32)])
    probe = torch.stack([good, bad]).repeat(32, 1)
    before = policy.log_likelihood(probe, num_times=8).reshape(32, 2).mean(0)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    loss_fn = ReweightedLoss()
    for _ in range(30):
        loss = loss_fn(policy.per_sample_loss(x, torch.zeros(64, 0)).flow_matching, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = policy.log_likelihood(probe, num_times=8).reshape(32, 2).mean(0)
    assert after[0] > before[0] + 1.0, "positive weight raises the log-likelihood"
    assert after[1] < before[1] - 1.0, "negative weight lowers the log-likelihood"


def small_masked_policy(trained: bool = True) -> MaskedDiffusionPolicy:
    denoiser = ConvDenoiser(4, channels=16, dilations=(1, 2), kernel_size=3, time_dim=16)
    if trained:
        torch.nn.init.normal_(denoiser.out.weight, std=1.0)  # not the uniform denoiser
    return MaskedDiffusionPolicy(denoiser, vocab_size=4, length=24, steps=4)


def test_uniform_denoiser_has_the_exact_nelbo_at_every_mask_count():
    # L/k * (k masked tokens x log 4) = L log 4 whatever k is: the any-order estimator has no
    # variance for the uniform model (the Bernoulli 1/(1 - t) estimator would)
    policy = small_masked_policy(trained=False)
    loss = policy.per_sample_loss(torch.randint(0, 4, (50, 24)), torch.zeros(50, 0))
    torch.testing.assert_close(
        loss.flow_matching, torch.full((50,), 24 * torch.log(torch.tensor(4.0)).item())
    )


@pytest.mark.parametrize("kind", ["continuous", "masked"])
def test_loss_times_average_stratified_points_without_bias_and_with_less_variance(kind):
    torch.manual_seed(0)
    if kind == "continuous":
        policy, x, cond = small_continuous_policy(), torch.randn(4, 2), torch.randn(4, 3)
    else:
        policy, x, cond = small_masked_policy(), torch.randint(0, 4, (4, 24)), torch.zeros(4, 0)
    with torch.no_grad():
        one = torch.stack([policy.per_sample_loss(x, cond).flow_matching for _ in range(800)])
        eight = torch.stack(
            [policy.per_sample_loss(x, cond, num_times=8).flow_matching for _ in range(100)]
        )
    assert eight.shape == (100, 4)
    # same expectation per sample (standard errors of both means), rows stay with their samples
    stderr = (one.var(0) / 800 + eight.var(0) / 100).sqrt()
    assert torch.all((one.mean(0) - eight.mean(0)).abs() < 4 * stderr)
    # eight points per sample: about an eighth of the variance (a quarter is a safe margin)
    assert torch.all(eight.var(0) < one.var(0) / 4)


def test_objective_passes_loss_times_and_rejects_bad_values():
    policy = small_continuous_policy()
    x, cond = torch.randn(8, 2), torch.randn(8, 3)
    objective = GeMPOObjective(LinearWeight(), loss_times=3)
    seen = []
    original = policy.per_sample_loss
    policy.per_sample_loss = lambda *a, **k: seen.append(k["num_times"]) or original(*a, **k)
    objective(policy, x, cond, torch.randn(2, 4))
    assert seen == [3]
    with pytest.raises(GempoError, match="loss_times must be >= 1, got 0"):
        GeMPOObjective(LinearWeight(), loss_times=0)
    with pytest.raises(GempoError, match="reward_cap must be a finite number or null, got 'high'"):
        GeMPOObjective(LinearWeight(), reward_cap="high")


def test_reward_cap_weights_every_reward_above_it_as_equal():
    policy = small_continuous_policy()
    x, cond = torch.randn(8, 2), torch.randn(8, 3)
    rewards = torch.tensor([[0.0, 1.0, 2.0, 3.0, 5.0, 9.0, 20.0, 100.0]])
    plain = GeMPOObjective(RankWeight())(policy, x, cond, rewards)
    capped = GeMPOObjective(RankWeight(), reward_cap=5.0)(policy, x, cond, rewards)
    top = capped.weights[0, 4:]
    assert torch.all(top == top[0]) and top[0] > capped.weights[0, 3]
    assert len(set(plain.weights[0, 4:].tolist())) == 4, "without a cap the top ranks differ"
    assert float(capped.stats["reward_max"]) == 100.0, "logged rewards are the uncapped ones"
    loose = GeMPOObjective(RankWeight(), reward_cap=1e3)(policy, x, cond, rewards)
    assert torch.equal(loose.weights, plain.weights), "a cap above every reward is a no-op"
    saturated = GeMPOObjective(RankWeight(), reward_cap=-1.0)(policy, x, cond, rewards)
    assert torch.all(saturated.weights == 0) and saturated.loss.item() == 0.0


def test_an_infinite_loss_of_a_negative_sample_is_clipped_not_nan():
    loss = ReweightedLoss(negative_loss_clip=2.0, max_negative_mass=None)
    value = loss(torch.tensor([1.0, float("inf")]), torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(value, torch.tensor((1.0 - 2.0) / 2))
