//! FITS binary tables as Arrow, against cfitsio as the oracle: every column type, the unsigned
//! conventions, scaling, TNULL, strings and fixed-size arrays; projection and row ranges.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use insitu_engine::fits::FitsFile;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/fits/table_types.fits")
}

/// Column values as f64 (None for null), whatever their Arrow type.
fn as_f64(array: &dyn Array) -> Vec<Option<f64>> {
    macro_rules! prim {
        ($t:ty) => {
            array
                .as_primitive::<$t>()
                .iter()
                .map(|v| v.map(|v| v as f64))
                .collect()
        };
    }
    match array.data_type() {
        DataType::UInt8 => prim!(UInt8Type),
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float32 => prim!(Float32Type),
        DataType::Float64 => prim!(Float64Type),
        DataType::FixedSizeList(_, _) => {
            let list = array.as_fixed_size_list();
            as_f64(list.values().as_ref())
        }
        other => panic!("not numeric: {other}"),
    }
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn every_column_agrees_with_cfitsio() {
    let file = FitsFile::open(fixture()).unwrap();
    let table = file.table(None).unwrap();
    let columns = table.arrow_columns();
    assert_eq!(
        columns.len(),
        14,
        "every column of the fixture has an Arrow type"
    );
    let batch = table.record_batch(&columns, 0..table.rows()).unwrap();
    assert_eq!(batch.num_rows(), 37);

    let mut cf = fitsio::FitsFile::open(fixture()).unwrap();
    let hdu = cf.hdu(1).unwrap();
    let header = file.header(1).unwrap();
    for (k, field) in batch.schema().fields().iter().enumerate() {
        let name = field.name();
        let array = batch.column(k);
        match field.data_type() {
            DataType::Utf8 => {
                let want: Vec<String> = hdu.read_col(&mut cf, name.as_str()).unwrap();
                let got: Vec<&str> = array
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap())
                    .collect();
                assert_eq!(got, want, "{name}");
            }
            DataType::Boolean => {
                let want: Vec<bool> = hdu.read_col(&mut cf, name.as_str()).unwrap();
                let got: Vec<bool> = array.as_boolean().iter().map(|v| v.unwrap()).collect();
                assert_eq!(got, want, "{name}");
            }
            _ => {
                let want: Vec<f64> = hdu.read_col(&mut cf, name.as_str()).unwrap();
                let got = as_f64(array.as_ref());
                assert_eq!(got.len(), want.len(), "{name}");
                let i = k + 1;
                let null = header.integer(&format!("TNULL{i}")).map(|n| {
                    header.real(&format!("TZERO{i}")).unwrap_or(0.0)
                        + header.real(&format!("TSCAL{i}")).unwrap_or(1.0) * n as f64
                });
                for (row, (g, w)) in got.iter().zip(&want).enumerate() {
                    match g {
                        Some(g) => {
                            assert!(same(*g, *w), "{name} row {row}: insitu {g}, cfitsio {w}")
                        }
                        // cfitsio, asked for no null check, returns the scaled TNULL value.
                        None => assert_eq!(Some(*w), null, "{name} row {row} is null"),
                    }
                }
            }
        }
    }
    // Nulls where TNULL says so, and the unsigned conventions give unsigned types.
    let schema = batch.schema();
    let col = |n: &str| batch.column(schema.index_of(n).unwrap()).clone();
    assert_eq!(col("i16").null_count(), 2);
    assert_eq!(col("flux").null_count(), 1);
    for (n, t) in [
        ("sb", DataType::Int8),
        ("u16", DataType::UInt16),
        ("u32", DataType::UInt32),
        ("u64", DataType::UInt64),
        ("flux", DataType::Float64),
    ] {
        assert_eq!(col(n).data_type(), &t, "{n}");
    }
}

#[test]
fn metadata_projection_and_row_ranges() {
    let file = FitsFile::open(fixture()).unwrap();
    let table = file.table(None).unwrap();
    let schema = table.arrow_schema();
    let mag = schema.field_with_name("mag").unwrap().metadata();
    assert_eq!(mag.get("unit").map(String::as_str), Some("mag"));
    assert_eq!(mag.get("ucd").map(String::as_str), Some("phot.mag"));
    let ra = schema.field_with_name("ra").unwrap().metadata();
    assert_eq!(
        ra.get("description").map(String::as_str),
        Some("right ascension")
    );

    let all = table
        .record_batch(&table.arrow_columns(), 0..table.rows())
        .unwrap();
    let wanted = [
        table.names.iter().position(|n| n == "name").unwrap(),
        table.names.iter().position(|n| n == "ra").unwrap(),
    ];
    let part: RecordBatch = table.record_batch(&wanted, 5..20).unwrap();
    assert_eq!(part.num_columns(), 2);
    assert_eq!(part.schema().field(0).name(), "name");
    assert_eq!(
        part.column(0).as_ref(),
        all.column_by_name("name").unwrap().slice(5, 15).as_ref()
    );
    assert_eq!(
        part.column(1).as_ref(),
        all.column_by_name("ra").unwrap().slice(5, 15).as_ref()
    );
    assert!(
        table.record_batch(&wanted, 30..40).is_err(),
        "rows past the end are an error"
    );
    assert!(
        table.record_batch(&[99], 0..1).is_err(),
        "an unknown column is an error"
    );
}
