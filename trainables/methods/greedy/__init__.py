"""greedy: block-by-block training with auxiliary heads (Belilovsky et al. 2019), its decoupled
form (DGL, Belilovsky et al. 2020) and automatic depth selection (Xu 2023); see docs/greedy.md.

One method name, `greedy`, three variants chosen by its knobs (`variant_class`, which
trainables.methods.build_method asks):
- `sequential.SequentialGreedy` (default): one stage per block group, earlier groups frozen.
- `decoupled.DecoupledGreedy` (`decoupled=true`): all groups in one stage, each on detached input.
- `auto_depth.AutoDepthGreedy` (`auto_depth=true`): sequential, stops adding groups that do not pay.
`base` holds what they share (knobs, groups, heads, optimisers per group, BN warm-up).
"""

from trainables.methods.greedy.auto_depth import AutoDepthGreedy
from trainables.methods.greedy.base import (
    ANNEAL_FRAC,
    Greedy,
    GreedyParams,
    block_groups,
    head_width,
)
from trainables.methods.greedy.decoupled import DecoupledGreedy
from trainables.methods.greedy.sequential import SequentialGreedy

__all__ = [
    "ANNEAL_FRAC",
    "AutoDepthGreedy",
    "DecoupledGreedy",
    "Greedy",
    "GreedyParams",
    "SequentialGreedy",
    "block_groups",
    "head_width",
    "variant_class",
]


def variant_class(params: GreedyParams) -> type[Greedy]:
    """The class of the variant `params` select: decoupled (DGL), auto_depth, or sequential
    greedy."""
    if params.decoupled:
        return DecoupledGreedy
    return AutoDepthGreedy if params.auto_depth else SequentialGreedy
