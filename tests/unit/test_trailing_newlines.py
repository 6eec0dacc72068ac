"""Identifiers that name files or sessions refuse a trailing newline.

``re.match`` with ``$`` accepts ``"name\\n"`` (``$`` matches before a final newline): a
session id or model name ending in a newline would become a different file name, a tag a
different stream.  Each pattern ends at ``\\Z``; these tests fail if one goes back to ``$``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from parties.privacy import outputs
from parties.transport import wire
from smpc import linear
from smpc.errors import InputError

SESSION = "0123456789abcdef0123456789abcdef"


def test_the_wire_refuses_a_session_id_or_tag_with_a_trailing_newline() -> None:
    assert wire.check_session_id(SESSION) == SESSION
    assert wire.check_tag("stats/pass1") == "stats/pass1"
    with pytest.raises(InputError):
        wire.check_session_id(SESSION + "\n")
    with pytest.raises(InputError):
        wire.check_tag("stats/pass1\n")


def test_outputs_refuse_a_session_id_or_model_name_with_a_trailing_newline(
        tmp_path: Path) -> None:
    assert outputs._SESSION_RE.match(SESSION)
    assert not outputs._SESSION_RE.match(SESSION + "\n")
    model = linear.LinearModel(kind="linear", features=("a",), coefficients=(1.0,),
                               intercept=0.0)
    with pytest.raises(InputError, match="not a valid model name"):
        outputs.write_model(tmp_path, "p", "risk\n", model, key=None)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_witness_head_hashes_refuse_a_trailing_newline() -> None:
    from parties.privacy import witness

    assert witness._HEX64.match("a" * 64)
    assert not witness._HEX64.match("a" * 64 + "\n")
