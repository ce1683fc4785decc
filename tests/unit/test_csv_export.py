"""The spreadsheet-safe CSV writer shared by the admin's cost export and ``manage.py aicosts``."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from django_workflow_engine.ai.export import SafeCSVWriter, spreadsheet_safe


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (-5, "-5"),
        (3, "3"),
        (Decimal("-0.0010"), "-0.001"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0"), "0"),
        (date(2026, 12, 3), "2026-12-03"),
    ],
)
def test_spreadsheet_safe(value, cell):
    assert spreadsheet_safe(value) == cell


def test_writer_round_trips_and_writes_missing_values_as_given():
    out = io.StringIO()
    writer = SafeCSVWriter(out, missing="-", lineterminator="\n")
    writer.writerows([["id", "cost"], ["=1,2", Decimal("0.5")], [None, None]])
    assert out.getvalue() == 'id,cost\n"\'=1,2",0.5\n-,-\n'
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["id", "cost"], ["'=1,2", "0.5"], ["-", "-"]]
