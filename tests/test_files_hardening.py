"""Model, adapter, gate and checkpoint files are validated before use (issue 32): a file
missing a field, or asking for absurd widths, is a one-line ModelFileError, never a
traceback or a huge allocation."""

import time

import pytest
import torch
from helpers import sliced_slimcae

from slimcodec.cli import main
from slimcodec.errors import ModelFileError
from slimcodec.training.trainer import read_checkpoint
from slimcodec.zoo import load_model_file, save_model_file


@pytest.fixture(scope="module")
def model_payload(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_model_file(sliced_slimcae((16, 8)), path)
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("field", ["fingerprint", "config", "arch", "state_dict"])
def test_a_model_file_missing_a_field_is_one_line(model_payload, tmp_path, field, capsys):
    payload = {k: v for k, v in model_payload.items() if k != field}
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match=f"no valid '{field}'"):
        load_model_file(tmp_path / "m.pt")
    assert main(["compress", str(tmp_path / "m.pt"), "-o", str(tmp_path / "o.slc"),
                 "--model", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_absurd_widths_are_refused_before_any_allocation(model_payload, tmp_path):
    payload = dict(model_payload, config={**model_payload["config"], "widths": [200000]})
    torch.save(payload, tmp_path / "m.pt")
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match="widths must be"):
        load_model_file(tmp_path / "m.pt")
    assert time.perf_counter() - t0 < 5


def test_an_adapter_file_missing_a_field_is_one_line(tmp_path):
    from slimcodec.adaptation import load_adapter
    from slimcodec.adaptation.adapters import DomainAdapter, save_adapter

    model = sliced_slimcae((16, 8))
    save_adapter(DomainAdapter(model, "extend", "screen", entropy_models=True),
                 tmp_path / "a.pt")
    good = torch.load(tmp_path / "a.pt", weights_only=True)
    for field in ("source_fingerprint", "domain", "state_dict"):
        torch.save({k: v for k, v in good.items() if k != field}, tmp_path / "b.pt")
        with pytest.raises(ModelFileError, match=f"no valid '{field}'"):
            load_adapter(tmp_path / "b.pt", model)
    state = {k: v for k, v in good["state_dict"].items() if not k.startswith("bottlenecks.0")}
    torch.save(dict(good, state_dict=state), tmp_path / "c.pt")
    with pytest.raises(ModelFileError, match="do not fit"):
        load_adapter(tmp_path / "c.pt", model)


def test_a_hostile_checkpoint_is_one_line_without_torchs_advice(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ModelFileError, match="not a slimcodec training checkpoint") as info:
        read_checkpoint(tmp_path / "checkpoint.pt")
    assert "weights_only" not in str(info.value)
    torch.save({"step": 3}, tmp_path / "checkpoint.pt")
    with pytest.raises(ModelFileError, match="fields missing"):
        read_checkpoint(tmp_path / "checkpoint.pt")
