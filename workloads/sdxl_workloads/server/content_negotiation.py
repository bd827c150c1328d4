"""Does the client want a bare PNG body (`Accept: image/png`) rather than JSON?"""

from __future__ import annotations


def _quality(accept: str, kinds: tuple[str, ...]) -> float:
    best = 0.0
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if media.lower() not in kinds:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def wants_png(accept: str | None) -> bool:
    """True when image/png is acceptable and preferred over JSON (ties go to JSON)."""
    if not accept:
        return False
    png = _quality(accept, ("image/png", "image/*"))
    json_q = _quality(accept, ("application/json", "application/*", "*/*"))
    # A specific image/png must be named: "*/*" alone means "anything", and JSON is our default.
    return "image/png" in accept.lower() and png > 0 and png > json_q
