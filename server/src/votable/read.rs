//! The VOTable reader: the first TABLE of a document, serialised as TABLEDATA, BINARY or
//! BINARY2, as Arrow record batches, for the tables a TAP 1.1 client uploads (UPLOAD).
//!
//! Uploads are scalar tables: every FIELD becomes one nullable Arrow column named after it
//! (`boolean`/`bit` → Boolean, `unsignedByte` → UInt8, `short`/`int`/`long` → Int16/32/64,
//! `float`/`double` → Float32/64, `char`/`unicodeChar` → Utf8), with `unit`, `ucd`, `utype`,
//! `xtype` and the DESCRIPTION as field metadata. Numeric arrays, complex numbers, FITS
//! serialisation and remote STREAMs are refused with an error that says so.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use insitu_adql::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, RecordBatch, RecordBatchOptions, StringBuilder, UInt8Builder,
};
use insitu_adql::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::QName;
use quick_xml::Reader;

/// Why a VOTable could not be read, with the FIELD and row (1-based) where that applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VotableError {
    /// The document is not well-formed XML (or not UTF-8).
    Xml { position: u64, message: String },
    /// The document has no TABLE element.
    NoTable,
    /// A FIELD declaration that cannot be read or is not supported.
    Field { field: String, message: String },
    /// A value that does not fit its FIELD.
    Cell {
        row: usize,
        field: String,
        message: String,
    },
    /// The data as a whole: the shape of the rows, the serialisation, the stream.
    Data(String),
    /// More rows than the limit.
    TooManyRows { limit: usize },
}

impl fmt::Display for VotableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VotableError::Xml { position, message } => {
                write!(
                    f,
                    "not a well-formed VOTable (XML error at byte {position}): {message}"
                )
            }
            VotableError::NoTable => write!(f, "the VOTable has no TABLE"),
            VotableError::Field { field, message } => write!(f, "FIELD {field:?}: {message}"),
            VotableError::Cell {
                row,
                field,
                message,
            } => write!(f, "row {row}, FIELD {field:?}: {message}"),
            VotableError::Data(message) => f.write_str(message),
            VotableError::TooManyRows { limit } => {
                write!(f, "the table has more than {limit} rows, the limit")
            }
        }
    }
}

impl std::error::Error for VotableError {}

type Result<T> = std::result::Result<T, VotableError>;

/// Reads the first TABLE of the VOTable document `bytes` (UTF-8) into one record batch whose
/// schema has one nullable column per FIELD. More than `max_rows` rows is an error naming the
/// limit, found before the rows past it are decoded.
///
/// Nulls (VOTable 1.4 §5.5): an empty TD; a value equal to the FIELD's `VALUES null` (integers
/// and floats); NaN (floats); `?`, a space or NUL (booleans); a set BINARY2 null flag. An
/// empty TD of a `char` column is null too, so TABLEDATA cannot carry an empty string.
pub fn read(bytes: &[u8], max_rows: usize) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut xml = Xml::new(bytes);
    xml.find_table()?;
    let mut columns: Vec<Column> = Vec::new();
    let mut rows = 0;
    loop {
        match xml.next()? {
            Event::Start(e) => match e.local_name().as_ref() {
                b"FIELD" => {
                    let column = xml.field(&e, true, columns.len())?;
                    add_column(&mut columns, column)?;
                }
                b"DATA" => {
                    rows = xml.data(&mut columns, max_rows)?;
                    break;
                }
                _ => xml.skip(&e)?,
            },
            Event::Empty(e) if e.local_name().as_ref() == b"FIELD" => {
                let column = xml.field(&e, false, columns.len())?;
                add_column(&mut columns, column)?;
            }
            Event::End(e) if e.local_name().as_ref() == b"TABLE" => break,
            Event::Eof => return Err(data("the document ends inside its TABLE")),
            _ => {}
        }
    }
    let fields: Vec<Field> = columns.iter().map(Column::arrow_field).collect();
    let arrays: Vec<ArrayRef> = columns.iter_mut().map(|c| c.builder.finish()).collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| data(&e.to_string()))?;
    Ok((schema, vec![batch]))
}

fn data(message: &str) -> VotableError {
    VotableError::Data(message.to_string())
}

/// ADQL resolves regular identifiers case-insensitively, as SQL does, so two FIELDs whose names
/// differ only in case could not be told apart.
fn add_column(columns: &mut Vec<Column>, column: Column) -> Result<()> {
    if let Some(other) = columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(&column.name))
    {
        return Err(VotableError::Field {
            field: column.name.clone(),
            message: format!(
                "a second column of that name (the first is {:?}); column names must differ \
                 other than in case",
                other.name
            ),
        });
    }
    columns.push(column);
    Ok(())
}

/// The FIELD datatypes of VOTable 1.4 §2.1 that an upload can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VoType {
    Boolean,
    Bit,
    UnsignedByte,
    Short,
    Int,
    Long,
    Float,
    Double,
    Char(Width),
    UnicodeChar(Width),
}

/// The length of a string FIELD (`arraysize`, VOTable 1.4 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    /// `arraysize="N"` (or none, which means 1).
    Fixed(usize),
    /// `arraysize="*"` or `"N*"`: a 4-byte count precedes the value in binary streams.
    Variable,
}

impl VoType {
    fn parse(datatype: &str, arraysize: Option<&str>) -> std::result::Result<VoType, String> {
        let scalar = |t: VoType| match arraysize.map(str::trim) {
            None | Some("1") => Ok(t),
            Some(size) => Err(format!(
                "arraysize=\"{size}\": arrays of {datatype} are not supported, an uploaded \
                 table must have one value per cell"
            )),
        };
        let string = |make: fn(Width) -> VoType| {
            let width = match arraysize.map(str::trim) {
                None => Width::Fixed(1),
                Some(size) if size.contains('x') => {
                    return Err(format!(
                        "arraysize=\"{size}\": arrays of strings are not supported"
                    ))
                }
                Some("*") => Width::Variable,
                Some(size) => {
                    let (digits, variable) = match size.strip_suffix('*') {
                        Some(digits) => (digits, true),
                        None => (size, false),
                    };
                    match digits.parse::<usize>() {
                        Ok(_) if variable => Width::Variable,
                        Ok(n) if n > 0 => Width::Fixed(n),
                        _ => return Err(format!("arraysize=\"{size}\" is not a valid size")),
                    }
                }
            };
            Ok(make(width))
        };
        match datatype {
            "boolean" => scalar(VoType::Boolean),
            "bit" => scalar(VoType::Bit),
            "unsignedByte" => scalar(VoType::UnsignedByte),
            "short" => scalar(VoType::Short),
            "int" => scalar(VoType::Int),
            "long" => scalar(VoType::Long),
            "float" => scalar(VoType::Float),
            "double" => scalar(VoType::Double),
            "char" => string(VoType::Char),
            "unicodeChar" => string(VoType::UnicodeChar),
            "floatComplex" | "doubleComplex" => Err(format!(
                "datatype {datatype}: complex numbers are not supported"
            )),
            other => Err(format!("datatype {other:?} is not a VOTable datatype")),
        }
    }

    fn arrow(self) -> DataType {
        match self {
            VoType::Boolean | VoType::Bit => DataType::Boolean,
            VoType::UnsignedByte => DataType::UInt8,
            VoType::Short => DataType::Int16,
            VoType::Int => DataType::Int32,
            VoType::Long => DataType::Int64,
            VoType::Float => DataType::Float32,
            VoType::Double => DataType::Float64,
            VoType::Char(_) | VoType::UnicodeChar(_) => DataType::Utf8,
        }
    }

    /// The integer range of an integer type.
    fn range(self) -> Option<(i64, i64)> {
        match self {
            VoType::UnsignedByte => Some((0, 255)),
            VoType::Short => Some((i16::MIN.into(), i16::MAX.into())),
            VoType::Int => Some((i32::MIN.into(), i32::MAX.into())),
            VoType::Long => Some((i64::MIN, i64::MAX)),
            _ => None,
        }
    }
}

enum Builder {
    Boolean(BooleanBuilder),
    UInt8(UInt8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
}

impl Builder {
    fn new(t: VoType) -> Builder {
        match t {
            VoType::Boolean | VoType::Bit => Builder::Boolean(BooleanBuilder::new()),
            VoType::UnsignedByte => Builder::UInt8(UInt8Builder::new()),
            VoType::Short => Builder::Int16(Int16Builder::new()),
            VoType::Int => Builder::Int32(Int32Builder::new()),
            VoType::Long => Builder::Int64(Int64Builder::new()),
            VoType::Float => Builder::Float32(Float32Builder::new()),
            VoType::Double => Builder::Float64(Float64Builder::new()),
            VoType::Char(_) | VoType::UnicodeChar(_) => Builder::Utf8(StringBuilder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::UInt8(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
        }
    }

    fn push_null(&mut self) {
        match self {
            Builder::Boolean(b) => b.append_null(),
            Builder::UInt8(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
        }
    }

    /// Appends an integer already checked against its type's range.
    fn push_integer(&mut self, v: i64) {
        match self {
            Builder::UInt8(b) => b.append_value(v as u8),
            Builder::Int16(b) => b.append_value(v as i16),
            Builder::Int32(b) => b.append_value(v as i32),
            Builder::Int64(b) => b.append_value(v),
            _ => {}
        }
    }
}

/// One FIELD being read.
struct Column {
    name: String,
    vo_type: VoType,
    /// `VALUES null` of an integer FIELD.
    null_integer: Option<i64>,
    /// `VALUES null` of a float FIELD (NaN is null regardless).
    null_float: Option<f64>,
    metadata: HashMap<String, String>,
    builder: Builder,
}

impl Column {
    fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.vo_type.arrow(), true).with_metadata(self.metadata.clone())
    }

    fn cell_error(&self, row: usize, message: String) -> VotableError {
        VotableError::Cell {
            row,
            field: self.name.clone(),
            message,
        }
    }

    /// Appends the value of a TABLEDATA cell (VOTable 1.4 §5.1, values as §6 writes them).
    fn push_text(&mut self, text: &str, row: usize) -> Result<()> {
        let trimmed = text.trim();
        if trimmed.is_empty() && !matches!(self.vo_type, VoType::Char(_) | VoType::UnicodeChar(_)) {
            self.builder.push_null();
            return Ok(());
        }
        match self.vo_type {
            VoType::Boolean => {
                let value = match trimmed.to_ascii_lowercase().as_str() {
                    "t" | "true" | "1" => Some(true),
                    "f" | "false" | "0" => Some(false),
                    "?" => None,
                    _ => {
                        return Err(self
                            .cell_error(row, format!("{trimmed:?} is not a boolean (T, F or ?)")))
                    }
                };
                self.push_bool(value);
            }
            VoType::Bit => {
                let value = match trimmed {
                    "1" => true,
                    "0" => false,
                    _ => return Err(self.cell_error(row, format!("{trimmed:?} is not a bit"))),
                };
                self.push_bool(Some(value));
            }
            VoType::Float | VoType::Double => {
                // A float is read as f32 directly: through f64 it could round twice.
                let value = if self.vo_type == VoType::Float {
                    trimmed.parse::<f32>().ok().map(f64::from)
                } else {
                    parse_float(trimmed)
                };
                let value = value.ok_or_else(|| {
                    self.cell_error(row, format!("{trimmed:?} is not a floating-point number"))
                })?;
                self.push_float(value);
            }
            VoType::Char(_) | VoType::UnicodeChar(_) => {
                if let Builder::Utf8(b) = &mut self.builder {
                    if text.is_empty() {
                        b.append_null();
                    } else {
                        b.append_value(text);
                    }
                }
            }
            integer => {
                let value = parse_integer(trimmed, integer).map_err(|e| self.cell_error(row, e))?;
                self.push_integer(value);
            }
        }
        Ok(())
    }

    fn push_bool(&mut self, value: Option<bool>) {
        if let Builder::Boolean(b) = &mut self.builder {
            b.append_option(value);
        }
    }

    /// NaN and the `VALUES null` value are null (VOTable 1.4 §5.5).
    fn push_float(&mut self, value: f64) {
        if value.is_nan() || Some(value) == self.null_float {
            self.builder.push_null();
            return;
        }
        match &mut self.builder {
            Builder::Float32(b) => b.append_value(value as f32),
            Builder::Float64(b) => b.append_value(value),
            _ => {}
        }
    }

    /// Appends an integer in the range of the FIELD's type; the `VALUES null` value is null.
    fn push_integer(&mut self, value: i64) {
        if Some(value) == self.null_integer {
            self.builder.push_null();
        } else {
            self.builder.push_integer(value);
        }
    }

    /// Reads this FIELD's value from a BINARY or BINARY2 stream (VOTable 1.4 §5.3, §5.4);
    /// `null` is its BINARY2 null flag: the bytes are there all the same.
    fn push_binary(&mut self, stream: &mut Stream, null: bool, row: usize) -> Result<()> {
        let width = match self.vo_type {
            VoType::Boolean | VoType::Bit | VoType::UnsignedByte => 1,
            VoType::Short => 2,
            VoType::Int | VoType::Float => 4,
            VoType::Long | VoType::Double => 8,
            VoType::Char(Width::Fixed(n)) => n,
            VoType::UnicodeChar(Width::Fixed(n)) => n.saturating_mul(2),
            VoType::Char(Width::Variable) => self.count(stream, row)?,
            VoType::UnicodeChar(Width::Variable) => self.count(stream, row)?.saturating_mul(2),
        };
        let bytes = stream.take(width).ok_or_else(|| self.truncated(row))?;
        if null {
            self.builder.push_null();
            return Ok(());
        }
        match self.vo_type {
            VoType::Boolean => {
                let value = match bytes[0] {
                    b'T' | b't' | b'1' => Some(true),
                    b'F' | b'f' | b'0' => Some(false),
                    b'?' | b' ' | 0 => None,
                    other => {
                        return Err(self.cell_error(
                            row,
                            format!("byte {other:#04x} is not a boolean (T, F or ?)"),
                        ))
                    }
                };
                self.push_bool(value);
            }
            // The bit sits in the most significant bit of its byte (VOTable 1.4 §6); astropy
            // writes 0x08 for true, so any set bit counts.
            VoType::Bit => self.push_bool(Some(bytes[0] != 0)),
            VoType::UnsignedByte => self.push_integer(bytes[0].into()),
            VoType::Short => self.push_integer(i16::from_be_bytes([bytes[0], bytes[1]]).into()),
            VoType::Int => {
                let v = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                self.push_integer(v.into());
            }
            VoType::Long => {
                let mut b = [0; 8];
                b.copy_from_slice(bytes);
                self.push_integer(i64::from_be_bytes(b));
            }
            VoType::Float => {
                let v = f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                // Through f64 exactly, so a float VALUES null compares as written.
                self.push_float(v.into());
            }
            VoType::Double => {
                let mut b = [0; 8];
                b.copy_from_slice(bytes);
                self.push_float(f64::from_be_bytes(b));
            }
            VoType::Char(_) => {
                // Fixed-width values end at the first NUL (VOTable 1.4 §6).
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                self.push_string(&char_text(&bytes[..end]));
            }
            VoType::UnicodeChar(_) => {
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|u| u16::from_be_bytes([u[0], u[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                let text = String::from_utf16(&units).map_err(|_| {
                    self.cell_error(row, "invalid UTF-16 (an unpaired surrogate)".to_string())
                })?;
                self.push_string(&text);
            }
        }
        Ok(())
    }

    fn push_string(&mut self, text: &str) {
        if let Builder::Utf8(b) = &mut self.builder {
            b.append_value(text);
        }
    }

    /// The 4-byte item count before a variable-length value.
    fn count(&self, stream: &mut Stream, row: usize) -> Result<usize> {
        let bytes = stream.take(4).ok_or_else(|| self.truncated(row))?;
        let count = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        usize::try_from(count).map_err(|_| self.truncated(row))
    }

    fn truncated(&self, row: usize) -> VotableError {
        self.cell_error(row, "the binary stream ends inside this value".to_string())
    }
}

/// `char` data is ASCII (VOTable 1.4 §6); UTF-8 is taken as such, and any other bytes as
/// ISO 8859-1, the usual encoding of older producers, rather than refusing the table.
fn char_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// A TABLEDATA integer of an integer type (VOTable 1.4 §6): decimal with an optional sign,
/// or `0x` and hexadigits giving the two's-complement bits (`0xffff` is -1 as a `short`).
fn parse_integer(text: &str, vo_type: VoType) -> std::result::Result<i64, String> {
    let (min, max) = vo_type.range().unwrap_or((i64::MIN, i64::MAX));
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
    let value = match hex {
        Some(digits) => {
            let bits = match vo_type {
                VoType::UnsignedByte => 8,
                VoType::Short => 16,
                VoType::Int => 32,
                _ => 64,
            };
            let raw = u64::from_str_radix(digits, 16)
                .ok()
                .filter(|_| !digits.starts_with('+'))
                .filter(|&raw| bits == 64 || raw >> bits == 0)
                .ok_or_else(|| format!("{text:?} is not a {bits}-bit hexadecimal integer"))?;
            if vo_type == VoType::UnsignedByte {
                raw as i64
            } else {
                // Sign-extend the two's-complement bits to 64.
                ((raw << (64 - bits)) as i64) >> (64 - bits)
            }
        }
        None => text
            .parse::<i64>()
            .map_err(|_| format!("{text:?} is not an integer"))?,
    };
    if !(min..=max).contains(&value) {
        return Err(format!("{value} is outside the range {min} to {max}"));
    }
    Ok(value)
}

/// A TABLEDATA float: what Rust reads (`1e5`, `-0.5`, `NaN`, `inf`), plus VOTable's `+Inf`
/// and `-Inf` in any case (VOTable 1.4 §6).
fn parse_float(text: &str) -> Option<f64> {
    text.parse::<f64>().ok()
}

/// A slice of the decoded binary stream, read front to back.
struct Stream {
    bytes: Vec<u8>,
    at: usize,
}

impl Stream {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Some(slice)
    }

    fn at_end(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// The XML event source, with errors turned into [`VotableError`]s.
struct Xml<'a> {
    reader: Reader<&'a [u8]>,
}

fn local_is(e: &BytesStart, name: &[u8]) -> bool {
    e.local_name().as_ref() == name
}

impl<'a> Xml<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Xml {
            reader: Reader::from_reader(bytes),
        }
    }

    fn error(&self, message: String) -> VotableError {
        VotableError::Xml {
            position: self.reader.buffer_position(),
            message,
        }
    }

    fn next(&mut self) -> Result<Event<'a>> {
        self.reader
            .read_event()
            .map_err(|e| self.error(e.to_string()))
    }

    /// Skips the element `e` has opened, children included.
    fn skip(&mut self, e: &BytesStart) -> Result<()> {
        let name = e.name().as_ref().to_vec();
        self.reader
            .read_to_end(QName(&name))
            .map(|_| ())
            .map_err(|err| self.error(err.to_string()))
    }

    fn attributes(&self, e: &BytesStart) -> Result<HashMap<String, String>> {
        let mut map = HashMap::new();
        for attribute in e.attributes() {
            let attribute = attribute.map_err(|err| self.error(err.to_string()))?;
            let key = String::from_utf8_lossy(attribute.key.local_name().as_ref()).into_owned();
            let value = attribute
                .decode_and_unescape_value(self.reader.decoder())
                .map_err(|err| self.error(err.to_string()))?;
            map.insert(key, value.into_owned());
        }
        Ok(map)
    }

    /// Appends the character that `&name;` stands for.
    fn push_reference(&self, r: &BytesRef, out: &mut String) -> Result<()> {
        if let Some(c) = r
            .resolve_char_ref()
            .map_err(|err| self.error(err.to_string()))?
        {
            out.push(c);
            return Ok(());
        }
        let name = r.decode().map_err(|err| self.error(err.to_string()))?;
        match resolve_predefined_entity(&name) {
            Some(text) => {
                out.push_str(text);
                Ok(())
            }
            None => Err(self.error(format!("unknown entity &{name};"))),
        }
    }

    /// The text content of the element just opened, up to its end tag; the text of child
    /// elements is included (a DESCRIPTION may hold markup).
    fn text(&mut self) -> Result<String> {
        let mut out = String::new();
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Event::Text(t) => {
                    out.push_str(&t.xml10_content().map_err(|e| self.error(e.to_string()))?)
                }
                Event::CData(t) => {
                    out.push_str(&t.decode().map_err(|e| self.error(e.to_string()))?)
                }
                Event::GeneralRef(r) => self.push_reference(&r, &mut out)?,
                Event::Start(_) => depth += 1,
                Event::End(_) if depth == 0 => return Ok(out),
                Event::End(_) => depth -= 1,
                Event::Eof => return Err(self.error("the document ends inside an element".into())),
                _ => {}
            }
        }
    }

    fn find_table(&mut self) -> Result<()> {
        loop {
            match self.next()? {
                Event::Start(e) if local_is(&e, b"TABLE") => return Ok(()),
                Event::Empty(e) if local_is(&e, b"TABLE") => {
                    return Err(data("the first TABLE is empty: no FIELD, no DATA"))
                }
                Event::Eof => return Err(VotableError::NoTable),
                _ => {}
            }
        }
    }

    /// A FIELD (VOTable 1.4 §4.1): its attributes, DESCRIPTION and VALUES null (§4.7).
    fn field(&mut self, e: &BytesStart, has_children: bool, index: usize) -> Result<Column> {
        let attributes = self.attributes(e)?;
        let name = attributes
            .get("name")
            .or_else(|| attributes.get("ID"))
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().to_string())
            .ok_or_else(|| VotableError::Field {
                field: format!("number {}", index + 1),
                message: "no name".into(),
            })?;
        let field_error = |message: String| VotableError::Field {
            field: name.clone(),
            message,
        };
        let datatype = attributes
            .get("datatype")
            .ok_or_else(|| field_error("no datatype".into()))?;
        let vo_type = VoType::parse(
            datatype.trim(),
            attributes.get("arraysize").map(String::as_str),
        )
        .map_err(field_error)?;
        let mut metadata = HashMap::new();
        for key in ["unit", "ucd", "utype", "xtype"] {
            if let Some(v) = attributes.get(key).filter(|v| !v.is_empty()) {
                metadata.insert(key.to_string(), v.clone());
            }
        }
        let mut null = None;
        if has_children {
            loop {
                match self.next()? {
                    Event::Start(child) if local_is(&child, b"DESCRIPTION") => {
                        let text = self.text()?;
                        let text = text.trim();
                        if !text.is_empty() {
                            metadata.insert("description".into(), text.to_string());
                        }
                    }
                    Event::Start(child) if local_is(&child, b"VALUES") => {
                        null = self.attributes(&child)?.remove("null");
                        self.skip(&child)?;
                    }
                    Event::Empty(child) if local_is(&child, b"VALUES") => {
                        null = self.attributes(&child)?.remove("null");
                    }
                    Event::Start(child) => self.skip(&child)?,
                    Event::End(_) => break,
                    Event::Eof => return Err(self.error("the document ends inside a FIELD".into())),
                    _ => {}
                }
            }
        }
        let mut column = Column {
            name: name.clone(),
            vo_type,
            null_integer: None,
            null_float: None,
            metadata,
            builder: Builder::new(vo_type),
        };
        if let Some(text) = null.as_deref().map(str::trim) {
            match vo_type {
                VoType::Float | VoType::Double => {
                    column.null_float = Some(parse_float(text).ok_or_else(|| {
                        field_error(format!("VALUES null=\"{text}\" is not a number"))
                    })?);
                }
                t if t.range().is_some() => {
                    column.null_integer = Some(
                        parse_integer(text, t)
                            .map_err(|e| field_error(format!("VALUES null: {e}")))?,
                    );
                }
                // Strings and booleans have their own nulls; a marker there is ignored.
                _ => {}
            }
        }
        Ok(column)
    }

    /// The DATA element (VOTable 1.4 §5): its rows into the columns; returns the row count.
    fn data(&mut self, columns: &mut [Column], max_rows: usize) -> Result<usize> {
        loop {
            match self.next()? {
                Event::Start(e) if local_is(&e, b"TABLEDATA") => {
                    return self.tabledata(columns, max_rows)
                }
                Event::Start(e) if local_is(&e, b"BINARY") => {
                    let stream = self.stream()?;
                    return binary(stream, columns, max_rows, false);
                }
                Event::Start(e) if local_is(&e, b"BINARY2") => {
                    let stream = self.stream()?;
                    return binary(stream, columns, max_rows, true);
                }
                Event::Start(e) | Event::Empty(e) if local_is(&e, b"FITS") => {
                    return Err(data(
                        "the TABLE's data is serialised as FITS, which is not supported: send \
                         TABLEDATA, BINARY or BINARY2",
                    ))
                }
                Event::Empty(_) => return Ok(0),
                Event::Start(e) => self.skip(&e)?,
                Event::End(_) => return Ok(0),
                Event::Eof => return Err(self.error("the document ends inside DATA".into())),
                _ => {}
            }
        }
    }

    /// TABLEDATA (VOTable 1.4 §5.1): one TR per row, one TD per FIELD.
    fn tabledata(&mut self, columns: &mut [Column], max_rows: usize) -> Result<usize> {
        let mut cells: Vec<String> = vec![String::new(); columns.len()];
        let mut rows = 0;
        loop {
            match self.next()? {
                Event::Start(e) if local_is(&e, b"TR") => {
                    rows += 1;
                    if rows > max_rows {
                        return Err(VotableError::TooManyRows { limit: max_rows });
                    }
                    self.row(&mut cells, rows)?;
                    for (column, cell) in columns.iter_mut().zip(&cells) {
                        column.push_text(cell, rows)?;
                    }
                }
                Event::Empty(e) if local_is(&e, b"TR") => {
                    rows += 1;
                    if rows > max_rows {
                        return Err(VotableError::TooManyRows { limit: max_rows });
                    }
                    if !columns.is_empty() {
                        return Err(row_shape(rows, 0, columns.len()));
                    }
                }
                Event::Start(e) | Event::Empty(e) => {
                    return Err(data(&format!(
                        "<{}> inside TABLEDATA, where only TR rows may be",
                        String::from_utf8_lossy(e.name().as_ref())
                    )))
                }
                Event::End(_) => return Ok(rows),
                Event::Eof => return Err(self.error("the document ends inside TABLEDATA".into())),
                _ => {}
            }
        }
    }

    /// The TD texts of one TR into `cells`, which must be exactly filled.
    fn row(&mut self, cells: &mut [String], row: usize) -> Result<()> {
        let mut n = 0;
        loop {
            match self.next()? {
                Event::Start(e) | Event::Empty(e) if !local_is(&e, b"TD") => {
                    return Err(data(&format!(
                        "row {row}: <{}> inside TR, where only TD cells may be",
                        String::from_utf8_lossy(e.name().as_ref())
                    )))
                }
                Event::Start(_) | Event::Empty(_) if n >= cells.len() => {
                    return Err(data(&format!(
                        "row {row} has more cells (TD) than the {} FIELDs of the TABLE",
                        cells.len()
                    )));
                }
                Event::Start(e) => {
                    refuse_encoded_cell(&e, row)?;
                    cells[n] = self.cell(row)?;
                    n += 1;
                }
                Event::Empty(e) => {
                    refuse_encoded_cell(&e, row)?;
                    cells[n].clear();
                    n += 1;
                }
                Event::End(_) if n == cells.len() => return Ok(()),
                Event::End(_) => return Err(row_shape(row, n, cells.len())),
                Event::Eof => return Err(self.error("the document ends inside a TR".into())),
                _ => {}
            }
        }
    }

    /// The text of one TD.
    fn cell(&mut self, row: usize) -> Result<String> {
        let mut out = String::new();
        loop {
            match self.next()? {
                Event::Text(t) => {
                    out.push_str(&t.xml10_content().map_err(|e| self.error(e.to_string()))?)
                }
                Event::CData(t) => {
                    out.push_str(&t.decode().map_err(|e| self.error(e.to_string()))?)
                }
                Event::GeneralRef(r) => self.push_reference(&r, &mut out)?,
                Event::Start(e) | Event::Empty(e) => {
                    return Err(data(&format!(
                        "row {row}: <{}> inside a TD, where only text may be",
                        String::from_utf8_lossy(e.name().as_ref())
                    )))
                }
                Event::End(_) => return Ok(out),
                Event::Eof => return Err(self.error("the document ends inside a TD".into())),
                _ => {}
            }
        }
    }

    /// The STREAM of a BINARY or BINARY2 element, base64-decoded (VOTable 1.4 §5.6).
    fn stream(&mut self) -> Result<Stream> {
        loop {
            match self.next()? {
                Event::Start(e) if local_is(&e, b"STREAM") => {
                    self.check_stream(&e)?;
                    break;
                }
                Event::Empty(e) if local_is(&e, b"STREAM") => {
                    self.check_stream(&e)?;
                    return Ok(Stream {
                        bytes: Vec::new(),
                        at: 0,
                    });
                }
                Event::Start(e) | Event::Empty(e) => {
                    return Err(data(&format!(
                        "<{}> where the binary data's STREAM should be",
                        String::from_utf8_lossy(e.name().as_ref())
                    )))
                }
                Event::End(_) => return Err(data("binary data without a STREAM")),
                Event::Eof => return Err(self.error("the document ends inside DATA".into())),
                _ => {}
            }
        }
        let mut text = Vec::new();
        loop {
            match self.next()? {
                Event::Text(t) => text.extend(t.iter().filter(|b| !b.is_ascii_whitespace())),
                Event::CData(t) => text.extend(t.iter().filter(|b| !b.is_ascii_whitespace())),
                Event::GeneralRef(r) => {
                    let mut c = String::new();
                    self.push_reference(&r, &mut c)?;
                    text.extend(c.bytes().filter(|b| !b.is_ascii_whitespace()));
                }
                Event::Start(_) | Event::Empty(_) => {
                    return Err(data(
                        "markup inside a STREAM, where only base64 text may be",
                    ))
                }
                Event::End(_) => break,
                Event::Eof => return Err(self.error("the document ends inside a STREAM".into())),
                _ => {}
            }
        }
        // Padding is optional in practice; be liberal in what is accepted.
        let engine = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let bytes = engine
            .decode(&text)
            .map_err(|e| data(&format!("the binary STREAM is not valid base64: {e}")))?;
        Ok(Stream { bytes, at: 0 })
    }

    fn check_stream(&self, e: &BytesStart) -> Result<()> {
        let attributes = self.attributes(e)?;
        if let Some(href) = attributes.get("href") {
            return Err(data(&format!(
                "the STREAM points to {href:?}; remote streams are not fetched, send the data \
                 inline (encoding=\"base64\")"
            )));
        }
        match attributes.get("encoding").map(|s| s.trim()) {
            None | Some("base64") => Ok(()),
            Some(other) => Err(data(&format!(
                "STREAM encoding {other:?} is not supported, only base64"
            ))),
        }
    }
}

fn row_shape(row: usize, cells: usize, fields: usize) -> VotableError {
    VotableError::Data(format!(
        "row {row} has {cells} cells (TD), the TABLE declares {fields} FIELDs"
    ))
}

/// A TD with `encoding` (encoded cells, a proposed VOTable extension) holds binary data this
/// reader does not decode.
fn refuse_encoded_cell(e: &BytesStart, row: usize) -> Result<()> {
    let encoded = e
        .attributes()
        .flatten()
        .any(|a| a.key.local_name().as_ref() == b"encoding");
    if encoded {
        return Err(data(&format!(
            "row {row}: a TD with an encoding attribute is not supported"
        )));
    }
    Ok(())
}

/// The rows of a BINARY (`null_flags` false) or BINARY2 stream: rows follow one another to
/// the end of the stream, each (BINARY2) opening with one null flag per FIELD, most
/// significant bit first (VOTable 1.4 §5.4).
fn binary(
    mut stream: Stream,
    columns: &mut [Column],
    max_rows: usize,
    null_flags: bool,
) -> Result<usize> {
    if columns.is_empty() {
        return if stream.at_end() {
            Ok(0)
        } else {
            Err(data("binary data for a TABLE without FIELDs"))
        };
    }
    let flag_bytes = if null_flags {
        columns.len().div_ceil(8)
    } else {
        0
    };
    let mut flags = vec![0u8; flag_bytes];
    let mut rows = 0;
    while !stream.at_end() {
        rows += 1;
        if rows > max_rows {
            return Err(VotableError::TooManyRows { limit: max_rows });
        }
        match stream.take(flag_bytes) {
            Some(bytes) => flags.copy_from_slice(bytes),
            None => {
                return Err(data(&format!(
                    "the binary stream ends inside the null flags of row {rows}"
                )))
            }
        }
        for (c, column) in columns.iter_mut().enumerate() {
            let null = null_flags && flags[c / 8] & (0x80 >> (c % 8)) != 0;
            column.push_binary(&mut stream, null, rows)?;
        }
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use insitu_adql::arrow::array::{
        Array, AsArray, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array,
        Int64Array, StringArray, UInt8Array,
    };

    use super::*;

    /// What testdata/votable/make_fixtures.py put in its table (its ROWS, column by column).
    /// `code` row 4 is "": null in TABLEDATA, which cannot tell the two apart (§5.5).
    fn check_fixture(bytes: &[u8], empty_code: Option<&str>) {
        let (schema, batches) = read(bytes, 5).unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.num_rows(), 5);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["id", "flag", "bits", "ub", "s", "i", "l", "f", "d", "name", "code", "label"]
        );
        let col = |name: &str| b.column_by_name(name).unwrap().clone();
        assert_eq!(
            col("id").as_ref(),
            &Int32Array::from(vec![1, 2, 3, 4, 5]) as &dyn Array
        );
        let flag = BooleanArray::from(vec![Some(true), None, Some(false), Some(true), Some(false)]);
        assert_eq!(col("flag").as_ref(), &flag as &dyn Array);
        let bits = BooleanArray::from(vec![true, false, true, false, false]);
        assert_eq!(col("bits").as_ref(), &bits as &dyn Array);
        let ub = UInt8Array::from(vec![Some(0), None, Some(254), Some(1), Some(128)]);
        assert_eq!(col("ub").as_ref(), &ub as &dyn Array);
        let s = Int16Array::from(vec![Some(1), None, Some(-32767), Some(32767), Some(0)]);
        assert_eq!(col("s").as_ref(), &s as &dyn Array);
        let i = Int32Array::from(vec![
            Some(10),
            None,
            Some(-2147483647),
            Some(2147483647),
            Some(0),
        ]);
        assert_eq!(col("i").as_ref(), &i as &dyn Array);
        let l = Int64Array::from(vec![
            Some(100),
            None,
            Some(-i64::MAX),
            Some(i64::MAX),
            Some(0),
        ]);
        assert_eq!(col("l").as_ref(), &l as &dyn Array);
        let f = Float32Array::from(vec![
            Some(1.5),
            None,
            Some(-0.0),
            Some(f32::MAX),
            Some(f32::INFINITY),
        ]);
        assert_eq!(col("f").as_ref(), &f as &dyn Array);
        assert!(col("f")
            .as_primitive::<insitu_adql::arrow::datatypes::Float32Type>()
            .value(2)
            .is_sign_negative());
        let d = Float64Array::from(vec![
            Some(10.25),
            None,
            Some(-1e-300),
            Some(f64::MAX),
            Some(f64::NEG_INFINITY),
        ]);
        assert_eq!(col("d").as_ref(), &d as &dyn Array);
        let name = StringArray::from(vec!["alpha", "beta", "<x & y>", "tab\there", "  padded  "]);
        assert_eq!(col("name").as_ref(), &name as &dyn Array);
        let code = StringArray::from(vec![
            Some("ab"),
            Some("abcd"),
            Some("a b"),
            empty_code,
            Some("x"),
        ]);
        assert_eq!(col("code").as_ref(), &code as &dyn Array);
        let label = StringArray::from(vec!["Ωmega", "café", "plain", "日本", "z"]);
        assert_eq!(col("label").as_ref(), &label as &dyn Array);
        let meta = |name: &str, key: &str| {
            schema
                .field_with_name(name)
                .unwrap()
                .metadata()
                .get(key)
                .cloned()
        };
        assert_eq!(meta("id", "ucd").as_deref(), Some("meta.id;meta.main"));
        assert_eq!(meta("id", "description").as_deref(), Some("row number"));
        assert_eq!(meta("s", "unit").as_deref(), Some("adu"));
        assert_eq!(meta("f", "unit").as_deref(), Some("mag"));
        assert_eq!(meta("f", "ucd").as_deref(), Some("phot.mag"));
        assert_eq!(
            meta("d", "description").as_deref(),
            Some("right ascension <ICRS> & more")
        );
        assert_eq!(meta("name", "unit"), None);
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn reads_astropy_tabledata() {
        check_fixture(
            include_bytes!("../../../testdata/votable/table.tabledata.xml"),
            None,
        );
    }

    #[test]
    fn reads_astropy_binary() {
        check_fixture(
            include_bytes!("../../../testdata/votable/table.binary.xml"),
            Some(""),
        );
    }

    #[test]
    fn reads_astropy_binary2() {
        check_fixture(
            include_bytes!("../../../testdata/votable/table.binary2.xml"),
            Some(""),
        );
    }

    fn table(fields: &str, data: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?>\n<VOTABLE version=\"1.4\"><RESOURCE><TABLE>{fields}\
             <DATA>{data}</DATA></TABLE></RESOURCE></VOTABLE>"
        )
    }

    fn tabledata(fields: &str, rows: &str) -> String {
        table(fields, &format!("<TABLEDATA>{rows}</TABLEDATA>"))
    }

    fn binary2(fields: &str, bytes: &[u8]) -> String {
        use base64::engine::general_purpose::STANDARD;
        table(
            fields,
            &format!(
                "<BINARY2><STREAM encoding=\"base64\">{}</STREAM></BINARY2>",
                STANDARD.encode(bytes)
            ),
        )
    }

    fn error(doc: &str) -> String {
        match read(doc.as_bytes(), 100) {
            Ok(_) => "no error".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tabledata_literals_entities_and_prefixes() {
        let doc = "<?xml version=\"1.0\"?>\n<v:VOTABLE xmlns:v=\"http://www.ivoa.net/xml/VOTable/v1.3\">\
            <v:RESOURCE><v:INFO name=\"x\" value=\"y\"/><v:TABLE><v:PARAM name=\"p\" datatype=\"int\" value=\"1\"/>\
            <v:FIELD name=\"h\" datatype=\"short\"><v:VALUES null=\"0x7fff\"><v:MIN value=\"0\"/></v:VALUES></v:FIELD>\
            <v:GROUP><v:FIELDref ref=\"h\"/></v:GROUP>\
            <v:FIELD name=\"b\" datatype=\"boolean\"/><v:FIELD name=\"t\" datatype=\"char\" arraysize=\"*\"/>\
            <v:FIELD name=\"x\" datatype=\"double\" arraysize=\"1\"/>\
            <v:DATA><v:TABLEDATA>\
            <v:TR><v:TD> 0xffff </v:TD><v:TD>tRUe</v:TD><v:TD>a&amp;b&#x42F;&#65;<![CDATA[<c>]]></v:TD><v:TD>+Inf</v:TD></v:TR>\
            <v:TR><v:TD>0x7FFF</v:TD><v:TD>?</v:TD><v:TD> </v:TD><v:TD>-1.5E-3</v:TD></v:TR>\
            <v:TR><v:TD>+12</v:TD><v:TD>0</v:TD><v:TD/><v:TD>nan</v:TD></v:TR>\
            </v:TABLEDATA></v:DATA></v:TABLE></v:RESOURCE></v:VOTABLE>";
        let (_, b) = read(doc.as_bytes(), 3).unwrap();
        let b = &b[0];
        let h = Int16Array::from(vec![Some(-1), None, Some(12)]);
        assert_eq!(b.column(0).as_ref(), &h as &dyn Array);
        let flag = BooleanArray::from(vec![Some(true), None, Some(false)]);
        assert_eq!(b.column(1).as_ref(), &flag as &dyn Array);
        let t = StringArray::from(vec![Some("a&bЯA<c>"), Some(" "), None]);
        assert_eq!(b.column(2).as_ref(), &t as &dyn Array);
        let x = Float64Array::from(vec![Some(f64::INFINITY), Some(-1.5e-3), None]);
        assert_eq!(b.column(3).as_ref(), &x as &dyn Array);
    }

    #[test]
    fn binary2_fixed_and_variable_strings_and_flags() {
        let fields = "<FIELD name=\"c\" datatype=\"char\" arraysize=\"4\"/>\
            <FIELD name=\"u\" datatype=\"unicodeChar\" arraysize=\"2\"/>\
            <FIELD name=\"v\" datatype=\"unicodeChar\" arraysize=\"10*\"/>\
            <FIELD name=\"bit\" datatype=\"bit\"/>\
            <FIELD name=\"n\" datatype=\"int\"><VALUES null=\"-1\"/></FIELD>";
        let mut bytes = vec![0x00];
        bytes.extend(b"ab\0z");
        bytes.extend([0x04, 0x2F, 0x00, 0x00]);
        bytes.extend([0, 0, 0, 2, 0xD8, 0x3D, 0xDE, 0x80]); // one astral character
        bytes.push(0x80);
        bytes.extend((-1i32).to_be_bytes());
        bytes.push(0b0100_1000); // u and n flagged null
        bytes.extend(b"abcd");
        bytes.extend([0x00, 0x41, 0x00, 0x42]);
        bytes.extend([0, 0, 0, 0]);
        bytes.push(0);
        bytes.extend(5i32.to_be_bytes());
        let (_, b) = read(binary2(fields, &bytes).as_bytes(), 2).unwrap();
        let b = &b[0];
        let c = StringArray::from(vec!["ab", "abcd"]);
        assert_eq!(b.column(0).as_ref(), &c as &dyn Array);
        let u = StringArray::from(vec![Some("Я"), None]);
        assert_eq!(b.column(1).as_ref(), &u as &dyn Array);
        let v = StringArray::from(vec!["🚀", ""]);
        assert_eq!(b.column(2).as_ref(), &v as &dyn Array);
        let bit = BooleanArray::from(vec![true, false]);
        assert_eq!(b.column(3).as_ref(), &bit as &dyn Array);
        // Row 1: the VALUES null value; row 2: the flag (the value under it is ignored).
        let n = Int32Array::from(vec![None, None]);
        assert_eq!(b.column(4).as_ref(), &n as &dyn Array);
    }

    #[test]
    fn empty_tables_and_tables_without_data() {
        let (schema, b) = read(
            tabledata("<FIELD name=\"a\" datatype=\"int\"/>", "").as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!((schema.fields().len(), b[0].num_rows()), (1, 0));
        let doc = "<VOTABLE><RESOURCE><TABLE><FIELD name=\"a\" datatype=\"long\"/></TABLE></RESOURCE></VOTABLE>";
        let (_, b) = read(doc.as_bytes(), 0).unwrap();
        assert_eq!(
            (b[0].num_rows(), b[0].column(0).data_type()),
            (0, &DataType::Int64)
        );
        let (_, b) = read(
            binary2("<FIELD name=\"a\" datatype=\"int\"/>", &[]).as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(b[0].num_rows(), 0);
    }

    #[test]
    fn the_row_limit_is_enforced_in_every_serialisation() {
        let field = "<FIELD name=\"a\" datatype=\"unsignedByte\"/>";
        let td = tabledata(
            field,
            "<TR><TD>1</TD></TR><TR><TD>2</TD></TR><TR><TD>3</TD></TR>",
        );
        assert_eq!(
            read(td.as_bytes(), 2).unwrap_err(),
            VotableError::TooManyRows { limit: 2 }
        );
        assert_eq!(read(td.as_bytes(), 3).unwrap().1[0].num_rows(), 3);
        let b2 = binary2(field, &[0, 1, 0, 2, 0, 3]);
        let err = read(b2.as_bytes(), 2).unwrap_err();
        assert!(err.to_string().contains("more than 2 rows"), "{err}");
        let b = table(
            field,
            "<BINARY><STREAM encoding=\"base64\">AQID</STREAM></BINARY>",
        );
        assert_eq!(
            read(b.as_bytes(), 2).unwrap_err(),
            VotableError::TooManyRows { limit: 2 }
        );
        assert_eq!(read(b.as_bytes(), 3).unwrap().1[0].num_rows(), 3);
    }

    #[test]
    fn bad_documents_give_errors_that_say_what_and_where() {
        let int = "<FIELD name=\"n\" datatype=\"int\"/>";
        let cases: Vec<(String, &str)> =
            vec![
            ("".into(), "no TABLE"),
            ("<VOTABLE><RESOURCE/></VOTABLE>".into(), "no TABLE"),
            (
                "<VOTABLE><TABLE><FIELD name=\"a\" datatype=\"int\"></TABLE>".into(),
                "XML",
            ),
            ("<VOTABLE><TABLE><FIELD name=\"a\"".into(), "XML"),
            (
                tabledata("<FIELD name=\"a\" datatype=\"int\" arraysize=\"3\"/>", ""),
                "arrays of int are not supported",
            ),
            (
                tabledata(
                    "<FIELD name=\"a\" datatype=\"double\" arraysize=\"*\"/>",
                    "",
                ),
                "arraysize=\"*\"",
            ),
            (
                tabledata(
                    "<FIELD name=\"a\" datatype=\"char\" arraysize=\"8x2\"/>",
                    "",
                ),
                "arrays of strings",
            ),
            (
                tabledata("<FIELD name=\"a\" datatype=\"char\" arraysize=\"ten*\"/>", ""),
                "not a valid size",
            ),
            (
                tabledata("<FIELD name=\"a\" datatype=\"doubleComplex\"/>", ""),
                "complex",
            ),
            (
                tabledata("<FIELD name=\"a\" datatype=\"string\"/>", ""),
                "not a VOTable datatype",
            ),
            (
                tabledata("<FIELD name=\"a\"/>", ""),
                "FIELD \"a\": no datatype",
            ),
            (
                tabledata("<FIELD datatype=\"int\"/>", ""),
                "FIELD \"number 1\": no name",
            ),
            (
                tabledata(
                    "<FIELD name=\"RA\" datatype=\"int\"/><FIELD name=\"ra\" datatype=\"int\"/>",
                    "",
                ),
                "a second column",
            ),
            (
                tabledata(
                    "<FIELD name=\"a\" datatype=\"int\"><VALUES null=\"none\"/></FIELD>",
                    "",
                ),
                "VALUES null",
            ),
            (
                tabledata(int, "<TR><TD>1</TD><TD>2</TD></TR>"),
                "row 1 has more cells",
            ),
            (
                tabledata(
                    &format!("{int}{int}").replace(
                        "\"n\" datatype=\"int\"/><FIELD name=\"n\"",
                        "\"n\" datatype=\"int\"/><FIELD name=\"m\"",
                    ),
                    "<TR><TD>1</TD></TR>",
                ),
                "row 1 has 1 cells (TD), the TABLE declares 2 FIELDs",
            ),
            (
                tabledata(int, "<TR><TD>1</TD></TR><TR><TD>x1</TD></TR>"),
                "row 2, FIELD \"n\": \"x1\" is not an integer",
            ),
            (
                tabledata(int, "<TR><TD>2147483648</TD></TR>"),
                "outside the range",
            ),
            (
                tabledata(int, "<TR><TD>0x100000000</TD></TR>"),
                "32-bit hexadecimal",
            ),
            (
                tabledata(
                    "<FIELD name=\"u\" datatype=\"unsignedByte\"/>",
                    "<TR><TD>-1</TD></TR>",
                ),
                "outside the range 0 to 255",
            ),
            (
                tabledata(
                    "<FIELD name=\"b\" datatype=\"boolean\"/>",
                    "<TR><TD>yes</TD></TR>",
                ),
                "not a boolean",
            ),
            (
                tabledata(
                    "<FIELD name=\"b\" datatype=\"bit\"/>",
                    "<TR><TD>2</TD></TR>",
                ),
                "not a bit",
            ),
            (
                tabledata(
                    "<FIELD name=\"f\" datatype=\"float\"/>",
                    "<TR><TD>1,5</TD></TR>",
                ),
                "not a floating-point number",
            ),
            (
                tabledata(int, "<TR><TD><B>1</B></TD></TR>"),
                "<B> inside a TD",
            ),
            (tabledata(int, "<TR><X/></TR>"), "<X> inside TR"),
            (tabledata(int, "<TR><TD>&nbsp;</TD></TR>"), "unknown entity"),
            (
                tabledata(int, "<TR><TD encoding=\"base64\">AAAA</TD></TR>"),
                "encoding attribute",
            ),
            (tabledata(int, "<TR><TD>1</TD></TR"), "XML"),
            (tabledata(int, "<P/>"), "<P> inside TABLEDATA"),
            (
                table(int, "<FITS extnum=\"1\"><STREAM href=\"x.fits\"/></FITS>"),
                "FITS",
            ),
            (
                table(int, "<BINARY><STREAM href=\"http://x/y\"/></BINARY>"),
                "remote streams",
            ),
            (
                table(
                    int,
                    "<BINARY><STREAM encoding=\"gzip\">AAAA</STREAM></BINARY>",
                ),
                "encoding \"gzip\"",
            ),
            (
                table(
                    int,
                    "<BINARY><STREAM encoding=\"base64\">A$AA</STREAM></BINARY>",
                ),
                "not valid base64",
            ),
            (table(int, "<BINARY2></BINARY2>"), "without a STREAM"),
            (
                binary2(int, &[0, 0, 0]),
                "row 1, FIELD \"n\": the binary stream ends inside this value",
            ),
            (
                binary2(
                    "<FIELD name=\"s\" datatype=\"char\" arraysize=\"*\"/>",
                    &[0, 0xFF, 0xFF, 0xFF, 0xFF, b'a'],
                ),
                "ends inside this value",
            ),
            (
                binary2("<FIELD name=\"b\" datatype=\"boolean\"/>", &[0, b'x']),
                "not a boolean",
            ),
            (
                binary2(
                    "<FIELD name=\"u\" datatype=\"unicodeChar\" arraysize=\"1\"/>",
                    &[0, 0xDC, 0x00],
                ),
                "UTF-16",
            ),
            (
                table(
                    "",
                    "<BINARY2><STREAM encoding=\"base64\">AAAA</STREAM></BINARY2>",
                ),
                "without FIELDs",
            ),
            (
                "<VOTABLE><RESOURCE><TABLE/></RESOURCE></VOTABLE>".into(),
                "empty",
            ),
        ];
        for (doc, words) in cases {
            let err = error(&doc);
            assert!(
                err.contains(words),
                "{doc}\n  gave: {err}\n  expected: {words}"
            );
        }
        // Not UTF-8 at all.
        let err = read(
            b"<VOTABLE><TABLE><FIELD name=\"\xff\xfe\" datatype=\"int\"/>",
            1,
        )
        .unwrap_err();
        assert!(matches!(err, VotableError::Xml { .. }), "{err}");
    }

    #[test]
    fn latin1_char_data_in_binary_streams_is_kept() {
        let doc = binary2(
            "<FIELD name=\"s\" datatype=\"char\" arraysize=\"*\"/>",
            &[0, 0, 0, 0, 4, b'c', b'a', b'f', 0xE9],
        );
        let (_, b) = read(doc.as_bytes(), 1).unwrap();
        assert_eq!(b[0].column(0).as_string::<i32>().value(0), "café");
    }

    /// Every prefix of a valid document, and documents with bytes changed, give a result or
    /// an error, never a panic.
    #[test]
    fn truncated_and_corrupted_documents_never_panic() {
        let docs = [
            &include_bytes!("../../../testdata/votable/table.tabledata.xml")[..],
            &include_bytes!("../../../testdata/votable/table.binary2.xml")[..],
            &include_bytes!("../../../testdata/votable/table.binary.xml")[..],
        ];
        for doc in docs {
            for end in 0..doc.len() {
                let _ = read(&doc[..end], 10);
            }
            // A fixed-seed linear congruential generator: the same corruptions every run.
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            for _ in 0..2000 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = (state >> 33) as usize % doc.len();
                let mut bad = doc.to_vec();
                bad[at] = (state >> 24) as u8;
                let _ = read(&bad, 10);
            }
        }
    }
}
