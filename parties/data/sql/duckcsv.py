"""A party's CSV file made ready for DuckDB, read by the memory engine's rules.

DuckDB's own CSV sniffer guesses differently from the memory engine (:mod:`parties.data.csvfile`)
on the files the rules were written for -- a Windows-1252 export, a file without a header, a
delimiter that two candidates could be.  So the choices are made here, by the memory engine's
functions on the file's first 64 KiB (the header and the first rows), and DuckDB is told them:

* **encoding** -- given, or detected as the memory engine does (a byte-order mark; UTF-8 when
  the whole file is valid UTF-8, checked in a streaming pass; else Windows-1252, else Latin-1);
  a file that is not plain UTF-8 is transcoded, streaming, into UTF-8 in the engine's private
  directory (DuckDB reads UTF-8 natively);
* **delimiter** -- given, or :func:`parties.data.csvfile.detect_delimiter`;
* **header** -- the same checks and the same sentences (empty file, a nameless or repeated
  column, a first row of numbers); the first rows must have as many fields as the header.

The result is the memory engine's ``dialect`` record for the party's log.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

from parties.data.csvfile import (
    _BOMS,
    _FALLBACKS,
    _rows,
    check_options,
    detect_delimiter,
    text_encoding,
)
from parties.data.sources import DataSourceError

__all__ = ["prepare_csv"]

_CHUNK = 1 << 20
_SAMPLE = 1 << 16


def _decodes(path: Path, encoding: str) -> int | None:
    """None if the whole file decodes with ``encoding`` (streaming), else the failing byte."""
    dec = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as exc:
                return offset + exc.start
            offset += len(chunk)
    try:
        dec.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return offset + exc.start
    return None


def _encoding(path: Path, given: str | None, src: str) -> tuple[str, str]:
    """(codec, how it was chosen) by the memory engine's rule."""
    if given is not None:
        try:
            enc = text_encoding(given)
        except ValueError as exc:
            raise DataSourceError(f"{src}: {exc}") from None
        bad = _decodes(path, enc)
        if bad is not None:
            raise DataSourceError(
                f"{src}: not valid {given} text (byte {bad} of the file); fix data.encoding in "
                "the party's config, or leave it out to detect it")
        return enc, "given"
    with path.open("rb") as fh:
        head = fh.read(4)
    for bom, enc in _BOMS:
        if head.startswith(bom):
            bad = _decodes(path, enc)
            if bad is not None:
                raise DataSourceError(
                    f"{src}: starts with a {enc} byte-order mark but is not valid {enc} text "
                    f"(byte {bad}); set data.encoding in the party's config")
            return enc, "detected: byte-order mark"
    if _decodes(path, "utf-8") is None:
        return "utf-8", "detected: valid UTF-8"
    for enc in _FALLBACKS:
        if _decodes(path, enc) is None:
            return enc, "detected: not valid UTF-8"
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _transcode(path: Path, encoding: str, out: Path) -> None:
    with path.open("r", encoding=encoding, newline="") as src, \
            out.open("w", encoding="utf-8", newline="") as dst:
        while chunk := src.read(_CHUNK):
            dst.write(chunk)


def prepare_csv(path: Path, workdir: Path, *, delimiter: str | None, encoding: str | None,
                decimal: str) -> tuple[Path, str, dict[str, str]]:
    """(the UTF-8 file DuckDB reads, its delimiter, the dialect record); raises the memory
    engine's :class:`DataSourceError` for a file it would refuse at its start."""
    src = str(path)
    check_options(src, delimiter, decimal)
    try:
        enc, enc_how = _encoding(path, encoding, src)
    except OSError as exc:
        raise DataSourceError(f"{src}: cannot open file: {exc.strerror}") from None
    utf8 = path
    if enc != "utf-8":
        utf8 = workdir / "data.csv"
        _transcode(path, enc, utf8)
    with utf8.open("r", encoding="utf-8", newline="") as fh:
        sample = fh.read(_SAMPLE + 1)
    complete = len(sample) <= _SAMPLE
    if not complete:  # whole lines only
        sample = sample[: sample.rfind("\n") + 1] or sample
    delim_how = "given"
    if delimiter is None:
        delimiter = detect_delimiter(sample, src, decimal)
        delim_how = "detected"
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, strict=True)
    try:
        _rows(reader, src, delimiter)  # the header's and the first rows' checks
    except csv.Error as exc:
        raise DataSourceError(f"{src}: malformed CSV at line {reader.line_num}: {exc}") from None
    dialect = {"delimiter": delimiter, "delimiter_chosen": delim_how, "encoding": enc,
               "encoding_chosen": enc_how, "decimal": decimal}
    return utf8, delimiter, dialect
