import pytest
import torch

from gempo.paths import LinearPath, MaskedPath, stratified_uniform


def test_linear_path_interpolates_noise_to_data():
    path = LinearPath()
    x_0, x_1 = torch.randn(5, 3), torch.randn(5, 3)
    at_0 = path.sample(x_1, torch.zeros(5), x_0)
    at_1 = path.sample(x_1, torch.ones(5), x_0)
    torch.testing.assert_close(at_0.x_t, x_0)
    torch.testing.assert_close(at_1.x_t, x_1)
    mid = path.sample(x_1, torch.full((5,), 0.25), x_0)
    torch.testing.assert_close(mid.x_t, 0.75 * x_0 + 0.25 * x_1)
    torch.testing.assert_close(mid.velocity, x_1 - x_0)
    assert torch.all(path.per_sample_loss(mid.velocity, mid) == 0)
    assert path.per_sample_loss(mid.velocity + 1.0, mid).shape == (5,)


def test_masked_path_masks_exactly_the_requested_number_of_tokens():
    path = MaskedPath(vocab_size=4)
    x_1 = torch.randint(0, 4, (2000, 50))
    num_masked = torch.randint(1, 51, (2000,))
    sample = path.sample(x_1, num_masked)
    assert torch.equal(sample.is_masked.sum(-1), num_masked)
    torch.testing.assert_close(sample.t, 1 - num_masked.float() / 50)
    assert torch.all(sample.x_t[sample.is_masked] == path.mask_index)
    assert torch.equal(sample.x_t[~sample.is_masked], x_1[~sample.is_masked])
    assert torch.all(path.sample(x_1, torch.full((2000,), 50)).is_masked)
    # masked positions are uniform over the sequence, and the default count is U{1..L}
    assert (sample.is_masked.float().mean(0) - num_masked.float().mean() / 50).abs().max() < 0.05
    drawn = path.sample(x_1).num_masked
    assert drawn.min() >= 1 and drawn.max() <= 50 and abs(drawn.float().mean() - 25.5) < 1.0


def test_stratified_uniforms_and_mask_counts_cover_their_strata():
    u = stratified_uniform(500, 4)
    assert u.shape == (4, 500)
    for k in range(4):
        assert u[k].min() >= k / 4 and u[k].max() < (k + 1) / 4
    counts = MaskedPath(vocab_size=4).num_masked_from_uniform(u, 200)
    for k in range(4):
        assert counts[k].min() >= 1 + 50 * k and counts[k].max() <= 50 * (k + 1)


def test_subs_keeps_revealed_tokens_and_never_predicts_mask():
    path = MaskedPath(vocab_size=4)
    x_t = torch.tensor([[0, 4, 3, 4]])
    log_probs = path.log_probs(torch.randn(1, 4, 4), x_t)
    probs = log_probs.exp()
    assert probs.shape == (1, 4, 4), "no probability slot for [MASK]"
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 4))
    assert probs[0, 0, 0] == 1 and probs[0, 2, 3] == 1
    assert torch.all(probs[0, 1] > 0) and torch.all(probs[0, 3] > 0)
    with pytest.raises(ValueError, match="no \\[MASK\\] logit"):
        path.log_probs(torch.randn(1, 4, 5), x_t)


def test_masked_loss_counts_only_masked_tokens_with_elbo_weight():
    path = MaskedPath(vocab_size=4)
    x_1 = torch.tensor([[0, 1, 2, 3]])
    sample = path.sample(x_1, torch.tensor([2]))
    sample.is_masked = torch.tensor([[True, False, True, False]])
    logits = torch.zeros(1, 4, 4)  # uniform: -log p = log 4 per token
    expected = 2 * torch.log(torch.tensor(4.0)) * 4 / 2  # L/k with k = 2 masked of L = 4
    torch.testing.assert_close(path.per_sample_loss(logits, sample), expected.reshape(1))


def test_masked_divergence_is_zero_for_identical_models_and_positive_otherwise():
    path = MaskedPath(vocab_size=4)
    sample = path.sample(torch.randint(0, 4, (3, 8)), torch.full((3,), 6))
    logits = torch.randn(3, 8, 4)
    assert torch.allclose(
        path.per_sample_divergence(logits, logits, sample), torch.zeros(3), atol=1e-6
    )
    assert torch.all(path.per_sample_divergence(logits, torch.randn(3, 8, 4), sample) > 0)
