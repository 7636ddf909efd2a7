import warnings

import pytest
import torch

warnings.filterwarnings(
    "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
)

from helpers import SMALL_WIDTHS, aux_trained  # noqa: E402

from slimcodec.models import SlimCAE  # noqa: E402


@pytest.fixture(params=["switch", "slim", "slim+"])
def gdn_variant(request):
    return request.param


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return aux_trained(SlimCAE(widths=SMALL_WIDTHS, gdn="slim+")).eval()
