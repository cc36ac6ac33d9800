//! The VOTable writer: one query result as the TABLE of a `results` RESOURCE, serialised as
//! TABLEDATA or BINARY2 and streamed to any `io::Write` a batch at a time.

use std::fmt::Write as _;
use std::io::{self, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use insitu_adql::arrow::array::{
    new_empty_array, Array, AsArray, BooleanArray, FixedSizeListArray, Float32Array, Float64Array,
    RecordBatch,
};
use insitu_adql::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, Schema,
    UInt16Type, UInt32Type, UInt8Type,
};
use insitu_adql::arrow::util::display::{ArrayFormatter, FormatOptions};
use insitu_adql::tap_schema::votable_type;

use super::push_xml;

/// How the rows of a TABLE are serialised (VOTable 1.4 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Serialization {
    /// Rows as XML `<TR><TD>` elements (§5.1): readable, large.
    TableData,
    /// Rows as a base64 byte stream with a null-flag bitmap per row (§5.4).
    Binary2,
}

/// Writes a complete VOTable document holding `batches` (whose columns follow `schema`) as the
/// one TABLE of a `results` RESOURCE.
///
/// As TAP 1.1 §5.4.2 and DALI 1.1 ask, `<INFO name="QUERY_STATUS" value="OK"/>` comes
/// before the TABLE, followed by one INFO per `(name, value)` of `infos` (the QUERY text, for
/// example); with `overflow` (the result was cut at MAXREC) a second `QUERY_STATUS` INFO with
/// value OVERFLOW follows the TABLE. Output is written as it is produced, a bounded buffer at
/// a time, so a large result never sits in memory twice.
///
/// Errors: a column VOTable cannot carry (an array of strings, of 64-bit unsigned integers,
/// or of arrays) or batches that do not match `schema` give `InvalidInput` before anything is
/// written; then any error of `out`.
pub fn write(
    out: &mut impl Write,
    schema: &Schema,
    batches: &[RecordBatch],
    serialization: Serialization,
    infos: &[(&str, &str)],
    overflow: bool,
) -> io::Result<()> {
    check_batches(schema, batches)?;
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| Column::plan(field, index, batches))
        .collect::<io::Result<Vec<_>>>()?;
    out.write_all(header(&columns, infos).as_bytes())?;
    match serialization {
        Serialization::TableData => {
            out.write_all(b"<DATA><TABLEDATA>\n")?;
            write_tabledata(out, &columns, batches)?;
            out.write_all(b"</TABLEDATA></DATA>\n")?;
        }
        Serialization::Binary2 => {
            out.write_all(b"<DATA><BINARY2>\n<STREAM encoding=\"base64\">\n")?;
            write_binary2(out, &columns, batches)?;
            out.write_all(b"</STREAM>\n</BINARY2></DATA>\n")?;
        }
    }
    out.write_all(b"</TABLE>\n")?;
    if overflow {
        out.write_all(b"<INFO name=\"QUERY_STATUS\" value=\"OVERFLOW\"/>\n")?;
    }
    out.write_all(b"</RESOURCE>\n</VOTABLE>\n")
}

/// TABLEDATA text is handed to `out` in pieces of about this size.
const TEXT_FLUSH: usize = 64 << 10;
/// 57 bytes encode to one 76-character base64 line (the MIME line length).
const BASE64_LINE: usize = 57;
/// BINARY2 bytes are encoded and handed on in whole lines once this many are pending.
const BINARY_FLUSH: usize = BASE64_LINE * 1024;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn check_batches(schema: &Schema, batches: &[RecordBatch]) -> io::Result<()> {
    for batch in batches {
        if batch.num_columns() != schema.fields().len() {
            return Err(invalid(format!(
                "a result batch has {} columns, its schema {}",
                batch.num_columns(),
                schema.fields().len()
            )));
        }
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if column.data_type() != field.data_type() {
                return Err(invalid(format!(
                    "column {}: a batch holds {}, the schema says {}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )));
            }
        }
    }
    Ok(())
}

/// A VOTable primitive (VOTable 1.4 §2.1) that an Arrow number or boolean is written as; the
/// widening (int8 → short, uint16 → int, uint32 → long) is `votable_type`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitive {
    Boolean,
    UnsignedByte,
    Short,
    Int,
    Long,
    Float,
    Double,
}

impl Primitive {
    fn of(t: &DataType) -> Option<Primitive> {
        Some(match t {
            DataType::Boolean => Primitive::Boolean,
            DataType::UInt8 => Primitive::UnsignedByte,
            DataType::Int8 | DataType::Int16 => Primitive::Short,
            DataType::UInt16 | DataType::Int32 => Primitive::Int,
            DataType::UInt32 | DataType::Int64 => Primitive::Long,
            DataType::Float32 => Primitive::Float,
            DataType::Float64 => Primitive::Double,
            _ => return None,
        })
    }

    fn is_integer(self) -> bool {
        matches!(
            self,
            Primitive::UnsignedByte | Primitive::Short | Primitive::Int | Primitive::Long
        )
    }

    /// The values that may serve as a `VALUES null` marker of an integer array, most
    /// conventional first.
    fn null_candidates(self) -> [i64; 2] {
        match self {
            Primitive::UnsignedByte => [255, 0],
            Primitive::Short => [i16::MIN.into(), i16::MAX.into()],
            Primitive::Int => [i32::MIN.into(), i32::MAX.into()],
            _ => [i64::MIN, i64::MAX],
        }
    }

    /// The BINARY2 bytes of one integer of this type; `v` is in range by construction (the
    /// primitive is as wide as the Arrow type or wider).
    fn push_integer(self, v: i64, out: &mut Vec<u8>) {
        match self {
            Primitive::UnsignedByte => out.push(v as u8),
            Primitive::Short => out.extend_from_slice(&(v as i16).to_be_bytes()),
            Primitive::Int => out.extend_from_slice(&(v as i32).to_be_bytes()),
            _ => out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    /// The BINARY2 bytes of a null value: NaN for floats, `?` for booleans (VOTable 1.4 §6),
    /// `marker` (or 0 where the null flag alone says it) for integers.
    fn push_null(self, marker: Option<i64>, out: &mut Vec<u8>) {
        match self {
            Primitive::Boolean => out.push(b'?'),
            Primitive::Float => out.extend_from_slice(&f32::NAN.to_be_bytes()),
            Primitive::Double => out.extend_from_slice(&f64::NAN.to_be_bytes()),
            int => int.push_integer(marker.unwrap_or(0), out),
        }
    }
}

/// What a column's cells are written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar(Primitive),
    /// A fixed-size array of `n` numbers or booleans (`arraysize="n"`).
    Array(Primitive, usize),
    /// Text: strings as they are, every other type as Arrow displays it (`arraysize="*"`).
    Text,
}

/// One FIELD: its Arrow field and how it is written.
struct Column<'a> {
    field: &'a Field,
    index: usize,
    kind: Kind,
    /// Text with non-ASCII characters, declared `unicodeChar`: VOTable 1.4 §2.1 restricts
    /// `char` to ASCII, and astropy refuses anything else in binary `char` data.
    unicode: bool,
    /// The `VALUES null` marker of an integer array whose elements include nulls (VOTable
    /// 1.4 §5.5: null flags and empty cells mark whole cells, not array elements).
    null_marker: Option<i64>,
}

impl<'a> Column<'a> {
    fn plan(field: &'a Field, index: usize, batches: &[RecordBatch]) -> io::Result<Self> {
        let kind = match field.data_type() {
            DataType::FixedSizeList(item, n) => {
                let primitive = Primitive::of(item.data_type()).ok_or_else(|| {
                    invalid(format!(
                        "column {}: VOTable cannot hold arrays of {}",
                        field.name(),
                        item.data_type()
                    ))
                })?;
                let n = usize::try_from(*n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| invalid(format!("column {}: empty arrays", field.name())))?;
                Kind::Array(primitive, n)
            }
            t => match Primitive::of(t) {
                Some(primitive) => Kind::Scalar(primitive),
                None => {
                    // Fail here, before any output, rather than at the first row.
                    ArrayFormatter::try_new(new_empty_array(t).as_ref(), &FormatOptions::default())
                        .map_err(|e| {
                            invalid(format!(
                                "column {}: VOTable cannot hold {t}: {e}",
                                field.name()
                            ))
                        })?;
                    Kind::Text
                }
            },
        };
        let mut column = Column {
            field,
            index,
            kind,
            unicode: false,
            null_marker: None,
        };
        match kind {
            Kind::Text => column.unicode = column.has_non_ascii(batches)?,
            Kind::Array(primitive, _) if primitive.is_integer() => {
                column.null_marker = column.array_null_marker(primitive, batches)?;
            }
            _ => {}
        }
        Ok(column)
    }

    fn has_non_ascii(&self, batches: &[RecordBatch]) -> io::Result<bool> {
        let mut scratch = String::new();
        for batch in batches {
            let array = batch.column(self.index).as_ref();
            let non_ascii = match array.data_type() {
                // The whole value buffer at once: at worst a sliced-off neighbour makes the
                // column unicodeChar, which is still exact.
                DataType::Utf8 => !array.as_string::<i32>().value_data().is_ascii(),
                DataType::LargeUtf8 => !array.as_string::<i64>().value_data().is_ascii(),
                _ => {
                    let view = View::of(array, self)?;
                    let mut found = false;
                    for row in 0..array.len() {
                        if !array.is_null(row) && !view.text(row, &mut scratch)?.is_ascii() {
                            found = true;
                            break;
                        }
                    }
                    found
                }
            };
            if non_ascii {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn array_null_marker(
        &self,
        primitive: Primitive,
        batches: &[RecordBatch],
    ) -> io::Result<Option<i64>> {
        let mut items = Vec::new();
        for batch in batches {
            let list = batch.column(self.index).as_fixed_size_list();
            let values = list.values();
            if values.null_count() > 0 {
                items.push(values.clone());
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        let mut taken = [false; 2];
        for values in &items {
            let view = View::of(values.as_ref(), self)?;
            for i in 0..values.len() {
                if let Some(v) = view.integer(i) {
                    for (candidate, taken) in primitive.null_candidates().iter().zip(&mut taken) {
                        *taken |= *candidate == v;
                    }
                }
            }
        }
        primitive
            .null_candidates()
            .iter()
            .zip(taken)
            .find(|(_, taken)| !taken)
            .map(|(candidate, _)| Some(*candidate))
            .ok_or_else(|| {
                invalid(format!(
                    "column {}: its arrays hold nulls and both extreme values, so VOTable has \
                     no value left to mark the nulls",
                    self.field.name()
                ))
            })
    }

    /// The FIELD element (VOTable 1.4 §4.1), with DESCRIPTION and VALUES (§4.7).
    fn push_field(&self, out: &mut String) {
        let (mut datatype, mut arraysize) = votable_type(self.field.data_type());
        if self.unicode {
            datatype = "unicodeChar";
        }
        if self.kind == Kind::Text {
            arraysize = Some("*".to_string());
        }
        out.push_str("<FIELD name=\"");
        push_xml(self.field.name(), out);
        let _ = write!(out, "\" datatype=\"{datatype}\"");
        if let Some(size) = arraysize {
            let _ = write!(out, " arraysize=\"{size}\"");
        }
        let meta = self.field.metadata();
        let text = |key: &str| meta.get(key).map(String::as_str).filter(|v| !v.is_empty());
        // Dates and times go out as ISO 8601 text typed "timestamp" (VOTable 1.4 §4.3, DALI 1.1).
        let xtype = text("xtype").or(match self.field.data_type() {
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, None) => Some("timestamp"),
            _ => None,
        });
        for (key, value) in [
            ("unit", text("unit")),
            ("ucd", text("ucd")),
            ("utype", text("utype")),
            ("xtype", xtype),
        ] {
            if let Some(v) = value {
                let _ = write!(out, " {key}=\"");
                push_xml(v, out);
                out.push('"');
            }
        }
        let description = text("description");
        if description.is_none() && self.null_marker.is_none() {
            out.push_str("/>\n");
            return;
        }
        out.push('>');
        if let Some(d) = description {
            out.push_str("<DESCRIPTION>");
            push_xml(d, out);
            out.push_str("</DESCRIPTION>");
        }
        if let Some(marker) = self.null_marker {
            let _ = write!(out, "<VALUES null=\"{marker}\"/>");
        }
        out.push_str("</FIELD>\n");
    }
}

fn header(columns: &[Column], infos: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n\
         <RESOURCE type=\"results\">\n<INFO name=\"QUERY_STATUS\" value=\"OK\"/>\n",
    );
    for (name, value) in infos {
        out.push_str("<INFO name=\"");
        push_xml(name, &mut out);
        out.push_str("\" value=\"");
        push_xml(value, &mut out);
        out.push_str("\"/>\n");
    }
    out.push_str("<TABLE>\n");
    for column in columns {
        column.push_field(&mut out);
    }
    out
}

/// One column of one batch, downcast once so that the per-cell work is a match and a load.
enum View<'a> {
    Boolean(&'a BooleanArray),
    UInt8(&'a [u8]),
    Int8(&'a [i8]),
    Int16(&'a [i16]),
    UInt16(&'a [u16]),
    Int32(&'a [i32]),
    UInt32(&'a [u32]),
    Int64(&'a [i64]),
    Float32(&'a Float32Array),
    Float64(&'a Float64Array),
    Utf8(&'a dyn Array),
    Formatted(ArrayFormatter<'a>),
    Array {
        list: &'a FixedSizeListArray,
        items: Box<View<'a>>,
        items_array: &'a dyn Array,
    },
}

impl<'a> View<'a> {
    fn of(array: &'a dyn Array, column: &Column) -> io::Result<View<'a>> {
        Ok(match array.data_type() {
            DataType::Boolean => View::Boolean(array.as_boolean()),
            DataType::UInt8 => View::UInt8(array.as_primitive::<UInt8Type>().values()),
            DataType::Int8 => View::Int8(array.as_primitive::<Int8Type>().values()),
            DataType::Int16 => View::Int16(array.as_primitive::<Int16Type>().values()),
            DataType::UInt16 => View::UInt16(array.as_primitive::<UInt16Type>().values()),
            DataType::Int32 => View::Int32(array.as_primitive::<Int32Type>().values()),
            DataType::UInt32 => View::UInt32(array.as_primitive::<UInt32Type>().values()),
            DataType::Int64 => View::Int64(array.as_primitive::<Int64Type>().values()),
            DataType::Float32 => View::Float32(array.as_primitive::<Float32Type>()),
            DataType::Float64 => View::Float64(array.as_primitive::<Float64Type>()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => View::Utf8(array),
            DataType::FixedSizeList(_, _) => {
                let list = array.as_fixed_size_list();
                let items_array = list.values().as_ref();
                View::Array {
                    list,
                    items: Box::new(View::of(items_array, column)?),
                    items_array,
                }
            }
            _ => View::Formatted(
                ArrayFormatter::try_new(array, &FormatOptions::default())
                    .map_err(|e| invalid(format!("column {}: {e}", column.field.name())))?,
            ),
        })
    }

    /// Element `i` of an integer column, widened.
    fn integer(&self, i: usize) -> Option<i64> {
        Some(match self {
            View::UInt8(v) => v[i].into(),
            View::Int8(v) => v[i].into(),
            View::Int16(v) => v[i].into(),
            View::UInt16(v) => v[i].into(),
            View::Int32(v) => v[i].into(),
            View::UInt32(v) => v[i].into(),
            View::Int64(v) => v[i],
            _ => return None,
        })
    }

    /// The text of cell `i` of a text column (not null), borrowed from the array where it
    /// is a string, else formatted into `scratch`.
    fn text<'s>(&'s self, i: usize, scratch: &'s mut String) -> io::Result<&'s str> {
        match self {
            View::Utf8(array) => Ok(match array.data_type() {
                DataType::Utf8 => array.as_string::<i32>().value(i),
                DataType::LargeUtf8 => array.as_string::<i64>().value(i),
                _ => array.as_string_view().value(i),
            }),
            View::Formatted(formatter) => {
                scratch.clear();
                formatter
                    .value(i)
                    .write(scratch)
                    .map_err(|e| invalid(format!("row {}: {e}", i + 1)))?;
                Ok(scratch)
            }
            _ => Ok(""),
        }
    }

    /// The TABLEDATA text of element `i` of a number or boolean column (not null).
    fn push_number_text(&self, i: usize, out: &mut String) {
        match self {
            View::Boolean(a) => out.push(if a.value(i) { 'T' } else { 'F' }),
            View::Float32(a) => push_float(a.value(i), out),
            View::Float64(a) => push_float(a.value(i), out),
            int => {
                if let Some(v) = int.integer(i) {
                    let _ = write!(out, "{v}");
                }
            }
        }
    }

    /// The BINARY2 bytes of element `i` of a number or boolean column (not null).
    fn push_number_bytes(&self, i: usize, primitive: Primitive, out: &mut Vec<u8>) {
        match self {
            View::Boolean(a) => out.push(if a.value(i) { b'T' } else { b'F' }),
            View::Float32(a) => out.extend_from_slice(&a.value(i).to_be_bytes()),
            View::Float64(a) => out.extend_from_slice(&a.value(i).to_be_bytes()),
            int => {
                if let Some(v) = int.integer(i) {
                    primitive.push_integer(v, out);
                }
            }
        }
    }
}

/// Shortest text that reads back to the same value at the column's precision (Rust's `Debug`
/// of a float); VOTable 1.4 §6 spells infinities `+Inf`/`-Inf` and NaN `NaN`.
fn push_float<F: Into<f64> + std::fmt::Debug + Copy>(v: F, out: &mut String) {
    let wide: f64 = v.into();
    if wide.is_nan() {
        out.push_str("NaN");
    } else if wide.is_infinite() {
        out.push_str(if wide > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// TABLEDATA (VOTable 1.4 §5.1): a null cell is an empty TD (§5.5, since VOTable 1.3).
fn write_tabledata(
    out: &mut impl Write,
    columns: &[Column],
    batches: &[RecordBatch],
) -> io::Result<()> {
    let mut text = String::with_capacity(TEXT_FLUSH + 4096);
    let mut scratch = String::new();
    for batch in batches {
        let views = batch_views(batch, columns)?;
        for row in 0..batch.num_rows() {
            text.push_str("<TR>");
            for (column, (array, view)) in columns.iter().zip(&views) {
                if array.is_null(row) {
                    text.push_str("<TD/>");
                    continue;
                }
                text.push_str("<TD>");
                match (column.kind, view) {
                    (Kind::Scalar(_), view) => view.push_number_text(row, &mut text),
                    (
                        Kind::Array(primitive, n),
                        View::Array {
                            list,
                            items,
                            items_array,
                        },
                    ) => {
                        let start = list.value_offset(row) as usize;
                        for i in start..start + n {
                            if i > start {
                                text.push(' ');
                            }
                            if items_array.is_null(i) {
                                push_null_text(primitive, column.null_marker, &mut text);
                            } else {
                                items.push_number_text(i, &mut text);
                            }
                        }
                    }
                    (_, view) => {
                        let value = view
                            .text(row, &mut scratch)
                            .map_err(|e| invalid(format!("column {}: {e}", column.field.name())))?;
                        push_xml(value, &mut text);
                    }
                }
                text.push_str("</TD>");
            }
            text.push_str("</TR>\n");
            if text.len() >= TEXT_FLUSH {
                out.write_all(text.as_bytes())?;
                text.clear();
            }
        }
    }
    out.write_all(text.as_bytes())
}

/// An array element that is null: NaN, `?`, or the column's `VALUES null` marker.
fn push_null_text(primitive: Primitive, marker: Option<i64>, out: &mut String) {
    match primitive {
        Primitive::Boolean => out.push('?'),
        Primitive::Float | Primitive::Double => out.push_str("NaN"),
        _ => {
            let _ = write!(out, "{}", marker.unwrap_or(0));
        }
    }
}

fn batch_views<'a>(
    batch: &'a RecordBatch,
    columns: &[Column],
) -> io::Result<Vec<(&'a dyn Array, View<'a>)>> {
    columns
        .iter()
        .map(|column| {
            let array = batch.column(column.index).as_ref();
            Ok((array, View::of(array, column)?))
        })
        .collect()
}

/// BINARY2 (VOTable 1.4 §5.4): per row, one null flag per field (most significant bit first,
/// the bitmap padded to whole bytes), then each field's big-endian value; a null field still
/// takes its place in the stream. Variable-length text is a 4-byte item count, then the items:
/// bytes for `char`, UTF-16BE code units for `unicodeChar`.
fn write_binary2(
    out: &mut impl Write,
    columns: &[Column],
    batches: &[RecordBatch],
) -> io::Result<()> {
    let flag_bytes = columns.len().div_ceil(8);
    let mut stream = Base64Lines::new(out);
    let mut scratch = String::new();
    let mut utf16 = Vec::new();
    for batch in batches {
        let views = batch_views(batch, columns)?;
        for row in 0..batch.num_rows() {
            let flags_at = stream.pending.len();
            stream.pending.resize(flags_at + flag_bytes, 0);
            for (c, (column, (array, view))) in columns.iter().zip(&views).enumerate() {
                let null = array.is_null(row);
                if null {
                    stream.pending[flags_at + c / 8] |= 0x80 >> (c % 8);
                }
                let bytes = &mut stream.pending;
                match (column.kind, view) {
                    (Kind::Scalar(primitive), _) if null => primitive.push_null(None, bytes),
                    (Kind::Scalar(primitive), view) => {
                        view.push_number_bytes(row, primitive, bytes)
                    }
                    (Kind::Array(primitive, n), _) if null => {
                        for _ in 0..n {
                            primitive.push_null(column.null_marker, bytes);
                        }
                    }
                    (
                        Kind::Array(primitive, n),
                        View::Array {
                            list,
                            items,
                            items_array,
                        },
                    ) => {
                        let start = list.value_offset(row) as usize;
                        for i in start..start + n {
                            if items_array.is_null(i) {
                                primitive.push_null(column.null_marker, bytes);
                            } else {
                                items.push_number_bytes(i, primitive, bytes);
                            }
                        }
                    }
                    (_, _) if null => bytes.extend_from_slice(&0u32.to_be_bytes()),
                    (_, view) => {
                        let value = view
                            .text(row, &mut scratch)
                            .map_err(|e| invalid(format!("column {}: {e}", column.field.name())))?;
                        if column.unicode {
                            utf16.clear();
                            utf16.extend(value.encode_utf16());
                            push_count(utf16.len(), column, bytes)?;
                            for unit in &utf16 {
                                bytes.extend_from_slice(&unit.to_be_bytes());
                            }
                        } else {
                            push_count(value.len(), column, bytes)?;
                            bytes.extend_from_slice(value.as_bytes());
                        }
                    }
                }
            }
            if stream.pending.len() >= BINARY_FLUSH {
                stream.write_whole_lines()?;
            }
        }
    }
    stream.finish()
}

fn push_count(count: usize, column: &Column, out: &mut Vec<u8>) -> io::Result<()> {
    let count = u32::try_from(count).map_err(|_| {
        invalid(format!(
            "column {}: a value longer than VOTable's 4-byte length can say",
            column.field.name()
        ))
    })?;
    out.extend_from_slice(&count.to_be_bytes());
    Ok(())
}

/// Base64 (RFC 4648) of a byte stream, written as 76-character lines: whole 3-byte groups go
/// out as they come, only the end of the stream is padded.
struct Base64Lines<'w, W: Write> {
    out: &'w mut W,
    pending: Vec<u8>,
    text: String,
}

impl<'w, W: Write> Base64Lines<'w, W> {
    fn new(out: &'w mut W) -> Self {
        Base64Lines {
            out,
            pending: Vec::with_capacity(BINARY_FLUSH + 4096),
            text: String::new(),
        }
    }

    fn write_whole_lines(&mut self) -> io::Result<()> {
        let whole = self.pending.len() - self.pending.len() % BASE64_LINE;
        self.encode(whole)?;
        self.pending.drain(..whole);
        Ok(())
    }

    fn encode(&mut self, len: usize) -> io::Result<()> {
        self.text.clear();
        for line in self.pending[..len].chunks(BASE64_LINE) {
            STANDARD.encode_string(line, &mut self.text);
            self.text.push('\n');
        }
        self.out.write_all(self.text.as_bytes())
    }

    fn finish(mut self) -> io::Result<()> {
        let len = self.pending.len();
        self.encode(len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use insitu_adql::arrow::array::{
        ArrayRef, BooleanArray, Date32Array, FixedSizeListArray, Float32Array, Float64Array,
        Int16Array, Int32Array, Int64Array, Int8Array, LargeStringArray, StringArray,
        StringViewArray, TimestampMillisecondArray, UInt16Array, UInt32Array, UInt64Array,
        UInt8Array,
    };
    use insitu_adql::arrow::compute::cast;
    use insitu_adql::arrow::datatypes::{Int32Type, SchemaRef};

    use super::*;
    use crate::votable::read;

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> (SchemaRef, RecordBatch) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        (batch.schema(), batch)
    }

    fn to_string(
        schema: &Schema,
        batches: &[RecordBatch],
        serialization: Serialization,
        infos: &[(&str, &str)],
        overflow: bool,
    ) -> String {
        let mut out = Vec::new();
        write(&mut out, schema, batches, serialization, infos, overflow).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The decoded bytes of the document's (one) base64 STREAM.
    fn stream_bytes(document: &str) -> Vec<u8> {
        let start = document.find("<STREAM").unwrap();
        let start = start + document[start..].find('>').unwrap() + 1;
        let end = document.find("</STREAM>").unwrap();
        let text: String = document[start..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        STANDARD.decode(text).unwrap()
    }

    /// The writer's BINARY2 bytes equal astropy's for the same table (written by
    /// testdata/votable/make_fixtures.py: its rows 1, 3, 4, 5 and the columns insitu writes).
    #[test]
    fn binary2_stream_matches_astropy_byte_for_byte() {
        let (schema, b) = batch(vec![
            (
                "id",
                Arc::new(Int32Array::from(vec![1, 3, 4, 5])) as ArrayRef,
            ),
            (
                "flag",
                Arc::new(BooleanArray::from(vec![true, false, true, false])),
            ),
            ("ub", Arc::new(UInt8Array::from(vec![0, 254, 1, 128]))),
            ("s", Arc::new(Int16Array::from(vec![1, -32767, 32767, 0]))),
            (
                "i",
                Arc::new(Int32Array::from(vec![10, -2147483647, 2147483647, 0])),
            ),
            (
                "l",
                Arc::new(Int64Array::from(vec![100, -i64::MAX, i64::MAX, 0])),
            ),
            (
                "f",
                Arc::new(Float32Array::from(vec![1.5, -0.0, f32::MAX, f32::INFINITY])),
            ),
            (
                "d",
                Arc::new(Float64Array::from(vec![
                    10.25,
                    -1e-300,
                    f64::MAX,
                    f64::NEG_INFINITY,
                ])),
            ),
            (
                "name",
                Arc::new(StringArray::from(vec![
                    "alpha",
                    "<x & y>",
                    "tab\there",
                    "  padded  ",
                ])),
            ),
            (
                "label",
                Arc::new(StringArray::from(vec!["Ωmega", "plain", "日本", "z"])),
            ),
        ]);
        let ours = to_string(&schema, &[b], Serialization::Binary2, &[], false);
        let astropy = include_str!("../../../testdata/votable/writer_oracle.binary2.xml");
        assert_eq!(stream_bytes(&ours), stream_bytes(astropy));
        assert!(ours.contains("<FIELD name=\"label\" datatype=\"unicodeChar\" arraysize=\"*\"/>"));
        assert!(ours.contains("<FIELD name=\"name\" datatype=\"char\" arraysize=\"*\"/>"));
    }

    /// A column of every type `votable_type` maps, row 1 null in each.
    fn every_type() -> (SchemaRef, RecordBatch) {
        let ts = TimestampMillisecondArray::from(vec![Some(1_582_979_696_789), None, Some(0)]);
        let (schema, b) = batch(vec![
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])) as ArrayRef,
            ),
            (
                "i8",
                Arc::new(Int8Array::from(vec![Some(-128), None, Some(127)])),
            ),
            (
                "i16",
                Arc::new(Int16Array::from(vec![Some(i16::MIN), None, Some(i16::MAX)])),
            ),
            (
                "i32",
                Arc::new(Int32Array::from(vec![Some(i32::MIN), None, Some(i32::MAX)])),
            ),
            (
                "i64",
                Arc::new(Int64Array::from(vec![Some(i64::MIN), None, Some(i64::MAX)])),
            ),
            (
                "u8",
                Arc::new(UInt8Array::from(vec![Some(0), None, Some(255)])),
            ),
            (
                "u16",
                Arc::new(UInt16Array::from(vec![Some(0), None, Some(u16::MAX)])),
            ),
            (
                "u32",
                Arc::new(UInt32Array::from(vec![Some(0), None, Some(u32::MAX)])),
            ),
            (
                "u64",
                Arc::new(UInt64Array::from(vec![Some(0), None, Some(u64::MAX)])),
            ),
            (
                "f32",
                Arc::new(Float32Array::from(vec![
                    Some(f32::MIN_POSITIVE / 8.0),
                    None,
                    Some(-0.1),
                ])),
            ),
            (
                "f64",
                Arc::new(Float64Array::from(vec![
                    Some(0.1 + 0.2),
                    None,
                    Some(f64::NEG_INFINITY),
                ])),
            ),
            (
                "utf8",
                Arc::new(StringArray::from(vec![
                    Some("a<b & 'c' \"d\""),
                    None,
                    Some(" lead\ttab\r\nline "),
                ])),
            ),
            (
                "large",
                Arc::new(LargeStringArray::from(vec![
                    Some("Ωmega 🚀"),
                    None,
                    Some("x"),
                ])),
            ),
            (
                "view",
                Arc::new(StringViewArray::from(vec![
                    Some("a string longer than twelve bytes"),
                    None,
                    Some("日本"),
                ])),
            ),
            (
                "date",
                Arc::new(Date32Array::from(vec![Some(18_321), None, Some(0)])),
            ),
            ("ts", Arc::new(ts)),
        ]);
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                let m = match f.name().as_str() {
                    "f64" => meta(&[
                        ("unit", "deg"),
                        ("ucd", "pos.eq.ra;meta.main"),
                        ("description", "right <ascension> & more"),
                        ("utype", "stc:Pos"),
                    ]),
                    "i16" => meta(&[("unit", "adu"), ("xtype", "custom")]),
                    _ => HashMap::new(),
                };
                f.as_ref().clone().with_metadata(m)
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap();
        (schema, b)
    }

    /// What the reader gives back for `every_type`: the column as VOTable types it (arrow's
    /// own cast does the widening), text for what VOTable has no type for.
    fn expected_back(name: &str, column: &ArrayRef) -> ArrayRef {
        let text = |values: [Option<&str>; 3]| Arc::new(StringArray::from(values.to_vec()));
        match name {
            "u64" => text([Some("0"), None, Some("18446744073709551615")]),
            "date" => text([Some("2020-02-29"), None, Some("1970-01-01")]),
            "ts" => text([
                Some("2020-02-29T12:34:56.789"),
                None,
                Some("1970-01-01T00:00:00"),
            ]),
            _ => {
                let target = match column.data_type() {
                    DataType::Int8 => DataType::Int16,
                    DataType::UInt16 => DataType::Int32,
                    DataType::UInt32 => DataType::Int64,
                    DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
                    t => t.clone(),
                };
                cast(column, &target).unwrap()
            }
        }
    }

    #[test]
    fn every_type_round_trips_with_nulls_in_both_serialisations() {
        let (schema, b) = every_type();
        for serialization in [Serialization::TableData, Serialization::Binary2] {
            let text = to_string(&schema, std::slice::from_ref(&b), serialization, &[], false);
            let (back_schema, back) = read(text.as_bytes(), 10).unwrap();
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].num_rows(), 3);
            for (field, column) in schema.fields().iter().zip(b.columns()) {
                let got = back[0].column_by_name(field.name()).unwrap();
                assert_eq!(
                    got,
                    &expected_back(field.name(), column),
                    "{serialization:?} column {}",
                    field.name()
                );
                let got_meta = back_schema
                    .field_with_name(field.name())
                    .unwrap()
                    .metadata();
                for (key, value) in field.metadata() {
                    assert_eq!(got_meta.get(key), Some(value), "{} {key}", field.name());
                }
            }
            let date_meta = back_schema.field_with_name("date").unwrap().metadata();
            assert_eq!(
                date_meta.get("xtype").map(String::as_str),
                Some("timestamp")
            );
        }
    }

    #[test]
    fn nan_and_empty_strings_follow_each_serialisation() {
        let (schema, b) = batch(vec![
            (
                "x",
                Arc::new(Float64Array::from(vec![f64::NAN, 1.0])) as ArrayRef,
            ),
            ("s", Arc::new(StringArray::from(vec!["", "\u{1}ctl"]))),
        ]);
        // NaN is VOTable's float null (§5.5) in both; an empty TD is null, so TABLEDATA
        // cannot tell "" from null, BINARY2 can; TABLEDATA cannot carry a control character.
        let td = to_string(
            &schema,
            std::slice::from_ref(&b),
            Serialization::TableData,
            &[],
            false,
        );
        let (_, back) = read(td.as_bytes(), 10).unwrap();
        assert!(back[0].column(0).is_null(0));
        assert!(back[0].column(1).is_null(0));
        assert_eq!(back[0].column(1).as_string::<i32>().value(1), "\u{FFFD}ctl");
        let b2 = to_string(&schema, &[b], Serialization::Binary2, &[], false);
        let (_, back) = read(b2.as_bytes(), 10).unwrap();
        assert!(back[0].column(0).is_null(0));
        let s = back[0].column(1).as_string::<i32>();
        assert!(s.is_valid(0));
        assert_eq!((s.value(0), s.value(1)), ("", "\u{1}ctl"));
    }

    #[test]
    fn status_infos_come_before_the_table_and_overflow_after() {
        let (schema, b) = batch(vec![("x", Arc::new(Int32Array::from(vec![1])) as ArrayRef)]);
        let infos = [("QUERY", "SELECT x FROM t WHERE x < 2 & \"y\"")];
        for serialization in [Serialization::TableData, Serialization::Binary2] {
            let doc = to_string(
                &schema,
                std::slice::from_ref(&b),
                serialization,
                &infos,
                true,
            );
            let ok = doc
                .find("<INFO name=\"QUERY_STATUS\" value=\"OK\"/>")
                .unwrap();
            let query = doc
                .find("<INFO name=\"QUERY\" value=\"SELECT x FROM t WHERE x &lt; 2 &amp; &quot;y&quot;\"/>")
                .unwrap();
            let table = doc.find("<TABLE>").unwrap();
            let end = doc.find("</TABLE>").unwrap();
            let overflow = doc
                .find("<INFO name=\"QUERY_STATUS\" value=\"OVERFLOW\"/>")
                .unwrap();
            assert!(ok < query && query < table && end < overflow, "{doc}");
            assert!(doc.contains("<RESOURCE type=\"results\">"));
            let doc = to_string(&schema, std::slice::from_ref(&b), serialization, &[], false);
            assert!(!doc.contains("OVERFLOW"));
        }
    }

    #[test]
    fn fixed_size_arrays_carry_element_nulls() {
        let floats = FixedSizeListArray::from_iter_primitive::<Float64Type, _, _>(
            vec![
                Some(vec![Some(1.5), None, Some(3.0)]),
                None,
                Some(vec![Some(-0.0), Some(2.0), Some(1e300)]),
            ],
            3,
        );
        let ints = FixedSizeListArray::from_iter_primitive::<Int32Type, _, _>(
            vec![
                Some(vec![Some(1), None]),
                Some(vec![Some(i32::MIN), Some(7)]),
                Some(vec![Some(3), Some(4)]),
            ],
            2,
        );
        let (schema, b) = batch(vec![
            ("v", Arc::new(floats) as ArrayRef),
            ("n", Arc::new(ints)),
        ]);
        let doc = to_string(
            &schema,
            std::slice::from_ref(&b),
            Serialization::TableData,
            &[],
            false,
        );
        assert!(doc.contains("<FIELD name=\"v\" datatype=\"double\" arraysize=\"3\"/>"));
        // i32::MIN is taken by a value, so the null marker is the other extreme.
        assert!(doc.contains(
            "<FIELD name=\"n\" datatype=\"int\" arraysize=\"2\"><VALUES null=\"2147483647\"/></FIELD>"
        ));
        assert!(doc.contains("<TR><TD>1.5 NaN 3.0</TD><TD>1 2147483647</TD></TR>"));
        assert!(doc.contains("<TR><TD/><TD>-2147483648 7</TD></TR>"));
        assert!(doc.contains("<TR><TD>-0.0 2.0 1e300</TD><TD>3 4</TD></TR>"));
        let doc = to_string(&schema, &[b], Serialization::Binary2, &[], false);
        let bytes = stream_bytes(&doc);
        let mut want = vec![0u8];
        for v in [1.5f64, f64::NAN, 3.0] {
            want.extend(v.to_be_bytes());
        }
        want.extend(1i32.to_be_bytes());
        want.extend(i32::MAX.to_be_bytes());
        want.push(0x80);
        for _ in 0..3 {
            want.extend(f64::NAN.to_be_bytes());
        }
        want.extend(i32::MIN.to_be_bytes());
        want.extend(7i32.to_be_bytes());
        assert_eq!(&bytes[..want.len()], &want[..]);
    }

    #[test]
    fn unsupported_columns_fail_before_any_output() {
        let strings = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Utf8, true)),
            1,
            Arc::new(StringArray::from(vec!["a"])),
            None,
        )
        .unwrap();
        let (schema, b) = batch(vec![("names", Arc::new(strings) as ArrayRef)]);
        let mut out = Vec::new();
        let err = write(&mut out, &schema, &[b], Serialization::Binary2, &[], false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("names"), "{err}");
        assert!(out.is_empty());
        // A batch that does not follow the schema.
        let (schema, _) = batch(vec![("x", Arc::new(Int32Array::from(vec![1])) as ArrayRef)]);
        let (_, other) = batch(vec![("x", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]);
        let err = write(
            &mut out,
            &schema,
            &[other],
            Serialization::TableData,
            &[],
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("Int64"), "{err}");
        assert!(out.is_empty());
    }

    /// Records the largest single write, to show that output streams in bounded pieces.
    #[derive(Default)]
    struct Chunks {
        bytes: Vec<u8>,
        largest: usize,
    }

    impl Write for Chunks {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.largest = self.largest.max(buf.len());
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn large_results_stream_in_bounded_pieces_and_read_back() {
        let n = 60_000;
        let ids: Vec<i64> = (0..n).collect();
        let names: Vec<String> = (0..n).map(|i| format!("source-{i}")).collect();
        let (schema, b) = batch(vec![
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("name", Arc::new(StringArray::from(names))),
        ]);
        let batches = [b.slice(0, 25_000), b.slice(25_000, 35_000)];
        for serialization in [Serialization::TableData, Serialization::Binary2] {
            let mut out = Chunks::default();
            write(&mut out, &schema, &batches, serialization, &[], false).unwrap();
            assert!(out.bytes.len() > 1_000_000);
            assert!(out.largest < 200_000, "{serialization:?}: {}", out.largest);
            let (_, back) = read(&out.bytes, n as usize).unwrap();
            assert_eq!(back[0].column(0), b.column(0));
            assert_eq!(back[0].column(1), b.column(1));
        }
    }

    #[test]
    fn document_keeps_its_signature_and_reports_unsupported_columns() {
        let field = Field::new("x", DataType::Int32, true);
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(vec![field.clone()])),
            vec![Arc::new(Int32Array::from(vec![Some(4), None]))],
        )
        .unwrap();
        let doc = super::super::document(&[field], &[b], true);
        assert!(doc.contains("<TR><TD>4</TD></TR>\n<TR><TD/></TR>"));
        assert!(doc.contains("value=\"OVERFLOW\""));
        let field = Field::new(
            "m",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Utf8, true)), 2),
            true,
        );
        let doc = super::super::document(&[field], &[], false);
        assert!(doc.contains("value=\"ERROR\""), "{doc}");
    }
}
