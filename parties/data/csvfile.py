"""Reading a party's CSV export: its encoding and delimiter, given or detected.

Rules (:func:`load_csv`):

* **Encoding.** Given (``encoding``, any Python text codec: ``utf-8``, ``cp1252``,
  ``latin-1``, ``utf-16``...), the file must decode with it, else a file error. Detected (the
  default): a UTF-8 or UTF-16 byte-order mark decides; otherwise the file is UTF-8 when it is
  valid UTF-8, else Windows-1252 (``cp1252``, the superset of Latin-1 that Excel writes) when
  every byte is defined there, else ``latin-1`` (which decodes any byte). The order is safe: a
  cp1252 / Latin-1 file with accented letters is almost never valid UTF-8 (an accented letter
  would have to be followed by exactly the right continuation bytes), and a file of plain ASCII
  reads the same in all three.
* **Delimiter.** Given (``delimiter``, one character), it is used. Detected (the default):
  among ``,`` ``;`` tab and ``|`` (except the decimal separator), the candidates that split the
  header into at least two fields (quotes respected). None: a one-column file. One: it is used
  (a row with another number of fields is then an error naming its line). Several: the one
  that also splits each of the first :data:`SAMPLE_ROWS` rows (blank lines skipped) into as
  many fields as the header, if exactly one does; otherwise a file error saying which config
  key to set (``data.delimiter``).
* **Decimal separator.** ``decimal`` is ``.`` (default) or ``,``; never detected (``1,250``
  could be a thousand and a quarter or one and a quarter). A ``;`` export from a European
  spreadsheet usually needs ``decimal = ","``; when a number does not parse, the party's log
  (not the analyst) suggests it.
* The choice -- delimiter, encoding, decimal, and which were detected -- is logged on the
  party's host (logger ``smpc.data``, without the file's path) and kept in
  :attr:`Table.dialect`.

Header and row rules, and what errors say, are :mod:`parties.data.sources`'s.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from parties.data.sources import DataSourceError, Table

__all__ = ["DELIMITERS", "SAMPLE_ROWS", "check_options", "detect_delimiter", "load_csv",
           "text_encoding"]


#: The delimiters tried when none is given, in this order.
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
#: How many rows after the header delimiter detection looks at.
SAMPLE_ROWS = 50
_SAMPLE_CHARS = 1 << 16
_FALLBACKS = ("cp1252", "latin-1")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
         (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def text_encoding(name: str) -> str:
    """The canonical name of text codec ``name`` (``utf-8`` reads as ``utf-8-sig``, so that a
    byte-order mark is never part of the first column's name); ``ValueError`` if unknown."""
    try:
        info = codecs.lookup(name)
        "a".encode(info.name)  # str <-> bytes: base64, zlib... raise LookupError here
    except LookupError:
        raise ValueError(f"{name!r} is not a known text encoding") from None
    if not getattr(info, "_is_text_encoding", True):  # rot13 (str -> str)
        raise ValueError(f"{name!r} is not a text encoding")
    return "utf-8-sig" if info.name == "utf-8" else info.name


def _decode(data: bytes, encoding: str | None, src: str) -> tuple[str, str, str]:
    """(text, encoding used, how it was chosen)."""
    if encoding is not None:
        enc = text_encoding(encoding)
        try:
            return data.decode(enc), enc, "given"
        except UnicodeDecodeError as exc:
            raise DataSourceError(
                f"{src}: not valid {encoding} text (byte {exc.start} of the file); fix "
                "data.encoding in the party's config, or leave it out to detect it") from None
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc, "detected: byte-order mark"
            except UnicodeDecodeError as exc:
                raise DataSourceError(
                    f"{src}: starts with a {enc} byte-order mark but is not valid {enc} text "
                    f"(byte {exc.start}); set data.encoding in the party's config") from None
    try:
        return data.decode("utf-8"), "utf-8", "detected: valid UTF-8"
    except UnicodeDecodeError:
        pass
    for enc in _FALLBACKS:
        try:
            return data.decode(enc), enc, "detected: not valid UTF-8"
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _field_counts(sample: str, delimiter: str, complete: bool) -> list[int]:
    """Fields per non-blank record of ``sample`` (header first); the last record is left out
    when the sample is cut (``complete`` false)."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    counts: list[int] = []
    try:
        for row in reader:
            if row:
                counts.append(len(row))
            if len(counts) > SAMPLE_ROWS + 1:
                return counts[: SAMPLE_ROWS + 1]
    except csv.Error:
        return []  # a NUL byte or similar: this candidate does not fit
    return counts if complete or len(counts) < 2 else counts[:-1]


def detect_delimiter(text: str, src: str, decimal: str = ".") -> str:
    """The delimiter of CSV ``text`` by the rule of the module docstring."""
    complete = len(text) <= _SAMPLE_CHARS
    sample = text if complete else text[: text.rfind("\n", 0, _SAMPLE_CHARS) + 1]
    if not sample:  # one line longer than the sample
        sample, complete = text[:_SAMPLE_CHARS], False
    split: list[str] = []  # candidates splitting the header into two fields or more
    fits: list[str] = []  # ... and every sampled row into as many
    for d in DELIMITERS:
        if d == decimal:
            continue
        counts = _field_counts(sample, d, complete)
        if not counts or counts[0] < 2:
            continue
        split.append(d)
        if all(c == counts[0] for c in counts):
            fits.append(d)
    if not split:
        return "," if decimal != "," else ";"  # one column: any delimiter reads it
    if len(split) == 1:
        return split[0]  # a ragged row is then reported with its line
    if len(fits) == 1:
        return fits[0]
    both = " and ".join(repr(d) for d in (fits or split))
    raise DataSourceError(
        f"{src}: cannot tell the delimiter: {both} each split the header"
        + (" and the first rows into a constant number of fields" if fits else
           " but none splits the first rows into as many fields")
        + "; set data.delimiter in the party's config (delimiter= in Python)")


def check_options(src: str, delimiter: str | None, decimal: str) -> None:
    """Refuse a decimal separator other than ``.`` / ``,`` and a delimiter that is not one
    character other than a quote, a newline or the decimal separator."""
    if decimal not in (".", ","):
        raise DataSourceError(f"{src}: the decimal separator must be '.' or ',', got "
                              f"{decimal!r}")
    if delimiter is not None and (len(delimiter) != 1 or delimiter in "\"\r\n" + decimal):
        raise DataSourceError(f"{src}: the delimiter must be one character other than a "
                              f"quote, a newline or the decimal separator, got {delimiter!r}")


def load_csv(path: Path, *, delimiter: str | None = None, encoding: str | None = None,
             decimal: str = ".") -> Table:
    """Read CSV ``path`` into a :class:`Table` (rules: module docstring and
    :mod:`parties.data.sources`)."""
    src = str(path)
    check_options(src, delimiter, decimal)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataSourceError(f"{src}: cannot open file: {exc.strerror}") from None
    try:
        text, enc, enc_how = _decode(data, encoding, src)
    except ValueError as exc:
        if isinstance(exc, DataSourceError):
            raise
        raise DataSourceError(f"{src}: {exc}") from None
    del data
    delim_how = "given"
    if delimiter is None:
        delimiter = detect_delimiter(text, src, decimal)
        delim_how = "detected"
    dialect = {"delimiter": delimiter, "delimiter_chosen": delim_how, "encoding": enc,
               "encoding_chosen": enc_how, "decimal": decimal}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        names, cols, lines = _rows(reader, src, delimiter)
    except csv.Error as exc:
        raise DataSourceError(f"{src}: malformed CSV at line {reader.line_num}: {exc}") from None
    return Table(dict(zip(names, cols, strict=True)), source=src,
                 line_numbers=np.asarray(lines, dtype=np.int64), fmt="csv", decimal=decimal,
                 dialect=dialect)


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _rows(reader: Any, src: str, delimiter: str
          ) -> tuple[list[str], list[list[str]], list[int]]:
    header = next(reader, None)
    while header is not None and not header:
        header = next(reader, None)
    if header is None:
        raise DataSourceError(f"{src}: file is empty; a header row is required")
    names = [h.strip() for h in header]
    for i, n in enumerate(names):
        if not n:
            raise DataSourceError(
                f"{src}: header column {i + 1} has no name; a header row naming every "
                "column is required"
            )
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataSourceError(f"{src}: header names column {dup!r} more than once")
    if all(_looks_numeric(n) for n in names):  # its fields are data: never quoted
        raise DataSourceError(
            f"{src}: the first row looks like data; a header row naming the "
            "columns is required (every field of the first row is a number)"
        )
    cols: list[list[str]] = [[] for _ in names]
    lines: list[int] = []
    k = len(names)
    for row in reader:
        if not row:
            continue
        if len(row) != k:
            raise DataSourceError(
                f"{src}: row {len(lines) + 1} (line {reader.line_num}) has {len(row)} "
                f"field(s), the header has {k} (delimiter {delimiter!r})"
            )
        lines.append(reader.line_num)
        for j, v in enumerate(row):
            cols[j].append(v.strip())
    return names, cols, lines


def describe_dialect(dialect: dict[str, str]) -> str:
    """One line for the party's log saying how its CSV file was read (no path: a node's log
    names no file on its host, SECURITY.md "Errors carry no data"); empty for other formats.
    The node logs it once it listens, so that a start-up error stays one line on stderr."""
    if "delimiter" not in dialect:
        return ""
    return (f"data file read as CSV with delimiter {dialect['delimiter']!r} "
            f"({dialect['delimiter_chosen']}), encoding {dialect['encoding']} "
            f"({dialect['encoding_chosen']}), decimal {dialect['decimal']!r}")
