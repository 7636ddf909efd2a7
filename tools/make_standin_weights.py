"""Write an UNTRAINED, seeded SlimCAE as the shipped `slimcae` weights.

Only a stand-in so that the codec's plumbing (CLI, container, registry, fingerprints) works
end to end before trained weights exist: its round trips are exact, its quality meaningless.
Usage: python tools/make_standin_weights.py
"""

import torch

from slimcodec.zoo import WEIGHTS_DIR, create_model, save_model_file

torch.manual_seed(0)
model = create_model("slimcae")
fp = save_model_file(
    model,
    WEIGHTS_DIR / "slimcae.pt",
    meta={"summary": "UNTRAINED stand-in (seeded init): exact round trips, meaningless quality",
          "trained": False},
)
print(f"wrote {WEIGHTS_DIR / 'slimcae.pt'} fingerprint {fp.hex()}")
