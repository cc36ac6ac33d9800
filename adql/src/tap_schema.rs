//! `TAP_SCHEMA` (TAP 1.1 §4) generated from what is registered: schemas, tables, columns,
//! keys and key_columns, with units, UCDs and descriptions from the Arrow field metadata.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::Result;

/// One registered table, as TAP_SCHEMA describes it.
pub struct TableInfo {
    pub schema: String,
    pub table: String,
    pub fields: Vec<Field>,
}

/// The five TAP_SCHEMA tables, by name.
pub fn tables(registered: &[TableInfo]) -> Result<Vec<(&'static str, Arc<MemTable>)>> {
    let mut schemas: Vec<&str> = registered.iter().map(|t| t.schema.as_str()).collect();
    schemas.push("tap_schema");
    schemas.sort();
    schemas.dedup();

    let schemas_batch = batch(
        &["schema_name", "description", "utype"],
        &["schema_index"],
        schemas
            .iter()
            .map(|s| (vec![Some(s.to_string()), None, None], vec![0]))
            .collect(),
    )?;
    let tables_batch = batch(
        &[
            "schema_name",
            "table_name",
            "table_type",
            "description",
            "utype",
        ],
        &["table_index"],
        registered
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    vec![
                        Some(t.schema.clone()),
                        Some(format!("{}.{}", t.schema, t.table)),
                        Some("table".to_string()),
                        None,
                        None,
                    ],
                    vec![i as i32],
                )
            })
            .collect(),
    )?;
    let mut column_rows = Vec::new();
    for t in registered {
        for (i, f) in t.fields.iter().enumerate() {
            let meta = |k: &str| f.metadata().get(k).cloned();
            let (datatype, arraysize) = votable_type(f.data_type());
            column_rows.push((
                vec![
                    Some(format!("{}.{}", t.schema, t.table)),
                    Some(f.name().clone()),
                    meta("description"),
                    meta("unit"),
                    meta("ucd"),
                    None,
                    Some(datatype.to_string()),
                    arraysize,
                ],
                vec![0, 0, 0, i as i32],
            ));
        }
    }
    let columns_batch = batch(
        &[
            "table_name",
            "column_name",
            "description",
            "unit",
            "ucd",
            "utype",
            "datatype",
            "arraysize",
        ],
        &["principal", "indexed", "std", "column_index"],
        column_rows,
    )?;
    let keys = batch(
        &[
            "key_id",
            "from_table",
            "target_table",
            "description",
            "utype",
        ],
        &[],
        vec![],
    )?;
    let key_columns = batch(&["key_id", "from_column", "target_column"], &[], vec![])?;
    Ok(vec![
        ("schemas", mem(schemas_batch)?),
        ("tables", mem(tables_batch)?),
        ("columns", mem(columns_batch)?),
        ("keys", mem(keys)?),
        ("key_columns", mem(key_columns)?),
    ])
}

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
fn batch(
    text: &[&str],
    ints: &[&str],
    rows: Vec<(Vec<Option<String>>, Vec<i32>)>,
) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = text
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect();
    fields.extend(ints.iter().map(|n| Field::new(*n, DataType::Int32, false)));
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for k in 0..text.len() {
        let column: StringArray = rows.iter().map(|(s, _)| s[k].clone()).collect();
        arrays.push(Arc::new(column));
    }
    for k in 0..ints.len() {
        let column: Int32Array = rows.iter().map(|(_, i)| Some(i[k])).collect();
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
