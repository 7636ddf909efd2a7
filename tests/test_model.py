import pytest
import torch
from helpers import SMALL_WIDTHS, natural_like

from slimcodec.codec import Codec
from slimcodec.models import SlimCAE
from slimcodec.utils.tensors import pad_to_multiple, to_tensor


def test_forward_shapes_for_every_gdn_variant(gdn_variant):
    model = SlimCAE(SMALL_WIDTHS, gdn=gdn_variant)
    x = torch.rand(2, 3, 32, 48)
    for w in SMALL_WIDTHS:
        model.set_width(w)
        out = model(x)
        assert out["x_hat"].shape == x.shape
        assert out["likelihoods"]["y"].shape == (2, w, 2, 3)


def test_widths_sorted_and_validated():
    assert SlimCAE((8, 16, 12)).widths == (16, 12, 8)
    with pytest.raises(ValueError):
        SlimCAE((8, 8))
    with pytest.raises(ValueError, match="not one of"):
        SlimCAE((16, 8)).set_width(12)


def test_switching_back_and_forth_gives_identical_outputs(small_model):
    x = torch.rand(1, 3, 32, 32)
    first = {}
    with torch.no_grad():
        for w in SMALL_WIDTHS:
            small_model.set_width(w)
            first[w] = small_model(x)["x_hat"]
        for w in (8, 16, 12, 8, 16, 12):
            small_model.set_width(w)
            assert torch.equal(small_model(x)["x_hat"], first[w])


def test_using_width_restores_previous(small_model):
    small_model.set_width(12)
    with small_model.using_width(8):
        assert small_model.width == 8
        assert all(m.width_index == 2 for m in small_model._slimmable)
    assert small_model.width == 12


def test_switching_width_copies_and_allocates_nothing(small_model):
    storage = {k: v.data_ptr() for k, v in small_model.state_dict().items()}
    n_params = len(list(small_model.parameters()))
    for w in (8, 16, 12):
        small_model.set_width(w)
    assert {k: v.data_ptr() for k, v in small_model.state_dict().items()} == storage
    assert len(list(small_model.parameters())) == n_params


def test_entropy_bottleneck_per_width_and_aux_loss(small_model):
    assert [eb.channels for eb in small_model.entropy_bottlenecks] == list(SMALL_WIDTHS)
    small_model.set_width(12)
    assert small_model.entropy_bottleneck is small_model.entropy_bottlenecks[1]
    aux = small_model.aux_loss()
    assert aux.ndim == 0 and aux.item() > 0


def test_training_forward_backpropagates_into_shared_weights(small_model):
    small_model.train()
    small_model.set_width(8)
    out = small_model(torch.rand(1, 3, 32, 32))
    out["x_hat"].mean().backward()
    first = small_model.g_a[0].weight.grad
    assert first is not None
    assert first[:8].abs().sum() > 0 and first[8:].abs().sum() == 0  # only the slice learns


def test_ste_decoder_sees_the_test_time_latent_and_passes_gradients(small_model):
    """With ste_decoder, training's x_hat is eval's x_hat, and g_a still gets gradients."""
    x = torch.rand(1, 3, 32, 32)
    small_model.set_width(8)
    with torch.no_grad():
        expected = small_model.eval()(x)["x_hat"]
    small_model.train()
    try:
        small_model.ste_decoder = True
        out = small_model(x)
        torch.testing.assert_close(out["x_hat"], expected)
        ((out["x_hat"] - x) ** 2).mean().backward()
        assert small_model.g_a[0].weight.grad[:8].abs().sum() > 0
    finally:
        small_model.ste_decoder = False
    torch.manual_seed(0)
    with torch.no_grad():  # the noisy relaxation differs from test time
        assert not torch.allclose(small_model(x)["x_hat"], expected)


@pytest.mark.parametrize("size", [(37, 53), (16, 16), (1, 1), (45, 17)])
def test_compress_decompress_reproduces_forward_symbols(small_model, size):
    """decompress(compress(x)) gives exactly forward's quantised latent, at every width."""
    small_model.update(force=True)
    x = pad_to_multiple(to_tensor(natural_like(*size, seed=size[0])), 16)
    with torch.no_grad():
        for w in SMALL_WIDTHS:
            small_model.set_width(w)
            eb = small_model.entropy_bottleneck
            y = small_model.g_a(x)
            y_hat_forward, _ = eb(y)  # eval mode: rounds around the medians
            enc = small_model.compress(x)
            y_hat_decoded = eb.decompress(enc["strings"][0], enc["shape"])
            assert torch.equal(y_hat_decoded, y_hat_forward)
            x_hat = small_model.decompress(enc["strings"], enc["shape"])["x_hat"]
            assert torch.equal(x_hat, small_model(x)["x_hat"].clamp(0, 1))


def test_load_state_dict_round_trip_preserves_cdfs(small_model):
    small_model.update(force=True)
    clone = SlimCAE(SMALL_WIDTHS, gdn="slim+").eval()
    clone.load_state_dict(small_model.state_dict())
    x = torch.rand(1, 3, 32, 32)
    for w in SMALL_WIDTHS:
        small_model.set_width(w)
        clone.set_width(w)
        assert small_model.compress(x)["strings"] == clone.compress(x)["strings"]


def test_codec_round_trip_is_exact_on_odd_sizes(small_model):
    codec = Codec(small_model)
    for w in SMALL_WIDTHS:
        for size in ((23, 41), (64, 48)):
            img = natural_like(*size)
            decoded, header = codec.decode_rgb(codec.encode_rgb(img, w))
            assert decoded.shape == img.shape and header.width == w
            # what decode returns is exactly the model's quantised reconstruction
            x = pad_to_multiple(to_tensor(img), 16)
            with torch.no_grad(), small_model.using_width(w):
                ref = small_model(x)["x_hat"].clamp(0, 1)[..., : size[0], : size[1]]
            expected = ref[0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            assert (decoded == expected).all()


def _every_kind():
    """A tiny model of each kind, trained transforms (cut from the shipped slimcae)."""
    from helpers import aux_trained, sliced_slimcae, tiny_hyperprior, tiny_variable_rate

    models = [sliced_slimcae(), tiny_variable_rate(), tiny_hyperprior()]
    for model in models[:2]:
        aux_trained(model)
        model.update(force=True)
        model.eval()
    return models


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_stage_parameters_change_their_side_alone(side):
    """What ``train --stage encoder`` may change (``ENCODER_PARAMETERS``) changes what a
    model writes and never what it reads: the same strings decode to the same pixels.
    What ``--stage decoder`` may change (``DECODER_PARAMETERS``) changes what it reads and
    never what it writes: the same latent, the same strings."""
    torch.manual_seed(3)
    x = to_tensor(natural_like(48, 64, seed=9))
    for model in _every_kind():
        kind = type(model).__name__
        model.set_width(SMALL_WIDTHS[-1])
        if hasattr(model, "set_lambda"):  # away from the middle, where a latent gain is 1
            model.set_lambda(model.lambda_range(SMALL_WIDTHS[-1])[-1])
        prefixes = model.ENCODER_PARAMETERS if side == "encoder" else model.DECODER_PARAMETERS
        params = [p for n, p in model.named_parameters() if n.startswith(prefixes)]
        assert params, kind
        with torch.no_grad():
            written = model.compress(x)
            read = model.decompress(**written)["x_hat"]
            y = model.analysis(x)
            for p in params:
                p.mul_(1 + 0.1 * torch.randn_like(p)).add_(0.1 * torch.randn_like(p))
            writes_the_same = torch.equal(model.analysis(x), y)
            reads_the_same = torch.equal(model.decompress(**written)["x_hat"], read)
            assert (writes_the_same, reads_the_same) == (side == "decoder", side == "encoder"), kind
            if side == "decoder":
                assert model.compress(x)["strings"] == written["strings"], kind
