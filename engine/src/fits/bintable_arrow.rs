//! FITS binary table columns as Arrow arrays (FITS 4.0 §7.3), read in place from the map.
//!
//! Types follow FITS 4.0 Table 18: `L` → Boolean, `B` → UInt8, `I`/`J`/`K` → Int16/32/64,
//! `E`/`D` → Float32/64, `A` → Utf8. The unsigned convention (§7.3.2: `TZEROn` of 2^15, 2^31,
//! 2^63 with `TSCALn` 1, or −128 for signed bytes) gives UInt16/32/64 and Int8; any other
//! scaling gives Float64 physical values. Integers equal to `TNULLn` and logicals that are
//! neither `T` nor `F` are null; float NaNs stay NaN values. A repeat count above 1 gives a
//! FixedSizeList. `TUNITn`, `TUCDn` and `TCOMMn` travel as field metadata (`unit`, `ucd`,
//! `description`). Bit, complex and variable-length columns are left out of the schema.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, FixedSizeListBuilder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, Int8Builder, StringBuilder, UInt16Builder, UInt32Builder,
    UInt64Builder, UInt8Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use super::bintable::{BinTable, Column};

/// How one column's stored elements become Arrow values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    /// Scaled integers or floats: TZERO + TSCAL × stored, as Float64.
    Scaled,
    Text,
}

impl Kind {
    fn of(c: &Column) -> Option<Kind> {
        let unscaled = c.scale == 1.0 && c.zero == 0.0;
        let offset_only = |zero: f64| c.scale == 1.0 && c.zero == zero;
        Some(match c.code {
            b'L' => Kind::Bool,
            b'A' => Kind::Text,
            b'B' if unscaled => Kind::U8,
            b'B' if offset_only(-128.0) => Kind::I8,
            b'I' if unscaled => Kind::I16,
            b'I' if offset_only(32768.0) => Kind::U16,
            b'J' if unscaled => Kind::I32,
            b'J' if offset_only(2_147_483_648.0) => Kind::U32,
            b'K' if unscaled => Kind::I64,
            b'K' if offset_only(9_223_372_036_854_775_808.0) => Kind::U64,
            b'E' if unscaled => Kind::F32,
            b'D' if unscaled => Kind::F64,
            b'B' | b'I' | b'J' | b'K' | b'E' | b'D' => Kind::Scaled,
            _ => return None,
        })
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::U8 => DataType::UInt8,
            Kind::I8 => DataType::Int8,
            Kind::I16 => DataType::Int16,
            Kind::U16 => DataType::UInt16,
            Kind::I32 => DataType::Int32,
            Kind::U32 => DataType::UInt32,
            Kind::I64 => DataType::Int64,
            Kind::U64 => DataType::UInt64,
            Kind::F32 => DataType::Float32,
            Kind::F64 | Kind::Scaled => DataType::Float64,
            Kind::Text => DataType::Utf8,
        }
    }
}

impl BinTable<'_> {
    /// Indices (into the FITS columns) of the columns that have an Arrow type.
    pub fn arrow_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| Kind::of(&self.columns[i]).is_some())
            .collect()
    }

    /// The Arrow schema of the columns listed by [`arrow_columns`](Self::arrow_columns).
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .arrow_columns()
            .into_iter()
            .map(|i| self.arrow_field(i))
            .collect();
        Arc::new(Schema::new(fields))
    }

    fn arrow_field(&self, i: usize) -> Field {
        let c = &self.columns[i];
        let item = Kind::of(c).map_or(DataType::Null, Kind::data_type);
        let data_type = if c.repeat > 1 && c.code != b'A' {
            DataType::FixedSizeList(
                Arc::new(Field::new("item", item, true)),
                i32::try_from(c.repeat).unwrap_or(i32::MAX),
            )
        } else {
            item
        };
        let metadata: HashMap<String, String> = [
            ("unit", &c.unit),
            ("ucd", &c.ucd),
            ("description", &c.description),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
        Field::new(self.names[i].clone(), data_type, true).with_metadata(metadata)
    }

    /// Rows `rows` of the FITS columns `columns` (indices from
    /// [`arrow_columns`](Self::arrow_columns)) as one batch; only those columns are read.
    pub fn record_batch(
        &self,
        columns: &[usize],
        rows: Range<usize>,
    ) -> Result<RecordBatch, ArrowError> {
        let rows: Vec<usize> = rows.collect();
        self.record_batch_rows(columns, &rows)
    }

    /// The given rows (in that order) of the FITS columns `columns` as one batch: a cone
    /// search reads only the rows its index selects.
    pub fn record_batch_rows(
        &self,
        columns: &[usize],
        rows: &[usize],
    ) -> Result<RecordBatch, ArrowError> {
        if let Some(bad) = rows.iter().find(|&&r| r >= self.rows()) {
            return Err(ArrowError::InvalidArgumentError(format!(
                "row {bad} is outside the table's {} rows",
                self.rows()
            )));
        }
        let mut fields = Vec::with_capacity(columns.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
        for &i in columns {
            let column = self
                .columns
                .get(i)
                .filter(|c| Kind::of(c).is_some())
                .ok_or_else(|| {
                    ArrowError::InvalidArgumentError(format!("column {i} has no Arrow type"))
                })?;
            fields.push(self.arrow_field(i));
            arrays.push(self.column_array(column, rows));
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
    }

    /// The stored bytes of element `k` of `column` in `row`.
    fn element(&self, column: &Column, row: usize, k: usize, size: usize) -> &[u8] {
        let start = row * self.row_len + column.offset + k * size;
        // Extents were checked against the data unit when the table was opened.
        self.data.get(start..start + size).unwrap_or(&[])
    }

    fn text_array(&self, c: &Column, rows: &[usize]) -> ArrayRef {
        let mut b = StringBuilder::new();
        for &row in rows {
            let bytes = self.element(c, row, 0, c.repeat);
            // FITS 4.0 §7.3.3.1: a NUL ends the string; trailing blanks are not significant.
            let end = bytes.iter().position(|&x| x == 0).unwrap_or(bytes.len());
            b.append_value(String::from_utf8_lossy(&bytes[..end]).trim_end());
        }
        Arc::new(b.finish())
    }

    fn column_array(&self, c: &Column, rows: &[usize]) -> ArrayRef {
        let kind = Kind::of(c).unwrap_or(Kind::Text);
        macro_rules! build {
            ($builder:ty, $size:expr, $value:expr) => {{
                let convert = $value;
                let n = rows.len() * c.repeat;
                if c.repeat > 1 {
                    let mut b = FixedSizeListBuilder::with_capacity(
                        <$builder>::with_capacity(n),
                        c.repeat as i32,
                        rows.len(),
                    );
                    for &row in rows {
                        for k in 0..c.repeat {
                            b.values()
                                .append_option(convert(self.element(c, row, k, $size)));
                        }
                        b.append(true);
                    }
                    Arc::new(b.finish()) as ArrayRef
                } else {
                    let mut b = <$builder>::with_capacity(n);
                    for &row in rows {
                        b.append_option(convert(self.element(c, row, 0, $size)));
                    }
                    Arc::new(b.finish()) as ArrayRef
                }
            }};
        }
        let not_null = |v: i64| (Some(v) != c.null).then_some(v);
        let be = |b: &[u8]| -> [u8; 8] {
            let mut a = [0u8; 8];
            a[8 - b.len()..].copy_from_slice(b);
            a
        };
        let int = |b: &[u8]| -> i64 {
            let v = i64::from_be_bytes(be(b));
            // Sign-extend the stored width (bytes are unsigned, FITS 4.0 Table 18).
            match b.len() {
                2 => v as i16 as i64,
                4 => v as i32 as i64,
                _ => v,
            }
        };
        match kind {
            Kind::Text => self.text_array(c, rows),
            Kind::Bool => build!(BooleanBuilder, 1, |b: &[u8]| match b.first() {
                Some(b'T') => Some(true),
                Some(b'F') => Some(false),
                _ => None,
            }),
            Kind::U8 => build!(UInt8Builder, 1, |b: &[u8]| not_null(b[0] as i64)
                .map(|v| v as u8)),
            Kind::I8 => build!(Int8Builder, 1, |b: &[u8]| not_null(b[0] as i64)
                .map(|v| (v - 128) as i8)),
            Kind::I16 => build!(Int16Builder, 2, |b: &[u8]| not_null(int(b))
                .map(|v| v as i16)),
            Kind::U16 => build!(UInt16Builder, 2, |b: &[u8]| not_null(int(b))
                .map(|v| (v + 32768) as u16)),
            Kind::I32 => build!(Int32Builder, 4, |b: &[u8]| not_null(int(b))
                .map(|v| v as i32)),
            Kind::U32 => build!(UInt32Builder, 4, |b: &[u8]| not_null(int(b))
                .map(|v| (v + 2_147_483_648) as u32)),
            Kind::I64 => build!(Int64Builder, 8, |b: &[u8]| not_null(int(b))),
            Kind::U64 => build!(UInt64Builder, 8, |b: &[u8]| not_null(int(b))
                .map(|v| (v as u64) ^ (1 << 63))),
            Kind::F32 => build!(Float32Builder, 4, |b: &[u8]| Some(f32::from_bits(
                int(b) as u32
            ))),
            Kind::F64 => build!(Float64Builder, 8, |b: &[u8]| Some(f64::from_bits(
                int(b) as u64
            ))),
            Kind::Scaled => {
                let size = column_element_size(c.code);
                let scale = |v: f64| c.zero + c.scale * v;
                build!(Float64Builder, size, |b: &[u8]| match c.code {
                    b'E' => Some(scale(f32::from_bits(int(b) as u32) as f64)),
                    b'D' => Some(scale(f64::from_bits(int(b) as u64))),
                    b'B' => not_null(b[0] as i64).map(|v| scale(v as f64)),
                    _ => not_null(int(b)).map(|v| scale(v as f64)),
                })
            }
        }
    }
}

fn column_element_size(code: u8) -> usize {
    match code {
        b'I' => 2,
        b'J' | b'E' => 4,
        b'K' | b'D' => 8,
        _ => 1,
    }
}
