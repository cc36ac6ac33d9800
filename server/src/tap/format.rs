//! TAP output formats (TAP 1.1 §2.7.1): what `RESPONSEFORMAT` names, and writing a result in
//! it.

use std::io::Write;

use insitu_adql::arrow::datatypes::SchemaRef;
use insitu_adql::arrow::record_batch::RecordBatch;

use crate::votable::{self, Serialization};

/// An output format, asked for by MIME type or short name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    VotableTabledata,
    VotableBinary2,
    Csv,
    Tsv,
    Fits,
    Parquet,
}

/// (format, MIME type written, short names and MIME types accepted, TAPRegExt ivo-id).
pub const FORMATS: &[(Format, &str, &[&str], Option<&str>)] = &[
    (
        Format::VotableTabledata,
        "application/x-votable+xml",
        &[
            "votable",
            "votable/td",
            "application/x-votable+xml",
            "application/x-votable+xml;serialization=tabledata",
            "text/xml",
            "application/xml",
        ],
        Some("ivo://ivoa.net/std/TAPRegExt#output-votable-td"),
    ),
    (
        Format::VotableBinary2,
        "application/x-votable+xml;serialization=BINARY2",
        &[
            "votable/b2",
            "binary2",
            "application/x-votable+xml;serialization=binary2",
        ],
        Some("ivo://ivoa.net/std/TAPRegExt#output-votable-binary2"),
    ),
    (
        Format::Csv,
        "text/csv;header=present",
        &["csv", "text/csv", "text/csv;header=present"],
        None,
    ),
    (
        Format::Tsv,
        "text/tab-separated-values",
        &["tsv", "text/tab-separated-values"],
        None,
    ),
    (
        Format::Fits,
        "application/fits",
        &["fits", "application/fits", "image/fits"],
        None,
    ),
    (
        Format::Parquet,
        "application/vnd.apache.parquet",
        &[
            "parquet",
            "application/vnd.apache.parquet",
            "application/x-parquet",
        ],
        None,
    ),
];

impl Format {
    /// The format `RESPONSEFORMAT` names (case and spaces around `;` ignored); VOTable
    /// TABLEDATA when it is absent.
    pub fn parse(text: Option<&str>) -> Option<Format> {
        let Some(text) = text else {
            return Some(Format::VotableTabledata);
        };
        let wanted: String = text
            .split(';')
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(";");
        if wanted.is_empty() {
            return Some(Format::VotableTabledata);
        }
        FORMATS
            .iter()
            .find(|(_, _, names, _)| names.contains(&wanted.as_str()))
            .map(|(f, ..)| *f)
    }

    pub fn mime(self) -> &'static str {
        FORMATS
            .iter()
            .find(|(f, ..)| *f == self)
            .map_or("application/octet-stream", |(_, mime, ..)| mime)
    }

    /// The file name extension of a result in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::VotableTabledata | Format::VotableBinary2 => "vot",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Fits => "fits",
            Format::Parquet => "parquet",
        }
    }

    /// The short names, for error messages.
    pub fn names() -> String {
        FORMATS
            .iter()
            .map(|(_, _, names, _)| names[0])
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Writes a query result in `format`. `infos` go into a VOTable's results resource;
/// `overflow` marks a result cut at MAXREC (`QUERY_STATUS=OVERFLOW` in VOTables; the other
/// formats have no place for it).
pub fn write(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    infos: &[(&str, &str)],
    overflow: bool,
    mut out: impl Write + Send,
) -> anyhow::Result<()> {
    match format {
        Format::VotableTabledata | Format::VotableBinary2 => {
            let serialization = if format == Format::VotableBinary2 {
                Serialization::Binary2
            } else {
                Serialization::TableData
            };
            votable::write(&mut out, schema, batches, serialization, infos, overflow)?;
        }
        Format::Csv | Format::Tsv => {
            let mut writer = insitu_adql::arrow::csv::WriterBuilder::new()
                .with_delimiter(if format == Format::Tsv { b'\t' } else { b',' })
                .build(&mut out);
            if batches.is_empty() {
                writer.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for b in batches {
                writer.write(b)?;
            }
        }
        Format::Fits => {
            insitu_engine::fits::write_bintable(&mut out, schema, batches)?;
        }
        Format::Parquet => {
            let mut writer =
                insitu_adql::parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), None)?;
            for b in batches {
                writer.write(b)?;
            }
            writer.close()?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_formats_by_name_and_mime() {
        assert_eq!(Format::parse(None), Some(Format::VotableTabledata));
        assert_eq!(
            Format::parse(Some("VOTable")),
            Some(Format::VotableTabledata)
        );
        assert_eq!(
            Format::parse(Some("application/x-votable+xml; serialization=BINARY2")),
            Some(Format::VotableBinary2)
        );
        assert_eq!(Format::parse(Some("text/csv")), Some(Format::Csv));
        assert_eq!(Format::parse(Some("fits")), Some(Format::Fits));
        assert_eq!(
            Format::parse(Some("application/vnd.apache.parquet")),
            Some(Format::Parquet)
        );
        assert_eq!(Format::parse(Some("text/html")), None);
        for (f, mime, ..) in FORMATS {
            assert_eq!(Format::parse(Some(mime)), Some(*f), "{mime}");
        }
    }
}
