"""--output/--overwrite: only a previous export is ever replaced, and only once the new one is
complete (regression: --overwrite rmtree'd any folder, the run's own workdir included)."""

import pytest

from jaxvision.export import runs


def test_overwrite_refuses_a_folder_that_is_not_a_saved_model(tmp_path):
    victim = tmp_path / "thesis"
    victim.mkdir()
    (victim / "chapter1.tex").write_text("precious")
    with pytest.raises(ValueError, match="not a SavedModel"):
        runs._check_output(str(victim), True, "saved_model")
    for fmt in ("tflite", "tflite_int8", "stablehlo"):
        with pytest.raises(ValueError, match="is a folder"):
            runs._check_output(str(victim), True, fmt)
    assert (victim / "chapter1.tex").read_text() == "precious"


def test_overwrite_checks_delete_nothing_and_accept_previous_exports(tmp_path):
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"old")
    runs._check_output(str(sm), True, "saved_model")
    blob = tmp_path / "m.tflite"
    blob.write_bytes(b"old")
    runs._check_output(str(blob), True, "tflite")
    assert (sm / "saved_model.pb").read_bytes() == b"old" and blob.read_bytes() == b"old"
    new = tmp_path / "new"
    new.mkdir()
    (new / "saved_model.pb").write_bytes(b"new")
    runs._replace_with(str(new), str(sm))
    assert (sm / "saved_model.pb").read_bytes() == b"new" and not new.exists()
