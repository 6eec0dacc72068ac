"""Checks a party makes on what it is asked to prepare, whatever the coordinator says: the
roles of the session's nodes, the number of data parties, the flooding a model owner applies,
the model it is asked to apply; and how untrusted text is shown in its audit trail."""

from __future__ import annotations

from parties.errors import PolicyError
from smpc import linear
from smpc.errors import InputError
from smpc.names import Backend

__all__ = ["check_flood_bits", "check_node_role", "check_party_count", "pick_model",
           "printable"]


def pick_model(models: dict[str, linear.LinearModel], name: str, me: str
                ) -> tuple[str, linear.LinearModel]:
    if name:
        if name not in models:
            raise InputError(f"{me} has no model {name!r} (models: {', '.join(models) or 'none'})")
        return name, models[name]
    if len(models) == 1:
        return next(iter(models.items()))
    if not models:
        raise InputError(f"{me} owns no model")
    raise InputError(f"{me} owns several models ({', '.join(models)}); name one")


def check_node_role(federation: object, name: str | None, allowed: tuple[str, ...], what: str
                     ) -> None:
    """The node given a session role must have a fitting role in the federation config (a
    statistic's sum goes to a coordinator, never to another party)."""
    if name is not None and federation.node(name).role not in allowed:  # type: ignore[attr-defined]
        raise InputError(f"the {what} of a session must be a {' or '.join(allowed)} node, "
                         f"not {name!r}")


def check_party_count(me: str, min_parties: int, count: int) -> None:
    """A statistic needs at least ``max(2, min_parties)`` data parties (``policy.min_parties``):
    a party never contributes a "joint" statistic alone, whatever its policy says."""
    fewest = max(2, min_parties)
    if count < fewest:
        raise PolicyError(f"{me} refuses: a statistic needs at least {fewest} data parties "
                          f"by its policy (policy.min_parties); this one has {count}")


def check_flood_bits(me: str, least: int, backend: Backend, flood_bits: int) -> None:
    """A model owner floods the ckks logits it returns with at least ``least`` bits
    (``policy.min_flood_bits``), whatever the request asks (``ss`` returns no CKKS error)."""
    if backend == Backend.CKKS and flood_bits < least:
        raise PolicyError(f"{me} refuses: its policy floods the logits it returns with at "
                          f"least {least} bits (policy.min_flood_bits); the request asks "
                          f"for {flood_bits}")


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, every unprintable one shown as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])
