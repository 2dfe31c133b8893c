"""Which of an instance's 13 tokens the semantic map attends to: IFAdapter's Table 3 ablation (spec §8).

Each instance carries 12 appearance tokens (the resampler's 3 depths x 4) and its EoT token (spec §2.3). The paper
ablates the two parts: "EoT only" (no appearance tokens: details lost, FID up) and "appearance tokens only" (no
EoT: category errors, missing instances). Here the choice removes tokens at inference from a model trained with
both: each instance's attention (``IFAttnProcessor``) then runs over the kept tokens only, in the conditional and
the unconditional branch alike. The paper's rows are separately trained models, so this is the inference-time
reading of the ablation, not a reproduction of its weights (docs/official-differences.md).
"""
from __future__ import annotations

import dataclasses

from .adapter import TOKENS_PER_INSTANCE

APPEARANCE_TOKENS = TOKENS_PER_INSTANCE - 1  # tokens 0..11: resampler output, depth-major; token 12: EoT
OFFICIAL = "appearance + EoT (official)"
TOKEN_SETS = {
    OFFICIAL: slice(0, TOKENS_PER_INSTANCE),
    "appearance only (no EoT)": slice(0, APPEARANCE_TOKENS),
    "EoT only (no appearance)": slice(APPEARANCE_TOKENS, TOKENS_PER_INSTANCE),
}


def select_tokens(tokens, token_set: str = OFFICIAL):
    """``tokens`` (``InstanceTokens`` or ``FrameTokens``, ``cond`` / ``uncond`` ``[n, 13, C]``) with only the
    tokens of ``token_set`` kept (``[n, 13 | 12 | 1, C]``); the official set returns ``tokens`` itself. New tensors
    are views: the input is never changed."""
    if token_set not in TOKEN_SETS:
        raise ValueError(f"token_set must be one of {', '.join(map(repr, TOKEN_SETS))}; got {token_set!r}")
    if token_set == OFFICIAL:
        return tokens
    if tokens.cond.shape[1] != TOKENS_PER_INSTANCE:
        raise ValueError(f"token_set {token_set!r} needs the full {TOKENS_PER_INSTANCE} tokens per instance; these "
                         f"have {tokens.cond.shape[1]}")
    keep = TOKEN_SETS[token_set]
    return dataclasses.replace(tokens, cond=tokens.cond[:, keep], uncond=tokens.uncond[:, keep])
