"""Round trips and error messages of the .npy / .npz / .csv / PNG-folder loaders."""

import numpy as np
import pytest
import torch
from PIL import Image

from monge.data import load_array, load_image_folder, load_labeled_array
from monge.errors import DataError


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 3)).astype(np.float32)


def test_npy_round_trip(tmp_path, table):
    np.save(tmp_path / "x.npy", table)
    x = load_array(tmp_path / "x.npy")
    assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(table))
    np.save(tmp_path / "ints.npy", np.arange(12).reshape(6, 2))
    assert torch.equal(load_array(str(tmp_path / "ints.npy")),
                       torch.arange(12, dtype=torch.float32).reshape(6, 2))


def test_npz_keys_and_labels(tmp_path, table):
    labels = np.arange(12) % 3
    np.savez(tmp_path / "xy.npz", x=table, y=labels)
    x, y = load_labeled_array(tmp_path / "xy.npz")
    assert torch.equal(x, torch.from_numpy(table))
    assert y.dtype == torch.int64 and torch.equal(y, torch.from_numpy(labels))
    np.savez(tmp_path / "data.npz", data=table, labels=labels.astype(np.float64), other=table)
    x, y = load_labeled_array(tmp_path / "data.npz")
    assert torch.equal(x, torch.from_numpy(table)) and torch.equal(y, torch.from_numpy(labels))
    np.savez(tmp_path / "single.npz", anything=table)
    x, y = load_labeled_array(tmp_path / "single.npz")
    assert torch.equal(x, torch.from_numpy(table)) and y is None
    np.savez(tmp_path / "positional.npz", table)
    assert torch.equal(load_array(tmp_path / "positional.npz"), torch.from_numpy(table))


def test_csv_round_trip_with_and_without_header(tmp_path, table):
    np.savetxt(tmp_path / "plain.csv", table, delimiter=",", fmt="%.9g")
    assert torch.equal(load_array(tmp_path / "plain.csv"), torch.from_numpy(table))
    np.savetxt(tmp_path / "header.csv", table, delimiter=",", fmt="%.9g", header="a,b,c",
               comments="")
    assert torch.equal(load_array(tmp_path / "header.csv"), torch.from_numpy(table))
    np.savetxt(tmp_path / "semi.csv", table, delimiter=";", fmt="%.9g")
    assert torch.equal(load_array(tmp_path / "semi.csv"), torch.from_numpy(table))


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_png_folder_flat_grayscale(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(5, 6, 4), dtype=np.uint8)
    for i, image in enumerate(pixels):
        _write_png(tmp_path / "imgs" / f"{i:02d}.png", image)
    x, labels = load_image_folder(tmp_path / "imgs")
    assert labels is None and x.shape == (5, 1, 6, 4) and x.dtype == torch.float32
    expected = torch.from_numpy(pixels.astype(np.float32) / 255.0 * 2.0 - 1.0)[:, None]
    assert torch.allclose(x, expected, atol=1e-6)
    assert x.min() >= -1 and x.max() <= 1


def test_png_folder_classes_rgb(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    # class folders written out of order: labels follow the sorted folder names
    names = ["zebra", "apple", "zebra", "mango", "apple", "mango"]
    for i, (name, image) in enumerate(zip(names, pixels, strict=True)):
        _write_png(tmp_path / "set" / name / f"{i}.png", image)
    x, labels = load_image_folder(tmp_path / "set")
    assert x.shape == (6, 3, 8, 8)
    order = [1, 4, 3, 5, 0, 2]  # apple, apple, mango, mango, zebra, zebra
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    expected = torch.from_numpy(pixels[order].astype(np.float32) / 255.0 * 2.0 - 1.0)
    assert torch.allclose(x, expected.permute(0, 3, 1, 2), atol=1e-6)


def _expect_error(call, path, *fragments):
    with pytest.raises(DataError) as info:
        call(path)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_and_unknown_files(tmp_path):
    _expect_error(load_array, tmp_path / "nothere.npy", "not found")
    (tmp_path / "data.txt").write_text("1,2\n3,4\n")
    _expect_error(load_array, tmp_path / "data.txt", "unknown extension")
    (tmp_path / "garbage.npy").write_bytes(b"not an npy file at all")
    _expect_error(load_array, tmp_path / "garbage.npy", "unreadable")
    (tmp_path / "garbage.npz").write_bytes(b"PK not a zip")
    _expect_error(load_array, tmp_path / "garbage.npz", "unreadable")


def test_pickled_object_array_is_refused(tmp_path):
    objects = np.empty((4, 2), dtype=object)
    objects[:] = 1.0
    np.save(tmp_path / "objects.npy", objects, allow_pickle=True)
    _expect_error(load_array, tmp_path / "objects.npy", "unreadable")


def test_non_finite_values_are_counted(tmp_path, table):
    bad = table.copy()
    bad[0, 0] = bad[3, 1] = np.nan
    bad[5, 2] = np.inf
    np.save(tmp_path / "nan.npy", bad)
    _expect_error(load_array, tmp_path / "nan.npy", "2 NaN", "1 Inf")
    np.savetxt(tmp_path / "nan.csv", bad, delimiter=",")
    _expect_error(load_array, tmp_path / "nan.csv", "2 NaN", "1 Inf")


def test_wrong_rank_and_too_few_rows(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((5, 2, 2)))
    _expect_error(load_array, tmp_path / "cube.npy",
                  "expected a 2-D array [N, D], got shape (5, 2, 2)")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    _expect_error(load_array, tmp_path / "flat.npy", "got shape (5,)")
    np.save(tmp_path / "three.npy", np.zeros((3, 2)))
    _expect_error(load_array, tmp_path / "three.npy", "3 rows", "at least 4")


def test_bad_csv(tmp_path):
    (tmp_path / "words.csv").write_text("a,b\n1,2\n3,oops\n5,6\n7,8\n")
    _expect_error(load_array, tmp_path / "words.csv", "non-numeric", "'oops'", "line 3")
    (tmp_path / "ragged.csv").write_text("1,2\n3,4,5\n5,6\n7,8\n")
    _expect_error(load_array, tmp_path / "ragged.csv", "line 2", "3 columns")
    (tmp_path / "empty.csv").write_text("")
    _expect_error(load_array, tmp_path / "empty.csv", "empty")


def test_bad_npz(tmp_path, table):
    np.savez(tmp_path / "ambiguous.npz", first=table, second=table)
    _expect_error(load_array, tmp_path / "ambiguous.npz", "'x'")
    np.savez(tmp_path / "shortlabels.npz", x=table, y=np.zeros(5))
    _expect_error(load_labeled_array, tmp_path / "shortlabels.npz", "labels", "(12,)")
    np.savez(tmp_path / "fraclabels.npz", x=table, y=np.full(12, 0.5))
    _expect_error(load_labeled_array, tmp_path / "fraclabels.npz", "integers")
    np.savez(tmp_path / "neglabels.npz", x=table, y=-np.ones(12))
    _expect_error(load_labeled_array, tmp_path / "neglabels.npz", "non-negative")


def test_bad_image_folders(tmp_path):
    for i in range(4):
        _write_png(tmp_path / "mixed" / f"{i}.png", np.zeros((8, 8) if i else (6, 8), np.uint8))
    _expect_error(load_image_folder, tmp_path / "mixed", "differs", "0.png")
    (tmp_path / "none").mkdir()
    _expect_error(load_image_folder, tmp_path / "none", "no PNG")
    _expect_error(load_image_folder, tmp_path / "absent", "not found")
    for i in range(4):
        _write_png(tmp_path / "broken" / f"{i}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "broken" / "2.png").write_bytes(b"not a png")
    _expect_error(load_image_folder, tmp_path / "broken", "unreadable")
    for i in range(2):
        _write_png(tmp_path / "few" / f"{i}.png", np.zeros((4, 4), np.uint8))
    _expect_error(load_image_folder, tmp_path / "few", "at least 4")


def test_png_folder_says_which_files_it_ignores(tmp_path):
    import warnings as _w

    import numpy as _np
    from PIL import Image

    from monge.data import load_image_folder

    for i in range(6):
        Image.fromarray((_np.full((4, 4), 10 * i)).astype(_np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        images, _ = load_image_folder(tmp_path)
    assert images.shape[0] == 6
    assert any("ignoring 1 file(s)" in str(c.message) and "notes.txt" in str(c.message)
               for c in caught)


def test_png_folder_keeps_alpha_and_refuses_mixed_layouts(tmp_path):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, size=(4, 5, 6, 4), dtype=np.uint8)
    for i, image in enumerate(rgba):
        _write_png(tmp_path / "sprites" / f"{i}.png", image)
    x, _ = load_image_folder(tmp_path / "sprites")
    assert x.shape == (4, 4, 5, 6)  # the alpha channel is kept, not dropped
    expected = torch.from_numpy(rgba.astype(np.float32) / 255.0 * 2.0 - 1.0).permute(0, 3, 1, 2)
    assert torch.allclose(x, expected, atol=1e-6)
    # one RGB image among RGBA ones, and one grayscale image among RGB ones: refused, not converted
    _write_png(tmp_path / "sprites" / "9.png", rgba[0, :, :, :3])
    _expect_error(load_image_folder, tmp_path / "sprites", "9.png", "colour image", "RGB",
                  "colour+alpha", "one channel layout")
    for i, image in enumerate(rgba):
        _write_png(tmp_path / "mixed" / f"{i}.png", image[:, :, :3])
    _write_png(tmp_path / "mixed" / "4.png", rgba[0, :, :, 0])
    _expect_error(load_image_folder, tmp_path / "mixed", "4.png", "grayscale image")
