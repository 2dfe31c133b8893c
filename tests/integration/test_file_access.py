"""User-given file names in a real ComfyUI: every read stays inside the input folder, every write inside the model
folder, and a refused name is never opened (an audit hook records every open of this process)."""
from __future__ import annotations

import json
import os
import sys

import pytest
import swap_race
from comfy_env import GraphError
from file_watch import OpenedPaths
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

LAYOUT = {"format": "instance-layout", "version": 1, "width": 256, "height": 256, "prompt": "",
          "instances": [{"description": "a red ball", "regions": [{"kind": "box", "box": [10, 10, 100, 100]}]}]}
SECRET = {"api_key": "sk-do-not-leak", "password": "hunter2"}


def _from_json(file):
    return {"src": {"class_type": "IFALayoutFromJSON", "inputs": {"json_text": "", "file": file}},
            "masks": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["src", 0], "width": 32,
                                                                   "height": 32}},
            "img": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 0]}},
            "save": {"class_type": "SaveImage", "inputs": {"images": ["img", 0], "filename_prefix": "t_fa"}}}


@pytest.fixture(scope="module")
def hostile(comfy, tmp_path_factory):
    """Targets outside the input folder, and links / special files inside it that lead there."""
    outside = tmp_path_factory.mktemp("outside")
    secret = outside / "secret.json"
    secret.write_text(json.dumps(SECRET))
    inp = comfy.input_dir
    (inp / "sub").mkdir(exist_ok=True)
    (inp / "sub" / "nested.json").write_text(json.dumps(LAYOUT))
    for name, target in (("leak.json", secret), ("etc_link.json", "/etc/passwd"), ("dir_link.json", outside)):
        if not os.path.lexists(inp / name):
            os.symlink(target, inp / name)
    if not os.path.exists(inp / "pipe.json"):
        os.mkfifo(inp / "pipe.json")
    (inp / "folder.json").mkdir(exist_ok=True)
    with open(inp / "huge.json", "wb") as f:  # sparse: 17 MB by size, nothing written
        f.truncate(17 * 2**20)
    (comfy.output_dir / "out.json").write_text(json.dumps(SECRET))
    cases = {  # value of the `file` input -> the path that must never be opened
        "/etc/passwd": "/etc/passwd",
        "../../../../../../etc/passwd": "/etc/passwd",
        "/proc/self/environ": "/proc/self/environ",
        "/dev/zero": "/dev/zero",
        str(secret): str(secret),
        "leak.json": str(secret),
        "etc_link.json": "/etc/passwd",
        "dir_link.json": str(outside),
        "pipe.json": str(inp / "pipe.json"),
        "folder.json": str(inp / "folder.json"),
        "huge.json": str(inp / "huge.json"),
        "sub/../../outside/secret.json": str(secret),
        "out.json [output]": str(comfy.output_dir / "out.json"),
        "missing.json": str(inp / "missing.json"),
    }
    return cases, secret


def _shape(msg: str, name: str) -> str:
    return msg.replace(repr(name[:200]), "<NAME>")


def test_refused_names_fail_validation_unopened_with_one_message(comfy, hostile):
    cases, _ = hostile
    shapes = set()
    for value, target in cases.items():
        with OpenedPaths() as seen:
            ok, err, _outputs, node_errors = comfy.validate(_from_json(value))
            with pytest.raises(GraphError):
                comfy.run(_from_json(value))
        assert not ok, value
        text = json.dumps(node_errors)
        assert "cannot be read" in text, (value, text)
        assert "api_key" not in text and "hunter2" not in text and "root:" not in text
        assert not seen.touched(target), f"{value!r}: {target} was opened"
        detail = node_errors["src"]["errors"][0]["details"]
        shapes.add(_shape(detail, value))
    # the same words whatever the reason (missing, outside, FIFO, directory, too large): nothing leaks
    assert len(shapes) == 1, shapes


def test_node_refuses_again_at_execution_unopened(comfy, hostile):
    """The node's own load() holds the rule too (it does not rely on validation having run)."""
    cases, _ = hostile
    node = comfy.node_class("IFALayoutFromJSON")()
    layout_error = sys.modules[comfy.node_class("IFALayoutFromJSON").__module__].LayoutError
    for value, target in cases.items():
        with OpenedPaths() as seen, pytest.raises(layout_error, match="cannot be read"):
            node.load("", value)
        assert not seen.touched(target), value


def test_files_inside_the_input_folder_and_subfolders_load_and_are_listed(comfy, hostile):
    listed = comfy.node_class("IFALayoutFromJSON").INPUT_TYPES()["required"]["file"][0]
    assert "sub/nested.json" in listed
    for bad in ("leak.json", "etc_link.json", "dir_link.json", "pipe.json", "folder.json", "huge.json"):
        assert bad not in listed
    out = comfy.run(_from_json("sub/nested.json"))
    assert len(out["save"]["images"]) == 1


def test_underlay_reference_must_stay_in_comfy_folders(comfy):
    lay = dict(LAYOUT, underlay={"filename": "x.png", "subfolder": "../../..", "type": "input"})
    g = {"lay": {"class_type": "IFAInstanceLayout", "inputs": {"width": 256, "height": 256,
                                                               "layout": json.dumps(lay)}},
         "p": {"class_type": "IFALayoutPreview", "inputs": {"layout": ["lay", 0], "opacity": 0.5,
                                                           "legend": False}}}
    with pytest.raises(GraphError, match="'underlay' must be"):
        comfy.run(g)
    lay["underlay"] = {"filename": "x.png", "subfolder": "ifadapter_underlays", "type": "input"}
    g["lay"]["inputs"]["layout"] = json.dumps(lay)
    comfy.run(g)  # a reference inside the input folder is fine (and is never opened by the server)


def test_model_names_outside_the_model_folder_are_refused_unopened(comfy):
    # the converters are output nodes with the same model-list combo as the loaders
    for node, field, extra in (("IFAAdapterConvert", "ifadapter_name", {"output_name": "", "dtype": "keep",
                                                                        "overwrite": False}),
                               ("IFAInstanceDiffusionConvert", "model_name", {"output_name": "x", "fp16": True})):
        for value in ("../../../../etc/passwd", "/etc/passwd"):
            g = {"l": {"class_type": node, "inputs": {field: value, **extra}}}
            with OpenedPaths() as seen:
                ok, _err, _o, node_errors = comfy.validate(g)
            assert not ok and "not in list" in json.dumps(node_errors).lower(), node_errors
            assert not seen.touched("/etc/passwd")
    for node in ("IFAAdapterLoader", "IFAInstanceDiffusionLoader"):  # and the loaders refuse it themselves
        with OpenedPaths() as seen, pytest.raises(ValueError, match="not allowed"):
            comfy.node_class(node)().load("../../../../etc/passwd")
        assert not seen.touched("/etc/passwd")


@pytest.fixture(scope="module")
def tiny_models(comfy):
    ifa = sys.modules[comfy.node_class("IFATest_SaveLatentTensor").__module__].write_tiny_ifadapter
    ifa(str(comfy.models_dir / "ifadapter" / "fa_tiny.bin"), seed=3, fmt="bin")
    from comfy_testnodes import tiny_instancediffusion as tid

    tid.write_safetensors(str(comfy.models_dir / "instancediffusion" / "fa_tiny_id.safetensors"))
    return comfy.models_dir


def _convert(node, **inputs):
    return {"c": {"class_type": node, "inputs": inputs}}


CONVERTERS = (
    ("IFAAdapterConvert", "ifadapter", {"ifadapter_name": "fa_tiny.bin", "dtype": "keep"}),
    ("IFAInstanceDiffusionConvert", "instancediffusion", {"model_name": "fa_tiny_id.safetensors", "fp16": True}),
)


@pytest.mark.parametrize("node,folder,inputs", CONVERTERS)
def test_converter_output_stays_in_the_model_folder(comfy, tiny_models, tmp_path, node, folder, inputs):
    escape = tmp_path / "escaped.safetensors"
    for name in (str(escape), "../../escaped.safetensors", "sub/x.safetensors", "..\\x.safetensors", ".safetensors",
                 ".hidden"):
        with pytest.raises(GraphError, match="not allowed"):
            comfy.run(_convert(node, **inputs, output_name=name, overwrite=True))
    assert not escape.exists() and not (tiny_models.parent / "escaped.safetensors").exists()
    leftovers = [f for f in os.listdir(tiny_models / folder) if f.endswith(".part")]
    assert leftovers == []


@pytest.mark.parametrize("node,folder,inputs", CONVERTERS)
def test_converter_never_overwrites_unless_asked(comfy, tiny_models, node, folder, inputs):
    dst = tiny_models / folder / f"fa_out_{node}.safetensors"
    dst.write_bytes(b"precious")
    with pytest.raises(GraphError, match="already exists"):
        comfy.run(_convert(node, **inputs, output_name=dst.name, overwrite=False))
    assert dst.read_bytes() == b"precious"
    link = tiny_models / folder / f"fa_link_{node}.safetensors"
    victim = tiny_models.parent / f"victim_{node}.txt"
    victim.write_text("keep")
    if not os.path.lexists(link):
        os.symlink(victim, link)
    with pytest.raises(GraphError, match="not a regular file"):
        comfy.run(_convert(node, **inputs, output_name=link.name, overwrite=True))
    assert victim.read_text() == "keep"
    comfy.run(_convert(node, **inputs, output_name=dst.name, overwrite=True))
    assert len(load_file(str(dst))) > 100  # replaced by a real conversion
    comfy.run(_convert(node, **inputs, output_name=f"fa_new_{node}", overwrite=False))  # the suffix is added
    assert (tiny_models / folder / f"fa_new_{node}.safetensors").is_file()


# ---- Layout from Box Tracks reads files under the same rules (issue 18, items 2 and 3)

TRACKS = {"width": 64, "height": 64, "prompt": "inside", "tracks": [{"description": "a ball", "boxes": [[1, 1, 9, 9]]}]}


def _box_tracks(file):
    return {"src": {"class_type": "IFALayoutFromBoxTracks", "inputs": {"json_text": "", "file": file}},
            "f": {"class_type": "IFALayoutAtFrame", "inputs": {"layout": ["src", 0], "frame": 0}},
            "masks": {"class_type": "IFALayoutToMasks", "inputs": {"layout": ["f", 0], "width": 32, "height": 32}},
            "img": {"class_type": "MaskToImage", "inputs": {"mask": ["masks", 0]}},
            "save": {"class_type": "SaveImage", "inputs": {"images": ["img", 0], "filename_prefix": "t_bt"}}}


def test_box_tracks_refuses_what_layout_from_json_refuses_unopened(comfy, hostile):
    """Outside, links out, FIFOs, directories, 17 MB, and a name that is not .json: refused at validation and by
    the node itself, with the input folder's one message, before anything is opened."""
    cases, secret = hostile
    png = comfy.input_dir / "tracks_image.png"
    png.write_text(json.dumps(TRACKS))  # readable box tracks, but not a .json name
    cases = dict(cases, **{png.name: str(png)})
    node = comfy.node_class("IFALayoutFromBoxTracks")()
    layout_error = sys.modules[comfy.node_class("IFALayoutFromBoxTracks").__module__].LayoutError
    listed = comfy.node_class("IFALayoutFromBoxTracks").INPUT_TYPES()["required"]["file"][0]
    for value, target in cases.items():
        assert value not in listed, value
        with OpenedPaths() as seen:
            ok, _err, _outputs, node_errors = comfy.validate(_box_tracks(value))
            with pytest.raises(layout_error, match="cannot be read"):
                node.load("", value)
        assert not ok and "cannot be read" in json.dumps(node_errors), (value, node_errors)
        assert not seen.touched(target), f"{value!r}: {target} was opened"
    (comfy.input_dir / "sub" / "tracks.json").write_text(json.dumps(TRACKS))
    assert "sub/tracks.json" in comfy.node_class("IFALayoutFromBoxTracks").INPUT_TYPES()["required"]["file"][0]
    assert len(comfy.run(_box_tracks("sub/tracks.json"))["save"]["images"]) == 1


@pytest.mark.skipif(not swap_race.available(), reason="needs Linux renameat2(RENAME_EXCHANGE)")
def test_box_tracks_file_swapped_with_a_link_out_is_never_read(comfy, tmp_path):
    """A tracks file exchanged with a symlink to an outside tracks file while the node reads it: each call returns
    the inside layout or refuses with the input folder's message (main read the outside file in about 1 of 1,000
    calls, and raised a bare OSError in others)."""
    outside = tmp_path / "outside_tracks.json"
    outside.write_text(json.dumps(dict(TRACKS, prompt="SECRET")))
    race = comfy.input_dir / "race"
    race.mkdir(exist_ok=True)
    (race / "t.json").write_text(json.dumps(TRACKS))
    if not os.path.lexists(race / "l.json"):
        os.symlink(outside, race / "l.json")
    node = comfy.node_class("IFALayoutFromBoxTracks")()
    layout_error = sys.modules[comfy.node_class("IFALayoutFromBoxTracks").__module__].LayoutError
    seen = {"read": 0, "refused": 0, "outside read": 0, "other error": []}
    with swap_race.Swapper(race / "t.json", race / "l.json", seconds=3.0) as sw:
        for _ in range(100_000):
            if not sw.running():
                break
            try:
                (lay,) = node.load("", "race/t.json")
            except layout_error as e:
                if "cannot be read" in str(e):
                    seen["refused"] += 1
                else:
                    seen["other error"].append(str(e)[:100])
                continue
            except Exception as e:  # noqa: BLE001 - counted and reported below: a bare OSError is a failure too
                seen["other error"].append(f"{type(e).__name__}: {str(e)[:100]}")
                continue
            seen["read" if lay.prompt == "inside" else "outside read"] += 1
    assert seen["outside read"] == 0, f"the file outside the input folder was read: {seen}"
    assert not seen["other error"] and seen["read"] > 0, seen
