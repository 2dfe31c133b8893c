"""ComfyUI side of the pack's file rules: which folder a user-given name may reach (see ``core/paths.py``).

- Reads from ComfyUI's input folder (layout JSON files): only regular files inside it or its subfolders, symlinks
  resolved, at most :data:`MAX_INPUT_BYTES`; listed for the file combo with the same rule.
- Model files: only names from ComfyUI's model list for that folder, never climbing out of it.
- Converter outputs: a bare file name inside the model folder, never overwriting unless asked.
"""
from __future__ import annotations

import os

import folder_paths

from ..core.paths import PathRefused, checked_file, contained_path, read_contained, read_refusal

MAX_INPUT_BYTES = 16 * 2**20  # a layout is a few kB; 16 MB leaves room for big masks as RLE
INPUT_LABEL = "ComfyUI's input folder"
_MAX_LISTED = 5000  # the combo lists at most this many files (a huge input folder must not slow every page load)


def input_dir() -> str:
    return folder_paths.get_input_directory()


def _relative_to_input(name: str, extension: str, max_bytes: int) -> str:
    """``name`` with a ComfyUI annotation (``"x.json [input]"``) removed; any other folder annotation, or a name
    not ending in ``extension``, is refused."""
    bare, base = name, None
    split = getattr(folder_paths, "annotated_filepath", None)
    if split is not None and isinstance(name, str):
        bare, base = split(name)
    if (not isinstance(bare, str) or not bare.lower().endswith(extension)
            or (base is not None and os.path.realpath(base) != os.path.realpath(input_dir()))):
        raise PathRefused(read_refusal(name, INPUT_LABEL, max_bytes))
    return bare


def check_input_file(name: str, extension: str = "", max_bytes: int = MAX_INPUT_BYTES) -> None:
    """Raise :class:`PathRefused` unless ``name`` is a regular file inside the input folder, ending in
    ``extension``, of at most ``max_bytes``. Nothing is opened."""
    checked_file(input_dir(), _relative_to_input(name, extension, max_bytes), max_bytes, INPUT_LABEL)


def read_input_file(name: str, extension: str = "", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of ``name`` from the input folder (the rule of :func:`check_input_file`), or :class:`PathRefused`."""
    return read_contained(input_dir(), _relative_to_input(name, extension, max_bytes), max_bytes, INPUT_LABEL)


def read_input_text(name: str, extension: str = "", max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text (a BOM dropped) of ``name`` from the input folder (see :func:`read_input_file`); a file that
    is not UTF-8 is refused with :class:`PathRefused` naming it."""
    raw = read_input_file(name, extension, max_bytes)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PathRefused(f"file {str(name)[:200]!r}: not UTF-8 text; a {extension or 'text'} file is expected") \
            from None


def input_file_problem(name: str, extension: str = "", max_bytes: int = MAX_INPUT_BYTES) -> str | None:
    """For ``VALIDATE_INPUTS``: None if :func:`check_input_file` accepts ``name``, else the refusal message."""
    try:
        check_input_file(name, extension, max_bytes)
    except PathRefused as e:
        return str(e)
    return None


def input_files(extension: str) -> list[str]:
    """Files ending in ``extension`` inside the input folder and its subfolders (``/``-separated, sorted), as the
    combo offers them: only those :func:`read_input_file` accepts (symlinks out of the folder are not listed)."""
    root = input_dir()
    if not os.path.isdir(root):
        return []
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.lower().endswith(extension):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
            real = contained_path(root, rel)
            if real is not None and os.path.isfile(real) and os.path.getsize(real) <= MAX_INPUT_BYTES:
                found.append(rel)
            if len(found) >= _MAX_LISTED:
                return sorted(found)
    return sorted(found)


def input_ref_ok(ref: object) -> bool:
    """True if an image reference ``{"filename", "subfolder", "type"}`` (as the editor stores an uploaded underlay)
    names a path inside ComfyUI's input, output or temp folder. Only the name is checked: the server never opens it
    (the browser fetches it through ComfyUI's /view)."""
    if not isinstance(ref, dict):
        return False
    folders = {"input": folder_paths.get_input_directory, "output": folder_paths.get_output_directory,
               "temp": folder_paths.get_temp_directory}
    kind, filename, sub = ref.get("type", "input"), ref.get("filename"), ref.get("subfolder", "") or ""
    if kind not in folders or not isinstance(filename, str) or not isinstance(sub, str):
        return False
    if any(c in filename for c in ("/", "\\", "\x00")) or filename in ("", ".", ".."):
        return False
    return contained_path(folders[kind](), os.path.join(sub, filename) if sub else filename) is not None
