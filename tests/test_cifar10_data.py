"""CIFAR-10 reader on a tiny fake data set in the official on-disk format (no network traffic)."""

import numpy as np
import pytest
import torch
from cifar_fixture import LABEL_NAMES, fake_cifar10_arrays, make_fake_cifar10

import cmlearn.data.cifar10 as c10

UNREACHABLE = "http://127.0.0.1:9/cifar-10-python.tar.gz"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """No test may reach the real URL: point it at a closed local port unless a test says otherwise."""
    monkeypatch.setattr(c10, "URL", UNREACHABLE)


def _expected(train, n=4):
    arrays = fake_cifar10_arrays(n_per_batch=n)
    names = c10.TRAIN_BATCHES if train else c10.TEST_BATCHES
    data = np.concatenate([arrays[k][0] for k in names]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([arrays[k][1] for k in names])
    return torch.from_numpy(data), torch.from_numpy(labels)


@pytest.mark.parametrize("train", [True, False])
def test_reads_folder_scaled_to_minus_one_one(tmp_path, train):
    make_fake_cifar10(tmp_path, n_per_batch=4)
    ds = c10.cifar10(tmp_path, train=train, flip=False)
    images, labels = _expected(train)
    assert len(ds) == (20 if train else 4)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
        assert torch.allclose(x, images[i].float() / 127.5 - 1.0)
        assert y == int(labels[i])
    xs = torch.stack([ds[i][0] for i in range(len(ds))])
    assert xs.min() >= -1.0 and xs.max() <= 1.0
    assert xs.min() < -0.99 and xs.max() > 0.99  # the full range is used


def test_uint8_helper_and_class_names(tmp_path):
    make_fake_cifar10(tmp_path, n_per_batch=3)
    u = c10.cifar10_uint8(tmp_path, train=True)
    images, _ = _expected(True, n=3)
    assert u.dtype == torch.uint8 and u.shape == (15, 3, 32, 32)
    assert torch.equal(u, images)
    assert c10.cifar10_uint8(tmp_path, train=False).shape == (3, 3, 32, 32)
    assert c10.class_names(tmp_path) == list(LABEL_NAMES)


def test_random_flips(tmp_path):
    make_fake_cifar10(tmp_path, n_per_batch=2)
    ds = c10.cifar10(tmp_path, flip=True)
    ref = ds.images[0].float() / 127.5 - 1.0
    torch.manual_seed(0)
    seen = [ds[0][0] for _ in range(64)]
    plain = sum(torch.equal(x, ref) for x in seen)
    flipped = sum(torch.equal(x, ref.flip(-1)) for x in seen)
    assert plain + flipped == 64 and 16 < plain < 48  # each draw is one of the two, about half each


def test_dataloader_batches(tmp_path):
    make_fake_cifar10(tmp_path, n_per_batch=4)
    loader = torch.utils.data.DataLoader(c10.cifar10(tmp_path), batch_size=8, shuffle=True)
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,) and y.dtype == torch.int64


def test_extracts_archive_after_md5_check(tmp_path, monkeypatch):
    archive = make_fake_cifar10(tmp_path, n_per_batch=2, archive=True)
    assert not (tmp_path / c10.FOLDER).exists()
    monkeypatch.setattr(c10, "MD5", c10.md5sum(archive))
    u = c10.cifar10_uint8(tmp_path, train=True)
    assert torch.equal(u, _expected(True, n=2)[0])
    assert (tmp_path / c10.FOLDER / "data_batch_5").is_file()


def test_archive_with_wrong_md5_is_refused(tmp_path):
    archive = make_fake_cifar10(tmp_path, n_per_batch=2, archive=True)  # real MD5 expected: mismatch
    with pytest.raises(RuntimeError, match="md5") as err:
        c10.cifar10(tmp_path)
    assert str(archive) in str(err.value) and c10.MD5 in str(err.value)
    assert not (tmp_path / c10.FOLDER).exists()
    assert archive.exists()  # the user's file is left alone


def test_truncated_archive(tmp_path, monkeypatch):
    archive = make_fake_cifar10(tmp_path, n_per_batch=2, archive=True)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    monkeypatch.setattr(c10, "MD5", c10.md5sum(archive))
    with pytest.raises(RuntimeError, match="cannot extract"):
        c10.cifar10(tmp_path)


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        c10.cifar10(tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / c10.ARCHIVE) in msg and "download=True" in msg


def test_truncated_batch(tmp_path):
    folder = make_fake_cifar10(tmp_path, n_per_batch=4)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="data_batch_3"):
        c10.cifar10(tmp_path)
    assert len(c10.cifar10(tmp_path, train=False)) == 4  # the test split is intact


@pytest.mark.parametrize("bad", ["shape", "dtype", "labels", "keys"])
def test_malformed_batch(tmp_path, bad):
    import pickle

    folder = make_fake_cifar10(tmp_path, n_per_batch=4)
    d = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    if bad == "shape":
        d[b"data"] = np.zeros((4, 1024), np.uint8)
    elif bad == "dtype":
        d[b"data"] = np.zeros((4, 3072), np.float32)
    elif bad == "labels":
        d[b"labels"] = [0, 1, 2, 10]
    else:
        d = {b"pixels": d[b"data"]}
    (folder / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(ValueError, match="test_batch"):
        c10.cifar10(tmp_path, train=False)


def test_download_offline_raises_clear_error(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match="could not download") as err:
        c10.cifar10(root, download=True)
    assert UNREACHABLE in str(err.value) and str(root / c10.ARCHIVE) in str(err.value)
    assert not (root / c10.ARCHIVE).exists() and not (root / (c10.ARCHIVE + ".part")).exists()


def test_download_from_local_url(tmp_path, monkeypatch):
    archive = make_fake_cifar10(tmp_path / "mirror", n_per_batch=2, archive=True)
    monkeypatch.setattr(c10, "URL", archive.as_uri())  # file:// URL: the download path without the network
    monkeypatch.setattr(c10, "MD5", c10.md5sum(archive))
    root = tmp_path / "data"
    assert len(c10.cifar10(root, download=True, train=False)) == 2
    assert (root / c10.ARCHIVE).is_file()


def test_bad_download_is_removed(tmp_path, monkeypatch):
    archive = make_fake_cifar10(tmp_path / "mirror", n_per_batch=2, archive=True)
    monkeypatch.setattr(c10, "URL", archive.as_uri())  # its md5 is not the official one
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match="md5"):
        c10.cifar10(root, download=True)
    assert not (root / c10.ARCHIVE).exists()


def test_writer_round_trips_through_the_reader(tmp_path):
    from cmlearn.data.cifar10 import load_cifar10
    from cmlearn.data.cifar10_writer import synthetic_cifar10, write_cifar10_format

    imgs = torch.randint(0, 256, (23, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(23) % 10
    write_cifar10_format(tmp_path / "mine", imgs, labels)
    x, y = load_cifar10(tmp_path / "mine", train=True)
    assert torch.equal(x, imgs) and torch.equal(y, labels)
    synthetic_cifar10(tmp_path / "syn", n=20)
    assert load_cifar10(tmp_path / "syn")[0].shape == (20, 3, 32, 32)
    synthetic_cifar10(tmp_path / "syn8", n=20, n_test=8)  # a test split of its own (notebook 09 edits it)
    train_x, test_x = load_cifar10(tmp_path / "syn8")[0], load_cifar10(tmp_path / "syn8", train=False)[0]
    assert test_x.shape == (8, 3, 32, 32) and torch.equal(train_x, load_cifar10(tmp_path / "syn")[0])
    assert not any(torch.equal(t, x) for t in test_x for x in train_x)
    with pytest.raises(ValueError, match="n_test"):
        synthetic_cifar10(tmp_path / "neg", n=20, n_test=-1)
    with pytest.raises(ValueError, match="uint8"):
        write_cifar10_format(tmp_path / "bad", imgs.float(), labels)
