"""The replay buffer: ring order, sampling, checkpoint round trips."""

from __future__ import annotations

import torch

from control.replay import ReplayBuffer, Transitions


def _rows(start: int, n: int) -> Transitions:
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return Transitions(
        obs=ids[:, None].repeat(1, 3),
        actions=ids[:, None] / 100,
        rewards=ids,
        next_obs=ids[:, None].repeat(1, 3) + 1,
        terminated=(ids % 2 == 0).float(),
    )


def test_ring_buffer_overwrites_the_oldest_rows_and_samples_stored_ones():
    buffer = ReplayBuffer(5, obs_dim=3, act_dim=1, device=torch.device("cpu"))
    buffer.add(_rows(0, 3))
    buffer.add(_rows(3, 4))  # wraps: rows 5, 6 overwrite 0, 1
    assert len(buffer) == 5 and buffer.position == 2
    assert sorted(buffer.rewards.tolist()) == [2, 3, 4, 5, 6]
    batch = buffer.sample(64, generator=torch.Generator().manual_seed(0))
    assert set(batch.rewards.tolist()) <= {2, 3, 4, 5, 6}
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)
    torch.testing.assert_close(batch.terminated, (batch.rewards % 2 == 0).float())


def test_state_dict_round_trip_is_exact_and_keeps_chronology_on_a_new_capacity():
    buffer = ReplayBuffer(5, obs_dim=3, act_dim=1, device=torch.device("cpu"))
    buffer.add(_rows(0, 7))
    same = ReplayBuffer(5, obs_dim=3, act_dim=1, device=torch.device("cpu"))
    same.load_state_dict(buffer.state_dict())
    torch.testing.assert_close(same.rewards, buffer.rewards)
    assert (same.position, same.size) == (buffer.position, buffer.size)
    bigger = ReplayBuffer(8, obs_dim=3, act_dim=1, device=torch.device("cpu"))
    bigger.load_state_dict(buffer.state_dict())
    assert bigger.rewards[:5].tolist() == [2, 3, 4, 5, 6] and bigger.position == 5
    bigger.add(_rows(7, 1))
    assert bigger.rewards[5].item() == 7
