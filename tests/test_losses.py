"""Loss heads: masks, hand-computed values, predictions and the criterion that mixes them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats as sps

from downscale.data.normalise import Stats
from downscale.models.heads import (
    AsymmetricHead,
    BernoulliGammaHead,
    CRPSHead,
    sample_gamma,
)
from downscale.models.losses import HEADS, create_criterion

B, H, W = 2, 5, 6
PR_STATS = Stats(mean=3.0 / 86400, std=6.0 / 86400, transform="scale")  # mm/day-like pr in kg m-2 s-1


def _head(name: str, **kw):
    return HEADS.get(name)("pr", None, **kw)


def _inputs(head, members: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(B, members, head.channels, H, W, generator=g, dtype=torch.float64)
    y = torch.rand(B, H, W, generator=g, dtype=torch.float64) * 3
    y[:, 0, :3] = 0.0  # some dry cells
    m = torch.rand(B, H, W, generator=g) > 0.3
    return out, y, m


# -- every head ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["mse", "mae", "asymmetric", "bernoulli_gamma", "crps"])
def test_masked_cells_change_nothing(name):
    head = _head(name)
    members = 3 if head.needs_members else 1
    out, y, m = _inputs(head, members)

    def run(y_, out_):
        o = out_.clone().requires_grad_(True)
        loss = head.loss(o, y_, m)
        loss.backward()
        return loss.detach(), o.grad

    ref_loss, ref_grad = run(y, out)
    garbage = [1e6, -1e6] + ([float("nan"), float("inf")] if name not in ("mse", "mae") else [])
    for g in garbage:
        y2 = torch.where(m, y, torch.full_like(y, g))
        out2 = torch.where(m[:, None, None], out, torch.full_like(out, 7.0))
        loss, grad = run(y2, out2)
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
        assert float(grad.masked_select(~m[:, None, None].expand_as(grad)).abs().max()) == 0.0
    # all cells masked: a finite zero, not NaN
    assert float(head.loss(out, y, torch.zeros_like(m))) == 0.0


def test_unknown_option_names_it():
    for name in ["mse", "asymmetric", "bernoulli_gamma", "crps"]:
        with pytest.raises(TypeError, match="gamma_shap"):
            create_criterion(name, ["pr"], params={name: {"gamma_shap": 1.0}})
    crit = create_criterion("asymmetric", ["pr"], params={"asymmetric": {"gamma_shape": 0.7, "gamma_scale": 1.5}})
    assert (crit.heads[0].gamma_shape, crit.heads[0].gamma_scale) == (0.7, 1.5)
    with pytest.raises(ValueError, match="gamma_scale"):
        AsymmetricHead("pr", None, gamma_scale=-1.0)


# -- asymmetric ----------------------------------------------------------------
def test_asymmetric_is_mse_when_over_predicting():
    head, mse = _head("asymmetric"), _head("mse")
    out, y, m = _inputs(head)
    out = (y[:, None, None] + out.abs()).clone()  # ŷ >= y everywhere
    torch.testing.assert_close(head.loss(out, y, m), mse.loss(out, y, m))


def test_asymmetric_hand_values_and_heavier_penalty_for_heavier_rain():
    head = AsymmetricHead("pr", PR_STATS, gamma_shape=0.5, gamma_scale=2.0)
    y = torch.tensor([0.2, 1.0, 3.0, 8.0], dtype=torch.float64).view(1, 1, 4)
    m = torch.ones_like(y, dtype=torch.bool)
    out = (y - 1.0)[:, None, None]  # under-predict every cell by 1
    per_cell = [float(head.loss(out[..., i : i + 1], y[..., i : i + 1], m[..., i : i + 1])) for i in range(4)]
    expect = 1.0 + sps.gamma.cdf(y.flatten().numpy(), 0.5, scale=2.0)
    np.testing.assert_allclose(per_cell, expect, rtol=1e-6)
    assert all(a < b for a, b in itertools.pairwise(per_cell))
    np.testing.assert_allclose(float(head.loss(out, y, m)), expect.mean(), rtol=1e-6)
    # over-prediction by 1 costs 1 whatever y
    np.testing.assert_allclose(float(head.loss(out + 2.0, y, m)), 1.0, rtol=1e-6)
    # precipitation predictions are never negative
    assert float(head.predict(torch.tensor([-1.0, 2.0]).view(1, 1, 1, 1, 2)).min()) == 0.0
    tas = AsymmetricHead("tas", Stats(280.0, 10.0, "standard"))
    assert float(tas.predict(torch.tensor([-1.0]).view(1, 1, 1, 1, 1))) == -1.0


# -- Bernoulli-gamma -------------------------------------------------------------
def _bg_out(logit, a_raw, b_raw):
    return torch.tensor([logit, a_raw, b_raw], dtype=torch.float64).view(1, 1, 3, 1, 1)


def _softplus(x):
    return np.log1p(np.exp(x)) + 1e-6


def test_bernoulli_gamma_matches_scipy():
    thr = 0.2
    head = BernoulliGammaHead("pr", None, threshold=thr)
    # (logit p, raw α, raw β, y): dry, below threshold, wet, heavy, just above threshold
    cells = [
        (0.3, -0.5, 0.4, 0.0),
        (-1.2, 1.5, -0.3, 0.1),
        (2.0, 0.2, 1.1, 0.5),
        (0.0, -2.0, 0.0, 4.0),
        (1, 3, -1, 0.201),
    ]
    for logit, ar, br, yv in cells:
        p, a, b = 1 / (1 + np.exp(-logit)), _softplus(ar), _softplus(br)
        wet = yv > thr
        expect = -sps.bernoulli.logpmf(int(wet), p)
        if wet:
            expect -= sps.gamma.logpdf(yv - thr, a, scale=b)
        got = head.loss(
            _bg_out(logit, ar, br), torch.tensor([[[yv]]], dtype=torch.float64), torch.ones(1, 1, 1, dtype=torch.bool)
        )
        np.testing.assert_allclose(float(got), expect, rtol=1e-6, err_msg=str((logit, ar, br, yv)))


def test_bernoulli_gamma_threshold_from_stats():
    head = BernoulliGammaHead("pr", PR_STATS)
    np.testing.assert_allclose(head.threshold, (1.0 / 86400) / PR_STATS.scale)
    assert 0.1 < head.threshold < 0.2  # 1 mm/day against an RMS of ~6.7 mm/day
    np.testing.assert_allclose(BernoulliGammaHead("pr", PR_STATS, wet_threshold_mm=0.1).threshold, head.threshold / 10)
    assert BernoulliGammaHead("pr", PR_STATS, threshold=0.05).threshold == 0.05
    with pytest.raises(ValueError, match="scale"):
        BernoulliGammaHead("tas", Stats(280.0, 10.0, "standard"))


def test_bernoulli_gamma_gradients_finite():
    head = BernoulliGammaHead("pr", None, threshold=0.15)
    y = torch.tensor([0.0, 0.0, 0.15, 0.1500001, 1e4, 1e6], dtype=torch.float32).view(1, 1, 6)
    m = torch.ones_like(y, dtype=torch.bool)
    for scale in (0.0, 1.0, 30.0, -30.0):
        raw = (torch.randn(1, 1, 3, 1, 6, generator=torch.Generator().manual_seed(1)) * 3 + scale).requires_grad_(True)
        loss = head.loss(raw, y, m)
        loss.backward()
        assert torch.isfinite(loss), scale
        assert torch.isfinite(raw.grad).all(), scale


def test_bernoulli_gamma_mean_and_samples():
    thr = 0.15
    head = BernoulliGammaHead("pr", None, threshold=thr)
    raw = torch.tensor([[0.4, -1.5], [0.8, 2.0], [-0.2, 0.3]]).view(1, 1, 3, 1, 2)  # shapes ~0.7 and ~2.1
    p = torch.sigmoid(raw[0, 0, 0, 0])
    a, b = torch.nn.functional.softplus(raw[0, 0, 1, 0]) + 1e-6, torch.nn.functional.softplus(raw[0, 0, 2, 0]) + 1e-6
    mean = head.predict(raw, "mean")
    assert mean.shape == (1, 1, 1, 2)
    torch.testing.assert_close(mean[0, 0, 0], p * (thr + a * b))

    n = 40000
    many = raw.expand(n, 1, 3, 1, 2)
    draws = head.predict(many, "sample", torch.Generator().manual_seed(5))[:, 0, 0]  # [n, 2]
    assert draws.shape == (n, 2)
    torch.testing.assert_close(draws.mean(0), mean[0, 0, 0], rtol=0.03, atol=0.0)
    dry = (draws == 0).float().mean(0)
    torch.testing.assert_close(dry, 1 - p, rtol=0.0, atol=0.01)
    assert float(draws[draws > 0].min()) > thr  # wet draws lie above the threshold
    # wet amounts follow Gamma(α, β)
    for j in range(2):
        wet = (draws[:, j][draws[:, j] > 0] - thr).double().numpy()
        assert sps.kstest(wet, "gamma", args=(float(a[j]), 0, float(b[j]))).pvalue > 1e-3
    # the same seed gives the same draws; another seed different ones
    again = head.predict(many, "sample", torch.Generator().manual_seed(5))[:, 0, 0]
    assert torch.equal(draws, again)
    other = head.predict(many, "sample", torch.Generator().manual_seed(6))[:, 0, 0]
    assert not torch.equal(draws, other)


@pytest.mark.parametrize("shape", [0.05, 0.3, 1.0, 4.0, 50.0])
def test_gamma_sampler(shape):
    a = torch.full((20000,), shape)
    x = sample_gamma(a, torch.Generator().manual_seed(0)).double().numpy()
    assert np.isfinite(x).all() and (x >= 0).all()
    assert sps.kstest(x, "gamma", args=(shape,)).pvalue > 1e-3


# -- CRPS ------------------------------------------------------------------------
def _crps_numpy(x, y, fair=True):
    """Brute force over pairs: x [M, ...], y [...]."""
    n = x.shape[0]
    skill = np.mean(np.abs(x - y), axis=0)
    pairs = sum(np.abs(x[i] - x[j]) for i in range(n) for j in range(n))
    return skill - pairs / (2 * n * (n - 1) if fair else 2 * n * n)


@pytest.mark.parametrize(("members", "fair"), [(2, True), (3, False), (5, True), (8, False)])
def test_crps_matches_brute_force(members, fair):
    head = CRPSHead("pr", None, fair=fair)
    out, y, m = _inputs(head, members, seed=members)
    ref = np.stack([_crps_numpy(out[b, :, 0].numpy(), y[b].numpy(), fair) for b in range(B)])
    torch.testing.assert_close(head.crps(out[:, :, 0], y), torch.from_numpy(ref))
    np.testing.assert_allclose(float(head.loss(out, y, m)), ref[m.numpy()].mean(), rtol=1e-10)


def test_crps_almost_fair_mixes():
    out, y, m = _inputs(CRPSHead("pr"), 4)
    fair, std = CRPSHead("pr").loss(out, y, m), CRPSHead("pr", fair=False).loss(out, y, m)
    torch.testing.assert_close(CRPSHead("pr", alpha=0.95).loss(out, y, m), 0.95 * fair + 0.05 * std)


def test_crps_single_member_is_mae():
    head = CRPSHead("pr")
    out, y, m = _inputs(head, 1)
    torch.testing.assert_close(head.loss(out, y, m), _head("mae").loss(out, y, m))


def test_fair_crps_prefers_the_true_distribution():
    g = torch.Generator().manual_seed(0)
    n, members = 200000, 4
    y = torch.randn(1, n, 1, generator=g, dtype=torch.float64)
    m = torch.ones_like(y, dtype=torch.bool)
    true = torch.randn(1, members, 1, n, 1, generator=g, dtype=torch.float64)
    head = CRPSHead("pr")
    score = {
        "true": head.loss(true, y, m),
        "biased": head.loss(true + 0.3, y, m),
        "narrow": head.loss(0.6 * true, y, m),
        "wide": head.loss(1.5 * true, y, m),
    }
    expected = 1 / np.sqrt(np.pi)  # CRPS of N(0, 1) against N(0, 1) outcomes
    np.testing.assert_allclose(float(score["true"]), expected, rtol=0.01)
    for k in ("biased", "narrow", "wide"):
        assert score[k] > score["true"] + 0.01, k
    # the standard (unfair) estimator rewards an under-dispersed ensemble of this size
    unfair = CRPSHead("pr", fair=False)
    assert unfair.loss(0.8 * true, y, m) < unfair.loss(true, y, m)


def test_crps_predict_clamps_precipitation_only():
    out = torch.tensor([-0.5, 1.0, 2.0]).view(1, 3, 1, 1, 1)
    assert CRPSHead("pr", PR_STATS).predict(out).flatten().tolist() == [0.0, 1.0, 2.0]
    assert CRPSHead("tas", Stats(280.0, 10.0)).predict(out).flatten().tolist() == [-0.5, 1.0, 2.0]


# -- the criterion ---------------------------------------------------------------
class _Norm:
    targets = {"tas": Stats(280.0, 10.0, "standard"), "pr": PR_STATS}  # noqa: RUF012


def test_criterion_mixes_mse_and_bernoulli_gamma():
    crit = create_criterion("mse", ["tas", "pr"], {"pr": "bernoulli_gamma"}, members=4, normaliser=_Norm())
    assert crit.out_channels == 4 and crit.members == 1 and not crit.stochastic
    assert crit.describe()["heads"] == {"tas": "MSEHead", "pr": "BernoulliGammaHead"}
    g = torch.Generator().manual_seed(0)
    out = torch.randn(B, 2, 4, H, W, generator=g)
    y = torch.stack([torch.randn(B, H, W, generator=g), torch.rand(B, H, W, generator=g)], dim=1)
    m = torch.ones(B, 2, H, W, dtype=torch.bool)
    for mode in ("mean", "sample"):
        pred = crit.predict(out, mode, torch.Generator().manual_seed(1))
        assert pred.shape == (B, 2, 2, H, W)
        torch.testing.assert_close(pred[:, :, 0], out[:, :, 0])  # tas: the value itself
        assert float(pred[:, :, 1].min()) >= 0.0
    torch.testing.assert_close(crit.predict(out)[:, :, 1], crit.heads[1].predict(out[:, :, 1:]))
    total = crit(out, y, m)
    parts = crit.per_variable(out, y, m)
    np.testing.assert_allclose(float(total), (parts["tas"] + parts["pr"]) / 2, rtol=1e-6)
    torch.testing.assert_close(crit(out[:, 0], y, m), crit(out[:, :1], y, m))  # [B, C, H, W] is one member


def test_members_only_for_ensemble_heads():
    assert create_criterion("mse", ["tas", "pr"], {"pr": "asymmetric"}, members=4).members == 1
    crit = create_criterion("mse", ["tas", "pr"], {"pr": "crps"}, members=4, normaliser=_Norm())
    assert crit.members == 4 and crit.stochastic and crit.out_channels == 2
    out = torch.randn(B, 4, 2, H, W)
    y, m = torch.rand(B, 2, H, W), torch.ones(B, 2, H, W, dtype=torch.bool)
    assert torch.isfinite(crit(out, y, m))
    pred = crit.predict(out, "sample", torch.Generator().manual_seed(0))
    assert pred.shape == (B, 4, 2, H, W) and float(pred[:, :, 1].min()) >= 0.0
    assert create_criterion("crps", ["pr"], members=3).members == 3


@pytest.mark.parametrize("targets", [["tas"], ["tas", "pr"], ["tas", "pr", "huss"]])
def test_criterion_is_the_mean_of_the_head_losses(targets):
    crit = create_criterion("mse", targets, {"pr": "asymmetric", "huss": "mae"})
    g = torch.Generator().manual_seed(2)
    out = torch.randn(B, 1, len(targets), H, W, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(B, len(targets), H, W, generator=g, dtype=torch.float64)
    m = torch.rand(B, len(targets), H, W, generator=g) > 0.2
    total = crit(out, y, m)
    heads = [h.loss(out[:, :, v : v + 1], y[:, v], m[:, v]) for v, h in enumerate(crit.heads)]
    assert total.ndim == 0 and total.dtype == torch.float64
    assert torch.equal(total, sum(heads) / len(heads))  # the same sum, in the same order
    total.backward()
    assert out.grad is not None and bool(out.grad.abs().sum() > 0)
