"""Rewrite shipped weights files in the current model-file layout (version 2: byte planes,
which a wheel compresses better), keeping every value, the fingerprint and the metadata.

The file is replaced only when the rewritten one loads to the same fingerprint; a file
stored in float16 stays so.

    python tools/repack_weights.py slimcodec/zoo/weights/slimcae.pt [...]
"""

import argparse
import tempfile
import zlib
from pathlib import Path

import torch

from slimcodec.zoo import load_model_file, model_meta, save_model_file
from slimcodec.zoo.checkpoint import FILE_VERSION, fingerprint, read_model_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    args = p.parse_args()
    for name in args.files:
        path = Path(name)
        payload = read_model_file(path)
        if payload["version"] == FILE_VERSION:
            print(f"{path}: already version {FILE_VERSION}")
            continue
        half = any(v.dtype == torch.float16 for v in payload["state_dict"].values())
        model = load_model_file(path)
        before = fingerprint(model)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            target = Path(tmp) / path.name
            save_model_file(model, target, meta=model_meta(path), half=half)
            after = fingerprint(load_model_file(target))
            if after != before:
                raise SystemExit(f"{path}: rewritten file has fingerprint {after.hex()}, not "
                                 f"{before.hex()}: left as it is")
            zipped = [len(zlib.compress(f.read_bytes(), 6)) for f in (path, target)]
            target.replace(path)
        print(f"{path}: version {FILE_VERSION}, fingerprint {before.hex()} kept; compressed "
              f"(zlib level 6, as in a wheel) {zipped[0] / 1e6:.2f} -> {zipped[1] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
