"""User data from files: ``.npy`` / ``.npz`` / ``.csv`` arrays and folders of PNG images.

Every loader returns float32 tensors on the CPU and raises :class:`monge.errors.DataError` with a
one-line message naming the file for each problem it can detect: a missing file, an unknown
extension, an unreadable file, non-numeric values, NaN/Inf (with counts), a wrong rank or too few
rows. Pickled objects are never loaded (``allow_pickle=False``), so an untrusted ``.npy``/``.npz``
cannot run code.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.zeros((10, 3)))
    >>> load_array(path).shape
    torch.Size([10, 3])
"""

from __future__ import annotations

import csv
import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from monge.errors import DataError

MIN_ROWS = 4
"""Fewest rows (samples) a data file may hold: fewer cannot be split into train and test."""

ARRAY_EXTENSIONS = (".npy", ".npz", ".csv")
IMAGE_EXTENSIONS = (".png",)
_DATA_KEYS = ("x", "data", "arr_0")
_LABEL_KEYS = ("y", "labels")

__all__ = [
    "ARRAY_EXTENSIONS",
    "MIN_ROWS",
    "load_array",
    "load_image_folder",
    "load_labeled_array",
]


def load_array(path: str | Path) -> torch.Tensor:
    """Load a numeric array of shape ``[N, D]`` from a ``.npy``, ``.npz`` or ``.csv`` file.

    ``.npz`` files hold one array, or name it ``x``, ``data`` or ``arr_0`` (a ``y``/``labels``
    array beside it is ignored here; see :func:`load_labeled_array`). ``.csv`` files hold numbers
    separated by commas (or semicolons/tabs), with an optional header row. Integer and boolean
    arrays are converted to float32.

    Args:
        path: the file to read.

    Returns:
        A float32 CPU tensor of shape ``[N, D]`` with ``N >= 4`` and finite values.

    Raises:
        DataError: missing file, unknown extension, unreadable or non-numeric content, NaN/Inf,
            an array that is not 2-D, or fewer than 4 rows. The message names the file.
    """
    x, _ = load_labeled_array(path)
    return x


def load_labeled_array(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Load an array ``[N, D]`` and, for ``.npz`` files, its optional labels ``[N]``.

    Labels are read from the key ``y`` or ``labels`` of a ``.npz`` file; they must be
    non-negative integers (integer-valued floats are accepted), one per row. ``.npy`` and
    ``.csv`` files carry no labels.

    Args:
        path: the file to read.

    Returns:
        ``(x, y)``: ``x`` float32 ``[N, D]``; ``y`` int64 ``[N]`` or ``None``.

    Raises:
        DataError: as :func:`load_array`, plus labels that are not a 1-D array of ``N``
            non-negative integers.
    """
    path = _existing_file(path)
    suffix = path.suffix.lower()
    labels: np.ndarray | None = None
    if suffix == ".npy":
        array = _read_npy(path)
    elif suffix == ".npz":
        array, labels = _read_npz(path)
    elif suffix == ".csv":
        array = _read_csv(path)
    else:
        raise DataError(
            f"{path}: unknown extension {path.suffix!r} (expected .npy, .npz, .csv or a folder "
            "of PNG images)")
    x = _validated_2d(array, path)
    y = None if labels is None else _validated_labels(labels, x.shape[0], path)
    return x, y


def load_image_folder(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Load a folder of PNG images into a tensor ``[N, C, H, W]`` scaled to ``[-1, 1]``.

    Either every PNG lies directly in ``path`` (no labels), or each subfolder of ``path`` is a
    class holding PNGs (labels ``0..K-1`` in the sorted order of the subfolder names). Files are
    read in sorted order. Every image must have the same channel layout: grayscale (``C = 1``;
    8- or 16-bit), grayscale with alpha (``C = 2``), colour (``C = 3``; RGB or a palette
    without transparency) or colour with alpha (``C = 4``; RGBA, straight alpha, or a palette
    with transparency). A folder that mixes layouts is refused rather than silently converted
    (dropping an alpha channel or inventing colour would change the data). 8-bit values ``v``
    map to ``v / 255 * 2 - 1``; 16-bit grayscale to ``v / 65535 * 2 - 1``.

    Args:
        path: the folder to read.

    Returns:
        ``(x, labels)``: ``x`` float32 ``[N, C, H, W]`` in ``[-1, 1]``; ``labels`` int64 ``[N]``
        when the images sit in class subfolders, else ``None``.

    Raises:
        DataError: missing folder, no PNG images, PNGs both at the top level and in
            subfolders, an unreadable image, images of different sizes or channel layouts, or
            fewer than 4 images.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of PNG images")
    top = _pngs(root)
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and _pngs(d)),
                        key=lambda d: d.name)
    if top and class_dirs:
        raise DataError(
            f"{root}: holds PNG images both at the top level and in subfolders; put every image "
            "in a class subfolder, or all of them at the top level")
    if not top and not class_dirs:
        raise DataError(f"{root}: no PNG images found (directly or in class subfolders)")
    files: list[Path] = list(top)
    label_list: list[int] = []
    for label, folder in enumerate(class_dirs):
        found = _pngs(folder)
        files.extend(found)
        label_list.extend([label] * len(found))
    if len(files) < MIN_ROWS:
        raise DataError(f"{root}: found {len(files)} PNG images, need at least {MIN_ROWS}")
    others = [p for folder in (root, *class_dirs) for p in folder.iterdir()
              if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS
              and not p.name.startswith(".")]
    if others:
        warnings.warn(f"{root}: ignoring {len(others)} file(s) that are not PNG images (e.g. "
                      f"{others[0].name}); {len(files)} images are used", UserWarning,
                      stacklevel=2)

    arrays: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    layout: str | None = None
    first: Path | None = None
    for file in files:
        try:
            with Image.open(file) as img:
                img.load()
                img = img.copy()
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DataError(f"{file}: unreadable image ({exc})") from None
        this_layout = _layout(img)
        if size is None:
            size, layout, first = img.size, this_layout, file
        elif img.size != size:
            raise DataError(
                f"{file}: image size {img.size[0]}x{img.size[1]} differs from {first.name} "
                f"({size[0]}x{size[1]}); all images must share one size")
        elif this_layout != layout:
            raise DataError(
                f"{file}: {this_layout} image (mode {img.mode}) among {layout} images (e.g. "
                f"{first.name}); all images must share one channel layout: convert them to one "
                "mode first")
        arrays.append(_image_to_unit(img, this_layout))
    x = torch.from_numpy(np.stack(arrays).astype(np.float32) * 2.0 - 1.0)
    labels = torch.tensor(label_list, dtype=torch.int64) if class_dirs else None
    return x.contiguous(), labels


# ---------------------------------------------------------------------------------------------
# helpers


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a .npy, .npz or .csv file")
    return path


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        # numpy raises ValueError for object (pickled) arrays when allow_pickle=False
        raise DataError(f"{path}: unreadable .npy file ({_first_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable .npy file ({_first_line(exc)})") from None


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: not a .npz archive")
            keys = list(archive.files)
            label_key = next((k for k in _LABEL_KEYS if k in keys), None)
            data_keys = [k for k in keys if k not in _LABEL_KEYS]
            if len(data_keys) == 1:
                data_key = data_keys[0]
            else:
                data_key = next((k for k in _DATA_KEYS if k in keys), None)
            if data_key is None:
                raise DataError(
                    f"{path}: cannot tell which array holds the data (keys {keys}); store a "
                    "single array or name it 'x', 'data' or 'arr_0'")
            data = archive[data_key]
            labels = archive[label_key] if label_key is not None else None
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{path}: unreadable .npz file ({_first_line(exc)})") from None
    return data, labels


def _read_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable .csv file ({_first_line(exc)})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty .csv file")
    delimiter = max((",", ";", "\t"), key=lines[0].count)
    if lines[0].count(delimiter) == 0:
        delimiter = ","
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
    header = rows[0]
    if not all(_is_number(cell) for cell in header):
        rows = rows[1:]
        first_line = 2
    else:
        first_line = 1
    if not rows:
        raise DataError(f"{path}: .csv file has a header but no data rows")
    width = len(rows[0])
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataError(
                f"{path}: line {i + first_line} has {len(row)} columns, expected {width}")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: non-numeric value {cell.strip()!r} at line {i + first_line}, "
                    f"column {j + 1}") from None
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _validated_2d(array: np.ndarray, path: Path) -> torch.Tensor:
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise DataError(f"{path}: expected a 2-D array [N, D], got shape {tuple(array.shape)}")
    if array.shape[0] < MIN_ROWS:
        raise DataError(f"{path}: has {array.shape[0]} rows, need at least {MIN_ROWS}")
    if array.shape[1] < 1:
        raise DataError(f"{path}: has no columns (shape {tuple(array.shape)})")
    array = array.astype(np.float64, copy=False)
    _check_finite(array, path)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"{path}: values overflow float32 (largest magnitude "
                        f"{np.abs(array).max():.3g})")
    return x


def _validated_labels(labels: np.ndarray, n: int, path: Path) -> torch.Tensor:
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataError(
            f"{path}: labels must have shape ({n},) to match the data, got {tuple(labels.shape)}")
    as_float = labels.astype(np.float64)
    _check_finite(as_float, path, what="labels")
    if not np.array_equal(as_float, np.round(as_float)):
        raise DataError(f"{path}: labels must be integers, found non-integer values")
    if as_float.min() < 0:
        raise DataError(f"{path}: labels must be non-negative, found {int(as_float.min())}")
    return torch.from_numpy(as_float.astype(np.int64))


def _check_finite(array: np.ndarray, path: Path, what: str = "data") -> None:
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(np.isinf(array).sum())
        raise DataError(f"{path}: {what} contains {n_nan} NaN and {n_inf} Inf values")


def _pngs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


_GRAY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")
_CHANNELS = {"grayscale": 1, "grayscale+alpha": 2, "colour": 3, "colour+alpha": 4}


def _layout(img) -> str:
    """The channel layout of a PIL image: a key of ``_CHANNELS``."""
    if img.mode in _GRAY_MODES:
        return "grayscale"
    if img.mode in ("LA", "La"):
        return "grayscale+alpha"
    if img.mode in ("RGBA", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        return "colour+alpha"
    return "colour"


def _image_to_unit(img, layout: str) -> np.ndarray:
    """Convert a PIL image of the given layout to a float64 array ``[C, H, W]`` in ``[0, 1]``."""
    if layout == "grayscale":
        if img.mode.startswith("I") or img.mode == "F":
            array = np.asarray(img, dtype=np.float64)
            scale = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
            return np.clip(array / scale, 0.0, 1.0)[None]
        return np.asarray(img.convert("L"), dtype=np.float64)[None] / 255.0
    mode = {"grayscale+alpha": "LA", "colour": "RGB", "colour+alpha": "RGBA"}[layout]
    array = np.asarray(img.convert(mode), dtype=np.float64) / 255.0
    return array.reshape(*array.shape[:2], _CHANNELS[layout]).transpose(2, 0, 1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
