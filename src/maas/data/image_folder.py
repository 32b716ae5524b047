"""A folder of images, one sub-folder per class, read as rows of raw pixels.

    DIR/<class>/<image>.png|.jpg|.jpeg     (images may also sit in folders below a class's)

The class sub-folders are the classes: sorted by name, or in the order `data.class_names`
gives, they are class indices 0..K-1. Each image is converted to `data.image_shape`'s
channels (1: grayscale, 3: RGB), resized to its H x W with `data.resize`, and flattened
row-major (C, H, W) into pixel_0 .. pixel_{C*H*W-1}, integers 0..255. That is the table
the digits CSV is, so validate, preprocess, train and the Bento treat both alike: the
served model takes raw 0..255 images at the configured size.

Files are read in sorted order (class, then path), so the same folder gives the same rows,
md5 and split on every machine; row i is `image_files(...)[i]`. Hidden files and folders
(`.DS_Store`, `.ipynb_checkpoints`) are skipped. Any other file in a class folder that is
not PNG or JPEG is refused, naming it, and so is an image outside every class folder: a
quietly skipped .webp or a misplaced image would be training data silently left out.
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from maas.errors import ConfigError, DataValidationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PIL_FORMATS = ("PNG", "JPEG")  # what PIL may decode a file as, whatever its suffix says
RESIZE_METHODS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
MODES = {1: "L", 3: "RGB"}  # data.image_shape's channels -> PIL's mode


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _folder(path: str | Path) -> Path:
    root = Path(path)
    if not root.exists():
        raise ConfigError(f"data.path={str(path)!r} does not exist: point it at a folder with one sub-folder "
                          "of images per class")
    if not root.is_dir():
        raise ConfigError(f"data.path={str(path)!r} is not a folder: data.format=image_folder reads a folder "
                          "with one sub-folder of images per class (a table is data.format=csv or parquet)")
    return root


def class_folders(path: str | Path) -> list[str]:
    """The class sub-folders of `path`, sorted by name (hidden ones skipped); at least two."""
    root = _folder(path)
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise ConfigError(f"{root} has {len(names)} class sub-folder(s){f' ({names[0]!r})' if names else ''}: "
                          f"put each class's images in its own sub-folder, {root}/<class name>/, at least two classes")
    return names


def check_class_names(path: str | Path, class_names) -> list[str]:
    """`class_names` (data.class_names, in the order that numbers them), which must be the folder's
    class sub-folders exactly: a params.yaml composed before a class was added or removed says so."""
    found = class_folders(path)
    names = [str(n) for n in class_names] if class_names is not None else found
    if len(set(names)) != len(names):
        raise ConfigError(f"data.class_names={names} names a class twice")
    missing, extra = sorted(set(names) - set(found)), sorted(set(found) - set(names))
    if missing or extra:
        raise ConfigError(f"data.class_names={names} but {path} holds the class sub-folders {found}"
                          + (f" (no folder for {missing})" if missing else "")
                          + (f" (not in data.class_names: {extra})" if extra else "")
                          + ": run `maas compose` again with this data.path, or set data.class_names")
    return names


def image_files(path: str | Path, class_names=None) -> list[tuple[Path, int]]:
    """Every image as (file, class index), in the order `read_folder` reads them."""
    from maas.data.splits import MIN_PER_CLASS

    root = _folder(path)
    names = check_class_names(root, class_names)
    misplaced = sorted(str(p) for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in IMAGE_SUFFIXES)
    if misplaced:
        raise DataValidationError(f"{misplaced[0]}{f' and {len(misplaced) - 1} more' if len(misplaced) > 1 else ''}: "
                                  f"an image outside every class folder; move it into {root}/<class name>/")
    files: list[tuple[Path, int]] = []
    for index, name in enumerate(names):
        folder = root / name
        found = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder))
        other = [p for p in found if p.suffix.lower() not in IMAGE_SUFFIXES]
        if other:
            raise DataValidationError(
                f"{other[0]}{f' and {len(other) - 1} more' if len(other) > 1 else ''}: not a PNG or JPEG file "
                f"(by its suffix; {', '.join(IMAGE_SUFFIXES)} are read): convert it, or move it out of {folder}")
        if len(found) < MIN_PER_CLASS:
            raise DataValidationError(f"class {name!r} ({folder}) has {len(found)} image(s); each class needs at least "
                                      f"{MIN_PER_CLASS}, one each for the train, val and test splits")
        files.extend((p, index) for p in found)
    return files


def load_image(file: Path, image_shape, resize: str = "bilinear") -> np.ndarray:
    """One image as uint8 pixels shaped (C, H, W): `image_shape`'s channels and size."""
    from PIL import Image, ImageOps

    channels, height, width = (int(d) for d in image_shape)
    if channels not in MODES:
        raise ConfigError(f"data.image_shape={list(image_shape)}: channels must be 1 (grayscale) or 3 (RGB)")
    if resize not in RESIZE_METHODS:
        raise ConfigError(f"data.resize={resize!r} is not allowed; choose one of {list(RESIZE_METHODS)}")
    try:
        with Image.open(file, formats=PIL_FORMATS) as img:
            img = ImageOps.exif_transpose(img)  # a phone photo's orientation tag: the image as viewers show it
            img = _to_mode(img, MODES[channels])
            img = img.resize((width, height), Image.Resampling[resize.upper()])
            pixels = np.asarray(img, dtype=np.uint8)
    # PIL reports damaged files as any of these (a broken PNG chunk is a SyntaxError).
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as e:
        raise DataValidationError(f"{file}: not a readable PNG or JPEG image ({type(e).__name__}: {e})") from e
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _to_mode(img, mode: str):
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grayscale: PIL's convert("L") clips at 255 instead of scaling, which would turn it white.
        wide = np.asarray(img, dtype=np.float64) / 257.0
        img = Image.fromarray(np.clip(np.round(wide), 0, 255).astype(np.uint8), "L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL warns when a palette image's transparency is dropped directly
    return img if img.mode == mode else img.convert(mode)  # alpha, if any, is dropped


def read_folder(path: str | Path, data_cfg: DictConfig) -> pd.DataFrame:
    """The folder as a table: the pixel columns (`feature_columns`, uint8 0..255) and the label
    column (class indices, int64), one row per image in `image_files` order."""
    from maas.data.sources import feature_columns

    class_names = OmegaConf.select(data_cfg, "class_names")
    files = image_files(path, class_names)
    num_classes = OmegaConf.select(data_cfg, "num_classes")
    classes = len(class_names) if class_names is not None else len(class_folders(path))
    if num_classes is not None and int(num_classes) != classes:
        raise ConfigError(f"data.num_classes={num_classes} but {path} holds {classes} class sub-folders")
    shape = tuple(int(d) for d in data_cfg.image_shape)
    resize = OmegaConf.select(data_cfg, "resize", default="bilinear")
    pixels = np.empty((len(files), int(np.prod(shape))), dtype=np.uint8)

    def read(i: int) -> None:
        pixels[i] = load_image(files[i][0], shape, resize).reshape(-1)

    # PIL decodes and resizes without holding the GIL, so a few threads read a large folder faster.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(read, range(len(files))))
    frame = pd.DataFrame(pixels, columns=feature_columns(data_cfg), copy=False)
    frame[data_cfg.label_column] = np.array([label for _, label in files], dtype=np.int64)
    return frame
