"""The weighing gate's search, on domain ids alone: its grid of weights and its file forms.

The gate that weighs decoder adapters (``--domain mix``; Presta et al., DCC 2024) tries
every weighting on a grid and keeps the file of the lowest RD loss. What it tries, and how
each candidate is written, depend on no model, so :class:`slimcodec.codec.Codec` and the
edge runtime (:class:`slimcodec_edge.edge.EdgeCodec`) share them from here and write alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping
from dataclasses import replace

from .container import Header

__all__ = ["MIX_SEARCH_LIMIT", "weighed_header", "weight_grid"]

#: Adapters the search weighs at most: its grid grows as C(n + 4, 4) (70 weightings for 4).
MIX_SEARCH_LIMIT = 4
QUARTERS = 4


def weight_grid(adapters: int) -> list[tuple[float, ...]]:
    """Every weighting of ``adapters`` adapters on a grid of quarters whose weights sum to
    at most 1: the all-zero one is the source codec, a single 1 an adapter alone."""
    if not 0 < adapters <= MIX_SEARCH_LIMIT:
        raise ValueError(f"--domain mix weighs 1 to {MIX_SEARCH_LIMIT} adapters "
                         f"({adapters} are loaded)")
    return [tuple(q / QUARTERS for q in w)
            for w in itertools.product(range(QUARTERS + 1), repeat=adapters)
            if sum(w) <= QUARTERS]


def weighed_header(header: Header, weights: Mapping[int, float], coder: int,
                   own_tables: Collection[int]) -> Header:
    """The header of a file whose latent was coded with domain ``coder``'s entropy models
    (0: the source's), decoded with ``weights`` (domain id -> weight), in its shortest form.

    A mixture block only where no single domain decodes alike: no weights with the source's
    entropy models is the source's plain file, and one adapter at weight 1 is that domain's
    plain file when its entropy models code the latent (its own, in ``own_tables``, or the
    source's for an adapter without them). The mixture lists ``coder`` even at weight 0:
    the decoder needs its tables.
    """
    weights = {d: w for d, w in weights.items() if w}
    if not weights and not coder:
        return replace(header, domain=0, mixture=())
    if len(weights) == 1:
        ((domain, weight),) = weights.items()
        if weight == 1.0 and (coder == domain or (not coder and domain not in own_tables)):
            return replace(header, domain=domain, mixture=())
    if coder:
        weights.setdefault(coder, 0.0)
    return replace(header, domain=coder, mixture=tuple(sorted(weights.items())))
