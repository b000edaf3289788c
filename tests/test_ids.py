import secrets
import subprocess
import sys
from pathlib import Path
from unittest import mock

import jwt

from livecast.ids import is_stream_id, new_id


def test_new_ids_never_start_with_a_dash() -> None:
    # token_urlsafe draws a leading "-" once in 64; make the first draws do it.
    draws = iter(["-abc", "-def", "Gh-i"])
    with mock.patch.object(secrets, "token_urlsafe", side_effect=draws):
        assert new_id() == "Gh-i"
    made = [new_id() for _ in range(2000)]
    assert [value for value in made if value.startswith("-")] == []
    assert all(is_stream_id(value) and len(value) == 12 for value in made)
    assert len(set(made)) == len(made)


def test_token_for_a_stream_id_that_starts_with_a_dash(tmp_path: Path) -> None:
    # Ids made elsewhere may start with "-"; the = form passes them.
    result = subprocess.run(
        [sys.executable, "-m", "livecast", "token", "--data-dir", str(tmp_path),
         "--role", "host", "--name", "Bo", "--stream=-xY_1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["streams"] == ["-xY_1"]
