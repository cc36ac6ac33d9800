//! TAP_UPLOAD (TAP 1.1 §4.5, DALI 1.1 §3.4.5): `UPLOAD=name,param:part` names a table sent in
//! the request's multipart part `part`, as a VOTable (TABLEDATA, BINARY or BINARY2) or CSV
//! with a header line; the query sees it as `TAP_UPLOAD.name`.

use std::sync::Arc;

use insitu_adql::arrow::datatypes::SchemaRef;
use insitu_adql::arrow::record_batch::RecordBatch;

use crate::votable;

/// An uploaded table, read.
pub type Upload = (String, SchemaRef, Vec<RecordBatch>);

/// Limits on what a request may upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_bytes: usize,
    pub max_rows: usize,
}

/// The (name, part) pairs of every `UPLOAD` value: `name,param:part`, several separated by
/// `;` (TAP 1.1 §4.5.2) or given as several `UPLOAD` parameters.
pub fn requested<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for value in values {
        for item in value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, uri)) = item.split_once(',') else {
                return Err(format!("UPLOAD={item:?}: expected name,param:part"));
            };
            let (name, uri) = (name.trim(), uri.trim());
            let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(format!(
                    "UPLOAD table name {name:?}: a letter then letters, digits or '_'"
                ));
            }
            let Some(part) = uri.strip_prefix("param:") else {
                return Err(format!(
                    "UPLOAD={item:?}: only inline uploads (param:part, the table sent as a \
                     multipart part) are supported; insitu does not fetch URLs"
                ));
            };
            if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(format!("UPLOAD names the table {name:?} twice"));
            }
            out.push((name.to_string(), part.to_string()));
        }
    }
    Ok(out)
}

/// Reads one uploaded table: a VOTable if it looks like XML, CSV with a header line otherwise.
pub fn read(name: &str, bytes: &[u8], limits: UploadLimits) -> Result<Upload, String> {
    if bytes.len() > limits.max_bytes {
        return Err(format!(
            "upload {name}: {} bytes, more than the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        ));
    }
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let (schema, batches) = if bytes[start..].starts_with(b"<") {
        votable::read(bytes, limits.max_rows).map_err(|e| format!("upload {name}: {e}"))?
    } else {
        read_csv(bytes, limits.max_rows).map_err(|e| format!("upload {name} (CSV): {e}"))?
    };
    Ok((name.to_string(), schema, batches))
}

fn read_csv(bytes: &[u8], max_rows: usize) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    use insitu_adql::arrow::csv::reader::Format as CsvFormat;
    use insitu_adql::arrow::csv::ReaderBuilder;
    let format = CsvFormat::default().with_header(true);
    let (schema, _) = format
        .infer_schema(std::io::Cursor::new(bytes), Some(10_000))
        .map_err(|e| e.to_string())?;
    if schema.fields().is_empty() {
        return Err("no header line".into());
    }
    let schema = Arc::new(schema);
    let reader = ReaderBuilder::new(schema.clone())
        .with_format(format)
        .build(std::io::Cursor::new(bytes))
        .map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        rows += batch.num_rows();
        if rows > max_rows {
            return Err(format!("more than the limit of {max_rows} rows"));
        }
        batches.push(batch);
    }
    Ok((schema, batches))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIMITS: UploadLimits = UploadLimits {
        max_bytes: 1 << 20,
        max_rows: 1000,
    };

    #[test]
    fn upload_parameters() {
        let got = requested(["a,param:t1;b , param:t2 ", "c,param:x"].into_iter()).unwrap();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), "t1".to_string()),
                ("b".into(), "t2".into()),
                ("c".into(), "x".into())
            ]
        );
        for bad in [
            "a",
            "1a,param:x",
            "a,http://example.org/t.xml",
            "a b,param:x",
            "a,param:x;A,param:y",
        ] {
            assert!(requested([bad].into_iter()).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_uploads_with_limits() {
        let (name, schema, batches) =
            read("t", b"id,ra,dec\n1,10.5,-3\n2,11,4.25\n", LIMITS).unwrap();
        assert_eq!(name, "t");
        assert_eq!(schema.fields().len(), 3);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        let many = format!("x\n{}", "1\n".repeat(1001));
        assert!(read("t", many.as_bytes(), LIMITS)
            .unwrap_err()
            .contains("1000 rows"));
        let small = UploadLimits {
            max_bytes: 4,
            ..LIMITS
        };
        assert!(read("t", b"id\n1\n2\n", small)
            .unwrap_err()
            .contains("limit"));
        assert!(read("t", b"", LIMITS).is_err());
    }
}
