"""Kubernetes resource quantities (``250m``, ``64Mi``, ``1.5``): parse and compare them."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
# The apiserver's grammar, restricted to non-negative values (a negative request is never valid)
# and to two-digit exponents (larger ones are never a real resource amount and overflow Decimal).
_QUANTITY = re.compile(r"^\+?(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>[KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]{1,2})?$")


def parse_quantity(text: str) -> Decimal:
    """Return the value of a quantity, or raise ValueError naming the text."""
    match = _QUANTITY.fullmatch(text) if len(text) <= 32 else None
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 100m, 0.5, 64Mi, 1Gi)")
    number, suffix = match["number"], match["suffix"] or ""
    try:
        value = Decimal(number)
    except InvalidOperation as error:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from error
    if suffix[:1] in ("e", "E"):
        return value * (Decimal(10) ** int(suffix[1:]))
    return value * _SUFFIXES[suffix]
