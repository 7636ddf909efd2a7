import pytest
import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from torch import nn

from slimcodec.layers import (
    SlimConv2d,
    SlimConvTranspose2d,
    SlimGDN,
    SlimGDNPlus,
    SwitchGDN,
    SyncFreeEntropyBottleneck,
    make_gdn,
    reparametrised_once,
    slimmable,
)
from slimcodec.layers.subpixel import subpixel_conv_transpose2d, subpixel_weight

WIDTHS = (12, 8, 4)


@pytest.mark.parametrize("index", range(3))
def test_slim_conv_equals_plain_conv_with_sliced_weights(index):
    torch.manual_seed(0)
    layer = SlimConv2d((6, 5, 3), WIDTHS, 5, stride=2)  # in != out at every width
    layer.set_width_index(index)
    cin, cout = (6, 5, 3)[index], WIDTHS[index]
    plain = nn.Conv2d(cin, cout, 5, stride=2, padding=2)
    with torch.no_grad():
        plain.weight.copy_(layer.weight[:cout, :cin])
        plain.bias.copy_(layer.bias[:cout])
    x = torch.randn(2, cin, 17, 23)
    assert torch.equal(layer(x), plain(x))


@pytest.mark.parametrize("index", range(3))
def test_slim_transposed_conv_equals_plain_with_in_out_layout(index):
    torch.manual_seed(0)
    layer = SlimConvTranspose2d(WIDTHS, (7, 5, 3), 5, stride=2)
    layer.set_width_index(index)
    cin, cout = WIDTHS[index], (7, 5, 3)[index]
    plain = nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)
    assert layer.weight.shape[:2] == (12, 7)  # (in, out, kH, kW)
    with torch.no_grad():
        plain.weight.copy_(layer.weight[:cin, :cout])
        plain.bias.copy_(layer.bias[:cout])
    x = torch.randn(1, cin, 6, 9)
    out = layer(x)
    assert out.shape[-2:] == (12, 18)  # upsamples exactly by the stride
    assert torch.equal(out, plain(x))


@pytest.mark.parametrize("kernel, stride", [(9, 4), (5, 2), (3, 1), (7, 3), (9, 2), (1, 2)])
def test_the_subpixel_form_computes_the_transposed_convolution(kernel, stride):
    """Values and the weight's gradient, in float64, where only rounding can differ."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    w = torch.randn(6, 3, kernel, kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64)
    ref = F.conv_transpose2d(x, w, b, stride, kernel // 2, output_padding=stride - 1)
    out = subpixel_conv_transpose2d(x, w, b, stride, kernel // 2)
    assert out.shape == ref.shape == (2, 3, 5 * stride, 7 * stride)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(ref)
    expected, got = (torch.autograd.grad(y, w, grad)[0] for y in (ref, out))
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def test_the_subpixel_form_refuses_a_kernel_that_does_not_upsample_exactly():
    with pytest.raises(ValueError, match="odd kernel"):
        subpixel_weight(torch.zeros(4, 3, 4, 4), 2, 2)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_few_outputs_run_as_subpixel_on_the_cpu_and_transposed_when_traced(monkeypatch):
    """The synthesis's last layer (cout·s² <= cin) is computed in the convolution form; a
    trace (ONNX export, fvcore's MAC count) sees the transposed convolution; layers with
    many outputs keep it too."""
    calls = []
    transposed = F.conv_transpose2d
    monkeypatch.setattr(slimmable.F, "conv_transpose2d",
                        lambda *a, **k: calls.append(a[1].shape) or transposed(*a, **k))
    torch.manual_seed(0)
    last = SlimConvTranspose2d((48, 32), 3, 9, stride=4)  # 3·16 <= 48, not <= 32
    x = torch.randn(1, 48, 3, 4)
    out = last(x)
    assert calls == []
    assert torch.allclose(out, transposed(x, last.weight, last.bias, 4, 4, output_padding=3),
                          atol=1e-5)
    traced = torch.jit.trace(last, x, check_trace=False)
    assert calls == [(48, 3, 9, 9)]
    assert torch.equal(traced(x), transposed(x, last.weight, last.bias, 4, 4, output_padding=3))
    last.set_width_index(1)
    last(x[:, :32])
    middle = SlimConvTranspose2d(48, 48, 5, stride=2)
    middle(x)
    assert calls[1:] == [(32, 3, 9, 9), (48, 48, 5, 5)]


def test_fixed_image_channels_and_no_bias():
    layer = SlimConv2d(3, WIDTHS, 9, stride=4, bias=False)
    assert layer.bias is None
    layer.set_width_index(2)
    assert layer(torch.randn(1, 3, 16, 16)).shape == (1, 4, 4, 4)
    with pytest.raises(IndexError):
        layer.set_width_index(3)
    with pytest.raises(ValueError):
        SlimConv2d((3, 3), WIDTHS, 3)


@pytest.mark.parametrize("cls", [SlimConv2d, SlimConvTranspose2d])
def test_the_widest_width_uses_the_whole_kernel_unsliced(cls):
    """A slice's backward pass builds a full-size zero tensor to copy its gradient into; at
    the widest width nothing is cut, so nothing is sliced. Narrower widths slice."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Slices(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += func.overloadpacket.__name__ in ("slice", "slice_backward")
            return func(*args, **(kwargs or {}))

    layer = cls((6, 5, 3), WIDTHS, 3, stride=2)
    counts = []
    for index, cin in enumerate((6, 5, 3)):
        layer.set_width_index(index)
        with Slices() as slices:
            layer(torch.randn(1, cin, 4, 4)).sum().backward()
        counts.append(slices.count)
    assert counts[0] == 0 and counts[1] > 0 and counts[2] > 0


@pytest.mark.parametrize("inverse", [False, True])
def test_slim_gdn_matches_compressai_gdn_on_sliced_parameters(inverse):
    torch.manual_seed(0)
    layer = SlimGDN(WIDTHS, inverse=inverse)
    with torch.no_grad():
        layer.gamma.add_(0.3 * torch.rand_like(layer.gamma))  # off-diagonal coupling
        layer.beta.add_(0.2 * torch.rand_like(layer.beta))
    for index, c in enumerate(WIDTHS):
        layer.set_width_index(index)
        ref = GDN(c, inverse=inverse)
        with torch.no_grad():
            ref.beta.copy_(layer.beta[:c])
            ref.gamma.copy_(layer.gamma[:c, :c])
        x = torch.randn(2, c, 5, 7)
        torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=1e-6)


def test_switch_gdn_widths_are_independent():
    torch.manual_seed(0)
    layer = SwitchGDN(WIDTHS)
    x = torch.randn(1, 8, 4, 4)
    layer.set_width_index(1)
    before = layer(x)
    with torch.no_grad():  # changing another width's parameters leaves width 8 alone
        layer.gdns[0].gamma.add_(1.0)
        layer.gdns[2].beta.add_(1.0)
    assert torch.equal(layer(x), before)
    with torch.no_grad():
        layer.gdns[1].gamma.add_(1.0)
    assert not torch.equal(layer(x), before)


def test_switch_gdn_gradients_stay_in_active_width():
    layer = SwitchGDN(WIDTHS)
    layer.set_width_index(2)
    layer(torch.randn(1, 4, 3, 3)).sum().backward()
    assert layer.gdns[2].gamma.grad is not None
    assert layer.gdns[0].gamma.grad is None and layer.gdns[1].gamma.grad is None


@pytest.mark.parametrize("inverse", [False, True])
def test_slim_gdn_plus_equals_slim_gdn_at_init(inverse):
    torch.manual_seed(0)
    slim = SlimGDN(WIDTHS, inverse=inverse)
    plus = SlimGDNPlus(WIDTHS, inverse=inverse)
    plus.load_state_dict(slim.state_dict(), strict=False)
    for index, c in enumerate(WIDTHS):
        slim.set_width_index(index)
        plus.set_width_index(index)
        x = torch.randn(2, c, 4, 4)
        torch.testing.assert_close(plus(x), slim(x), rtol=1e-6, atol=1e-6)


def test_slim_gdn_plus_scale_and_bias_act_per_width():
    plus = SlimGDNPlus(WIDTHS)
    x = torch.randn(1, 8, 4, 4)
    plus.set_width_index(1)
    before = plus(x)
    with torch.no_grad():
        plus.gamma_scale[0].add_(1.0)  # width 12's scale
    assert torch.equal(plus(x), before)
    with torch.no_grad():
        plus.beta_bias[1].add_(1.0)  # width 8's bias
    assert not torch.equal(plus(x), before)
    beta, gamma = plus.effective_parameters()
    assert (beta > 0).all() and (gamma >= 0).all()


def test_slim_gdn_plus_effective_parameters_are_scaled_and_shifted_per_width():
    """β⁽ᵏ⁾ = s_β[k]·β[:c] + b_β[k] and γ⁽ᵏ⁾ = s_γ[k]·γ[:c,:c] + b_γ[k] at every width."""
    torch.manual_seed(0)
    plus = SlimGDNPlus(WIDTHS)
    nonneg = plus.gamma_reparam
    with torch.no_grad():  # distinct values everywhere, so that no term can hide
        plus.beta.copy_(plus.beta_reparam.init(torch.rand(12) + 0.5))
        plus.gamma.copy_(nonneg.init(torch.rand(12, 12) * 0.2))
        for name in ("beta_scale", "beta_bias", "gamma_scale", "gamma_bias"):
            getattr(plus, name).copy_(nonneg.init(torch.rand(3) + 0.1))
    base_beta = plus.beta_reparam(plus.beta)
    base_gamma = nonneg(plus.gamma)
    for k, c in enumerate(WIDTHS):
        plus.set_width_index(k)
        beta, gamma = plus.effective_parameters()
        s_b, b_b = nonneg(plus.beta_scale)[k], nonneg(plus.beta_bias)[k]
        s_g, b_g = nonneg(plus.gamma_scale)[k], nonneg(plus.gamma_bias)[k]
        torch.testing.assert_close(beta, s_b * base_beta[:c] + b_b)
        torch.testing.assert_close(gamma, s_g * base_gamma[:c, :c] + b_g)
        x = torch.randn(1, c, 3, 3)
        expected = x / torch.sqrt(torch.einsum("ij,njhw->nihw", gamma, x * x)
                                  + beta[None, :, None, None])
        torch.testing.assert_close(plus(x), expected)


def test_the_sync_free_bottleneck_runs_its_density_once_for_both_bounds(monkeypatch):
    """Both bounds of each bin go through the density's layers together (half the kernel
    launches of compressai's two passes)."""
    eb = SyncFreeEntropyBottleneck(4)
    calls = []
    density = eb._logits_cumulative
    monkeypatch.setattr(eb, "_logits_cumulative",
                        lambda *a, **k: calls.append(1) or density(*a, **k))
    eb(torch.randn(2, 4, 3, 3))
    assert len(calls) == 1


def reparametrisations(layer: SlimGDN) -> list[int]:
    """A counter of the layer's non-negative reparametrisations, kept up by forward hooks."""
    calls = [0]
    for m in (layer.beta_reparam, layer.gamma_reparam):
        m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("cls", [SlimGDN, SlimGDNPlus])
def test_gdn_reparametrised_once_for_every_width_computes_what_each_width_does(cls):
    """Inside reparametrised_once a layer reparametrises its parameters once, not once per
    width, and the widths compute the same values (the gradients up to summation order)."""
    torch.manual_seed(0)
    layer = cls(WIDTHS, inverse=True)
    with torch.no_grad():  # distinct values everywhere, so that a wrong slice shows
        for p in layer.parameters():
            p.add_(0.3 * torch.rand_like(p))
    xs = [torch.randn(2, c, 4, 4) for c in WIDTHS]

    def every_width() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outputs = []
        for k, x in enumerate(xs):
            layer.set_width_index(k)
            outputs.append(layer(x))
        sum(o.square().sum() for o in outputs).backward()
        grads = [p.grad.clone() for p in layer.parameters()]
        layer.zero_grad(set_to_none=True)
        return outputs, grads

    calls = reparametrisations(layer)
    alone = every_width()
    per_width = calls[0]
    with reparametrised_once(layer):
        shared = every_width()
    assert calls[0] - per_width == per_width // len(WIDTHS)  # (2, or SlimGDN+'s 6)
    assert layer.shared is None  # and after the block, each call reparametrises again
    for a, b in zip(alone[0], shared[0], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(alone[1], shared[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_gdn_reparametrised_once_lets_go_on_an_error():
    layer = SlimGDNPlus(WIDTHS)
    with pytest.raises(RuntimeError), reparametrised_once(layer):
        layer(torch.randn(1, 5, 2, 2))  # no width has 5 channels
    assert layer.shared is None


def test_make_gdn_rejects_unknown_variant():
    with pytest.raises(ValueError, match="unknown GDN variant"):
        make_gdn("batchnorm", WIDTHS)


def test_gdn_formula():
    layer = SlimGDN((2,))
    x = torch.tensor([[[[3.0]], [[4.0]]]])
    beta, gamma = layer.effective_parameters()
    expected = x[0, :, 0, 0] / torch.sqrt(beta + gamma @ x[0, :, 0, 0] ** 2)
    torch.testing.assert_close(layer(x)[0, :, 0, 0], expected)


@pytest.mark.parametrize("training", [True, False])
def test_the_sync_free_bottleneck_computes_what_compressai_s_does(training):
    """Same weights, same noise: the same outputs, likelihoods and gradients as
    compressai's EntropyBottleneck, whose state dict it loads as it is."""
    torch.manual_seed(0)
    ours, theirs = SyncFreeEntropyBottleneck(6), EntropyBottleneck(6)
    for p in theirs.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 6, 5, 7) * 4
    results = []
    for module in (ours, theirs):
        module.train(training)
        xi = x.clone().requires_grad_()
        torch.manual_seed(1)
        outputs, likelihood = module(xi)
        (likelihood.log().sum() + outputs.square().sum()).backward()
        results.append((outputs, likelihood, xi.grad))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
