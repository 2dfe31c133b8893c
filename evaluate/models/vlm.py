"""The IFS verifier: any image-text-to-text model (Qwen2-VL, InternVL, LLaVA, ...) answering the IFS question.

The model loads with ``AutoModelForImageTextToText`` + ``AutoProcessor`` from a local folder (its ``model_type``
must be one ``transformers`` maps to image-text-to-text). Each crop gets the question of
:func:`evaluate.metrics.ifs.verification_prompt` (versioned, ``ifs-v1``) as one user turn with the image, formatted
by the processor's chat template with the generation prompt; decoding is greedy (``do_sample=False``) for at most
``max_new_tokens`` tokens, prompts left-padded in a batch; the new tokens are decoded without special tokens and
read by :func:`evaluate.metrics.ifs.parse_yes_no` (``yesno-v1``): True / False / None per instance, what
:func:`evaluate.metrics.ifs.ifs_rates` takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..metrics.ifs import MAX_ANSWER_CHARS, PROMPT_VERSION, parse_yes_no, verification_prompt
from .clip import _images
from .paths import Placement, WrongModelKind, check_model_type, placement, resolve_model

DEFAULT_BATCH = 8
MAX_NEW_TOKENS = 8
MAX_DESCRIPTION_CHARS = 1000


def image_text_to_text_types() -> tuple[str, ...]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return tuple(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


class VlmVerifier:
    """A VLM from a folder; :meth:`answers` gives its raw answers, :meth:`verdicts` the parsed yes / no / None."""

    def __init__(self, name: str, models_root: str | None = None, allow_path: bool = False,
                 allow_download: bool = False, device: str | None = None, fp16: bool | None = None,
                 batch_size: int = DEFAULT_BATCH, max_new_tokens: int = MAX_NEW_TOKENS,
                 prompt_version: str = PROMPT_VERSION):  # fmt: skip
        from transformers import AutoModelForImageTextToText, AutoProcessor

        folder = resolve_model(name, "vlm", models_root, allow_path, allow_download)
        self.model_type = check_model_type(folder, "vlm", name, image_text_to_text_types())
        self.place: Placement = placement(device, fp16)
        self.processor = AutoProcessor.from_pretrained(folder)
        if getattr(self.processor, "chat_template", None) is None:
            raise WrongModelKind(f"vlm model {name!r} at {folder} has no chat template in its processor files")
        self.processor.tokenizer.padding_side = "left"  # batched generation continues every prompt at its end
        self.model = AutoModelForImageTextToText.from_pretrained(folder, dtype=self.place.dtype)
        self.model = self.model.to(self.place.device).eval()
        if batch_size < 1 or not 1 <= max_new_tokens <= 64:
            raise ValueError(f"batch_size must be >= 1 and max_new_tokens in 1..64, got {batch_size}, {max_new_tokens}")
        verification_prompt("x", prompt_version)  # refuses an unknown version now
        self.batch_size, self.max_new_tokens, self.prompt_version = int(batch_size), int(max_new_tokens), prompt_version

    def prompt(self, description: str) -> str:
        """The chat-formatted text for one crop (the template's image placeholder, the question, the reply cue)."""
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": verification_prompt(description, self.prompt_version)}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.inference_mode()
    def answers(self, crops: Sequence[np.ndarray], descriptions: Sequence[str]) -> list[str]:
        """The model's answer to the IFS question for each (crop, description), greedy."""
        ims = _images(crops)
        descriptions = list(descriptions)
        if len(descriptions) != len(ims):
            raise ValueError(f"descriptions: {len(descriptions)} for {len(ims)} crops; give one per crop")
        for i, d in enumerate(descriptions, start=1):
            if not isinstance(d, str) or not d.strip() or len(d) > MAX_DESCRIPTION_CHARS:
                raise ValueError(f"description {i}: a non-empty string of at most {MAX_DESCRIPTION_CHARS} characters")
        out: list[str] = []
        for s in range(0, len(ims), self.batch_size):
            texts = [self.prompt(d) for d in descriptions[s:s + self.batch_size]]
            enc = self.processor(images=ims[s:s + self.batch_size], text=texts, padding=True, return_tensors="pt")
            enc = {k: (v.to(self.place.device, self.place.dtype) if v.is_floating_point() else v.to(self.place.device))
                   for k, v in enc.items()}  # fmt: skip
            gen = self.model.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens)
            new = gen[:, enc["input_ids"].shape[1]:]
            out.extend(a[:MAX_ANSWER_CHARS] for a in self.processor.batch_decode(new, skip_special_tokens=True))
        return out

    def verdicts(self, crops: Sequence[np.ndarray], descriptions: Sequence[str]) -> list[bool | None]:
        """:func:`parse_yes_no` of each answer: True (yes), False (no), None (neither)."""
        return [parse_yes_no(a) for a in self.answers(crops, descriptions)]
