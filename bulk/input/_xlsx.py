"""Stream the rows of an .xlsx workbook's active sheet, every cell's text capped.

openpyxl, even in read-only mode, builds each shared string and each cell's
text whole: a 102 KB file holding one 100 MB cell took 920 MB of memory and
11 s (measured). expat hands text over in pieces, so here a cell keeps its
first `keep` characters and only counts the rest: the same file reads in
bounded memory. Only what `bulk` needs is read: the active sheet's cell
values (cached formula results, as openpyxl's `data_only`), as text.

A small file can still describe a great deal: rows padded to a cell at
column XFD (200,000 such rows in 22 KB held 16,384 cells each), or tens of
millions of empty shared strings (40 million in 293 KB). So once the header
is read the caller says which columns it wants (`SheetRows.keep_only`) and
rows hold only those, sparsely; a part that unpacks at a ratio no real
workbook has is refused (`refuse_bomb`), and so are more than
MAX_SHARED_STRINGS shared strings.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from pyexpat import ExpatError, ParserCreate
from typing import Any

from .._core._exceptions import UsageError
from ._formats import MAX_FIELDS, refuse_bomb

__all__ = ["SheetRows", "read_rows"]

MAX_COLUMNS = MAX_FIELDS  # Excel's own limit (column XFD)
# What one part of the package may unpack to: a zip bomb stops here, and a real
# sheet of 1,048,576 rows (Excel's limit) is far smaller.
MAX_PART_BYTES = 1 << 30
# Each is held (cut to `keep` characters) while the sheet is read: 5 million
# is five text columns of Excel's most rows, all distinct.
MAX_SHARED_STRINGS = 5_000_000
_BLOCK = 1 << 16

Cut = Callable[[str, int], str]  # (first characters, whole length) -> the kept text


class _Text:
    """Character data of one element: at most `keep` characters kept, all counted."""

    __slots__ = ("keep", "parts", "size")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.parts: list[str] = []
        self.size = 0

    def add(self, data: str) -> None:
        room = self.keep - self.size
        if room > 0:
            self.parts.append(data[:room])
        self.size += len(data)

    def value(self, cut: Cut) -> str:
        text = "".join(self.parts)
        return text if self.size <= self.keep else cut(text, self.size)


def _parse(
    archive: zipfile.ZipFile,
    name: str,
    part: str,
    start: Callable[[str, dict[str, str]], None],
    end: Callable[[str], None],
    chars: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Feed one part to expat block by block; yields after each block so rows can be taken."""
    try:
        info = archive.getinfo(part)
    except KeyError:
        raise UsageError(f"{name}: not a usable .xlsx (no part {part})") from None
    if info.file_size > MAX_PART_BYTES:
        raise UsageError(
            f"{name}: {part} would unpack to {info.file_size:,} bytes, "
            f"more than the {MAX_PART_BYTES:,} bulk reads"
        )
    # The sizes are the archive's word; zipfile stops at the stated size (and
    # then fails on the checksum), so a part cannot unpack to more than it says.
    refuse_bomb(f"{name}: {part}", info.file_size, info.compress_size)
    parser = ParserCreate(namespace_separator=" ")
    parser.buffer_text = True  # fewer, longer character-data calls

    def no_dtd(*_: Any) -> None:
        # A workbook never has a DTD; refusing one rules out entity expansion bombs.
        raise UsageError(f"{name}: {part} declares a DTD, which no workbook does")

    parser.StartDoctypeDeclHandler = no_dtd
    parser.StartElementHandler = lambda tag, attrs: start(
        tag.rpartition(" ")[2], {k.rpartition(" ")[2]: v for k, v in attrs.items()}
    )
    parser.EndElementHandler = lambda tag: end(tag.rpartition(" ")[2])
    if chars is not None:
        parser.CharacterDataHandler = chars
    try:
        with archive.open(info) as stream:
            while block := stream.read(_BLOCK):
                parser.Parse(block, False)
                yield
            parser.Parse(b"", True)
    except ExpatError as exc:
        raise UsageError(f"{name}: {part} is not well-formed XML ({exc})") from None
    yield


def _relationships(archive: zipfile.ZipFile, name: str, part: str) -> dict[str, tuple[str, str]]:
    """Relationship id -> (type, package path of the target) for `part`."""
    folder, base = posixpath.split(part)
    rels_part = posixpath.join(folder, "_rels", f"{base}.rels")
    found: dict[str, tuple[str, str]] = {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag == "Relationship" and attrs.get("TargetMode") != "External":
            target = attrs.get("Target", "")
            path = target[1:] if target.startswith("/") else posixpath.join(folder, target)
            found[attrs.get("Id", "")] = (attrs.get("Type", ""), posixpath.normpath(path))

    if rels_part in archive.NameToInfo:
        for _ in _parse(archive, name, rels_part, start, lambda tag: None):
            pass
    return found


def _locate(archive: zipfile.ZipFile, name: str) -> tuple[str, str | None]:
    """The active sheet's part and the shared strings' part (None if there are none)."""
    book = next(
        (p for t, p in _relationships(archive, name, "").values() if t.endswith("/officeDocument")),
        "xl/workbook.xml",
    )
    sheets: list[str] = []
    active = [0]

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag == "sheet":
            sheets.append(attrs.get("id", ""))
        elif tag == "workbookView" and attrs.get("activeTab", "0").isdigit():
            active[0] = int(attrs.get("activeTab", "0"))

    for _ in _parse(archive, name, book, start, lambda tag: None):
        pass
    rels = _relationships(archive, name, book)
    strings = next((p for t, p in rels.values() if t.endswith("/sharedStrings")), None)
    if not sheets:
        raise UsageError(f"{name}: the workbook has no sheet")
    kind, sheet = rels.get(sheets[active[0] if active[0] < len(sheets) else 0], ("", ""))
    if not kind.endswith("/worksheet"):
        raise UsageError(f"{name}: the active sheet is not a worksheet")
    return sheet, strings


class _Strings:
    """expat callbacks for the shared strings table: one capped text per <si>."""

    def __init__(self, name: str, cut: Cut, keep: int) -> None:
        self.name = name
        self.cut = cut
        self.keep = keep
        self.strings: list[str] = []
        self.text: _Text | None = None
        self.collecting = False
        self.phonetic = False

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "si":
            self.text = _Text(self.keep)
        elif tag == "rPh":  # a reading guide for East Asian text, not part of the value
            self.phonetic = True
        elif tag == "t":
            self.collecting = self.text is not None and not self.phonetic

    def end(self, tag: str) -> None:
        if tag == "si" and self.text is not None:
            if len(self.strings) >= MAX_SHARED_STRINGS:
                raise UsageError(
                    f"{self.name}: more than {MAX_SHARED_STRINGS:,} shared strings; "
                    "bulk reads workbooks with up to that many"
                )
            self.strings.append(self.text.value(self.cut))
            self.text = None
        elif tag == "rPh":
            self.phonetic = False
        elif tag == "t":
            self.collecting = False

    def chars(self, data: str) -> None:
        # Text sits only in <t> elements; between them there is only layout whitespace.
        if self.collecting and self.text is not None:
            self.text.add(data)


def _column(reference: str) -> int:
    """`AB12` -> 27 (0-based); -1 when the reference has no letters."""
    index = 0
    for char in reference:
        if "A" <= char <= "Z":
            index = index * 26 + ord(char) - 64
        elif "a" <= char <= "z":
            index = index * 26 + ord(char) - 96
        else:
            break
        if index > MAX_COLUMNS:
            return MAX_COLUMNS
    return index - 1


class _Sheet:
    """expat callbacks for a worksheet: complete rows pile up in `rows`, sparsely.

    `kept`: the columns whose cells are kept (None: all of them, as for the
    header). A row is a dict of its kept non-empty cells; rows with no
    non-blank cell at all, kept or not, are left out.
    """

    def __init__(self, name: str, strings: list[str], cut: Cut, keep: int) -> None:
        self.name = name
        self.strings = strings
        self.cut = cut
        self.keep = keep
        self.kept: frozenset[int] | None = None
        self.rows: deque[dict[int, str]] = deque()
        self.cells: dict[int, str] = {}
        self.blank = True
        self.column = 0
        self.kind = "n"
        self.text: _Text | None = None
        self.collecting = False
        self.phonetic = False

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "c":
            reference = attrs.get("r")
            self.column = _column(reference) if reference else self.column
            if not 0 <= self.column < MAX_COLUMNS:
                raise UsageError(f"{self.name}: cell reference {reference!r:.20} is out of range")
            self.kind = attrs.get("t", "n")
            # Read, then dropped, outside the kept columns too: a row with only
            # such cells still counts as a row (an invalid one), as in a CSV.
            self.text = _Text(self.keep)
        elif tag == "row":
            self.cells = {}
            self.blank = True
            self.column = 0
        elif tag == "v" or (tag == "t" and self.kind == "inlineStr" and not self.phonetic):
            self.collecting = self.text is not None
        elif tag == "rPh":
            self.phonetic = True

    def end(self, tag: str) -> None:
        if tag in ("v", "t"):
            self.collecting = False
        elif tag == "rPh":
            self.phonetic = False
        elif tag == "c" and self.text is not None:
            value = self.text.value(self.cut)
            if self.kind == "s":
                value = self._shared(value)
            if value and (self.kept is None or self.column in self.kept):
                self.cells[self.column] = value
            self.blank = self.blank and not value.strip()
            self.text = None
            self.column += 1
        elif tag == "row" and not self.blank:
            self.rows.append(self.cells)

    def chars(self, data: str) -> None:
        if self.collecting and self.text is not None:
            self.text.add(data)

    def _shared(self, index: str) -> str:
        index = index.strip()
        if not index.isdigit() or int(index) >= len(self.strings):
            raise UsageError(f"{self.name}: a cell refers to a missing shared string")
        return self.strings[int(index)]


class SheetRows:
    """Each non-blank row of the active sheet as a list of cell texts (None for an empty cell).

    Until `keep_only` is called a row is as wide as its last cell; after it,
    only as wide as the last wanted column, with only the wanted cells.
    """

    def __init__(self, path: Path, name: str, cut: Cut, keep: int) -> None:
        self.path = path
        self.name = name
        self.cut = cut
        self.keep = keep
        self.kept: frozenset[int] | None = None
        self._sheet: _Sheet | None = None

    def keep_only(self, columns: list[int]) -> None:
        self.kept = frozenset(columns)
        if self._sheet is not None:
            self._sheet.kept = self.kept

    def _row(self, cells: dict[int, str]) -> list[Any]:
        if self.kept is None:
            width = max(cells, default=-1) + 1
        else:  # rows parsed before keep_only (same block as the header) are cut here
            width = max(self.kept, default=-1) + 1
            cells = {i: v for i, v in cells.items() if i in self.kept}
        return [cells.get(i) for i in range(width)]

    def __iter__(self) -> Iterator[list[Any]]:
        try:
            archive = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            raise UsageError(f"{self.name}: not an .xlsx workbook (not a zip archive)") from None
        with archive:
            sheet_part, strings_part = _locate(archive, self.name)
            table = _Strings(self.name, self.cut, self.keep)
            if strings_part is not None and strings_part in archive.NameToInfo:
                for _ in _parse(
                    archive, self.name, strings_part, table.start, table.end, table.chars
                ):
                    pass
            sheet = self._sheet = _Sheet(self.name, table.strings, self.cut, self.keep)
            sheet.kept = self.kept
            for _ in _parse(archive, self.name, sheet_part, sheet.start, sheet.end, sheet.chars):
                while sheet.rows:
                    # One at a time: keep_only may come between two rows of one block.
                    yield self._row(sheet.rows.popleft())


def read_rows(path: Path, name: str, cut: Cut, keep: int) -> Iterator[list[Any]]:
    """Each non-blank row of the active sheet, every cell kept (see `SheetRows`)."""
    return iter(SheetRows(path, name, cut, keep))
