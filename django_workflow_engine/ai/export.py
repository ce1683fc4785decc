"""CSV for cost reports that is safe to open in a spreadsheet: used by the admin's CSV export and ``aicosts``.

Model ids, workflow ids, stage ids and topics come from users and providers. A cell starting with ``=``, ``+``,
``-`` or ``@`` (or a tab or carriage return, which some spreadsheets skip before looking for one) is read as a
formula by Excel, LibreOffice and Google Sheets, so such text gets a leading ``'``, which spreadsheets show as
text. Numbers are written as they are: a negative number is not a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def spreadsheet_safe(value: Any, missing: str = "") -> str:
    """One cell as text: ``None`` -> ``missing``; numbers and dates as they are; other text with a leading ``'``
    when a spreadsheet would read it as a formula."""
    if value is None:
        return missing
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text == "-0" else text
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class SafeCSVWriter:
    """``csv.writer`` whose every cell goes through :func:`spreadsheet_safe`.

    Args:
        stream: anything with ``write(str)`` (a file, an ``HttpResponse``, a command's ``stdout``).
        missing: the text written for ``None``.
        lineterminator: ``"\\r\\n"`` (RFC 4180, the default) or ``"\\n"`` for terminal output.
    """

    def __init__(self, stream: _Writable, *, missing: str = "", lineterminator: str = "\r\n") -> None:
        self._writer = csv.writer(stream, lineterminator=lineterminator)
        self._missing = missing

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([spreadsheet_safe(value, self._missing) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
