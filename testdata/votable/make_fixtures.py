"""Writes the VOTable fixtures of insitu's reader tests (server/src/votable/read.rs).

One small table, written by astropy.io.votable in each serialisation:

    table.tabledata.xml   TABLEDATA
    table.binary.xml      BINARY  (integer nulls through VALUES null, float nulls as NaN)
    table.binary2.xml     BINARY2 (null flags)

and, as the oracle of the writer's byte stream, the same table without its null row and
without the columns insitu never writes (bit, fixed-length char):

    writer_oracle.binary2.xml

Deterministic: fixed values, no dates or random numbers, so reruns give identical bytes.
Run from the repository root: .venv/bin/python testdata/votable/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from astropy.io.votable.tree import Field, Resource, TableElement, VOTableFile

HERE = Path(__file__).resolve().parent

# (name, datatype, arraysize, unit, ucd, description, VALUES null)
FIELDS = [
    ("id", "int", None, None, "meta.id;meta.main", "row number", None),
    ("flag", "boolean", None, None, None, None, None),
    ("bits", "bit", None, None, None, None, None),
    ("ub", "unsignedByte", None, None, None, None, 255),
    ("s", "short", None, "adu", None, None, -32768),
    ("i", "int", None, None, None, None, -2147483648),
    ("l", "long", None, None, None, None, -9223372036854775808),
    ("f", "float", None, "mag", "phot.mag", "a magnitude", None),
    ("d", "double", None, "deg", "pos.eq.ra", "right ascension <ICRS> & more", None),
    ("name", "char", "*", None, "meta.id", None, None),
    ("code", "char", "4", None, None, None, None),
    ("label", "unicodeChar", "*", None, None, "non-ASCII text", None),
]

# One tuple per row; None is a null (masked) cell. Row 2 holds the nulls of every column
# that can have one; the extremes of each integer type appear in rows 3 and 4.
ROWS = [
    (1, True, True, 0, 1, 10, 100, 1.5, 10.25, "alpha", "ab", "Ωmega"),
    (2, None, False, None, None, None, None, None, None, "beta", "abcd", "café"),
    (3, False, True, 254, -32767, -2147483647, -9223372036854775807, -0.0, -1e-300,
     "<x & y>", "a b", "plain"),
    (4, True, False, 1, 32767, 2147483647, 9223372036854775807, 3.4028235e38, 1.7976931348623157e308,
     "tab\there", "", "日本"),
    (5, False, False, 128, 0, 0, 0, float("inf"), float("-inf"), "  padded  ", "x", "z"),
]


# The columns and rows of writer_oracle.binary2.xml.
ORACLE_COLUMNS = [c for c, f in enumerate(FIELDS) if f[0] not in ("bits", "code")]
ORACLE_ROWS = [r for r, row in enumerate(ROWS) if None not in row]


def table(columns=range(len(FIELDS)), rows=range(len(ROWS))) -> VOTableFile:
    votable = VOTableFile(version="1.4")
    resource = Resource()
    votable.resources.append(resource)
    t = TableElement(votable, name="fixture")
    resource.tables.append(t)
    for name, datatype, arraysize, unit, ucd, description, null in (FIELDS[c] for c in columns):
        f = Field(votable, name=name, datatype=datatype, arraysize=arraysize, unit=unit, ucd=ucd)
        if description:
            f.description = description
        if null is not None:
            f.values.null = null
        t.fields.append(f)
    t.create_arrays(len(rows))
    for r, row in enumerate(ROWS[i] for i in rows):
        for c in columns:
            name, value = FIELDS[c][0], row[c]
            if value is None:
                t.array.mask[name][r] = True
            else:
                t.array[name][r] = value
                t.array.mask[name][r] = False
    return votable


def main():
    for serialisation in ("tabledata", "binary", "binary2"):
        path = HERE / f"table.{serialisation}.xml"
        table().to_xml(str(path), tabledata_format=serialisation)
        print(path, path.stat().st_size, "bytes")
    path = HERE / "writer_oracle.binary2.xml"
    table(ORACLE_COLUMNS, ORACLE_ROWS).to_xml(str(path), tabledata_format="binary2")
    print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
