//! VOTable 1.4 output (TABLEDATA serialisation) of query results, for TAP clients.
//!
//! Field types follow VOTable 1.4 §2.1; units, UCDs and descriptions come from the Arrow field
//! metadata (`unit`, `ucd`, `description`) that insitu's tables carry. Nulls are empty cells
//! (allowed since VOTable 1.3); floating-point NaN is written as `NaN`.

use std::fmt::Write as _;

use insitu_adql::arrow::array::{Array, AsArray, RecordBatch};
use insitu_adql::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use insitu_adql::tap_schema::votable_type;

/// A complete VOTable document holding `batches` as one table, with `QUERY_STATUS` OK (or
/// OVERFLOW when the result was truncated at MAXREC, as TAP 1.1 §5.3 asks).
pub fn document(fields: &[Field], batches: &[RecordBatch], overflow: bool) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n\
         <RESOURCE type=\"results\">\n<INFO name=\"QUERY_STATUS\" value=\"OK\"/>\n<TABLE>\n",
    );
    for f in fields {
        let (datatype, arraysize) = votable_type(f.data_type());
        let _ = write!(
            out,
            "<FIELD name=\"{}\" datatype=\"{datatype}\"",
            xml(f.name())
        );
        if let Some(size) = arraysize {
            let _ = write!(out, " arraysize=\"{size}\"");
        }
        for key in ["unit", "ucd"] {
            if let Some(v) = f.metadata().get(key).filter(|v| !v.is_empty()) {
                let _ = write!(out, " {key}=\"{}\"", xml(v));
            }
        }
        match f.metadata().get("description").filter(|v| !v.is_empty()) {
            Some(d) => {
                let _ = writeln!(out, "><DESCRIPTION>{}</DESCRIPTION></FIELD>", xml(d));
            }
            None => out.push_str("/>\n"),
        }
    }
    out.push_str("<DATA><TABLEDATA>\n");
    let mut cell = String::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            out.push_str("<TR>");
            for column in batch.columns() {
                cell.clear();
                write_cell(column.as_ref(), row, &mut cell);
                out.push_str("<TD>");
                out.push_str(&xml(&cell));
                out.push_str("</TD>");
            }
            out.push_str("</TR>\n");
        }
    }
    out.push_str("</TABLEDATA></DATA>\n</TABLE>\n");
    if overflow {
        out.push_str("<INFO name=\"QUERY_STATUS\" value=\"OVERFLOW\"/>\n");
    }
    out.push_str("</RESOURCE>\n</VOTABLE>\n");
    out
}

/// The TABLEDATA text of one cell (empty for null).
fn write_cell(array: &dyn Array, row: usize, out: &mut String) {
    if array.is_null(row) {
        return;
    }
    macro_rules! int {
        ($t:ty) => {{
            let _ = write!(out, "{}", array.as_primitive::<$t>().value(row));
        }};
    }
    match array.data_type() {
        DataType::Boolean => out.push(if array.as_boolean().value(row) {
            'T'
        } else {
            'F'
        }),
        DataType::UInt8 => int!(UInt8Type),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(row), out),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row), out),
        DataType::Utf8 => out.push_str(array.as_string::<i32>().value(row)),
        DataType::FixedSizeList(_, _) => {
            let values = array.as_fixed_size_list().value(row);
            for i in 0..values.len() {
                if i > 0 {
                    out.push(' ');
                }
                write_cell(values.as_ref(), i, out);
            }
        }
        _ => {
            let formatted = insitu_adql::arrow::util::display::ArrayFormatter::try_new(
                array,
                &Default::default(),
            )
            .map(|f| f.value(row).to_string());
            out.push_str(&formatted.unwrap_or_default());
        }
    }
}

/// Shortest text that reads back to the same value at the column's precision; VOTable spells
/// infinities `+Inf`/`-Inf`.
fn float<F: Into<f64> + std::fmt::Debug + Copy>(v: F, out: &mut String) {
    let wide: f64 = v.into();
    if wide.is_nan() {
        out.push_str("NaN");
    } else if wide.is_infinite() {
        out.push_str(if wide > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v:?}");
    }
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
