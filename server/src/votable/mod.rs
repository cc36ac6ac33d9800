//! VOTable 1.4 documents: query results written as TABLEDATA or BINARY2, and uploaded tables
//! read back from TABLEDATA, BINARY or BINARY2.
//!
//! Field types follow VOTable 1.4 §2.1 through [`insitu_adql::tap_schema::votable_type`], so
//! a result's FIELDs match what TAP_SCHEMA says of its columns; units, UCDs, utypes, xtypes
//! and descriptions travel in the Arrow field metadata (`unit`, `ucd`, `utype`, `xtype`,
//! `description`) both ways. [`write()`] streams a result batch by batch; [`read`] turns the
//! first TABLE of a document into Arrow batches for TAP 1.1 table uploads, refusing what
//! an upload cannot hold (arrays, more rows than the limit) with a [`VotableError`] that names
//! the FIELD and row.

mod read;
mod write;

pub use read::{read, VotableError};
pub use write::{write, Serialization};

use insitu_adql::arrow::array::RecordBatch;
use insitu_adql::arrow::datatypes::{Field, Schema};

/// A complete VOTable document (TABLEDATA) holding `batches` as one table, with
/// `QUERY_STATUS` OK, or OVERFLOW when the result was truncated at MAXREC (TAP 1.1 §5.3). A
/// column that VOTable cannot carry gives an error document instead.
pub fn document(fields: &[Field], batches: &[RecordBatch], overflow: bool) -> String {
    let schema = Schema::new(fields.to_vec());
    let mut out = Vec::new();
    match write(
        &mut out,
        &schema,
        batches,
        Serialization::TableData,
        &[],
        overflow,
    ) {
        // The writer only ever emits UTF-8; the lossy conversion never replaces anything.
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => error_document(&e.to_string()),
    }
}

/// A DALI error document: an empty results resource with `QUERY_STATUS=ERROR` and the
/// message (DALI 1.1 §4.2, TAP 1.1 §5.2).
pub fn error_document(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n\
         <RESOURCE type=\"results\">\n<INFO name=\"QUERY_STATUS\" value=\"ERROR\">{}</INFO>\n\
         </RESOURCE>\n</VOTABLE>\n",
        xml(message)
    )
}

/// `text` escaped for XML content and attributes. Characters that XML 1.0 (§2.2) forbids
/// even as references (most C0 controls, unpaired surrogates cannot occur in a `str`, U+FFFE,
/// U+FFFF) become U+FFFD, so that any string gives a well-formed document.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_xml(text, &mut out);
    out
}

/// Appends `text`, escaped as [`xml`] does, to `out`.
pub(crate) fn push_xml(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept literally in content, but an attribute value would normalise them to
            // spaces (XML 1.0 §3.3.3): character references keep them exact.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_replaces_forbidden_characters() {
        assert_eq!(
            xml("a<b & \"c\" 'd'>\u{1}\t"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;\u{FFFD}&#9;"
        );
    }

    #[test]
    fn error_document_carries_the_escaped_message() {
        let doc = error_document("bad <query>");
        assert!(
            doc.contains("<INFO name=\"QUERY_STATUS\" value=\"ERROR\">bad &lt;query&gt;</INFO>")
        );
    }
}
