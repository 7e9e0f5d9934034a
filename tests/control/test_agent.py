"""Actors, critic targets and the observation normalizer, on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from control.actors import FlowActor, GaussianActor
from control.agent import build_agent
from control.critics import ObservationNormalizer, TwinCritic
from control.profiling import SectionTimer
from control.replay import Transitions
from gempo.errors import GempoError
from gempo.losses import GeMPOObjective
from gempo.runs import CONFIG_DIR
from gempo.weights import LinearWeight, SimplexExpWeight, SimplexLinearWeight


class QuadraticCritic(TwinCritic):
    """A fixed critic ``Q(s, a) = -|a - target|^2`` for both heads."""

    def __init__(self, target: float) -> None:
        super().__init__(obs_dim=2, act_dim=1, hidden=4, depth=1)
        self.target = target

    def forward(self, obs, actions):
        q = -(actions - self.target).pow(2).sum(-1)
        return torch.stack([q, q])


def small_actor(obs_dim: int = 2, act_dim: int = 1, lr: float = 1e-3, **kwargs) -> FlowActor:
    """A small flow actor (z-scored linear weights unless ``objective`` is given)."""
    sizes = {"hidden": 8, "depth": 1, "steps": 2, **kwargs}
    return FlowActor(
        obs_dim=obs_dim,
        act_dim=act_dim,
        objective=sizes.pop("objective", GeMPOObjective(LinearWeight())),
        optimizer=lambda p: torch.optim.Adam(p, lr=lr),
        **sizes,
    )


def test_gempo_actor_update_moves_the_flow_toward_high_q_actions():
    torch.manual_seed(0)
    actor = small_actor(
        lr=3e-3,
        objective=GeMPOObjective(
            SimplexLinearWeight(target_kl=1.0), normalization="auto", temperature_lr=3e-2
        ),
        hidden=32,
        depth=2,
        steps=4,
        group_size=16,
        proposal_every=10,
    )
    critic, obs = QuadraticCritic(target=0.6), torch.randn(32, 2)
    before = actor.act(obs, critic, "eval_raw")  # untrained: tanh of N(0, 1)
    for _ in range(120):
        actor.update(obs, critic, SectionTimer())
    after = actor.act(obs, critic, "eval_raw")
    assert (before - 0.6).abs().mean() > 0.5
    assert (after - 0.6).abs().mean() < 0.12


def test_actor_update_samples_every_state_and_sample_in_one_batched_solve():
    actor = small_actor(act_dim=3, hidden=16, steps=5, group_size=8)
    batch_sizes: list[tuple[str, int]] = []
    for name in ("proposal", "policy"):
        getattr(actor, name).velocity_field.register_forward_hook(
            lambda m, args, out, name=name: batch_sizes.append((name, args[0].shape[0]))
        )
    timer = SectionTimer(enabled=True)
    stats = actor.update(torch.randn(10, 2), TwinCritic(2, 3, hidden=8, depth=1), timer)
    # the frozen proposal: 5 Euler steps over all 10 x 8 rows; then one flow-matching pass of
    # the policy over the same rows
    assert batch_sizes == [("proposal", 80)] * 5 + [("policy", 80)]
    assert {"actor_sample", "actor_step"} <= set(timer.mean_ms())
    assert math.isfinite(stats["actor/loss"]) and "actor/weight_mean" in stats


def test_best_of_candidates_picks_the_highest_q_action():
    torch.manual_seed(1)
    actor = small_actor(steps=1)
    critic = QuadraticCritic(target=1.0)  # untrained flow: tanh of N(0, 1)
    one = actor.best_of(torch.zeros(256, 2), critic, candidates=1)
    best = actor.best_of(torch.zeros(256, 2), critic, candidates=16)
    assert best.mean() > one.mean() + 0.5 and best.abs().max() <= 1.0


def test_critic_target_bootstraps_through_truncation_but_not_termination(make_cfg):
    cfg = make_cfg("gamma=0.5")
    agent = build_agent(cfg, obs_dim=4, act_dim=1, device=torch.device("cpu"))
    for p in agent.target_critic.parameters():
        torch.nn.init.zeros_(p)
    torch.nn.init.constant_(agent.target_critic.q1[-1].bias, 10.0)
    torch.nn.init.constant_(agent.target_critic.q2[-1].bias, 12.0)
    batch = Transitions(
        torch.randn(2, 4),
        torch.zeros(2, 1),
        torch.tensor([1.0, 1.0]),
        torch.randn(2, 4),
        terminated=torch.tensor([1.0, 0.0]),
    )
    torch.testing.assert_close(agent.critic_target(batch), torch.tensor([1.0, 1.0 + 0.5 * 10.0]))


def test_sac_log_prob_matches_the_tanh_transformed_gaussian():
    torch.manual_seed(0)
    actor = GaussianActor(obs_dim=3, act_dim=2, optimizer=lambda p: torch.optim.Adam(p), hidden=8)
    obs = torch.randn(5, 3)
    torch.manual_seed(1)
    actions, log_prob = actor.sample(obs)
    mean, log_std = actor.net(obs).chunk(2, dim=-1)
    log_std = actor.LOG_STD_MIN + 0.5 * (actor.LOG_STD_MAX - actor.LOG_STD_MIN) * (
        torch.tanh(log_std) + 1
    )
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    torch.testing.assert_close(
        log_prob, dist.log_prob(actions.clamp(-0.999999, 0.999999)).sum(-1), atol=1e-3, rtol=1e-3
    )


def test_observation_normalizer_matches_batch_statistics():
    data = torch.randn(300, 3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]) + 7.0
    norm = ObservationNormalizer(3, enabled=True)
    for chunk in data.split(37):
        norm.update(chunk)
    torch.testing.assert_close(norm.mean, data.mean(0))
    torch.testing.assert_close(norm.var, data.var(0, unbiased=False))
    assert norm(data.float()).mean(0).abs().max() < 1e-3
    off = ObservationNormalizer(3, enabled=False)
    off.update(data)
    assert torch.equal(off(data.float()), data.float())


def test_every_weight_config_builds_the_gempo_objective(make_cfg):
    for name in sorted(p.stem for p in (CONFIG_DIR / "weight").glob("*.yaml")):
        cfg = make_cfg(f"weight={name}", "agent.actor.group_size=8")
        actor = instantiate(cfg.agent.actor)(obs_dim=4, act_dim=1)
        stats = actor.update(torch.randn(6, 4), TwinCritic(4, 1, hidden=8), SectionTimer())
        assert math.isfinite(stats["actor/loss"]), name


def test_the_frozen_proposal_refreshes_on_schedule_and_only_then():
    torch.manual_seed(0)
    actor = small_actor(lr=1e-2, group_size=4, proposal_every=3)
    critic, obs = QuadraticCritic(target=0.5), torch.randn(8, 2)

    def same() -> bool:
        pairs = zip(actor.proposal.parameters(), actor.policy.parameters(), strict=True)
        return all(torch.equal(a, b) for a, b in pairs)

    initial = [p.clone() for p in actor.proposal.parameters()]
    history = []
    for _ in range(7):
        actor.update(obs, critic, SectionTimer())
        history.append(same())
    assert history == [False, False, True, False, False, True, False]
    assert not any(p.requires_grad for p in actor.proposal.parameters())
    refreshed = zip(initial, actor.proposal.parameters(), strict=True)
    assert not all(torch.equal(a, b) for a, b in refreshed)
    assert actor.state_dict()["_extra_state"] == {"optimizer_steps": 7}  # times the refresh


def test_flow_actions_never_sit_on_the_box_faces_at_initialisation():
    """Clamped N(0, I) samples in 6-d put about 90% of actions on a face; tanh puts none."""
    torch.manual_seed(0)
    actor = small_actor(obs_dim=3, act_dim=6)
    obs = torch.randn(4000, 3)
    latents = actor.sample_latents(actor.policy, obs)
    actions = actor.act(obs, QuadraticCritic(0.0), "eval_raw")
    assert (latents.abs() > 1).any(-1).float().mean() > 0.85  # what clamping would pile up
    assert (actions.abs() >= 0.999).any(-1).float().mean() < 0.01
    assert actions.abs().max() < 1.0


def test_proposal_noise_on_the_latent_keeps_candidates_off_the_faces():
    """Action noise near a face clamps candidates onto it (latent ``atanh(0.999)``); the same
    noise on the latent moves them along ``tanh`` and clamps almost none inside the box."""
    obs = torch.randn(4000, 3)
    shares = {}
    for space in ("action", "latent"):
        torch.manual_seed(0)
        actor = small_actor(obs_dim=3, act_dim=6, proposal_noise=0.2, proposal_noise_space=space)
        with torch.no_grad():  # a constant velocity 2.5: latents N(2.5, 1), actions near a face
            actor.proposal.velocity_field.net[-1].weight.zero_()
            actor.proposal.velocity_field.net[-1].bias.fill_(2.5)
        torch.manual_seed(1)
        latents = actor.sample_latents(actor.proposal, obs)
        noise = 0.2 * torch.randn_like(latents)
        torch.manual_seed(1)
        actions = actor.propose(obs)
        expected = torch.tanh(latents + noise) if space == "latent" else torch.tanh(latents) + noise
        torch.testing.assert_close(actions, expected.clamp(-0.999, 0.999))
        inside = (latents.abs() < 3.0).all(-1)  # the proposal's own action off the faces
        shares[space] = (actions[inside].abs() >= 0.999).any(-1).float().mean().item()
    assert shares["action"] > 0.5
    assert shares["latent"] < 0.01


def test_an_unknown_proposal_noise_space_is_one_error_naming_the_key():
    with pytest.raises(GempoError, match="agent.actor.proposal_noise_space must be one of"):
        small_actor(proposal_noise_space="box")


def test_an_unreachable_kl_target_stops_when_the_actor_is_built():
    with pytest.raises(GempoError, match="cannot be held with groups of 8"):
        small_actor(objective=GeMPOObjective(SimplexExpWeight(target_kl=2.5)), group_size=8)


def test_a_checkpoint_from_a_capturable_run_loads_on_the_cpu(make_cfg):
    """A GPU run with compiled steps saves ``capturable`` optimizer groups; a CPU run (where
    Adam cannot be capturable) that loads its checkpoint takes its own setting."""
    cfg = make_cfg(agent="sac")
    batch = Transitions(torch.randn(8, 4), torch.rand(8, 1) * 2 - 1, torch.randn(8),
                        torch.randn(8, 4), torch.zeros(8))  # fmt: skip
    saved = build_agent(cfg, obs_dim=4, act_dim=1, device=torch.device("cpu"))
    saved.update(batch)
    state = saved.checkpoint_state()
    for optimizer in state["optimizers"].values():
        for group in optimizer["param_groups"]:
            group["capturable"] = True  # as written on a GPU
    loaded = build_agent(cfg, obs_dim=4, act_dim=1, device=torch.device("cpu"))
    loaded.load_checkpoint_state(state)
    groups = [g for o in loaded.optimizers.values() for g in o.param_groups]
    assert groups and not any(g["capturable"] for g in groups)
    loaded.update(batch)  # a capturable Adam would refuse CPU tensors here
