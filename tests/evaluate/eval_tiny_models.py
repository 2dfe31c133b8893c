"""Tiny random-weight models of every evaluation model family, saved in the normal layout without any download.

Tokenizers come from the CLIP vocabulary ComfyUI ships (``comfy/sd1_tokenizer``) or are made locally (a WordPiece
vocabulary for BERT); image processors are built from their classes. Hidden sizes 16-32, 1-2 layers, 64-96 px.
"""

from __future__ import annotations

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SD1_TOKENIZER = ROOT / ".cache" / "comfyui-2024" / "comfy" / "sd1_tokenizer"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def clip_tokenizer(max_len: int = 16):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(str(SD1_TOKENIZER / "vocab.json"), str(SD1_TOKENIZER / "merges.txt"))
    tok.model_max_length = max_len
    return tok


def _clip_text(vocab: int, max_pos: int = 16, **kw) -> dict:
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=max_pos, **kw)  # fmt: skip


def _clip_vision(image: int = 64, patch: int = 16, **kw) -> dict:
    return dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=image,
                patch_size=patch, **kw)  # fmt: skip


def save_clip(folder: pathlib.Path) -> pathlib.Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = clip_tokenizer()
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=_clip_text(len(tok)), vision_config=_clip_vision(), projection_dim=16)
    CLIPModel(cfg).save_pretrained(folder)
    ip = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    return folder


def save_owlv2(folder: pathlib.Path) -> pathlib.Path:
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tok = clip_tokenizer()
    torch.manual_seed(0)
    cfg = Owlv2Config(text_config=_clip_text(len(tok)), vision_config=_clip_vision(64, 16), projection_dim=32)
    Owlv2ForObjectDetection(cfg).save_pretrained(folder)
    ip = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    Owlv2Processor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    return folder


WORDS = ("a cat dog red blue green yellow car tree person object the of and yes no photo image this does show "
         "answer with one word or").split()  # fmt: skip


def bert_tokenizer():
    """A BERT WordPiece tokenizer over a small local vocabulary (special tokens, punctuation, letters, words)."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", '"']
    vocab += list("abcdefghijklmnopqrstuvwxyz") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + list(WORDS)
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(dict.fromkeys(vocab))}, do_lower_case=True)


def save_grounding_dino(folder: pathlib.Path) -> pathlib.Path:
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        ResNetConfig,
    )

    tok = bert_tokenizer()
    backbone = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                            layer_type="basic", out_features=["stage1", "stage2"])  # fmt: skip
    text = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    cfg = GroundingDinoConfig(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False,
                              text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
                              encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
                              decoder_attention_heads=2, num_queries=12, num_feature_levels=2,
                              encoder_n_points=2, decoder_n_points=2, max_text_len=32)  # fmt: skip
    GroundingDinoForObjectDetection(cfg).save_pretrained(folder)
    ip = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    return folder


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
                 "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n"
                 "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")  # fmt: skip


def save_llava(folder: pathlib.Path) -> pathlib.Path:
    """A tiny LLaVA (CLIP vision tower + Llama text model), an image-text-to-text model with a chat template."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,  # fmt: skip
        LlavaProcessor,
    )

    tok = clip_tokenizer(max_len=256)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = CLIPVisionConfig(**_clip_vision(32, 16))
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       bos_token_id=tok.bos_token_id)  # fmt: skip
    torch.manual_seed(0)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                      vision_feature_layer=-1, vision_feature_select_strategy="default")  # fmt: skip
    LlavaForConditionalGeneration(cfg).save_pretrained(folder)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=16, vision_feature_select_strategy="default",
                   chat_template=CHAT_TEMPLATE, image_token="<image>", num_additional_image_tokens=1).save_pretrained(folder)  # fmt: skip
    return folder


def save_siglip(folder: pathlib.Path) -> pathlib.Path:
    """A tiny SigLIP; its processor takes the CLIP tokenizer (SigLIP's own is a SentencePiece model not shipped)."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tok = clip_tokenizer()
    torch.manual_seed(0)
    cfg = SiglipConfig(text_config=_clip_text(len(tok)), vision_config=_clip_vision(64, 16))
    SiglipModel(cfg).save_pretrained(folder)
    ip = SiglipImageProcessor(size={"height": 64, "width": 64})
    SiglipProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    return folder


def save_eval_models(root: pathlib.Path) -> pathlib.Path:
    """The three model kinds the scoring tests load, under ``root/<kind>/<name>``: ``detection/tiny-owlv2``,
    ``clip/tiny-clip``, ``vlm/tiny-llava``; returns ``root``."""
    save_owlv2(root / "detection" / "tiny-owlv2")
    save_clip(root / "clip" / "tiny-clip")
    save_llava(root / "vlm" / "tiny-llava")
    return root
