"""Reading a folder of images (one sub-folder per class) as pixel rows, and composing data=image_folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from maas.config import compose
from maas.data.image_folder import image_files, load_image, read_folder
from maas.data.sources import raw_md5
from maas.errors import ConfigError, DataValidationError


def _data(path: Path, shape=(1, 4, 4), **extra):
    return OmegaConf.create({"kind": "image", "path": str(path), "label_column": "label", "feature_prefix": "pixel_",
                             "image_shape": list(shape), "resize": "bilinear", **extra})


def _image(file: Path, value: int = 100, size=(6, 5), mode: str = "L") -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("L", "I;16") else (value, 255 - value, 7)
    Image.new(mode, size, colour).save(file)
    return file


def _truncated(file: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(file)
    file.write_bytes(file.read_bytes()[:2000])  # a download or copy cut short


def _folder(root: Path, classes=("b_cat", "a_dog"), per_class: int = 3) -> Path:
    for k, name in enumerate(classes):
        for i in range(per_class):
            _image(root / name / f"{i}{'.png' if i % 2 else '.JPG'}", value=40 * k + i)
    return root


def test_classes_are_the_sorted_sub_folders_and_rows_follow_the_files(tmp_path):
    root = _folder(tmp_path / "imgs")
    _image(root / "a_dog" / "nested" / "x.jpeg", value=200, size=(30, 9))  # below a class folder: still that class
    (root / "a_dog" / ".DS_Store").write_bytes(b"\0junk")  # hidden files and folders are skipped
    _image(root / "a_dog" / ".ipynb_checkpoints" / "0.png")
    (root / "notes.txt").write_text("not an image, not in a class folder: ignored")
    frame = read_folder(root, _data(root))
    assert list(frame.columns) == [f"pixel_{i}" for i in range(16)] + ["label"]
    assert frame["label"].tolist() == [0, 0, 0, 0, 1, 1, 1]  # a_dog before b_cat
    assert [f.name for f, _ in image_files(root)] == ["0.JPG", "1.png", "2.JPG", "x.jpeg", "0.JPG", "1.png", "2.JPG"]
    pixels = frame.drop(columns="label").to_numpy()
    assert pixels.dtype == np.uint8 and np.all(pixels[1] == 41) and np.all(pixels[5] == 1)
    assert abs(int(pixels[3].mean()) - 200) <= 2  # 30x9 resized to 4x4; JPEG keeps a flat grey within a level
    # class_names may order the classes; they must be the folder's.
    ordered = read_folder(root, _data(root, class_names=["b_cat", "a_dog"]))
    assert ordered["label"].tolist() == [0, 0, 0, 1, 1, 1, 1] and ordered["pixel_0"].tolist()[:4] == [0, 1, 2, 40]


def test_images_take_the_configured_channels_and_size(tmp_path):
    rgb = _image(tmp_path / "c.png", value=30, size=(9, 13), mode="RGB")
    assert load_image(rgb, (3, 6, 6)).shape == (3, 6, 6)
    assert load_image(rgb, (3, 6, 6))[:, 0, 0].tolist() == [30, 225, 7]  # channels first, in RGB order
    grey = load_image(rgb, (1, 2, 2), resize="nearest")
    assert grey.shape == (1, 2, 2) and int(grey[0, 0, 0]) == round(0.299 * 30 + 0.587 * 225 + 0.114 * 7)
    assert load_image(_image(tmp_path / "g.png", value=90), (3, 4, 4))[:, 1, 1].tolist() == [90, 90, 90]
    # A 16-bit grayscale PNG is scaled to 8 bits, not clipped to white.
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((3, 3), 257 * 60, dtype=np.uint16)).save(deep)
    assert Image.open(deep).mode.startswith("I")
    assert np.all(load_image(deep, (1, 3, 3)) == 60)
    # A phone photo stored sideways with an EXIF orientation tag is read as viewers show it.
    wide = np.zeros((20, 40), dtype=np.uint8)
    wide[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(wide).save(tmp_path / "phone.jpg", exif=exif)
    upright = load_image(tmp_path / "phone.jpg", (1, 40, 20), resize="nearest")[0]
    assert upright[:18].mean() < 10 and upright[22:].mean() > 245  # the bright half is now at the bottom


def test_the_md5_follows_every_image(tmp_path):
    root = _folder(tmp_path / "imgs")
    cfg = OmegaConf.create({"data": {"path": str(root), "format": "image_folder", "source": "file"}})
    before = raw_md5(cfg)
    (root / "a_dog" / ".DS_Store").write_bytes(b"finder state")  # hidden files are not read as images
    assert raw_md5(cfg) == before
    _image(root / "a_dog" / "1.png", value=99)
    assert raw_md5(cfg) != before


@pytest.mark.parametrize("damage, error, named", [
    (lambda r: (r / "a_dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really"), DataValidationError,
     "a_dog/1.png: not a readable PNG or JPEG image"),
    (lambda r: _truncated(r / "a_dog" / "1.png"), DataValidationError, "a_dog/1.png: not a readable PNG or JPEG image"),
    (lambda r: Image.new("L", (4, 4)).save(r / "a_dog" / "3.png", format="GIF"), DataValidationError,
     "a_dog/3.png: not a readable PNG or JPEG image"),
    (lambda r: _image(r / "b_cat" / "scan.webp"), DataValidationError, "b_cat/scan.webp: not a PNG or JPEG file"),
    (lambda r: _image(r / "stray.png"), DataValidationError, "stray.png: an image outside every class folder"),
    (lambda r: [p.unlink() for p in (r / "b_cat").iterdir()], DataValidationError,
     r"class 'b_cat' \(.*b_cat\) has 0 image\(s\); each class needs at least 3"),
    (lambda r: (r / "b_cat" / "1.png").unlink(), DataValidationError, r"class 'b_cat' .* has 2 image\(s\)"),
    (lambda r: (r / "c_new").mkdir(), ConfigError,
     r"data.class_names=\['a_dog', 'b_cat'\] but .* holds .*\(not in data.class_names: \['c_new'\]\): run `maas compose`"),
])
def test_a_bad_folder_is_refused_naming_the_file_or_class(tmp_path, damage, error, named):
    root = _folder(tmp_path / "imgs")
    damage(root)
    with pytest.raises(error, match=named):
        read_folder(root, _data(root, class_names=["a_dog", "b_cat"]))


def test_a_path_that_is_no_folder_of_classes_is_refused(tmp_path):
    (tmp_path / "table.csv").write_text("a,b\n")
    _image(tmp_path / "one" / "only" / "0.png")
    for path, named in [(tmp_path / "nope", "does not exist"), (tmp_path / "table.csv", "is not a folder"),
                        (tmp_path / "one", r"has 1 class sub-folder\(s\) \('only'\)"),
                        (tmp_path / "one" / "only", r"has 0 class sub-folder\(s\): put each class's images")]:
        with pytest.raises(ConfigError, match=named):
            read_folder(path, _data(path))
    root = _folder(tmp_path / "imgs")
    with pytest.raises(ConfigError, match="data.num_classes=3 but .* holds 2 class sub-folders"):
        read_folder(root, _data(root, num_classes=3))
    with pytest.raises(ConfigError, match="channels must be 1"):
        read_folder(root, _data(root, shape=(2, 4, 4)))


def test_image_folder_config_follows_the_folder(tmp_path):
    with pytest.raises(ConfigError, match="data.path, which is not set: add data.path=DIR"):
        compose(["data=image_folder"])
    root = _folder(tmp_path / "imgs", classes=("zebra", "ant", "moth"))
    cfg = compose(["data=image_folder", f"data.path={root}"])
    assert cfg.data.class_names == ["ant", "moth", "zebra"] and cfg.data.num_classes == 3
    assert cfg.expectations.label_set == [0, 1, 2] and cfg.expectations.feature_count == 784
    assert cfg.model.arch == "cnn" and cfg.model.in_channels == 1 and cfg.model.num_classes == 3
    with pytest.raises(ConfigError, match=r"model=cnn takes square images of even size"):
        compose(["data=image_folder", f"data.path={root}", "data.image_shape=[3,24,32]"])
    with pytest.raises(ConfigError, match="data.resize='cubic' is not allowed"):
        compose(["data=image_folder", f"data.path={root}", "data.resize=cubic"])
