"""Plain-text IOC lists: one indicator per line, its type detected from the value.

Lines starting with ``#`` or ``//`` are comments, so a scheme-relative URL
(``//host/path``) on a line of its own is read as a comment too. A ``#``
preceded by whitespace starts a trailing comment. A ``#`` with no whitespace
before it is part of the value, so ``http://bad.example.net/#/invoice`` stays
whole. Defanged values (``hxxps``, ``[.]``, ``[@]``, ``[:]``) are refanged by
``resolve_type``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from detectors.exceptions import FeedError
from detectors.feeds import (
    MAX_VALUE_LENGTH,
    FeedRecordError,
    FeedResult,
    build_result,
    record_error,
    shorten,
    split_lines,
)
from detectors.ioc import Ioc, resolve_type

COMMENT_PREFIXES = ("#", "//")
_INLINE_COMMENT = re.compile(r"\s#")


def indicator_text(line: str) -> str | None:
    """Return the indicator on ``line`` without a trailing comment, or None for comment and blank lines."""
    text = line.strip()
    if not text or text.startswith(COMMENT_PREFIXES):
        return None
    comment = _INLINE_COMMENT.search(text)
    if comment is not None:
        text = text[: comment.start()].rstrip()
    return text


def ioc_from_line(text: str, source: str) -> Ioc:
    """Build an Ioc from one indicator, or raise FeedError naming the value when it is not one.

    The value as written is kept in ``context["raw_value"]`` when it differs
    from the canonical value, so analysts still see a URL's scheme and fragment.
    """
    if len(text) > MAX_VALUE_LENGTH:
        raise FeedError(
            f"indicator of {len(text)} characters starting {shorten(text)} is longer than {MAX_VALUE_LENGTH}; "
            "check that the file is a list of indicators",
            reason="too_long",
        )
    kind, value = resolve_type(None, text)
    context = {"raw_value": text} if text != value else {}
    return Ioc(type=kind, value=value, source=source, context=context)


def parse_plain(lines: str | Iterable[str], *, source: str | None = None, name: str = "<feed>") -> FeedResult:
    """Parse a plain indicator list given as text or as an iterable of lines.

    ``source`` names the feed on every IOC and defaults to ``name``. Errors
    are returned, not raised: each line that is not an indicator becomes one
    FeedRecordError, and an unexpected exception costs only its own line.
    """
    physical, errors = split_lines(lines)
    feed_source = str(source or name)
    iocs: list[Ioc] = []
    skipped = 0
    for number, line in enumerate(physical, start=1):
        text = indicator_text(line)
        if text is None:
            skipped += 1
            continue
        try:
            iocs.append(ioc_from_line(text, feed_source))
        except FeedError as error:
            errors.append(record_error(number, error.reason, str(error)))
        except Exception as error:  # A normaliser bug costs one line, not the feed. The message names it.
            errors.append(_unexpected(number, text, error))
    errors.sort(key=lambda error: error.line)
    return build_result(iocs, errors, skipped)


def _unexpected(number: int, text: str, error: Exception) -> FeedRecordError:
    message = f"indicator {shorten(text)} failed with {type(error).__name__}: {error}; report this as a bug"
    return record_error(number, "internal", message)
