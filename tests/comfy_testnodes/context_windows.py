"""Test-only: context windows over the frames of a batch, the way video samplers pass them to the UNet.

``IFATest_ContextWindows`` wraps the model's UNet call (``set_model_unet_function_wrapper``): for each window (a list
of frame indices) it runs the UNet on those frames' rows of every ``cond_or_uncond`` chunk, with the window exposed
as AnimateDiff-Evolved does (``transformer_options["ad_params"]["sub_idxs"]``), as ComfyUI's own context windows do
(``transformer_options["context_window"].index_list``) or not at all ("hidden", to show that the frames are then
taken by batch position), and puts the outputs back in place. Windows must cover every frame exactly once, so the
result equals the full-batch call when each window gets its own frames' grounding.
"""
from __future__ import annotations

import torch


class _Window:  # the two attributes of comfy.context_windows.IndexListContextWindow that matter here
    def __init__(self, index_list):
        self.index_list, self.dim = list(index_list), 0


class ContextWindows:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "windows": ("STRING", {"default": "0,1;2,3"}),
                             "expose": (["animatediff", "comfy", "hidden"],)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = "testing"

    def apply(self, model, windows, expose):
        wins = [[int(i) for i in w.split(",")] for w in windows.split(";")]
        m = model.clone()

        def wrapper(apply_model, args):
            x, t, c, cou = args["input"], args["timestep"], args["c"], args["cond_or_uncond"]
            per = x.shape[0] // len(cou)
            if sorted(i for w in wins for i in w) != list(range(per)):
                raise ValueError(f"windows {wins} must cover the {per} frames exactly once")
            out = torch.empty_like(x)
            for w in wins:
                rows = torch.tensor([j * per + i for j in range(len(cou)) for i in w])
                to = dict(c.get("transformer_options", {}))
                if expose == "animatediff":
                    to["ad_params"] = {"full_length": per, "context_length": len(w), "sub_idxs": list(w)}
                elif expose == "comfy":
                    to["context_window"] = _Window(w)
                sub = {k: (v[rows] if torch.is_tensor(v) and v.shape[:1] == x.shape[:1] else v) for k, v in c.items()}
                sub["transformer_options"] = to
                out[rows] = apply_model(x[rows], t[rows], **sub)
            return out

        m.set_model_unet_function_wrapper(wrapper)
        return (m,)


NODE_CLASS_MAPPINGS = {"IFATest_ContextWindows": ContextWindows}
