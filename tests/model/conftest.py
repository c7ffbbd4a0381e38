from __future__ import annotations

import pytest

from model.data import matrix_path


@pytest.fixture
def shared_matrix() -> object:
    p = matrix_path()
    if not p.is_file():
        reason = f"needs the shared reference data ({p}); absent in a fresh clone"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return p
