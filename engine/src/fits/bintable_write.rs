//! Arrow record batches written as one FITS binary table (FITS 4.0 §7.3): query results as FITS.
//!
//! The file is an empty primary HDU and one `BINTABLE` extension, the inverse of the reader in
//! `bintable_arrow.rs`: Boolean → `L`, UInt8 → `B`, Int16/32/64 → `I`/`J`/`K`, Float32/64 →
//! `E`/`D`, UInt16/32/64 as `I`/`J`/`K` with the FITS 4.0 Table 19 offsets (`TZERO` 2^15,
//! 2^31, 2^63), which astropy, TOPCAT and cfitsio read back as the same types. Int8 becomes
//! `I`: astropy reads Table 19's signed bytes (`B` with `TZERO` −128) as float64. Strings
//! (Utf8, LargeUtf8, Utf8View) become `nA` with `n` the longest value in bytes; the UTF-8
//! bytes are written as they are. Timestamps and dates become ISO 8601 strings (FITS 4.0
//! §9.1.1), `2024-05-01T12:00:00.250` with as many decimals as the unit has (UTC for zoned
//! timestamps): FITS has no binary datetime column, and the string form is what astropy's
//! `Time` and TOPCAT parse. A `Null` column (`SELECT NULL AS x`) is a logical column of
//! undefined values. Any other type is an error naming the column.
//!
//! Nulls: integers use `TNULLn`, chosen per column among values the column does not hold (the
//! most negative for signed types, the largest for unsigned, else the nearest free one). A
//! UInt16 or UInt32 column with nulls is written as `J` or `K` without `TZERO`, since astropy
//! compares `TNULLn` with offset values and cfitsio with stored ones; an 8- or 16-bit column
//! that holds every value and a null is widened to the next `TFORM` too. Floats store NaN,
//! logicals a zero byte, strings zero bytes (read back as empty strings: FITS has no null
//! string). `TUNITn`, `TUCDn` and `TCOMMn` come from the field metadata keys `unit`, `ucd`
//! and `description`.
//!
//! The batches are scanned once for string widths and free null values (the header comes
//! first), then written in slices of about a mebibyte of rows, so memory stays small whatever
//! the table size.

use std::fmt::Write as _;
use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::header::{Card, Header, Value, BLOCK_LEN};
use crate::{Error, Result};

/// Most characters of a string value in one card (FITS 4.0 §4.2.1.1: columns 11–80 less the
/// two quotes).
const MAX_STRING: usize = 68;
/// Most columns of a table (FITS 4.0 §7.3.1: `TFIELDS` ≤ 999).
const MAX_FIELDS: usize = 999;
/// Bytes of rows built in memory before they go to the output.
const CHUNK_BYTES: usize = 1 << 20;

/// Writes `batches` (all with `schema`'s column types) as a complete FITS file: an empty
/// primary HDU and one binary table. Returns the bytes written, a multiple of 2880.
///
/// Nothing is written when the schema or a batch cannot be stored (an unsupported type, a
/// column name FITS cannot hold, a batch that does not match the schema): the error names the
/// column. Errors of `out` itself are [`Error::Io`].
pub fn write_bintable(
    out: &mut impl Write,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<u64> {
    check_batches(schema, batches)?;
    let columns = plan_columns(schema, batches)?;
    let row_len = columns
        .iter()
        .try_fold(0usize, |sum, c| sum.checked_add(c.storage.width()))
        .ok_or_else(|| Error::TableWrite("a row is too wide for FITS".into()))?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();

    // Both headers are built before anything is written: a bad column name leaves `out` empty.
    let table = table_header(schema, &columns, row_len, rows)?.to_bytes();
    let mut written = write_all(out, &primary_header().to_bytes())?;
    written += write_all(out, &table)?;
    let mut data_len = 0u64;
    let mut buffer = Vec::new();
    let chunk_rows = (CHUNK_BYTES / row_len.max(1)).max(1);
    for batch in batches {
        if row_len == 0 {
            break;
        }
        let mut start = 0;
        while start < batch.num_rows() {
            let len = chunk_rows.min(batch.num_rows() - start);
            // Slicing shares the arrays: only this chunk's rows are ever copied.
            encode_rows(&batch.slice(start, len), &columns, row_len, &mut buffer);
            data_len += write_all(out, &buffer)?;
            start += len;
        }
    }
    // FITS 4.0 §3.3.2: a binary table's last data block is filled with zeros.
    let padding = (BLOCK_LEN as u64 - data_len % BLOCK_LEN as u64) % BLOCK_LEN as u64;
    buffer.clear();
    buffer.resize(padding as usize, 0);
    written += data_len + write_all(out, &buffer)?;
    Ok(written)
}

fn write_all(out: &mut impl Write, bytes: &[u8]) -> Result<u64> {
    out.write_all(bytes)
        .map_err(|e| Error::io("FITS output", e))?;
    Ok(bytes.len() as u64)
}

/// How one column is stored in a row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Storage {
    /// `L`: `T`, `F`, or a zero byte for null (FITS 4.0 §7.3.3.1).
    Logical,
    Integer(Integer),
    /// `E` or `D`, null as NaN.
    Float {
        double: bool,
    },
    /// `nA`: bytes, zero-padded (a zero byte ends the string, FITS 4.0 §7.3.3.1).
    Text {
        width: usize,
    },
}

/// An integer column: physical value = stored value + `zero` (FITS 4.0 §7.3.2, Table 19).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Integer {
    /// `B`, `I`, `J` or `K`.
    code: u8,
    zero: i128,
    /// The stored value written for nulls (`TNULLn`), when the column has any.
    null: Option<i64>,
}

impl Storage {
    fn width(self) -> usize {
        match self {
            Storage::Logical => 1,
            Storage::Integer(i) => integer_bytes(i.code),
            Storage::Float { double } => {
                if double {
                    8
                } else {
                    4
                }
            }
            Storage::Text { width } => width,
        }
    }

    fn tform(self) -> String {
        match self {
            Storage::Logical => "L".into(),
            Storage::Integer(i) => char::from(i.code).to_string(),
            Storage::Float { double: true } => "D".into(),
            Storage::Float { double: false } => "E".into(),
            Storage::Text { width } => format!("{width}A"),
        }
    }
}

struct Column {
    storage: Storage,
    /// Byte offset in the row.
    offset: usize,
}

fn integer_bytes(code: u8) -> usize {
    match code {
        b'B' => 1,
        b'I' => 2,
        b'J' => 4,
        _ => 8,
    }
}

/// Smallest and largest stored value of an integer `TFORM` (`B` is unsigned, FITS 4.0 Table 18).
fn stored_range(code: u8) -> (i64, i64) {
    match code {
        b'B' => (0, 255),
        b'I' => (i16::MIN.into(), i16::MAX.into()),
        b'J' => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    }
}

fn wider(code: u8) -> Option<u8> {
    match code {
        b'B' => Some(b'I'),
        b'I' => Some(b'J'),
        b'J' => Some(b'K'),
        _ => None,
    }
}

fn unsupported(field: &Field, why: &str) -> Error {
    Error::TableWrite(format!(
        "column {:?} has type {}, {why}",
        field.name(),
        field.data_type()
    ))
}

/// Every batch must have the schema's column types: the writer downcasts by the schema.
fn check_batches(schema: &Schema, batches: &[RecordBatch]) -> Result<()> {
    if schema.fields().len() > MAX_FIELDS {
        return Err(Error::TableWrite(format!(
            "{} columns, more than the {MAX_FIELDS} a FITS table can hold",
            schema.fields().len()
        )));
    }
    for (b, batch) in batches.iter().enumerate() {
        if batch.num_columns() != schema.fields().len() {
            return Err(Error::TableWrite(format!(
                "batch {b} has {} columns but the schema has {}",
                batch.num_columns(),
                schema.fields().len()
            )));
        }
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            if array.data_type() != field.data_type() {
                return Err(Error::TableWrite(format!(
                    "batch {b} column {:?} has type {} but the schema says {}",
                    field.name(),
                    array.data_type(),
                    field.data_type()
                )));
            }
        }
    }
    Ok(())
}

fn plan_columns(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<Column>> {
    let mut offset = 0usize;
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
        let storage = plan_storage(field, &arrays)?;
        columns.push(Column { storage, offset });
        offset = offset
            .checked_add(storage.width())
            .ok_or_else(|| Error::TableWrite("a row is too wide for FITS".into()))?;
    }
    Ok(columns)
}

fn plan_storage(field: &Field, arrays: &[&dyn Array]) -> Result<Storage> {
    Ok(match field.data_type() {
        DataType::Boolean | DataType::Null => Storage::Logical,
        // Not `B` with TZERO −128 (FITS 4.0 Table 19): astropy reads that as float64, and
        // as int16 an `I` column, exact and with nulls where every reader finds them.
        DataType::Int8 => plan_integer::<Int8Type>(field, arrays, b'I', 0, false)?,
        DataType::UInt8 => plan_integer::<UInt8Type>(field, arrays, b'B', 0, true)?,
        DataType::Int16 => plan_integer::<Int16Type>(field, arrays, b'I', 0, false)?,
        DataType::UInt16 => plan_integer::<UInt16Type>(field, arrays, b'I', 1 << 15, true)?,
        DataType::Int32 => plan_integer::<Int32Type>(field, arrays, b'J', 0, false)?,
        DataType::UInt32 => plan_integer::<UInt32Type>(field, arrays, b'J', 1 << 31, true)?,
        DataType::Int64 => plan_integer::<Int64Type>(field, arrays, b'K', 0, false)?,
        DataType::UInt64 => plan_integer::<UInt64Type>(field, arrays, b'K', 1 << 63, true)?,
        DataType::Float32 => Storage::Float { double: false },
        DataType::Float64 => Storage::Float { double: true },
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let longest = arrays
                .iter()
                .flat_map(|a| strings(*a))
                .flatten()
                .map(str::len)
                .max();
            // FITS 4.0 §7.3.1: a zero repeat count would make an empty column; keep one byte.
            Storage::Text {
                width: longest.unwrap_or(0).max(1),
            }
        }
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            let mut text = String::new();
            let mut longest = 1;
            for array in arrays {
                for row in 0..array.len() {
                    if array.is_null(row) {
                        continue;
                    }
                    if !iso_datetime(*array, row, &mut text) {
                        return Err(unsupported(
                            field,
                            "and holds a value outside the calendar range",
                        ));
                    }
                    longest = longest.max(text.len());
                }
            }
            Storage::Text { width: longest }
        }
        _ => return Err(unsupported(field, "which a FITS binary table cannot hold")),
    })
}

/// The storage of an integer column of Arrow type `T` as `code` with offset `zero`, and its
/// `TNULLn`; `unsigned` says which end of the range a null sentinel is taken from.
fn plan_integer<T>(
    field: &Field,
    arrays: &[&dyn Array],
    code: u8,
    zero: i128,
    unsigned: bool,
) -> Result<Storage>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i128>,
{
    let mut code = code;
    let mut zero = zero;
    // FITS 4.0 §7.3.2, cfitsio and TOPCAT compare `TNULLn` with the stored value, astropy's
    // Table reader with the physical one (stored + TZERO): with nulls, an unsigned column
    // goes to the next wider type without offset, where both are the same. UInt64 has no
    // wider type and keeps its offset (astropy then shows its nulls unmasked).
    if zero != 0 && arrays.iter().any(|a| a.null_count() > 0) {
        if let Some(w) = wider(code) {
            code = w;
            zero = 0;
        }
    }
    loop {
        let stored = || {
            arrays
                .iter()
                .filter_map(|a| a.as_primitive_opt::<T>())
                .flat_map(|a| a.iter())
                .map(move |v| v.map(|v| stored_value(v.into(), zero)))
        };
        let null = match free_null(stored, code, unsigned) {
            NullValue::NotNeeded => None,
            NullValue::Free(v) => Some(v),
            // Every stored value is taken and there are nulls: store the physical values in
            // the next wider type, whose range leaves room for a sentinel.
            NullValue::AllTaken => match wider(code) {
                Some(w) => {
                    code = w;
                    zero = 0;
                    continue;
                }
                None => return Err(unsupported(field, "using every value, with nulls")),
            },
        };
        return Ok(Storage::Integer(Integer { code, zero, null }));
    }
}

fn stored_value(physical: i128, zero: i128) -> i64 {
    // Within range by construction: `zero` maps the Arrow type onto the stored type.
    (physical - zero) as i64
}

/// The `TNULLn` of an integer column.
enum NullValue {
    /// The column has no null.
    NotNeeded,
    /// A stored value no row holds.
    Free(i64),
    /// Every stored value is taken.
    AllTaken,
}

/// The sentinel is the most negative stored value for signed types, the largest for
/// unsigned, as most archives choose; when a row holds it, the nearest free value in the same
/// direction: among `n + 1` candidates, `n` values leave one free.
fn free_null<I>(values: impl Fn() -> I, code: u8, unsigned: bool) -> NullValue
where
    I: Iterator<Item = Option<i64>>,
{
    let (lo, hi) = stored_range(code);
    let sentinel = if unsigned { hi } else { lo };
    let (mut any_null, mut count, mut taken) = (false, 0u64, false);
    for v in values() {
        match v {
            None => any_null = true,
            Some(s) => {
                count += 1;
                taken |= s == sentinel;
            }
        }
    }
    if !any_null {
        return NullValue::NotNeeded;
    }
    if !taken {
        return NullValue::Free(sentinel);
    }
    let domain = (i128::from(hi) - i128::from(lo) + 1).min(u64::MAX.into()) as u64;
    // At most one more candidate than rows, so this is no bigger than a bit per row.
    let candidates = count.saturating_add(1).min(domain);
    let mut used = vec![0u64; candidates.div_ceil(64) as usize];
    for s in values().flatten() {
        let distance = if unsigned {
            i128::from(hi) - i128::from(s)
        } else {
            i128::from(s) - i128::from(lo)
        };
        if let Ok(d) = u64::try_from(distance) {
            if d < candidates {
                used[(d / 64) as usize] |= 1 << (d % 64);
            }
        }
    }
    let free = (0..candidates)
        .find(|d| used[(d / 64) as usize] & (1 << (d % 64)) == 0)
        .and_then(|d| i64::try_from(d).ok());
    match free {
        Some(d) if unsigned => NullValue::Free(hi - d),
        Some(d) => NullValue::Free(lo + d),
        None => NullValue::AllTaken,
    }
}

/// The values of a string column of any of Arrow's three string layouts.
fn strings(array: &dyn Array) -> Box<dyn Iterator<Item = Option<&str>> + '_> {
    if let Some(a) = array.as_string_opt::<i32>() {
        Box::new(a.iter())
    } else if let Some(a) = array.as_string_opt::<i64>() {
        Box::new(a.iter())
    } else if let Some(a) = array.as_string_view_opt() {
        Box::new(a.iter())
    } else {
        Box::new(std::iter::empty())
    }
}

/// Writes row `row` of a timestamp or date array into `text` as ISO 8601 (FITS 4.0 §9.1.1);
/// false when the value is outside chrono's calendar (about ±262,000 years).
fn iso_datetime(array: &dyn Array, row: usize, text: &mut String) -> bool {
    text.clear();
    let (datetime, format) = match array.data_type() {
        DataType::Date32 => (
            array
                .as_primitive_opt::<Date32Type>()
                .and_then(|a| a.value_as_datetime(row)),
            "%Y-%m-%d",
        ),
        DataType::Date64 => (
            array
                .as_primitive_opt::<Date64Type>()
                .and_then(|a| a.value_as_datetime(row)),
            "%Y-%m-%d",
        ),
        // Timestamps hold UTC instants (zoned) or wall-clock times (naive): either way the
        // value without a zone suffix, the DALI 1.1 timestamp form.
        DataType::Timestamp(TimeUnit::Second, _) => (
            array
                .as_primitive_opt::<TimestampSecondType>()
                .and_then(|a| a.value_as_datetime(row)),
            "%Y-%m-%dT%H:%M:%S",
        ),
        DataType::Timestamp(TimeUnit::Millisecond, _) => (
            array
                .as_primitive_opt::<TimestampMillisecondType>()
                .and_then(|a| a.value_as_datetime(row)),
            "%Y-%m-%dT%H:%M:%S%.3f",
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => (
            array
                .as_primitive_opt::<TimestampMicrosecondType>()
                .and_then(|a| a.value_as_datetime(row)),
            "%Y-%m-%dT%H:%M:%S%.6f",
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => (
            array
                .as_primitive_opt::<TimestampNanosecondType>()
                .and_then(|a| a.value_as_datetime(row)),
            "%Y-%m-%dT%H:%M:%S%.9f",
        ),
        _ => (None, ""),
    };
    datetime.is_some_and(|d| write!(text, "{}", d.format(format)).is_ok())
}

fn primary_header() -> Header {
    let mut h = Header::default();
    h.push(Card::new(
        "SIMPLE",
        Value::Logical(true),
        "conforms to FITS",
    ));
    h.push(Card::new("BITPIX", Value::Integer(8), ""));
    h.push(Card::new("NAXIS", Value::Integer(0), "no primary data"));
    h.push(Card::new(
        "EXTEND",
        Value::Logical(true),
        "a binary table follows",
    ));
    h
}

fn table_header(
    schema: &Schema,
    columns: &[Column],
    row_len: usize,
    rows: usize,
) -> Result<Header> {
    let count = |n: usize| {
        i64::try_from(n)
            .map(Value::Integer)
            .map_err(|_| Error::TableWrite(format!("{n} does not fit a FITS keyword")))
    };
    let mut h = Header::default();
    // FITS 4.0 §7.3.1: the mandatory keywords, in this order.
    h.push(Card::new(
        "XTENSION",
        Value::String("BINTABLE".into()),
        "binary table extension",
    ));
    h.push(Card::new("BITPIX", Value::Integer(8), ""));
    h.push(Card::new("NAXIS", Value::Integer(2), ""));
    h.push(Card::new("NAXIS1", count(row_len)?, "bytes per row"));
    h.push(Card::new("NAXIS2", count(rows)?, "rows"));
    h.push(Card::new("PCOUNT", Value::Integer(0), ""));
    h.push(Card::new("GCOUNT", Value::Integer(1), ""));
    h.push(Card::new("TFIELDS", count(columns.len())?, "columns"));
    for (n, (field, column)) in (1..).zip(schema.fields().iter().zip(columns)) {
        let name = column_name(field)?;
        h.push(Card::new(&format!("TTYPE{n}"), Value::String(name), ""));
        h.push(Card::new(
            &format!("TFORM{n}"),
            Value::String(column.storage.tform()),
            "",
        ));
        if let Storage::Integer(int) = column.storage {
            if int.zero != 0 {
                h.push(Card::new(&format!("TSCAL{n}"), Value::Integer(1), ""));
                // 2^63 is beyond a FITS integer card's i64: written as the real 9.2E18,
                // exact in a double, which cfitsio and astropy compare with 2^63.
                let zero =
                    i64::try_from(int.zero).map_or(Value::Real(int.zero as f64), Value::Integer);
                h.push(Card::new(
                    &format!("TZERO{n}"),
                    zero,
                    "offset for unsigned integers",
                ));
            }
            if let Some(null) = int.null {
                h.push(Card::new(&format!("TNULL{n}"), Value::Integer(null), ""));
            }
        }
        for (keyword, key) in [("TUNIT", "unit"), ("TUCD", "ucd"), ("TCOMM", "description")] {
            if let Some(v) = field.metadata().get(key).filter(|v| !v.is_empty()) {
                h.push(Card::new(
                    &format!("{keyword}{n}"),
                    Value::String(header_text(v)),
                    "",
                ));
            }
        }
    }
    Ok(h)
}

/// The `TTYPEn` value: a column name must survive exactly, so one FITS cannot hold is an
/// error rather than a silently different name.
fn column_name(field: &Field) -> Result<String> {
    let name = field.name();
    // FITS 4.0 §4.1.1: header text is printable ASCII.
    if let Some(c) = name.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(Error::TableWrite(format!(
            "column name {name:?} has {c:?}, which a FITS header cannot hold (ASCII only)"
        )));
    }
    // FITS 4.0 §4.2.1.1: trailing blanks of a string value are not significant.
    if name.ends_with(' ') {
        return Err(Error::TableWrite(format!(
            "column name {name:?} ends with a blank, which FITS readers drop"
        )));
    }
    // FITS 4.0 §4.2.1.1: at most 68 characters between the quotes, a quote written twice.
    let quoted_len = name.len() + name.matches('\'').count();
    if quoted_len > MAX_STRING {
        return Err(Error::TableWrite(format!(
            "column name {name:?} is longer than the {MAX_STRING} characters of a FITS string"
        )));
    }
    Ok(name.clone())
}

/// Metadata text made fit for one card: characters outside printable ASCII (FITS 4.0 §4.1.1)
/// become `?`, and the text is cut where its quoted form (quotes doubled, §4.2.1.1) reaches 68
/// characters, never between the two quotes of a pair.
fn header_text(value: &str) -> String {
    let mut out = String::new();
    let mut len = 0;
    for c in value.chars() {
        let c = if (' '..='~').contains(&c) { c } else { '?' };
        len += if c == '\'' { 2 } else { 1 };
        if len > MAX_STRING {
            break;
        }
        out.push(c);
    }
    out
}

/// Encodes the rows of `batch` into `buffer` (replaced), `row_len` bytes each.
fn encode_rows(batch: &RecordBatch, columns: &[Column], row_len: usize, buffer: &mut Vec<u8>) {
    buffer.clear();
    buffer.resize(batch.num_rows() * row_len, 0);
    for (column, array) in columns.iter().zip(batch.columns()) {
        let array = array.as_ref();
        let at = Cells {
            buffer,
            row_len,
            offset: column.offset,
        };
        match column.storage {
            Storage::Logical => {
                // A `Null` column keeps its zero bytes: every value undefined.
                if let Some(a) = array.as_boolean_opt() {
                    at.fill(a.iter().map(|v| match v {
                        Some(true) => [b'T'],
                        Some(false) => [b'F'],
                        None => [0],
                    }));
                }
            }
            Storage::Integer(int) => match array.data_type() {
                DataType::Int8 => encode_integers::<Int8Type>(at, array, int),
                DataType::UInt8 => encode_integers::<UInt8Type>(at, array, int),
                DataType::Int16 => encode_integers::<Int16Type>(at, array, int),
                DataType::UInt16 => encode_integers::<UInt16Type>(at, array, int),
                DataType::Int32 => encode_integers::<Int32Type>(at, array, int),
                DataType::UInt32 => encode_integers::<UInt32Type>(at, array, int),
                DataType::Int64 => encode_integers::<Int64Type>(at, array, int),
                DataType::UInt64 => encode_integers::<UInt64Type>(at, array, int),
                _ => {}
            },
            Storage::Float { double: false } => {
                if let Some(a) = array.as_primitive_opt::<Float32Type>() {
                    at.fill(a.iter().map(|v| v.unwrap_or(f32::NAN).to_be_bytes()));
                }
            }
            Storage::Float { double: true } => {
                if let Some(a) = array.as_primitive_opt::<Float64Type>() {
                    at.fill(a.iter().map(|v| v.unwrap_or(f64::NAN).to_be_bytes()));
                }
            }
            Storage::Text { width } => {
                if matches!(
                    array.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) {
                    at.fill_text(width, strings(array));
                } else {
                    at.fill_datetimes(width, array);
                }
            }
        }
    }
}

fn encode_integers<T>(at: Cells<'_>, array: &dyn Array, int: Integer)
where
    T: ArrowPrimitiveType,
    T::Native: Into<i128>,
{
    let Some(a) = array.as_primitive_opt::<T>() else {
        return;
    };
    // The scan found no null when `int.null` is `None`; 0 is never written then.
    let null = int.null.unwrap_or(0);
    let stored = a
        .iter()
        .map(|v| v.map_or(null, |v| stored_value(v.into(), int.zero)));
    // Big-endian, two's complement; `B` is the unsigned byte (FITS 4.0 §7.3.3.1).
    match int.code {
        b'B' => at.fill(stored.map(|s| [s as u8])),
        b'I' => at.fill(stored.map(|s| (s as i16).to_be_bytes())),
        b'J' => at.fill(stored.map(|s| (s as i32).to_be_bytes())),
        _ => at.fill(stored.map(i64::to_be_bytes)),
    }
}

/// One column's cells in a buffer of rows.
struct Cells<'a> {
    buffer: &'a mut [u8],
    row_len: usize,
    offset: usize,
}

impl<'a> Cells<'a> {
    fn rows(self) -> std::slice::ChunksExactMut<'a, u8> {
        // A zero-column table has no bytes to fill (and `chunks_exact_mut(0)` would panic).
        self.buffer.chunks_exact_mut(self.row_len.max(1))
    }

    fn fill<const N: usize>(self, cells: impl Iterator<Item = [u8; N]>) {
        let offset = self.offset;
        for (row, cell) in self.rows().zip(cells) {
            if let Some(dst) = row.get_mut(offset..offset + N) {
                dst.copy_from_slice(&cell);
            }
        }
    }

    /// Strings of at most `width` bytes (the scan measured them); the rest stays zero.
    fn fill_text<'s>(self, width: usize, values: impl Iterator<Item = Option<&'s str>>) {
        let offset = self.offset;
        for (row, value) in self.rows().zip(values) {
            put_text(row, offset, width, value.unwrap_or(""));
        }
    }

    fn fill_datetimes(self, width: usize, array: &dyn Array) {
        let offset = self.offset;
        let mut text = String::new();
        for (i, row) in self.rows().enumerate().take(array.len()) {
            // Values outside the calendar were refused by the scan.
            if array.is_valid(i) && iso_datetime(array, i, &mut text) {
                put_text(row, offset, width, &text);
            }
        }
    }
}

fn put_text(row: &mut [u8], offset: usize, width: usize, text: &str) {
    let bytes = text.as_bytes();
    let n = bytes.len().min(width);
    if let Some(dst) = row.get_mut(offset..offset + n) {
        dst.copy_from_slice(&bytes[..n]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::{c_char, c_int};
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array,
        Int64Array, Int8Array, LargeStringArray, NullArray, StringArray, StringViewArray,
        TimestampMillisecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
    };
    use arrow_schema::{Field, Fields};

    use super::*;
    use crate::fits::FitsFile;

    const BOOLS: [Option<bool>; 5] = [Some(true), Some(false), None, Some(true), Some(false)];
    // -128 takes the usual sentinel (stored 0), so TNULL must move to the next free value.
    const I8S: [Option<i8>; 5] = [Some(-128), Some(127), None, Some(0), Some(-1)];
    const U8S: [Option<u8>; 5] = [Some(0), Some(255), None, Some(1), Some(200)];
    const I16S: [Option<i16>; 5] = [Some(i16::MIN), Some(i16::MAX), None, Some(0), Some(-1)];
    const U16S: [Option<u16>; 5] = [Some(0), Some(u16::MAX), None, Some(1), Some(40_000)];
    const I32S: [Option<i32>; 5] = [Some(i32::MIN), Some(i32::MAX), None, Some(0), Some(-1)];
    const U32S: [Option<u32>; 5] = [Some(0), Some(u32::MAX), None, Some(1), Some(3_000_000_000)];
    const I64S: [Option<i64>; 5] = [Some(i64::MIN), Some(i64::MAX), None, Some(0), Some(-1)];
    const U64S: [Option<u64>; 5] = [Some(0), Some(u64::MAX), None, Some(1), Some(1 << 63)];
    const F32S: [Option<f32>; 5] = [
        Some(1.5),
        Some(-0.0),
        None,
        Some(f32::INFINITY),
        Some(f32::MIN_POSITIVE),
    ];
    const F64S: [Option<f64>; 5] = [
        Some(std::f64::consts::PI),
        Some(-1e300),
        None,
        Some(f64::NAN),
        Some(5e-324),
    ];
    const NAMES: [Option<&str>; 5] = [Some("alpha"), Some(""), None, Some("Ωmega ☉"), Some("x'y")];
    const LARGE: [Option<&str>; 5] = [Some("a"), Some("bb"), None, Some(""), Some("ccc")];
    const VIEWS: [Option<&str>; 5] = [
        Some("short"),
        Some("a longer string than twelve bytes"),
        None,
        Some("é"),
        Some(""),
    ];
    const MILLIS: [Option<i64>; 5] = [
        Some(0),
        Some(1_714_564_800_250),
        None,
        Some(-1),
        Some(253_402_300_799_999),
    ];
    // Expected text from Python's datetime (epoch + timedelta, isoformat).
    const MILLIS_ISO: [&str; 5] = [
        "1970-01-01T00:00:00.000",
        "2024-05-01T12:00:00.250",
        "",
        "1969-12-31T23:59:59.999",
        "9999-12-31T23:59:59.999",
    ];
    const DAYS: [Option<i32>; 5] = [Some(0), Some(19_844), None, Some(-719_162), Some(2_932_896)];
    const DAYS_ISO: [&str; 5] = ["1970-01-01", "2024-05-01", "", "0001-01-01", "9999-12-31"];
    const LONG_DESCRIPTION: &str =
        "a description that is much longer than one FITS card can hold, so it is cut short";

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One batch of every supported type, with extremes, nulls, empty and non-ASCII strings.
    fn every_type() -> RecordBatch {
        let columns: Vec<(Field, ArrayRef)> = vec![
            (
                Field::new("flag", DataType::Boolean, true),
                Arc::new(BooleanArray::from(BOOLS.to_vec())),
            ),
            (
                Field::new("i8", DataType::Int8, true),
                Arc::new(Int8Array::from(I8S.to_vec())),
            ),
            (
                Field::new("u8", DataType::UInt8, true),
                Arc::new(UInt8Array::from(U8S.to_vec())),
            ),
            (
                Field::new("i16", DataType::Int16, true),
                Arc::new(Int16Array::from(I16S.to_vec())),
            ),
            (
                Field::new("u16", DataType::UInt16, true).with_metadata(meta(&[
                    ("unit", "deg"),
                    ("ucd", "pos.eq.ra;meta.main"),
                    ("description", "it's a right ascension"),
                ])),
                Arc::new(UInt16Array::from(U16S.to_vec())),
            ),
            (
                Field::new("i32", DataType::Int32, true),
                Arc::new(Int32Array::from(I32S.to_vec())),
            ),
            (
                Field::new("u32", DataType::UInt32, true),
                Arc::new(UInt32Array::from(U32S.to_vec())),
            ),
            (
                Field::new("i64", DataType::Int64, true),
                Arc::new(Int64Array::from(I64S.to_vec())),
            ),
            (
                Field::new("u64", DataType::UInt64, true),
                Arc::new(UInt64Array::from(U64S.to_vec())),
            ),
            (
                Field::new("f32", DataType::Float32, true),
                Arc::new(Float32Array::from(F32S.to_vec())),
            ),
            (
                Field::new("f64", DataType::Float64, true).with_metadata(meta(&[("unit", "mag")])),
                Arc::new(Float64Array::from(F64S.to_vec())),
            ),
            (
                Field::new("name", DataType::Utf8, true)
                    .with_metadata(meta(&[("unit", "µm"), ("description", LONG_DESCRIPTION)])),
                Arc::new(StringArray::from(NAMES.to_vec())),
            ),
            (
                Field::new("large", DataType::LargeUtf8, true),
                Arc::new(LargeStringArray::from(LARGE.to_vec())),
            ),
            (
                Field::new("view", DataType::Utf8View, true),
                Arc::new(StringViewArray::from(VIEWS.to_vec())),
            ),
            (
                Field::new(
                    "when",
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                    true,
                ),
                Arc::new(TimestampMillisecondArray::from(MILLIS.to_vec())),
            ),
            (
                Field::new("day", DataType::Date32, true),
                Arc::new(Date32Array::from(DAYS.to_vec())),
            ),
            (
                Field::new("nothing", DataType::Null, true),
                Arc::new(NullArray::new(5)),
            ),
        ];
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    /// The rows split as batches of 2, 0 and 3 rows (slices, so with array offsets).
    fn split(batch: &RecordBatch) -> Vec<RecordBatch> {
        vec![batch.slice(0, 2), batch.slice(2, 0), batch.slice(2, 3)]
    }

    fn write_file(schema: &Schema, batches: &[RecordBatch]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = Vec::new();
        let written = write_bintable(&mut bytes, schema, batches).unwrap();
        assert_eq!(written, bytes.len() as u64);
        assert_eq!(bytes.len() % BLOCK_LEN, 0);
        file.write_all(&bytes).unwrap();
        file.flush().unwrap();
        file
    }

    fn write_error(schema: &Schema, batches: &[RecordBatch]) -> String {
        let mut bytes = Vec::new();
        let err = write_bintable(&mut bytes, schema, batches).unwrap_err();
        assert!(bytes.is_empty(), "nothing is written before an error");
        assert!(matches!(err, Error::TableWrite(_)), "{err:?}");
        err.to_string()
    }

    fn widen<A: Copy + Into<B>, B>(values: &[Option<A>]) -> Vec<Option<B>> {
        values.iter().map(|v| v.map(Into::into)).collect()
    }

    fn widen_values(values: &[i8]) -> Vec<i16> {
        values.iter().map(|&v| v.into()).collect()
    }

    fn same_f64(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn texts(values: &[Option<&str>]) -> Vec<String> {
        values.iter().map(|v| v.unwrap_or("").to_string()).collect()
    }

    #[test]
    fn every_type_round_trips_through_insitu() {
        let full = every_type();
        let file = write_file(&full.schema(), &split(&full));
        let fits = FitsFile::open(file.path()).unwrap();
        assert_eq!(fits.hdu_count(), 2);
        let table = fits.table(Some(1)).unwrap();
        assert_eq!(table.rows(), 5);
        let columns = table.arrow_columns();
        assert_eq!(
            columns.len(),
            full.num_columns(),
            "every column has an Arrow type"
        );
        let back = table.record_batch(&columns, 0..5).unwrap();
        let names: Vec<&str> = back
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let expected: Vec<&str> = full
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, expected);
        let col = |name: &str| back.column_by_name(name).unwrap().clone();

        // Integers come back exactly, nulls in place; Int8 as Int16, and UInt16/32 one size
        // wider because they have nulls (UInt64 keeps TZERO).
        let i8s: Vec<_> = col("i8").as_primitive::<Int16Type>().iter().collect();
        assert_eq!(i8s, widen::<_, i16>(&I8S));
        let u8s: Vec<_> = col("u8").as_primitive::<UInt8Type>().iter().collect();
        assert_eq!(u8s, U8S);
        let i16s: Vec<_> = col("i16").as_primitive::<Int16Type>().iter().collect();
        assert_eq!(i16s, I16S);
        let u16s: Vec<_> = col("u16").as_primitive::<Int32Type>().iter().collect();
        assert_eq!(u16s, widen::<_, i32>(&U16S));
        let i32s: Vec<_> = col("i32").as_primitive::<Int32Type>().iter().collect();
        assert_eq!(i32s, I32S);
        let u32s: Vec<_> = col("u32").as_primitive::<Int64Type>().iter().collect();
        assert_eq!(u32s, widen::<_, i64>(&U32S));
        let i64s: Vec<_> = col("i64").as_primitive::<Int64Type>().iter().collect();
        assert_eq!(i64s, I64S);
        let u64s: Vec<_> = col("u64").as_primitive::<UInt64Type>().iter().collect();
        assert_eq!(u64s, U64S);
        let bools: Vec<_> = col("flag").as_boolean().iter().collect();
        assert_eq!(bools, BOOLS);
        assert_eq!(
            col("nothing").null_count(),
            5,
            "a Null column reads back as undefined"
        );

        // Floats: nulls are NaN values, every other bit pattern (−0.0 included) survives.
        let f32s = col("f32");
        let f32s = f32s.as_primitive::<Float32Type>();
        for (got, want) in f32s.iter().zip(F32S) {
            let (got, want) = (got.unwrap(), want.unwrap_or(f32::NAN));
            assert!(same_f64(got.into(), want.into()), "{got} vs {want}");
        }
        let f64s = col("f64");
        let f64s = f64s.as_primitive::<Float64Type>();
        for (got, want) in f64s.iter().zip(F64S) {
            let (got, want) = (got.unwrap(), want.unwrap_or(f64::NAN));
            assert!(same_f64(got, want), "{got} vs {want}");
        }

        // Strings: UTF-8 bytes as they were; nulls become empty strings.
        let strings_of = |name: &str| -> Vec<String> {
            col(name)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect()
        };
        assert_eq!(strings_of("name"), texts(&NAMES));
        assert_eq!(strings_of("large"), texts(&LARGE));
        assert_eq!(strings_of("view"), texts(&VIEWS));
        assert_eq!(strings_of("when"), MILLIS_ISO);
        assert_eq!(strings_of("day"), DAYS_ISO);

        // Field metadata travels through TUNIT/TUCD/TCOMM.
        let field = |name: &str| back.schema_ref().field_with_name(name).unwrap().clone();
        let u16_meta = field("u16").metadata().clone();
        assert_eq!(u16_meta.get("unit").unwrap(), "deg");
        assert_eq!(u16_meta.get("ucd").unwrap(), "pos.eq.ra;meta.main");
        assert_eq!(
            u16_meta.get("description").unwrap(),
            "it's a right ascension"
        );
        assert_eq!(field("f64").metadata().get("unit").unwrap(), "mag");
        let name_meta = field("name").metadata().clone();
        assert_eq!(
            name_meta.get("unit").unwrap(),
            "?m",
            "non-ASCII becomes '?'"
        );
        let cut = name_meta.get("description").unwrap();
        assert_eq!(cut.len(), MAX_STRING);
        assert!(LONG_DESCRIPTION.starts_with(cut.as_str()));
        assert!(field("i8").metadata().is_empty());
    }

    /// cfitsio's own null flags (`ffgcfl`/`ffgcfd`) for `rows` rows of column `col` (1-based).
    fn cfitsio_nulls(
        f: &mut fitsio::FitsFile,
        col: usize,
        rows: usize,
        logical: bool,
    ) -> Vec<bool> {
        let mut nulls: Vec<c_char> = vec![0; rows];
        let (mut anynul, mut status): (c_int, c_int) = (0, 0);
        let col = c_int::try_from(col).unwrap();
        let n = i64::try_from(rows).unwrap();
        if logical {
            let mut values: Vec<c_char> = vec![0; rows];
            // SAFETY: the file is open and positioned on the table; both arrays hold `rows`.
            unsafe {
                fitsio::sys::ffgcfl(
                    f.as_raw(),
                    col,
                    1,
                    1,
                    n,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                    &mut anynul,
                    &mut status,
                )
            };
        } else {
            let mut values = vec![0f64; rows];
            // SAFETY: as above.
            unsafe {
                fitsio::sys::ffgcfd(
                    f.as_raw(),
                    col,
                    1,
                    1,
                    n,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                    &mut anynul,
                    &mut status,
                )
            };
        }
        assert_eq!(status, 0, "cfitsio status");
        nulls.iter().map(|&n| n != 0).collect()
    }

    /// Strings of column `col` (1-based) read by cfitsio (`ffgcvs`) into buffers one byte
    /// longer than the column: the `fitsio` crate's own reader leaves no room for the
    /// terminator cfitsio writes after a full-width value.
    fn cfitsio_strings(
        f: &mut fitsio::FitsFile,
        col: usize,
        rows: usize,
        width: usize,
    ) -> Vec<String> {
        let mut buffers: Vec<Vec<c_char>> = vec![vec![0; width + 1]; rows];
        let mut pointers: Vec<*mut c_char> = buffers.iter_mut().map(|b| b.as_mut_ptr()).collect();
        let (mut anynul, mut status): (c_int, c_int) = (0, 0);
        // SAFETY: the file is open and positioned on the table; `rows` buffers of `width + 1`
        // bytes, the most cfitsio writes for an `nA` column (value and terminator).
        unsafe {
            fitsio::sys::ffgcvs(
                f.as_raw(),
                c_int::try_from(col).unwrap(),
                1,
                1,
                i64::try_from(rows).unwrap(),
                std::ptr::null_mut(),
                pointers.as_mut_ptr(),
                &mut anynul,
                &mut status,
            )
        };
        assert_eq!(status, 0, "cfitsio status");
        buffers
            .iter()
            .map(|b| {
                let bytes: Vec<u8> = b
                    .iter()
                    .take_while(|&&c| c != 0)
                    .map(|&c| c as u8)
                    .collect();
                String::from_utf8(bytes).unwrap()
            })
            .collect()
    }

    /// Checks an integer column against cfitsio: values where set, the physical `TNULLn` and
    /// cfitsio's null flag where null.
    fn check_cfitsio_integers<T>(
        f: &mut fitsio::FitsFile,
        col: usize,
        name: &str,
        want: &[Option<T>],
    ) where
        T: fitsio::tables::ReadsCol + Copy + PartialEq + std::fmt::Debug + Into<i128>,
    {
        let hdu = f.hdu(1).unwrap();
        let got: Vec<T> = hdu.read_col(f, name).unwrap();
        let nulls = cfitsio_nulls(f, col, want.len(), false);
        assert_eq!(
            nulls,
            want.iter().map(Option::is_none).collect::<Vec<_>>(),
            "{name}"
        );
        let tnull: i64 = hdu.read_key(f, &format!("TNULL{col}")).unwrap();
        let tzero: f64 = hdu.read_key(f, &format!("TZERO{col}")).unwrap_or(0.0);
        for (row, (g, w)) in got.iter().zip(want).enumerate() {
            match w {
                Some(w) => assert_eq!(g, w, "{name} row {row}"),
                None => assert_eq!(
                    (*g).into(),
                    i128::from(tnull) + tzero as i128,
                    "{name} row {row}: cfitsio returns the TNULL value unflagged"
                ),
            }
        }
    }

    #[test]
    fn every_type_round_trips_through_cfitsio() {
        let full = every_type();
        let file = write_file(&full.schema(), &split(&full));
        let mut f = fitsio::FitsFile::open(file.path()).unwrap();
        let hdu = f.hdu(1).unwrap();
        let rows: i64 = hdu.read_key(&mut f, "NAXIS2").unwrap();
        assert_eq!(rows, 5);
        let n = |name: &str| full.schema_ref().index_of(name).unwrap() + 1;
        let key = |f: &mut fitsio::FitsFile, k: String| -> String { hdu.read_key(f, &k).unwrap() };

        // Columns with nulls use no TZERO but UInt64's, which has no wider type.
        for (name, tform) in [("i8", "I"), ("u16", "J"), ("u32", "K"), ("u64", "K")] {
            assert_eq!(key(&mut f, format!("TFORM{}", n(name))), tform, "{name}");
            let zero = hdu.read_key::<String>(&mut f, &format!("TZERO{}", n(name)));
            assert_eq!(zero.is_ok(), name == "u64", "{name}");
        }

        check_cfitsio_integers::<i16>(&mut f, n("i8"), "i8", &widen(&I8S));
        check_cfitsio_integers::<u8>(&mut f, n("u8"), "u8", &U8S);
        check_cfitsio_integers::<i16>(&mut f, n("i16"), "i16", &I16S);
        check_cfitsio_integers::<i32>(&mut f, n("u16"), "u16", &widen(&U16S));
        check_cfitsio_integers::<i32>(&mut f, n("i32"), "i32", &I32S);
        check_cfitsio_integers::<i64>(&mut f, n("u32"), "u32", &widen(&U32S));
        check_cfitsio_integers::<i64>(&mut f, n("i64"), "i64", &I64S);
        check_cfitsio_integers::<u64>(&mut f, n("u64"), "u64", &U64S);

        let bools: Vec<bool> = hdu.read_col(&mut f, "flag").unwrap();
        let nulls = cfitsio_nulls(&mut f, n("flag"), 5, true);
        for (row, want) in BOOLS.iter().enumerate() {
            assert_eq!(nulls[row], want.is_none(), "flag row {row}");
            if let Some(w) = want {
                assert_eq!(bools[row], *w, "flag row {row}");
            }
        }
        assert_eq!(cfitsio_nulls(&mut f, n("nothing"), 5, true), [true; 5]);

        // cfitsio flags NaN (the stored null of float columns) and infinities as undefined.
        let f32s: Vec<f32> = hdu.read_col(&mut f, "f32").unwrap();
        let nulls = cfitsio_nulls(&mut f, n("f32"), 5, false);
        for (row, want) in F32S.iter().enumerate() {
            assert!(same_f64(f32s[row].into(), want.unwrap_or(f32::NAN).into()));
            assert_eq!(
                nulls[row],
                want.is_none_or(|v| !v.is_finite()),
                "f32 row {row}"
            );
        }
        let f64s: Vec<f64> = hdu.read_col(&mut f, "f64").unwrap();
        let nulls = cfitsio_nulls(&mut f, n("f64"), 5, false);
        for (row, want) in F64S.iter().enumerate() {
            assert!(same_f64(f64s[row], want.unwrap_or(f64::NAN)));
            assert_eq!(
                nulls[row],
                want.is_none_or(|v| !v.is_finite()),
                "f64 row {row}"
            );
        }

        // Widths are the longest value in bytes ("Ωmega ☉" is 10 bytes, 7 characters).
        assert_eq!(key(&mut f, format!("TFORM{}", n("name"))), "10A");
        assert_eq!(key(&mut f, format!("TFORM{}", n("large"))), "3A");
        assert_eq!(key(&mut f, format!("TFORM{}", n("view"))), "33A");
        assert_eq!(key(&mut f, format!("TFORM{}", n("when"))), "23A");
        assert_eq!(cfitsio_strings(&mut f, n("name"), 5, 10), texts(&NAMES));
        assert_eq!(cfitsio_strings(&mut f, n("large"), 5, 3), texts(&LARGE));
        assert_eq!(cfitsio_strings(&mut f, n("view"), 5, 33), texts(&VIEWS));
        assert_eq!(cfitsio_strings(&mut f, n("when"), 5, 23), MILLIS_ISO);
        assert_eq!(cfitsio_strings(&mut f, n("day"), 5, 10), DAYS_ISO);

        assert_eq!(key(&mut f, format!("TUNIT{}", n("u16"))), "deg");
        assert_eq!(
            key(&mut f, format!("TUCD{}", n("u16"))),
            "pos.eq.ra;meta.main"
        );
        assert_eq!(
            key(&mut f, format!("TCOMM{}", n("u16"))),
            "it's a right ascension"
        );
        assert_eq!(key(&mut f, format!("TUNIT{}", n("f64"))), "mag");
        assert!(hdu
            .read_key::<String>(&mut f, &format!("TUNIT{}", n("i8")))
            .is_err());
    }

    #[test]
    fn zero_rows_make_an_empty_table() {
        let small = Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        let file = write_file(&small, &[]);
        assert_eq!(
            std::fs::metadata(file.path()).unwrap().len(),
            2 * BLOCK_LEN as u64,
            "two one-block headers, no data block"
        );
        let full = every_type();
        let schema = full.schema();
        for batches in [vec![], vec![full.slice(0, 0)]] {
            let file = write_file(&schema, &batches);
            let fits = FitsFile::open(file.path()).unwrap();
            let table = fits.table(Some(1)).unwrap();
            assert_eq!(table.rows(), 0);
            assert_eq!(table.arrow_schema().fields().len(), schema.fields().len());
            let mut f = fitsio::FitsFile::open(file.path()).unwrap();
            let hdu = f.hdu(1).unwrap();
            let rows: i64 = hdu.read_key(&mut f, "NAXIS2").unwrap();
            assert_eq!(rows, 0);
            let tform: String = hdu.read_key(&mut f, "TFORM12").unwrap();
            assert_eq!(tform, "1A", "a string column keeps one byte");
            let tnull: Result<i64, _> = hdu.read_key(&mut f, "TNULL2");
            assert!(tnull.is_err(), "no nulls, no TNULL");
        }
    }

    #[test]
    fn rows_span_several_chunks_and_batches() {
        // 12-byte rows: 87,381 per mebibyte chunk, so the first batch takes three chunks.
        let n = 250_000usize;
        let ids: Vec<i32> = (0..n as i32).map(|i| i * 7 - 1_000_000).collect();
        let values: Vec<f64> = (0..n).map(|i| i as f64 / 3.0).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("value", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(ids.clone())),
                Arc::new(Float64Array::from(values.clone())),
            ],
        )
        .unwrap();
        let batches = [batch.slice(0, 200_000), batch.slice(200_000, n - 200_000)];
        let file = write_file(&schema, &batches);
        let data = (12 * n).div_ceil(BLOCK_LEN) * BLOCK_LEN;
        assert_eq!(
            std::fs::metadata(file.path()).unwrap().len(),
            (2 * BLOCK_LEN + data) as u64
        );
        let mut f = fitsio::FitsFile::open(file.path()).unwrap();
        let hdu = f.hdu(1).unwrap();
        let got_ids: Vec<i32> = hdu.read_col(&mut f, "id").unwrap();
        let got_values: Vec<f64> = hdu.read_col(&mut f, "value").unwrap();
        assert_eq!(got_ids, ids);
        assert_eq!(got_values, values);
        let fits = FitsFile::open(file.path()).unwrap();
        let table = fits.table(Some(1)).unwrap();
        let back = table.record_batch(&[0, 1], n - 3..n).unwrap();
        assert_eq!(
            back.column(0).as_primitive::<Int32Type>().values(),
            &ids[n - 3..]
        );
    }

    #[test]
    fn a_column_using_every_value_with_nulls_is_widened() {
        let mut bytes: Vec<Option<u8>> = (0..=255u8).map(Some).collect();
        bytes.insert(17, None);
        let mut shorts: Vec<Option<i16>> = (i16::MIN..=i16::MAX).map(Some).collect();
        shorts.insert(1000, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("u", DataType::UInt8, true),
            Field::new("s", DataType::Int16, true),
        ]));
        let batches = [
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt8Array::from(bytes.clone())),
                    Arc::new(Int16Array::from(shorts[..bytes.len()].to_vec())),
                ],
            )
            .unwrap(),
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt8Array::from(vec![7; shorts.len() - bytes.len()])),
                    Arc::new(Int16Array::from(shorts[bytes.len()..].to_vec())),
                ],
            )
            .unwrap(),
        ];
        let file = write_file(&schema, &batches);
        let mut f = fitsio::FitsFile::open(file.path()).unwrap();
        let hdu = f.hdu(1).unwrap();
        let tforms: Vec<String> = (1..=2)
            .map(|c| hdu.read_key(&mut f, &format!("TFORM{c}")).unwrap())
            .collect();
        assert_eq!(
            tforms,
            ["I", "J"],
            "every value and a null need a wider type"
        );
        let mut all_bytes = bytes.clone();
        all_bytes.resize(shorts.len(), Some(7));
        check_cfitsio_integers::<i16>(&mut f, 1, "u", &widen(&all_bytes));
        check_cfitsio_integers::<i32>(&mut f, 2, "s", &widen(&shorts));
    }

    #[test]
    fn unsigned_columns_without_nulls_keep_the_table_19_offsets() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("u16", DataType::UInt16, false),
            Field::new("u32", DataType::UInt32, false),
            Field::new("u64", DataType::UInt64, false),
            Field::new("i8", DataType::Int8, false),
        ]));
        let u16s = vec![0, 1, 32_768, u16::MAX];
        let u32s = vec![0, 1, 1 << 31, u32::MAX];
        let u64s = vec![0, 1, 1 << 63, u64::MAX];
        let i8s = vec![i8::MIN, -1, 0, i8::MAX];
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt16Array::from(u16s.clone())),
                Arc::new(UInt32Array::from(u32s.clone())),
                Arc::new(UInt64Array::from(u64s.clone())),
                Arc::new(Int8Array::from(i8s.clone())),
            ],
        )
        .unwrap();
        let file = write_file(&schema, &[batch]);
        let mut f = fitsio::FitsFile::open(file.path()).unwrap();
        let hdu = f.hdu(1).unwrap();
        let tforms: Vec<String> = (1..=4)
            .map(|c| hdu.read_key(&mut f, &format!("TFORM{c}")).unwrap())
            .collect();
        assert_eq!(tforms, ["I", "J", "K", "I"]);
        let zeros: Vec<f64> = (1..=3)
            .map(|c| hdu.read_key(&mut f, &format!("TZERO{c}")).unwrap())
            .collect();
        assert_eq!(zeros, [32768.0, 2147483648.0, 9223372036854775808.0]);
        assert!(hdu.read_key::<String>(&mut f, "TNULL1").is_err());
        assert_eq!(hdu.read_col::<u16>(&mut f, "u16").unwrap(), u16s);
        assert_eq!(hdu.read_col::<u32>(&mut f, "u32").unwrap(), u32s);
        assert_eq!(hdu.read_col::<u64>(&mut f, "u64").unwrap(), u64s);
        assert_eq!(hdu.read_col::<i8>(&mut f, "i8").unwrap(), i8s);

        let fits = FitsFile::open(file.path()).unwrap();
        let table = fits.table(Some(1)).unwrap();
        let back = table.record_batch(&[0, 1, 2, 3], 0..4).unwrap();
        assert_eq!(
            back.column(0).as_primitive::<UInt16Type>().values(),
            &u16s[..]
        );
        assert_eq!(
            back.column(1).as_primitive::<UInt32Type>().values(),
            &u32s[..]
        );
        assert_eq!(
            back.column(2).as_primitive::<UInt64Type>().values(),
            &u64s[..]
        );
        assert_eq!(
            back.column(3).as_primitive::<Int16Type>().values(),
            &widen_values(&i8s)[..]
        );
    }

    #[test]
    fn null_sentinels_avoid_values_in_use() {
        let stored = |v: &[Option<i64>]| {
            let v = v.to_vec();
            move || v.clone().into_iter()
        };
        let free = |v: &[Option<i64>], code, unsigned| match free_null(stored(v), code, unsigned) {
            NullValue::NotNeeded => "none".to_string(),
            NullValue::Free(x) => x.to_string(),
            NullValue::AllTaken => "full".to_string(),
        };
        assert_eq!(free(&[Some(1), Some(2)], b'K', false), "none");
        assert_eq!(free(&[Some(1), None], b'K', false), i64::MIN.to_string());
        assert_eq!(free(&[Some(1), None], b'J', true), i32::MAX.to_string());
        let taken = [Some(i64::MIN), Some(i64::MIN + 1), Some(i64::MIN + 3), None];
        assert_eq!(free(&taken, b'K', false), (i64::MIN + 2).to_string());
        assert_eq!(free(&[Some(255), Some(254), None], b'B', true), "253");
        let every: Vec<Option<i64>> = (0..=255).map(Some).chain([None]).collect();
        assert_eq!(free(&every, b'B', true), "full");
    }

    #[test]
    fn column_names_fits_cannot_hold_are_errors() {
        let batch_of = |name: &str| {
            let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Int32, false)]));
            RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1]))]).unwrap()
        };
        let longest = "n".repeat(67) + "'";
        let ok = batch_of(&longest[1..]);
        let file = write_file(&ok.schema(), &[ok]);
        let mut f = fitsio::FitsFile::open(file.path()).unwrap();
        let hdu = f.hdu(1).unwrap();
        let ttype: String = hdu.read_key(&mut f, "TTYPE1").unwrap();
        assert_eq!(
            ttype,
            longest[1..],
            "67 characters, a quote written twice: 68"
        );

        let long = batch_of(&longest);
        let err = write_error(&long.schema(), &[long]);
        assert!(err.contains("longer than the 68"), "{err}");
        let greek = batch_of("δ_dec");
        let err = write_error(&greek.schema(), &[greek]);
        assert!(err.contains("δ_dec") && err.contains("ASCII"), "{err}");
        let tab = batch_of("a\tb");
        write_error(&tab.schema(), &[tab]);
        let blank = batch_of("ra ");
        let err = write_error(&blank.schema(), &[blank]);
        assert!(err.contains("blank"), "{err}");
    }

    #[test]
    fn unsupported_types_and_mismatched_batches_are_errors() {
        let schema = Schema::new(vec![
            Field::new("ok", DataType::Int32, false),
            Field::new("blob", DataType::Binary, true),
        ]);
        let err = write_error(&schema, &[]);
        assert!(err.contains("\"blob\"") && err.contains("Binary"), "{err}");
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        let err = write_error(&Schema::new(vec![Field::new("l", list, true)]), &[]);
        assert!(err.contains("\"l\"") && err.contains("List"), "{err}");
        let time = DataType::Time32(TimeUnit::Second);
        write_error(&Schema::new(vec![Field::new("t", time, true)]), &[]);
        let nested = DataType::Struct(Fields::from(vec![Field::new("x", DataType::Int8, true)]));
        write_error(&Schema::new(vec![Field::new("s", nested, true)]), &[]);

        // A batch whose column type differs from the schema's.
        let schema = Schema::new(vec![Field::new("x", DataType::Int64, false)]);
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)])),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        let err = write_error(&schema, std::slice::from_ref(&other));
        assert!(err.contains("batch 0") && err.contains("Int32"), "{err}");
        let wide = Schema::new(vec![
            Field::new("x", DataType::Int32, false),
            Field::new("y", DataType::Int32, false),
        ]);
        write_error(&wide, &[other]);

        let many: Vec<Field> = (0..1000)
            .map(|i| Field::new(format!("c{i}"), DataType::Int8, false))
            .collect();
        let err = write_error(&Schema::new(many), &[]);
        assert!(err.contains("999"), "{err}");
    }

    #[test]
    fn dates_outside_the_calendar_are_errors() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Second, None),
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow_array::TimestampSecondArray::from(vec![
                Some(0),
                Some(i64::MAX),
            ]))],
        )
        .unwrap();
        let err = write_error(&schema, &[batch]);
        assert!(err.contains("\"t\"") && err.contains("calendar"), "{err}");
    }

    #[test]
    fn metadata_text_is_made_to_fit_one_card() {
        assert_eq!(header_text("deg"), "deg");
        assert_eq!(header_text("10⁻³ Å\n"), "10?? ??");
        let quotes = "'".repeat(40);
        assert_eq!(
            header_text(&quotes),
            "'".repeat(34),
            "pairs are never split"
        );
        let card = Card::new("TCOMM1", Value::String(header_text(&"x'".repeat(60))), "");
        let bytes = format!("{}{:80}", card.image, "END");
        let (h, _) = Header::parse_cards(bytes.as_bytes()).unwrap();
        let back = h.string("TCOMM1").unwrap();
        assert!(
            "x'".repeat(60).starts_with(back) && back.len() == 45,
            "{back}"
        );
    }
}
