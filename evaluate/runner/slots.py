"""Where a benchmark item goes in a workflow: the layout node(s), the sampler seed(s), the latent size, the global
prompt and the saved image; plus the runner's overrides (ablations) on the same graph.

Found in an API-format prompt by node type and input names, so the shipped workflows work as they are:

- layout: every ``IFAInstanceLayout`` (the editor node: ``layout``, ``width``, ``height``) and ``IFALayoutFromJSON``
  (``json_text``; its ``file`` is set to none) gets the item's layout;
- seed: every ``seed`` / ``noise_seed`` of a sampler (a node with a ``latent_image`` input, or ``RandomNoise``);
- size: every empty-latent node (a ``*Latent*`` type with ``width``, ``height`` and ``batch_size``) gets the layout's
  canvas size, so the image comes out at the layout's size (checked after generation);
- global prompt: the ``text`` of the text-encode node(s) that feed a sampler's ``positive`` (through conditioning
  nodes such as ControlNet Apply) becomes ``prompt_template`` filled with the layout's prompt, when that is not empty;
- output: the ``SaveImage`` node (the one fed by a VAE Decode when there are several; ``output_node`` picks one).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..benchmark_file import BenchmarkItem, item_file_stem
from .workflow_format import WorkflowError, workflow_hash

LAYOUT_TYPES = ("IFAInstanceLayout", "IFALayoutFromJSON")
SEED_INPUTS = ("seed", "noise_seed")
NO_FILE = "(none)"
MAX_TRACE = 64
OUTPUT_PREFIX = "ifa_eval"

# Ablations (issue 15 item 7): runner options that set one input of the pack's nodes.
IFADAPTER_TOKEN_SETS = {  # the runner's word -> the Apply IFAdapter "token_set" choice
    "both": "appearance + EoT (official)",
    "appearance": "appearance only (no EoT)",
    "eot": "EoT only (no appearance)",
}


def _is_link(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)


@dataclass
class Override:
    """``target.input = value``; ``target`` is a node id or a node type (then every node of that type)."""

    target: str
    input: str
    value: object

    @classmethod
    def parse(cls, text: str) -> Override:
        """``NODE.input=VALUE`` (VALUE as JSON, else a string), e.g. ``KSampler.steps=20``, ``9.cfg=5``."""
        key, sep, raw = text.partition("=")
        target, dot, name = key.rpartition(".")
        if not sep or not dot or not target or not name:
            raise ValueError(f"--set {text!r}: write NODE.input=VALUE (NODE a node id or type), e.g. KSampler.steps=20")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        return cls(target, name, value)

    def apply(self, prompt: dict) -> int:
        hits = [nid for nid, n in prompt.items() if self.target in (nid, n["class_type"])]
        if not hits:
            raise WorkflowError(f"override {self.target}.{self.input}: no node with that id or type in the workflow")
        for nid in hits:
            prompt[nid]["inputs"][self.input] = self.value
        return len(hits)


def ablation_overrides(scaleu: str | None = None, mis: float | None = None,
                       ifadapter_tokens: str | None = None) -> list[Override]:  # fmt: skip
    """The ablation options as overrides: InstanceDiffusion ScaleU on / off and the MIS fraction (0 = off),
    IFAdapter token set (both / appearance / eot)."""
    out = []
    if scaleu is not None:
        if scaleu not in ("on", "off"):
            raise ValueError(f"--scaleu must be on or off, got {scaleu!r}")
        out.append(Override("IFAApplyInstanceDiffusion", "scaleu", scaleu == "on"))
    if mis is not None:
        if not 0.0 <= float(mis) <= 1.0:
            raise ValueError(f"--mis must be a fraction of the steps from 0 (off) to 1, got {mis!r}")
        out.append(Override("IFAInstanceDiffusionSampler", "mis", float(mis)))
    if ifadapter_tokens is not None:
        if ifadapter_tokens not in IFADAPTER_TOKEN_SETS:
            raise ValueError(f"--ifadapter-tokens must be one of {', '.join(IFADAPTER_TOKEN_SETS)}, "
                             f"got {ifadapter_tokens!r}")
        out.append(Override("IFAApplyIFAdapter", "token_set", IFADAPTER_TOKEN_SETS[ifadapter_tokens]))
    return out


@dataclass
class BenchmarkWorkflow:
    """An API prompt with its slots found; :meth:`for_item` gives the prompt that generates one item."""

    prompt: dict
    layout_nodes: list[str]
    seed_nodes: list[tuple[str, str]]
    size_nodes: list[str]
    text_nodes: list[str]
    output_node: str
    prompt_template: str = "{prompt}"
    overrides: list[Override] = field(default_factory=list)

    @classmethod
    def from_prompt(cls, prompt: dict, overrides: list[Override] = (), output_node: str | None = None,
                    prompt_template: str = "{prompt}") -> BenchmarkWorkflow:  # fmt: skip
        prompt = json.loads(json.dumps(prompt))
        for o in overrides:
            o.apply(prompt)
        if "{prompt}" not in prompt_template:
            raise ValueError(f"--prompt-template must contain {{prompt}}, got {prompt_template!r}")
        layout_nodes = [nid for nid, n in prompt.items() if n["class_type"] in LAYOUT_TYPES]
        if not layout_nodes:
            raise WorkflowError("the workflow has no layout node (Instance Layout or Layout from JSON) to take the "
                                "benchmark's layouts")
        seed_nodes = [(nid, name) for nid, n in prompt.items() for name in SEED_INPUTS
                      if name in n["inputs"] and not _is_link(n["inputs"][name])
                      and ("latent_image" in n["inputs"] or n["class_type"] == "RandomNoise")]
        if not seed_nodes:
            raise WorkflowError("the workflow has no sampler with a seed (KSampler, the InstanceDiffusion sampler, "
                                "RandomNoise, ...) to take the benchmark's seeds")
        size_nodes = [nid for nid, n in prompt.items() if "Latent" in n["class_type"]
                      and all(k in n["inputs"] and not _is_link(n["inputs"][k]) for k in ("width", "height"))
                      and "batch_size" in n["inputs"]]
        text_nodes = _positive_text_nodes(prompt)
        return cls(prompt, layout_nodes, seed_nodes, size_nodes, text_nodes, _output_node(prompt, output_node),
                   prompt_template, list(overrides))

    @property
    def hash(self) -> str:
        """The hash of the item-independent graph (overrides applied): what the manifest records."""
        return workflow_hash(self.prompt)

    def for_item(self, item: BenchmarkItem) -> dict:
        """A fresh API prompt generating ``item``: its layout, seed, canvas size and global prompt set."""
        p = json.loads(json.dumps(self.prompt))
        lay = item.layout
        text = lay.to_json()
        for nid in self.layout_nodes:
            inp = p[nid]["inputs"]
            if p[nid]["class_type"] == "IFAInstanceLayout":
                inp.update(layout=text, width=lay.width, height=lay.height)
            else:
                inp.update(json_text=text, file=NO_FILE)
                for k in ("width", "height"):
                    if k in inp and not _is_link(inp[k]):
                        inp[k] = 0  # 0 = the layout's own canvas
        for nid, name in self.seed_nodes:
            p[nid]["inputs"][name] = item.seed
        for nid in self.size_nodes:
            p[nid]["inputs"].update(width=lay.width, height=lay.height)
        if lay.prompt.strip():
            for nid in self.text_nodes:
                p[nid]["inputs"]["text"] = self.prompt_template.replace("{prompt}", lay.prompt)
        p[self.output_node]["inputs"]["filename_prefix"] = f"{OUTPUT_PREFIX}/{item_file_stem(item.id)}"
        return p


def _output_node(prompt: dict, chosen: str | None) -> str:
    saves = [nid for nid, n in prompt.items() if n["class_type"] == "SaveImage"]
    if chosen is not None:
        if chosen not in prompt:
            raise WorkflowError(f"--output-node {chosen!r}: no node with that id in the workflow")
        if "images" not in prompt[chosen]["inputs"]:
            raise WorkflowError(f"--output-node {chosen!r} ({prompt[chosen]['class_type']}) saves no images")
        return chosen
    if len(saves) > 1:
        decoded = [nid for nid in saves if _is_link(prompt[nid]["inputs"].get("images"))
                   and "VAEDecode" in prompt.get(prompt[nid]["inputs"]["images"][0], {}).get("class_type", "")]
        saves = decoded if decoded else saves
    if len(saves) != 1:
        raise WorkflowError(f"the workflow has {len(saves)} Save Image nodes ({', '.join(saves) or 'none'}); "
                            "it needs one, or name it with --output-node")
    return saves[0]


def _positive_text_nodes(prompt: dict) -> list[str]:
    """The text-encode nodes that feed a sampler's ``positive``, followed back through conditioning inputs."""
    found: list[str] = []
    starts = [n["inputs"]["positive"] for n in prompt.values() if _is_link(n["inputs"].get("positive"))
              and "latent_image" in n["inputs"]]
    stack, seen = list(starts), set()
    while stack and len(seen) < MAX_TRACE:
        src = stack.pop()[0]
        if src in seen or src not in prompt:
            continue
        seen.add(src)
        node = prompt[src]
        inputs = node["inputs"]
        if isinstance(inputs.get("text"), str) and _is_link(inputs.get("clip")):
            found.append(src)
            continue
        for name in ("conditioning", "positive", "conditioning_to", "conditioning_1"):
            if _is_link(inputs.get(name)):
                stack.append(inputs[name])
    return sorted(found, key=lambda s: (len(s), s))
