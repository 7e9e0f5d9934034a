import copy
import math

import pytest
import pytorch_lightning as pl
import torch

from gempo.errors import GempoError
from gempo.losses import GeMPOObjective
from gempo.module import (
    AnchorController,
    BestFeasibleSnapshot,
    ContextStream,
    DataReplay,
    GeMPOModule,
    fit_steps,
)
from gempo.toys import ModesBandit2D, MotifBandit, run_toy
from gempo.weights import ExpWeight, LinearWeight, SimplexLinearWeight


@pytest.mark.parametrize(
    "weight", [ExpWeight(tau=1.0), LinearWeight(beta=1.0)], ids=["exp", "linear"]
)
@pytest.mark.slow
def test_gempo_moves_the_flow_onto_the_best_mode(weight):
    toy = ModesBandit2D()
    result = run_toy(toy, weight, steps=150)
    assert result.base_reward < 0.15
    assert result.final_reward > result.base_reward + 0.5


@pytest.mark.parametrize(
    "weight", [ExpWeight(tau=1.0), LinearWeight(beta=1.0)], ids=["exp", "linear"]
)
@pytest.mark.slow
def test_gempo_raises_the_motif_reward_of_a_masked_model(weight):
    result = run_toy(MotifBandit(), weight, steps=100, group_size=96)
    assert result.base_reward < 0.55
    assert result.final_reward > result.base_reward + 0.25


def test_toy_runs_are_reproducible_per_seed():
    a = run_toy(ModesBandit2D(), LinearWeight(), steps=10, seed=4)
    b = run_toy(ModesBandit2D(), LinearWeight(), steps=10, seed=4)
    c = run_toy(ModesBandit2D(), LinearWeight(), steps=10, seed=5)
    assert a == b
    assert a != c


def fit(module: GeMPOModule, steps: int) -> None:
    fit_steps(module, steps, groups=2)


def make_module(reward=None, objective=None, **kwargs) -> GeMPOModule:
    toy = ModesBandit2D()
    return GeMPOModule(
        policy=toy.base_policy(hidden=16),
        reward=reward or toy,
        objective=objective or GeMPOObjective(LinearWeight()),
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
        group_size=8,
        **kwargs,
    )


def same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_proposal_policy_is_refreshed_on_schedule():
    module = make_module(refresh_every=3)
    fit(module, 2)
    assert not same_parameters(module.proposal, module.policy)
    fit(module, 1)  # the module counts its own optimizer steps across trainers: 3 in all
    assert module.optimizer_steps == 3
    assert same_parameters(module.proposal, module.policy)
    assert not any(p.requires_grad for p in module.proposal.parameters())


def test_ema_is_what_the_module_samples_from():
    module = make_module(ema_decay=0.9)
    fit(module, 4)
    assert module.sampling_policy() is module.ema.module
    assert not same_parameters(module.ema.module, module.policy)


def test_each_scored_batch_is_fitted_updates_per_batch_times():
    toy = ModesBandit2D()
    calls = []
    module = make_module(
        reward=lambda cond, x: calls.append(x.clone()) or toy(cond, x), updates_per_batch=3
    )
    fit(module, 7)  # batches drawn at steps 0, 3 and 6
    assert len(calls) == 3 and int(module.samples_scored) == 3 * 16
    assert torch.equal(module.batch[1], calls[-1])
    assert not torch.equal(calls[0], calls[1])


def test_non_finite_reward_is_a_clear_error():
    module = make_module(reward=lambda cond, x: torch.full((x.shape[0],), float("nan")))
    with pytest.raises(GempoError, match="non-finite"):
        fit(module, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_size": 0}, "group_size must be >= 1"),
        ({"refresh_every": 0}, "refresh_every must be >= 1"),
        ({"ema_decay": 1.5}, "ema_decay must be in"),
        ({"updates_per_batch": 0}, "updates_per_batch must be >= 1"),
    ],
)
def test_module_rejects_bad_settings(kwargs, message):
    toy = ModesBandit2D()
    settings = {"group_size": 8, **kwargs}
    with pytest.raises(GempoError, match=message):
        GeMPOModule(
            toy.base_policy(), toy, GeMPOObjective(LinearWeight()), torch.optim.Adam, **settings
        )


def test_context_stream_rejects_empty_groups():
    with pytest.raises(GempoError, match="groups"):
        ContextStream(groups=0)


def test_data_replay_draws_rows_of_its_data_reproducibly():
    x = torch.arange(20.0).reshape(10, 2)
    replay = DataReplay(x, batch_size=32)
    torch.manual_seed(0)
    cond, drawn = replay.draw(torch.device("cpu"))
    assert cond.shape == (32, 0) and drawn.shape == (32, 2)
    assert all(any(torch.equal(row, data_row) for data_row in x) for row in drawn)
    assert len({tuple(row.tolist()) for row in drawn}) > 5, "uniform over the rows"
    torch.manual_seed(0)
    assert torch.equal(replay.draw(torch.device("cpu"))[1], drawn)
    for kwargs, message in (
        ({"x": torch.zeros(0, 2)}, "empty"),
        ({"x": x, "batch_size": 0}, "data_batch must be >= 1"),
        ({"x": x, "cond": torch.zeros(3, 1)}, "3 conditions for 10 samples"),
    ):
        with pytest.raises(GempoError, match=message):
            DataReplay(**kwargs)


def test_data_replay_changes_nothing_without_a_data_weight():
    replay = DataReplay(torch.randn(50, 2))
    torch.manual_seed(3)
    plain = make_module()
    fit(plain, 3)
    torch.manual_seed(3)
    with_replay = make_module(data=replay)  # objective.data_alpha = 0: never drawn
    fit(with_replay, 3)
    assert same_parameters(plain.policy, with_replay.policy)
    torch.manual_seed(3)
    anchored = make_module(data=replay)
    anchored.objective.data_alpha = 1.0
    fit(anchored, 3)
    assert not same_parameters(plain.policy, anchored.policy)


def test_anchor_controller_raises_the_weight_while_the_samples_drift():
    def control() -> AnchorController:
        return AnchorController(target=0.5, start=0.02, rate=2.0, low=0.01)

    assert control().update(0.3) == pytest.approx(0.02 * math.exp(0.4))  # too far: up
    assert control().update(0.7) == pytest.approx(0.02 * math.exp(-0.4))  # close: down
    assert control().update(10.0) == 0.01  # never below the floor
    assert control().update(-10.0) == 1.0  # nor above the ceiling
    anchor = control()
    anchor.update(0.3)
    assert anchor.update(0.3) == pytest.approx(0.02 * math.exp(0.8))  # its state carries on
    restored = control()
    restored.load_state_dict(anchor.state_dict())
    assert restored.alpha == anchor.alpha
    for kwargs, message in (
        ({"rate": 0.0}, "data_rate must be > 0"),
        ({"low": 0.0}, "0 < low"),
        ({"start": 0.0}, "reg.data must be > 0"),
    ):
        with pytest.raises(GempoError, match=message):
            AnchorController(**{"target": 0.5, "start": 0.02, **kwargs})
    with pytest.raises(GempoError, match="needs data to replay and reg.data > 0"):
        make_module(anchor=control(), closeness=lambda x: 0.0)
    data = DataReplay(torch.zeros(4, 2))
    objective = GeMPOObjective(LinearWeight(), data_alpha=0.1)
    with pytest.raises(GempoError, match="needs closeness"):
        make_module(anchor=control(), data=data, objective=objective)


@pytest.mark.slow
def test_adaptive_anchor_holds_the_policy_near_its_data():
    # the data: the base policy's own N(0, I); the reward pulls the flow to the mode at (1.5, 1.5)
    data = DataReplay(torch.randn(512, 2), batch_size=64)

    def closeness(x: torch.Tensor) -> float:  # minus the batch mean's distance from the data's
        return -x.mean(0).norm().item()

    def final_drift(anchor: AnchorController | None) -> tuple[float, GeMPOModule]:
        torch.manual_seed(0)
        objective = GeMPOObjective(LinearWeight(), data_alpha=1e-3)
        module = make_module(objective=objective, data=data, anchor=anchor, closeness=closeness)
        fit(module, 120)
        return -closeness(module.proposal.sample(torch.zeros(256, 0))), module

    fixed, _ = final_drift(None)
    held, module = final_drift(AnchorController(target=-0.5, start=1e-3, rate=5.0, high=10.0))
    assert fixed > 1.0, "the tiny fixed anchor lets the reward pull the flow away"
    assert held < 0.75 and held < fixed - 0.5
    assert module.anchor.alpha > 2e-3, "held above its floor of 1e-3"
    assert module.data_weight() == module.anchor.alpha
    assert module.objective.data_alpha == 1e-3, "the configured weight is not state"


def test_selection_keeps_the_best_batch_that_meets_the_constraint():
    select = BestFeasibleSnapshot(min_closeness=0.5)
    policy = torch.nn.Linear(2, 1)
    offered = []
    # (median reward, closeness): the best feasible is the third; the fourth is better, too far
    for step, (reward, closeness) in enumerate([(1.0, 0.9), (0.5, 0.8), (2.0, 0.6), (9.0, 0.4)]):
        with torch.no_grad():
            policy.weight.fill_(step)
        offered.append(copy.deepcopy(policy.state_dict()))
        select.observe(policy, torch.tensor([[reward - 1, reward, reward + 5]]), closeness, step)
    assert select.step == 2 and select.reward == 2.0 and select.closeness == 0.6
    assert torch.equal(select.state["weight"], offered[2]["weight"])
    restored = BestFeasibleSnapshot(min_closeness=0.5)
    restored.load_state_dict(select.state_dict())
    assert restored.summary() == select.summary()
    assert BestFeasibleSnapshot(0.95).summary()["step"] is None


def test_module_samples_the_selected_behaviour_policy():
    # feasible = the batch mean near the origin: early batches only, as the flow drifts away
    behaviour_at: dict[int, torch.nn.Module] = {}

    def make(min_closeness: float) -> GeMPOModule:
        def closeness(x: torch.Tensor) -> float:  # also records the policy that drew x
            behaviour_at[module.optimizer_steps] = copy.deepcopy(module.proposal)
            return -x.mean(0).norm().item()

        torch.manual_seed(0)
        module = make_module(
            ema_decay=0.5, closeness=closeness, select=BestFeasibleSnapshot(min_closeness)
        )
        return module

    module = make(min_closeness=-0.3)
    fit(module, 6)
    chosen = module.select.step
    assert chosen is not None
    assert same_parameters(module.sampling_policy(), behaviour_at[chosen])
    assert not same_parameters(module.sampling_policy(), module.ema.module)
    with pytest.raises(GempoError, match="needs closeness"):
        make_module(select=BestFeasibleSnapshot(0.0))
    never = make(min_closeness=10.0)
    fit(never, 2)
    assert never.sampling_policy() is never.ema.module  # nothing feasible: the EMA


def test_resumed_training_repeats_the_uninterrupted_run(tmp_path):
    def trainer(steps: int) -> pl.Trainer:
        return pl.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )

    def stream() -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(ContextStream(groups=2), batch_size=None)

    def module() -> GeMPOModule:  # any statistic will do: here, the batch mean's norm
        return make_module(
            updates_per_batch=2,
            ema_decay=0.5,
            closeness=lambda x: x.mean(0).norm().item(),
            select=BestFeasibleSnapshot(min_closeness=0.4),
        )

    torch.manual_seed(0)
    straight = module()
    trainer(7).fit(straight, stream())

    torch.manual_seed(0)
    first = module()
    interrupted = trainer(3)  # stops between the two updates of the second batch
    interrupted.fit(first, stream())
    interrupted.save_checkpoint(tmp_path / "last.ckpt")
    torch.manual_seed(123)  # whatever the RNG did since, the checkpoint's state is restored
    resumed = module()
    trainer(7).fit(resumed, stream(), ckpt_path=tmp_path / "last.ckpt")
    assert same_parameters(resumed.policy, straight.policy)
    assert same_parameters(resumed.ema, straight.ema)
    assert straight.select.step is not None and straight.select.step < 3  # before the cut
    assert resumed.select.summary() == straight.select.summary()
    assert same_parameters(resumed.sampling_policy(), straight.sampling_policy())


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_leaves_the_learned_temperature_alone(algorithm):
    module = make_module(objective=GeMPOObjective(SimplexLinearWeight(target_kl=1.0)))
    parameters = [*module.policy.parameters(), *module.objective.temperature_parameters()]
    for p in parameters:
        p.grad = torch.full_like(p, 3.0)
    module.configure_gradient_clipping(None, 1e-3, algorithm)
    (log_tau,) = module.objective.temperature_parameters()
    assert torch.equal(log_tau.grad, torch.full_like(log_tau, 3.0))
    grads = torch.cat([p.grad.flatten() for p in module.policy.parameters()])
    assert (grads.norm() if algorithm == "norm" else grads.abs().max()) <= 1e-3 + 1e-9
