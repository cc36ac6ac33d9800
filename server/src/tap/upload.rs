//! TAP_UPLOAD (TAP 1.1 §2.5.3, §4.5, DALI 1.1 §3.4.5): `UPLOAD=name,param:part` names a table
//! sent in the request's multipart part `part`, `UPLOAD=name,http://…` one to fetch, as a
//! VOTable (TABLEDATA, BINARY or BINARY2) or CSV with a header line; the query sees it as
//! `TAP_UPLOAD.name`.

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
    /// Whether `http://` uploads are fetched (an operator may turn it off where the service
    /// must not reach other hosts).
    pub urls: bool,
}

/// Where an uploaded table comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The request's multipart part of that name.
    Part(String),
    /// An `http://` URL to fetch.
    Url(String),
}

/// Fetches an `http://` upload, refusing more than `limits.max_bytes`.
pub fn fetch(
    url: &str,
    limits: UploadLimits,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    response
        .body_mut()
        .with_config()
        .limit(limits.max_bytes as u64 + 1)
        .read_to_vec()
        .map_err(|e| format!("cannot read {url}: {e}"))
}

/// The (name, source) pairs of every `UPLOAD` value: `name,param:part` or `name,http://…`,
/// several separated by `;` (TAP 1.1 §2.5.3) or given as several `UPLOAD` parameters.
pub fn requested<'a>(
    values: impl Iterator<Item = &'a str>,
    urls: bool,
) -> Result<Vec<(String, Source)>, String> {
    let mut out: Vec<(String, Source)> = Vec::new();
    for value in values {
        for item in value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, uri)) = item.split_once(',') else {
                return Err(format!(
                    "UPLOAD={item:?}: expected name,param:part or name,http://…"
                ));
            };
            let (name, uri) = (name.trim(), uri.trim());
            let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(format!(
                    "UPLOAD table name {name:?}: a letter then letters, digits or '_'"
                ));
            }
            let lower = uri.to_ascii_lowercase();
            let source = if let Some(part) = uri.strip_prefix("param:") {
                Source::Part(part.to_string())
            } else if lower.starts_with("http://") && urls {
                Source::Url(uri.to_string())
            } else if lower.starts_with("http://") {
                return Err(format!(
                    "UPLOAD={item:?}: this service does not fetch URLs; send the table inline \
                     (param:part, as a multipart part)"
                ));
            } else {
                return Err(format!(
                    "UPLOAD={item:?}: supported are inline uploads (param:part, the table as a \
                     multipart part) and http:// URLs"
                ));
            };
            if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(format!("UPLOAD names the table {name:?} twice"));
            }
            out.push((name.to_string(), source));
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
        urls: true,
    };

    #[test]
    fn upload_parameters() {
        let part = |s: &str| Source::Part(s.to_string());
        let got = requested(
            ["a,param:t1;b , param:t2 ", "c,http://host/t.xml"].into_iter(),
            true,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), part("t1")),
                ("b".into(), part("t2")),
                ("c".into(), Source::Url("http://host/t.xml".into()))
            ]
        );
        assert!(requested(["c,http://host/t.xml"].into_iter(), false)
            .unwrap_err()
            .contains("does not fetch"));
        for bad in [
            "a",
            "1a,param:x",
            "a,https://example.org/t.xml",
            "a,ftp://x/y",
            "a b,param:x",
            "a,param:x;A,param:y",
        ] {
            assert!(requested([bad].into_iter(), true).is_err(), "{bad}");
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
