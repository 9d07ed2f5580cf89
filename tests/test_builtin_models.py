"""The built-in models' table (models/builtin.py) against the pocket package, and what `doctor` and
`models` say of a built-in model that is not installed."""

from __future__ import annotations

import pytest

from trce_audit.api.installation import model_checks
from trce_audit.api.models import list_models
from trce_audit.errors import ModelError
from trce_audit.models import builtin
from trce_audit.pocket.flux_models import FLUX_MODEL_DIR
from trce_audit.pocket.models import MODEL_DIR


def test_builtin_folders_are_the_pocket_packages():
    # builtin.py finds the folders by path to keep torch off `doctor`; they must be the ones the pocket package writes.
    assert builtin.POCKET_WEIGHTS / builtin.BUILTINS["pocket"].folder == MODEL_DIR
    assert builtin.POCKET_WEIGHTS / builtin.BUILTINS["pocket-flux"].folder == FLUX_MODEL_DIR


def test_a_missing_builtin_model_is_reported_by_doctor_models_and_resolution(monkeypatch, tmp_path):
    monkeypatch.setattr(builtin, "POCKET_WEIGHTS", tmp_path)
    (tmp_path / "pocket-sd").mkdir()
    (tmp_path / "pocket-sd" / "model_index.json").write_text("{}")
    checks = {row["check"]: row for row in model_checks()}
    assert checks["model pocket"]["ok"]
    flux = checks["model pocket-flux"]
    assert not flux["ok"] and "train_flux" in flux["fix"] and str(tmp_path / "pocket-flux") in flux["fix"]
    described = {row["model"]: row["description"] for row in list_models()}
    assert described["pocket-flux"].startswith("not installed: ") and not described["pocket"].startswith("not installed")
    with pytest.raises(ModelError, match="pocket-flux model is missing"):
        builtin.builtin_folder("pocket-flux")
    assert builtin.builtin_folder("pocket") == tmp_path / "pocket-sd"
