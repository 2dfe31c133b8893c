"""The cache step (engine): latents and the recipe's features of every sample, encoded once into sharded
safetensors.

Training steps then run only the UNet and the trained modules. One cache folder holds one encoding of one dataset:
``<cache.dir>/<key>/`` where the key hashes the base model file (SHA-256), the recipe (name, cache version, the
settings it names in ``cache_settings``), the data settings that change pixels or boxes (resolution, buckets, crop,
minimum box area, run seed for the crop positions), the storage dtype and the dataset listing (names, sizes,
modification times). A second run with the same key reuses it.

Per sample ``i`` (keys ``{i}/<field>`` in shard ``r<rank>-<k>.safetensors``):

- ``latent`` ``[C, h, w]``: the VAE latent already in the UNet's space (``process_latent_in``);
- every field the recipe's ``encode_sample`` returns (``Recipe.cache_fields``: e.g. IFAdapter's prompt embedding,
  pooled vector, description hidden states, word masks and boxes), stored by kind: ``feature`` in ``[cache] dtype``,
  ``exact`` as given, ``mask`` as uint8.

``manifest.json`` lists each sample's name, shard, bucket, micro-conditioning and instance count, and the samples
that were skipped with the reason. Work is split across processes (sample i goes to rank i mod world size); rank 0
writes the manifest after every rank finished; every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable

import torch

from .config import Config
from .data import BadSample, SampleFiles, buckets, list_samples, prepare_sample, sample_seed

log = logging.getLogger("train")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
MANIFEST = "manifest.json"
CACHE_VERSION = 2


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_sha256(path: str, memo_dir: str | None = None) -> str:
    """SHA-256 of a file, remembered in ``memo_dir/file_hashes.json`` per (path, size, mtime)."""
    st = os.stat(path)
    ident = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = os.path.join(memo_dir, "file_hashes.json") if memo_dir else None
    memo = {}
    if memo_path and os.path.isfile(memo_path):
        try:
            with open(memo_path) as f:
                memo = json.load(f)
        except (OSError, ValueError):
            memo = {}
    if ident in memo:
        return memo[ident]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if memo_path:
        os.makedirs(memo_dir, exist_ok=True)
        memo[ident] = digest
        atomic_write_bytes(memo_path, json.dumps(memo, indent=1).encode())
    return digest


def cache_key(cfg: Config, model_hash: str, files: list[SampleFiles], recipe) -> str:
    """The cache folder name for this model, this recipe, these settings and this dataset listing."""
    d = cfg.data
    listing = []
    for s in files:
        st_i, st_l = os.stat(s.image), os.stat(s.layout)
        listing.append((s.name, st_i.st_size, st_i.st_mtime_ns, st_l.st_size, st_l.st_mtime_ns))
    payload = {
        "version": CACHE_VERSION, "model": model_hash, "resolution": d.resolution, "bucket_step": d.bucket_step,
        "buckets": d.buckets, "random_crop": d.random_crop, "min_box_area": d.min_box_area,
        "seed": cfg.train.seed, "dtype": cfg.cache.dtype, "files": listing,
        "recipe": [recipe.name, recipe.cache_version, recipe.cache_settings()],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


class CacheBuilder:
    """Encodes this rank's share of the samples into shards and writes a part manifest."""

    def __init__(self, cfg: Config, folder: str, vae, model, recipe, encoders, rank: int, world: int):
        self.cfg, self.folder, self.vae, self.model = cfg, folder, vae, model
        self.recipe, self.encoders = recipe, encoders
        self.rank, self.world = rank, world
        self.dtype = DTYPES[cfg.cache.dtype]

    def build(self, files: list[SampleFiles], progress: Callable | None = None) -> None:
        from safetensors.torch import save_file

        options = buckets(self.cfg.data.resolution, self.cfg.data.bucket_step, self.cfg.data.buckets)
        entries, bad, shard, tensors, k = {}, [], None, {}, 0

        def flush() -> None:
            nonlocal tensors, k, shard
            if tensors:
                path = os.path.join(self.folder, shard)
                tmp = f"{path}.tmp-{os.getpid()}"
                save_file(tensors, tmp)
                os.replace(tmp, path)
                k += 1
            tensors = {}

        mine = list(range(self.rank, len(files), self.world))
        for n, i in enumerate(mine):
            if not tensors:
                shard = f"r{self.rank:03d}-{k:05d}.safetensors"
            try:
                s = prepare_sample(files[i], options, self.cfg.data.min_box_area, self.cfg.data.random_crop,
                                   sample_seed(self.cfg.train.seed, i))
            except BadSample as e:
                bad.append({"name": files[i].name, "reason": str(e)})
                log.warning("skipping sample %s", e)
                continue
            with torch.no_grad():
                latent = self.vae.encode(s.pixels[None])
                latent = self.model.model.process_latent_in(latent)[0]
                fields = self.recipe.encode_sample(s, self.encoders)
            if set(fields) != set(self.recipe.cache_fields):
                raise RuntimeError(f"recipe {self.recipe.name}: encode_sample returned {sorted(fields)}, its "
                                   f"cache_fields are {sorted(self.recipe.cache_fields)}")
            tensors[f"{i}/latent"] = latent.to(self.dtype).contiguous()
            for key, t in fields.items():
                kind = self.recipe.cache_fields[key]
                t = t.detach().cpu()
                t = t.to(self.dtype) if kind == "feature" else t.to(torch.uint8) if kind == "mask" else t
                tensors[f"{i}/{key}"] = t.contiguous()
            entries[str(i)] = {"name": s.name, "shard": shard, "bucket": list(s.bucket),
                               "original_size": list(s.original_size), "crop": list(s.crop),
                               "instances": len(s.descriptions), "prompt": s.prompt}
            if len(tensors) >= (1 + len(fields)) * self.cfg.cache.shard_size:
                flush()
            if progress:
                progress(n + 1, len(mine))
        flush()
        part = {"entries": entries, "bad": bad}
        atomic_write_bytes(os.path.join(self.folder, f"part-r{self.rank:03d}.json"), json.dumps(part).encode())


def merge_parts(folder: str, world: int, key: str, missing_layouts: list[tuple[str, str]]) -> dict:
    """Rank 0: join the part manifests into ``manifest.json`` (written last: its presence marks a complete cache)."""
    entries, bad = {}, [{"name": n, "reason": r} for n, r in missing_layouts]
    for r in range(world):
        with open(os.path.join(folder, f"part-r{r:03d}.json")) as f:
            part = json.load(f)
        entries.update(part["entries"])
        bad.extend(part["bad"])
    order = sorted(entries, key=int)
    manifest = {"version": CACHE_VERSION, "key": key, "samples": [dict(entries[i], index=int(i)) for i in order],
                "bad": sorted(bad, key=lambda b: b["name"])}
    atomic_write_bytes(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=1).encode())
    return manifest


class CacheReader:
    """Reads cached samples (memory-mapped shards, opened lazily); ``fields`` is the recipe's ``cache_fields``."""

    def __init__(self, folder: str, fields: dict[str, str]):
        self.folder, self.fields = folder, dict(fields, latent="feature")
        with open(os.path.join(folder, MANIFEST)) as f:
            self.manifest = json.load(f)
        self.samples: list[dict] = self.manifest["samples"]
        self._handles: dict = {}

    def __len__(self) -> int:
        return len(self.samples)

    def get(self, pos: int) -> dict:
        """Sample at position ``pos`` of the manifest: its fields (features as float32, masks as bool, exact
        fields as stored) plus its manifest entry under ``entry``."""
        from safetensors import safe_open

        entry = self.samples[pos]
        h = self._handles.get(entry["shard"])
        if h is None:
            h = safe_open(os.path.join(self.folder, entry["shard"]), framework="pt")
            self._handles[entry["shard"]] = h
        i = entry["index"]
        out = {}
        for k, kind in self.fields.items():
            t = h.get_tensor(f"{i}/{k}")
            out[k] = t.float() if kind == "feature" else t.bool() if kind == "mask" else t
        out["entry"] = entry
        return out

    def summary(self) -> dict:
        """Counts for logs and export metadata."""
        inst = [s["instances"] for s in self.samples]
        per_bucket: dict[str, int] = {}
        for s in self.samples:
            b = "x".join(str(v) for v in s["bucket"])
            per_bucket[b] = per_bucket.get(b, 0) + 1
        return {"samples": len(self.samples), "skipped": len(self.manifest["bad"]), "instances": sum(inst),
                "max_instances": max(inst) if inst else 0, "buckets": per_bucket}


def ensure_cache(cfg: Config, model_hash: str, recipe, encoders: Callable, rank: int, world: int,
                 barrier: Callable[[], None], progress: Callable | None = None) -> CacheReader:
    """Build the cache if needed (all ranks share the work), then open it on every rank.

    ``encoders()`` returns ``(vae, model, recipe encoders)`` (called only when something must be encoded).
    """
    files, missing = list_samples(cfg.data.folder)
    if not files:
        raise ValueError(f"no image with a layout JSON found in {cfg.data.folder} "
                         f"({len(missing)} images without a layout)")
    key = cache_key(cfg, model_hash, files, recipe)
    folder = os.path.join(cfg.cache.dir, key)
    if os.path.isfile(os.path.join(folder, MANIFEST)):
        if rank == 0:
            log.info("reusing the cache %s", folder)
    else:
        os.makedirs(folder, exist_ok=True)
        barrier()
        vae, model, enc = encoders()
        CacheBuilder(cfg, folder, vae, model, recipe, enc, rank, world).build(files, progress)
        barrier()
        if rank == 0:
            merge_parts(folder, world, key, missing)
            log.info("cache written to %s", folder)
        barrier()
    reader = CacheReader(folder, recipe.cache_fields)
    if rank == 0:
        for b in reader.manifest["bad"]:
            log.warning("skipped sample %s: %s", b["name"], b["reason"])
    if not len(reader):
        raise ValueError(f"every sample in {cfg.data.folder} was skipped; see the reasons above")
    return reader
