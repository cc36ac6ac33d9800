//! `TAP_SCHEMA` (TAP 1.1 §4) generated from what is registered: schemas, tables, columns,
//! keys and key_columns, with units, UCDs and descriptions from the Arrow field metadata.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::Result;

/// One registered table, as TAP_SCHEMA describes it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: String,
    pub table: String,
    pub fields: Vec<Field>,
}

/// The TAP_SCHEMA tables' layouts (TAP 1.1 §4): text columns, then integer columns.
const LAYOUTS: [(&str, &[&str], &[&str]); 5] = [
    (
        "schemas",
        &["schema_name", "utype", "description"],
        &["schema_index"],
    ),
    (
        "tables",
        &[
            "schema_name",
            "table_name",
            "table_type",
            "utype",
            "description",
        ],
        &["table_index"],
    ),
    (
        "columns",
        &[
            "table_name",
            "column_name",
            "datatype",
            "arraysize",
            "xtype",
            "description",
            "utype",
            "unit",
            "ucd",
        ],
        &["size", "indexed", "principal", "std", "column_index"],
    ),
    (
        "keys",
        &[
            "key_id",
            "from_table",
            "target_table",
            "utype",
            "description",
        ],
        &[],
    ),
    (
        "key_columns",
        &["key_id", "from_column", "target_column"],
        &[],
    ),
];

fn layout_fields(text: &[&str], ints: &[&str]) -> Vec<Field> {
    let mut fields: Vec<Field> = text
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect();
    // TAP 1.1 leaves "size" null where there is no fixed array size.
    fields.extend(
        ints.iter()
            .map(|n| Field::new(*n, DataType::Int32, *n == "size")),
    );
    fields
}

/// How ADQL names a column: as is when it is a regular identifier, else as a delimited one
/// (TAP 1.1 §4.3: TAP_SCHEMA.columns' own `size` is listed as `"size"`, since SIZE is reserved).
pub fn adql_name(name: &str) -> String {
    let regular = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !crate::parse::is_reserved(name);
    if regular {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// TAP_SCHEMA's foreign keys (TAP 1.1 §4.4, §4.5): (key_id, from, target, from column,
/// target column).
pub const OWN_KEYS: [(&str, &str, &str, &str, &str); 5] = [
    (
        "tap_schema_tables_schema",
        "tables",
        "schemas",
        "schema_name",
        "schema_name",
    ),
    (
        "tap_schema_columns_table",
        "columns",
        "tables",
        "table_name",
        "table_name",
    ),
    (
        "tap_schema_keys_from",
        "keys",
        "tables",
        "from_table",
        "table_name",
    ),
    (
        "tap_schema_keys_target",
        "keys",
        "tables",
        "target_table",
        "table_name",
    ),
    (
        "tap_schema_key_columns_key",
        "key_columns",
        "keys",
        "key_id",
        "key_id",
    ),
];

/// `registered` followed by the TAP_SCHEMA tables themselves.
pub fn with_own_tables(registered: &[TableInfo]) -> Vec<TableInfo> {
    let own = LAYOUTS.iter().map(|(name, text, ints)| TableInfo {
        schema: "tap_schema".into(),
        table: name.to_string(),
        fields: layout_fields(text, ints),
    });
    registered.iter().cloned().chain(own).collect()
}

/// The five TAP_SCHEMA tables, by name, describing `registered` and themselves.
pub fn tables(registered: &[TableInfo]) -> Result<Vec<(&'static str, Arc<MemTable>)>> {
    let everything = with_own_tables(registered);
    let all: Vec<(&TableInfo, bool)> = everything
        .iter()
        .map(|t| (t, t.schema == "tap_schema"))
        .collect();
    let mut schemas: Vec<&str> = all.iter().map(|(t, _)| t.schema.as_str()).collect();
    schemas.sort();
    schemas.dedup();

    let schema_rows = schemas
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let description = (*s == "tap_schema").then(|| "TAP 1.1 metadata".to_string());
            (
                vec![Some(s.to_string()), None, description],
                vec![Some(i as i32)],
            )
        })
        .collect();
    let table_rows = all
        .iter()
        .enumerate()
        .map(|(i, (t, _))| {
            (
                vec![
                    Some(t.schema.clone()),
                    Some(format!("{}.{}", t.schema, t.table)),
                    Some("table".to_string()),
                    None,
                    None,
                ],
                vec![Some(i as i32)],
            )
        })
        .collect();
    let mut column_rows = Vec::new();
    for (t, standard) in &all {
        for (i, f) in t.fields.iter().enumerate() {
            let meta = |k: &str| f.metadata().get(k).cloned();
            let (datatype, arraysize) = votable_type(f.data_type());
            let size = arraysize.as_deref().and_then(|a| a.parse::<i32>().ok());
            column_rows.push((
                vec![
                    Some(format!("{}.{}", t.schema, t.table)),
                    Some(adql_name(f.name())),
                    Some(datatype.to_string()),
                    arraysize,
                    None,
                    meta("description"),
                    None,
                    meta("unit"),
                    meta("ucd"),
                ],
                vec![
                    size,
                    Some(0),
                    Some(1),
                    Some(i32::from(*standard)),
                    Some(i as i32),
                ],
            ));
        }
    }
    let qualified = |t: &str| Some(format!("tap_schema.{t}"));
    let key_rows = OWN_KEYS
        .iter()
        .map(|(id, from, target, _, _)| {
            (
                vec![
                    Some(id.to_string()),
                    qualified(from),
                    qualified(target),
                    None,
                    None,
                ],
                vec![],
            )
        })
        .collect();
    let key_column_rows = OWN_KEYS
        .iter()
        .map(|(id, _, _, from, target)| {
            (
                vec![
                    Some(id.to_string()),
                    Some(from.to_string()),
                    Some(target.to_string()),
                ],
                vec![],
            )
        })
        .collect();
    let rows: [Vec<Row>; 5] = [
        schema_rows,
        table_rows,
        column_rows,
        key_rows,
        key_column_rows,
    ];
    LAYOUTS
        .iter()
        .zip(rows)
        .map(|((name, text, ints), rows)| Ok((*name, mem(batch(text, ints, rows)?)?)))
        .collect()
}

type Row = (Vec<Option<String>>, Vec<Option<i32>>);

/// The VOTable datatype and arraysize of an Arrow type (VOTable 1.4 §2.1). Unsigned types
/// widen to the next signed one; 64-bit unsigned values go out as text, since VOTable has no
/// unsigned long.
pub fn votable_type(t: &DataType) -> (&'static str, Option<String>) {
    match t {
        DataType::Boolean => ("boolean", None),
        DataType::UInt8 => ("unsignedByte", None),
        DataType::Int8 | DataType::Int16 => ("short", None),
        DataType::UInt16 | DataType::Int32 => ("int", None),
        DataType::UInt32 | DataType::Int64 => ("long", None),
        DataType::Float32 => ("float", None),
        DataType::Float64 => ("double", None),
        DataType::FixedSizeList(item, n) => (votable_type(item.data_type()).0, Some(n.to_string())),
        _ => ("char", Some("*".to_string())),
    }
}

/// A batch of string columns then int columns, one row per `(strings, ints)`.
fn batch(text: &[&str], ints: &[&str], rows: Vec<Row>) -> Result<RecordBatch> {
    let fields = layout_fields(text, ints);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for k in 0..text.len() {
        let column: StringArray = rows.iter().map(|(s, _)| s[k].clone()).collect();
        arrays.push(Arc::new(column));
    }
    for k in 0..ints.len() {
        let column: Int32Array = rows.iter().map(|(_, i)| i[k]).collect();
        arrays.push(Arc::new(column));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

fn mem(batch: RecordBatch) -> Result<Arc<MemTable>> {
    Ok(Arc::new(MemTable::try_new(
        batch.schema(),
        vec![vec![batch]],
    )?))
}
