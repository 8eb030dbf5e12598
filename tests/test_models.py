"""Every registered backbone, through the registry (after timm's ``tests/test_models.py``).

Each model is checked on the call contract ``model(x, f, s, out_shape)`` with
grids whose ratios are not integers (8×11 → 28×30, 5×7 → 19×29) and a large one
(16×16 → 128×128): exact output shapes, gradients to every parameter, sane
parameter counts, stochastic members that differ and repeat after re-seeding
(of the global RNG, or of an explicit ``generator``), determinism without noise,
and one set of weights on several grids.

No weights are ever downloaded: timm encoders are built with ``pretrained=False``
and the test fails if timm tries to load pretrained weights.
"""

from __future__ import annotations

import inspect
import os

import pytest
import torch

from downscale.errors import RecipeError, UnknownNameError
from downscale.models import MODELS, create_model, list_models
from downscale.models.factory import check_model_options
from downscale.models.layers import (
    ConditionalLayerNorm,
    ConditionalNorm,
    ConditionedBlock,
    geometric_sizes,
    noise_and_forcings,
    resize,
    standard_normal,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NAMES = list_models()

# (batch, in ch, out ch, n_forcings, n_static, n_noise, coarse (h, w), fine (H, W))
CASES = {
    "8x11-28x30": (2, 2, 3, 2, 1, 0, (8, 11), (28, 30)),
    "5x7-19x29-noise": (2, 2, 3, 0, 0, 4, (5, 7), (19, 29)),
    "16x16-128x128": (1, 15, 2, 3, 1, 0, (16, 16), (128, 128)),
}

# default parameter counts for in=2, out=3, n_forcings=2, n_static=1 (a new model gets the broad bounds)
PARAM_BOUNDS = {
    "deepesd": (1e5, 2.5e5),
    "simple_cnn": (1e5, 5e5),
    "unet_small": (1e5, 1e6),
    "unet": (5e5, 3e6),
    "unet_large": (5e6, 3e7),
    "vit_small": (1e5, 1e6),
    "vit": (5e5, 3e6),
    "timm_unet": (1e6, 2e7),
}

# the big case runs on each family's light member only
HEAVY = {"unet_large"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: one thread is faster than two, and robust on a busy runner."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_pretrained_weights(monkeypatch):
    import timm.models._builder as builder

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to load pretrained weights")

    monkeypatch.setattr(builder, "load_pretrained", refuse)


def _inputs(batch, cin, n_forcings, n_static, coarse, fine, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, *coarse, generator=g)
    f = torch.randn(batch, n_forcings, generator=g)
    s = torch.randn(batch, n_static, *fine, generator=g)
    return x, f, s


def _build(name, cin=2, cout=3, n_forcings=2, n_static=1, **kwargs):
    torch.manual_seed(0)
    return create_model(name, in_channels=cin, out_channels=cout, n_forcings=n_forcings, n_static=n_static, **kwargs)


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward(name, case):
    batch, cin, cout, nf, ns, nz, coarse, fine = CASES[case]
    if case.startswith("16x16") and name in HEAVY:
        pytest.skip("the large case runs on the light variants")
    model = _build(name, cin, cout, nf, ns, n_noise=nz).train()
    x, f, s = _inputs(batch, cin, nf, ns, coarse, fine)
    y = model(x, f, s, fine)
    assert y.shape == (batch, cout, *fine)
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # everything we built learns from the first step; a timm encoder may start some
    # branches at zero on purpose (zero-init of the last norm of residual blocks)
    dead = [n for n, p in model.named_parameters() if not n.startswith("encoder.") and not p.grad.abs().sum() > 0]
    assert not dead, f"zero gradient on {dead[:5]}"


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(name, record_property):
    n = _n_params(_build(name))
    record_property("n_params", n)
    lo, hi = PARAM_BOUNDS.get(name, (1e4, 5e7))
    assert 1e4 < n < 5e7
    assert lo < n < hi, f"{name}: {n:,} parameters, expected between {lo:,.0f} and {hi:,.0f}"


@pytest.mark.parametrize("name", NAMES)
def test_stochastic_members_differ_and_repeat_after_seeding(name):
    model = _build(name, n_noise=4).eval()
    x, f, s = _inputs(2, 2, 2, 1, (8, 11), (28, 30))
    with torch.no_grad():
        a, b = model(x, f, s, (28, 30)), model(x, f, s, (28, 30))
        assert (a - b).abs().amax() > 1e-4, "two members of a stochastic model are identical"
        torch.manual_seed(123)
        c = model(x, f, s, (28, 30))
        torch.manual_seed(123)
        d = model(x, f, s, (28, 30))
    assert torch.equal(c, d)
    # noise differs between the samples of a batch too
    x2, f2, s2 = x[:1].expand(2, -1, -1, -1), f[:1].expand(2, -1), s[:1].expand(2, -1, -1, -1)
    with torch.no_grad():
        e = model(x2, f2, s2, (28, 30))
    assert (e[0] - e[1]).abs().amax() > 1e-4


# stochastic configurations drawn from an explicit generator: every backbone with a global z,
# and the simple CNN's fine-grid noise maps with and without z
STOCHASTIC = [(name, {"n_noise": 2}) for name in NAMES] + [
    ("simple_cnn", {"noise_maps": 1}),
    ("simple_cnn", {"n_noise": 2, "noise_maps": 1}),
]
STOCHASTIC_IDS = [f"{n}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for n, kw in STOCHASTIC]


@pytest.mark.parametrize("name", NAMES)
def test_forward_takes_a_keyword_only_generator(name):
    """Every backbone accepts ``generator=`` (a deterministic one ignores it)."""
    model = _build(name).eval()
    param = inspect.signature(model.forward).parameters["generator"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None
    x, f, s = _inputs(2, 2, 2, 1, (5, 7), (19, 29))
    with torch.no_grad():
        a = model(x, f, s, (19, 29))
        b = model(x, f, s, (19, 29), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "kwargs"), STOCHASTIC, ids=STOCHASTIC_IDS)
def test_generator_seeds_repeat_and_differ(name, kwargs):
    model = _build(name, **kwargs).eval()
    x, f, s = _inputs(2, 2, 2, 1, (5, 7), (19, 29))
    with torch.no_grad():
        a = model(x, f, s, (19, 29), generator=torch.Generator().manual_seed(11))
        b = model(x, f, s, (19, 29), generator=torch.Generator().manual_seed(11))
        c = model(x, f, s, (19, 29), generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert (a - c).abs().amax() > 1e-4, "two seeds gave the same member"
    # one generator, two calls: two members
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        d, e = model(x, f, s, (19, 29), generator=g), model(x, f, s, (19, 29), generator=g)
    assert torch.equal(d, a) and (d - e).abs().amax() > 1e-4


@pytest.mark.parametrize(("name", "kwargs"), STOCHASTIC, ids=STOCHASTIC_IDS)
def test_forward_with_a_generator_leaves_the_global_rng_alone(name, kwargs):
    model = _build(name, **kwargs).train()
    x, f, s = _inputs(2, 2, 2, 1, (5, 7), (19, 29))
    torch.manual_seed(99)
    before = torch.random.get_rng_state()
    model(x, f, s, (19, 29), generator=torch.Generator().manual_seed(4)).mean().backward()
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize(("name", "kwargs"), STOCHASTIC, ids=STOCHASTIC_IDS)
def test_generator_draws_what_the_seeded_global_rng_draws(name, kwargs):
    """Same seed, same member: a ``Generator`` seeded s and the global RNG after ``manual_seed(s)``."""
    model = _build(name, **kwargs).eval()
    x, f, s = _inputs(2, 2, 2, 1, (5, 7), (19, 29))
    with torch.no_grad():
        a = model(x, f, s, (19, 29), generator=torch.Generator().manual_seed(5))
        torch.manual_seed(5)
        b = model(x, f, s, (19, 29), generator=None)
        torch.manual_seed(5)
        c = model(x, f, s, (19, 29))
    assert torch.equal(a, b) and torch.equal(b, c)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_without_noise(name):
    model = _build(name).eval()
    x, f, s = _inputs(2, 2, 2, 1, (8, 11), (28, 30))
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x, f, s, (28, 30))
        torch.manual_seed(2)
        b = model(x, f, s, (28, 30))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_one_set_of_weights_runs_on_other_grids(name):
    model = _build(name, n_static=0, n_forcings=0).eval()
    with torch.no_grad():
        for coarse, fine in [((8, 11), (28, 30)), ((6, 8), (19, 29)), ((5, 7), (19, 29)), ((12, 9), (12, 9))]:
            x, f, s = _inputs(1, 2, 0, 0, coarse, fine)
            assert model(x, f, s, fine).shape == (1, 3, *fine)
    # and the weights load into a fresh model built for another domain
    other = _build(name, n_static=0, n_forcings=0)
    other.load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize("name", NAMES)
def test_forcings_change_the_output(name):
    model = _build(name).eval()
    x, f, s = _inputs(2, 2, 2, 1, (8, 11), (28, 30))
    with torch.no_grad():
        a = model(x, f, s, (28, 30))
        b = model(x, f + 1.0, s, (28, 30))
    assert (a - b).abs().amax() > 1e-5


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError) as err:
        create_model("unet2", in_channels=2, out_channels=1)
    assert "did you mean 'unet'?" in str(err.value)
    assert "vit" in str(err.value)  # lists the valid names
    with pytest.raises(UnknownNameError, match="did you mean 'deepesd'"):
        create_model("deep_esd", in_channels=2, out_channels=1)


def test_unknown_option_is_rejected_with_the_closest():
    with pytest.raises(RecipeError, match="no option 'base_channel'.*did you mean 'base_channels'"):
        create_model("unet", in_channels=2, out_channels=1, base_channel=8)
    with pytest.raises(RecipeError, match="no option 'embed_dims'.*did you mean 'embed_dim'"):
        check_model_options("vit_small", {"embed_dims": 32})
    # a core argument is not an option
    with pytest.raises(RecipeError):
        check_model_options("unet", {"in_channels": 3})


def test_variants_are_the_class_with_other_defaults():
    small = _build("unet_small")
    assert type(small).__name__ == "UNet"
    assert small.stem.out_channels == 16
    assert _build("unet_small", base_channels=8).stem.out_channels == 8
    check_model_options("unet_small", {"depth": 1, "n_noise": 2})
    # None means "keep the default"
    assert _build("vit_small", embed_dim=None).embed.out_channels == 64


def test_list_models():
    names = list_models()
    for name in ["simple_cnn", "unet", "unet_small", "deepesd", "vit", "timm_unet"]:
        assert name in names
    assert names == sorted(names) == MODELS.names()


def test_simple_cnn_default_is_unchanged():
    model = _build("simple_cnn")
    keys = set(model.state_dict())
    expected = {"stem.weight", "coarse.0.conv1.weight", "coarse.1.conv2.bias", "merge.weight", "fine.2.conv2.weight"}
    assert expected <= keys
    assert not any("norm" in k for k in keys)
    assert _n_params(model) == 231_843
    assert any("film" in k for k in _build("simple_cnn", n_noise=2).state_dict())


def test_deepesd_follows_the_paper_on_the_coarse_grid():
    model = _build("deepesd", n_forcings=0)
    assert [c.conv.out_channels for c in model.convs] == [50, 25, 10]
    assert all(c.norm is None for c in model.convs)  # plain conv → ReLU without 1-D inputs
    assert all(c.norm is not None for c in _build("deepesd", n_forcings=0, n_noise=2).convs)


def test_timm_unet_is_generic_over_the_encoder():
    # a BatchNorm encoder with five feature levels (reductions 2 … 32)
    model = _build("timm_unet", encoder="mobilenetv3_small_050", n_noise=2).train()
    assert model.encoder.feature_info.reduction()[0] == 2
    x, f, s = _inputs(2, 2, 2, 1, (5, 7), (19, 29))
    y = model(x, f, s, (19, 29))
    assert y.shape == (2, 3, 19, 29)
    y.mean().backward()
    assert model.stem_size(5, 7) == (32, 32)
    with pytest.raises(RecipeError, match="did you mean 'convnextv2_atto'"):
        _build("timm_unet", encoder="convnextv2_ato")


def test_vit_patch_larger_than_one():
    model = _build("vit_small", patch=2)
    x, f, s = _inputs(2, 2, 2, 1, (5, 7), (19, 29))
    assert model(x, f, s, (19, 29)).shape == (2, 3, 19, 29)


# -- layers -------------------------------------------------------------------


def test_conditional_norm_without_conditioning_is_group_norm():
    torch.manual_seed(0)
    norm = ConditionalNorm(16, cond_dim=0, groups=4)
    with torch.no_grad():
        norm.film.weight.uniform_(0.5, 1.5)
        norm.film.bias.normal_()
    ref = torch.nn.GroupNorm(4, 16)
    ref.load_state_dict({"weight": norm.film.weight, "bias": norm.film.bias})
    x = torch.randn(3, 16, 5, 7)
    torch.testing.assert_close(norm(x), ref(x))
    ln = ConditionalLayerNorm(8, cond_dim=0)
    t = torch.randn(2, 5, 8)
    torch.testing.assert_close(ln(t), torch.nn.functional.layer_norm(t, (8,), eps=1e-6))


def test_conditional_norm_starts_near_identity_film():
    torch.manual_seed(0)
    norm = ConditionalNorm(32, cond_dim=6, groups=8)
    c = torch.randn(4, 6)
    scale, shift = norm.film(c)
    assert scale.shape == shift.shape == (4, 32)
    assert (scale - 1).abs().max() < 0.2 and shift.abs().max() < 0.2
    assert (scale - 1).abs().max() > 0  # but it already depends on c
    block = ConditionedBlock(32, 16, cond_dim=6, groups=8)
    assert block(torch.randn(4, 32, 5, 7), c).shape == (4, 16, 5, 7)


def test_noise_and_forcings():
    f = torch.randn(3, 2)
    assert noise_and_forcings(f[:, :0], 0, 3) is None
    assert noise_and_forcings(None, 0, 3) is None
    assert torch.equal(noise_and_forcings(f, 0, 3), f)
    torch.manual_seed(5)
    c = noise_and_forcings(f, 4, 3)
    torch.manual_seed(5)
    z = torch.randn(3, 4)
    assert c.shape == (3, 6)
    assert torch.equal(c[:, :2], f) and torch.equal(c[:, 2:], z)
    assert noise_and_forcings(None, 4, 3, like=f.double()).dtype == torch.float64


def test_noise_and_forcings_from_a_generator():
    f = torch.randn(3, 2, dtype=torch.float64)
    c = noise_and_forcings(f, 4, 3, generator=torch.Generator().manual_seed(5))
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert c.dtype == torch.float64 and torch.equal(c[:, :2], f) and torch.equal(c[:, 2:], z)
    torch.manual_seed(5)
    assert torch.equal(noise_and_forcings(f, 4, 3), c)  # the same draws as the seeded global RNG


def test_standard_normal():
    torch.manual_seed(7)
    ref = torch.randn(2, 3, 4)
    state = torch.random.get_rng_state()
    g = torch.Generator().manual_seed(7)
    assert torch.equal(standard_normal(2, 3, 4, generator=g), ref)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(7)
    assert torch.equal(standard_normal(2, 3, 4), ref)
    half = standard_normal(2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float16)
    assert half.dtype == torch.float16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_noise_reaches_a_cuda_model():
    model = _build("simple_cnn", n_noise=2, noise_maps=1).eval()
    x, f, s = _inputs(2, 2, 2, 1, (5, 7), (19, 29))
    with torch.no_grad():
        ref = model(x, f, s, (19, 29), generator=torch.Generator().manual_seed(5))
        model = model.cuda()
        out = model(x.cuda(), f.cuda(), s.cuda(), (19, 29), generator=torch.Generator().manual_seed(5))
        g = torch.Generator(device="cuda").manual_seed(5)
        on_gpu = model(x.cuda(), f.cuda(), s.cuda(), (19, 29), generator=g)
    assert out.device.type == "cuda" and on_gpu.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=1e-4)  # the same noise, another device's arithmetic
    assert standard_normal(3, generator=torch.Generator(), device=torch.device("cuda")).device.type == "cuda"


def test_resize_and_geometric_sizes():
    x = torch.randn(1, 2, 5, 7)
    assert resize(x, (5, 7)) is x
    assert resize(x, (19, 29)).shape == (1, 2, 19, 29)
    assert geometric_sizes((7, 7), (28, 28), 2) == [(14, 14), (28, 28)]
    assert geometric_sizes((5, 7), (19, 29), 2)[-1] == (19, 29)
    assert geometric_sizes((16, 16), (128, 128), 3) == [(32, 32), (64, 64), (128, 128)]
    assert geometric_sizes((5, 7), (19, 29), 0) == []
