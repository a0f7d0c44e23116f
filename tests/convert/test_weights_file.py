"""Every unreadable --input is one ValueError naming the file, what it is and what --source
expects, for every source; formats told by their first bytes (the formats' specifications),
built here with zipfile / NumPy / h5py / PIL / safetensors, never by the code under test."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from jaxvision.convert.keras import _load as load_keras
from jaxvision.convert.torch import load_state_dict
from jaxvision.convert.vit_npz import load_npz
from jaxvision.convert.weights_file import check_weights_file

LOADERS = {"keras": lambda p: load_keras(p, None), "torch": load_state_dict, "npz": load_npz}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    return buf.getvalue()


def _zip(**members: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name.replace("__", "."), data)
    return buf.getvalue()


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, w=np.arange(1000, dtype=np.float32))
    return buf.getvalue()


def _safetensors() -> bytes:
    from safetensors.numpy import save

    return save({"w": np.zeros((64, 64), np.float32)})


JUNK = {  # file content -> what the message says it is
    "text": (b"hi\n", "is a text file"),
    "empty": (b"", "is empty"),
    "random": (np.random.default_rng(0).bytes(3000), "is not in a known weights format"),
    "png": (_png(), "is a PNG image"),
    "truncated_zip": (_npz()[:200], "is a damaged or truncated zip archive"),
}
WRONG_FORMAT = {  # a real file of another source's format
    "keras": (_zip(config__json=b"{}"), "zip archive without model.weights.h5"),
    "torch": (_npz(), "zip archive without data.pkl"),
    "npz": (_zip(config__json=b"{}", model__weights__h5=b"x"), "not .npy arrays"),
}


@pytest.mark.parametrize("source", sorted(LOADERS))
@pytest.mark.parametrize("kind", sorted(JUNK) + ["wrong_format"])
def test_an_unreadable_input_is_one_message_naming_file_and_format(tmp_path, source, kind):
    data, said = WRONG_FORMAT[source] if kind == "wrong_format" else JUNK[kind]
    path = tmp_path / f"weights_{kind}.{ {'keras': 'keras', 'torch': 'pth', 'npz': 'npz'}[source]}"
    path.write_bytes(data)
    expected = rf"weights_{kind}\..*' .*{said}.*; --source {source} needs "
    with pytest.raises(ValueError, match=expected):
        check_weights_file(source, path)
    with pytest.raises(ValueError, match=expected):  # the readers refuse before reading
        LOADERS[source](str(path))


def test_the_formats_each_source_reads_pass(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f["a"] = np.zeros(3)
    (tmp_path / "m.keras").write_bytes(_zip(config__json=b"{}", model__weights__h5=b""))
    (tmp_path / "m.safetensors").write_bytes(_safetensors())
    (tmp_path / "m.npz").write_bytes(_npz())
    for source, name in [("keras", "w.h5"), ("keras", "m.keras"), ("torch", "m.safetensors"),
                         ("npz", "m.npz")]:
        check_weights_file(source, tmp_path / name)
    np.testing.assert_array_equal(load_npz(str(tmp_path / "m.npz"))["w"], np.arange(1000))
    assert load_state_dict(str(tmp_path / "m.safetensors"))["w"].shape == (64, 64)


def test_truncated_safetensors_and_pickled_npz_are_refused_without_unpickling(tmp_path):
    (tmp_path / "t.safetensors").write_bytes(_safetensors()[:100])
    with pytest.raises(ValueError, match="t.safetensors' is a truncated safetensors file"):
        load_state_dict(str(tmp_path / "t.safetensors"))
    buf = io.BytesIO()
    np.savez(buf, a=np.array([{"x": 1}], dtype=object))
    (tmp_path / "o.npz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="holds object \\(pickled\\) arrays, which are never") as e:
        load_npz(str(tmp_path / "o.npz"))
    assert "allow_pickle" not in str(e.value)  # never advise unpickling
