//! VOSI documents of the TAP service: capabilities (with TAPRegExt's description of the ADQL
//! that insitu runs), availability and the table set (VODataService 1.1).

use std::fmt::Write as _;

use insitu_adql::tap_schema::{adql_name, votable_type, TableInfo, OWN_KEYS};

use crate::tap::format::FORMATS;
use crate::tap::TapConfig;
use crate::votable::xml;

/// ADQL 2.1 optional features insitu implements, by TAPRegExt feature type.
const FEATURES: &[(&str, &[&str])] = &[
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adqlgeo",
        &[
            "POINT",
            "CIRCLE",
            "BOX",
            "POLYGON",
            "CONTAINS",
            "INTERSECTS",
            "DISTANCE",
            "AREA",
            "CENTROID",
            "COORD1",
            "COORD2",
            "COORDSYS",
        ],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-string",
        &["LOWER", "UPPER", "ILIKE"],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-sets",
        &["UNION", "EXCEPT", "INTERSECT"],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-common-table",
        &["WITH"],
    ),
    ("ivo://ivoa.net/std/TAPRegExt#features-adql-type", &["CAST"]),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-unit",
        &["IN_UNIT"],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-offset",
        &["OFFSET"],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-conditional",
        &["COALESCE"],
    ),
];

pub fn capabilities(base: &str, config: &TapConfig) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <vosi:capabilities xmlns:vosi=\"http://www.ivoa.net/xml/VOSICapabilities/v1.0\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\" \
         xmlns:tr=\"http://www.ivoa.net/xml/TAPRegExt/v1.0\">\n",
    );
    let base = xml(base);
    let _ = write!(
        out,
        "<capability standardID=\"ivo://ivoa.net/std/TAP\" xsi:type=\"tr:TableAccess\">\n\
         <interface xsi:type=\"vs:ParamHTTP\" role=\"std\" version=\"1.1\">\
         <accessURL use=\"base\">{base}/tap</accessURL></interface>\n\
         <language><name>ADQL</name>\
         <version ivo-id=\"ivo://ivoa.net/std/ADQL#v2.1\">2.1</version>\
         <version ivo-id=\"ivo://ivoa.net/std/ADQL#v2.0\">2.0</version>\
         <description>ADQL 2.1 on DataFusion; also CASE, scalar sub-queries and CROSS JOIN</description>\n"
    );
    for (kind, forms) in FEATURES {
        let _ = write!(out, "<languageFeatures type=\"{kind}\">");
        for form in *forms {
            let _ = write!(out, "<feature><form>{form}</form></feature>");
        }
        out.push_str("</languageFeatures>\n");
    }
    out.push_str("</language>\n");
    for (_, mime, names, ivo_id) in FORMATS {
        match ivo_id {
            Some(id) => {
                let _ = write!(out, "<outputFormat ivo-id=\"{id}\">");
            }
            None => out.push_str("<outputFormat>"),
        }
        let _ = writeln!(
            out,
            "<mime>{}</mime><alias>{}</alias></outputFormat>",
            xml(mime),
            names[0]
        );
    }
    let _ = writeln!(
        out,
        "<uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-inline\"/>\n{}\
         <retentionPeriod><default>{retention}</default><hard>{retention}</hard></retentionPeriod>\n\
         <executionDuration><default>{}</default><hard>{}</hard></executionDuration>\n\
         <outputLimit><default unit=\"row\">{}</default><hard unit=\"row\">{}</hard></outputLimit>\n\
         <uploadLimit><hard unit=\"byte\">{}</hard></uploadLimit>\n\
         </capability>",
        if config.upload.urls {
            "<uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-http\"/>\n"
        } else {
            ""
        },
        config.async_timeout.as_secs(),
        config.async_timeout_max.as_secs(),
        config.default_maxrec,
        config.hard_maxrec,
        config.upload.max_bytes,
        retention = config.retention.as_secs(),
    );
    for (standard, path) in [
        ("ivo://ivoa.net/std/VOSI#capabilities", "capabilities"),
        ("ivo://ivoa.net/std/VOSI#availability", "availability"),
        ("ivo://ivoa.net/std/VOSI#tables", "tables"),
    ] {
        let _ = writeln!(
            out,
            "<capability standardID=\"{standard}\"><interface xsi:type=\"vs:ParamHTTP\">\
             <accessURL use=\"full\">{base}/tap/{path}</accessURL></interface></capability>"
        );
    }
    out.push_str("</vosi:capabilities>\n");
    out
}

pub fn availability() -> String {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
     <vosi:availability xmlns:vosi=\"http://www.ivoa.net/xml/VOSIAvailability/v1.0\">\
     <vosi:available>true</vosi:available>\
     <vosi:note>insitu is accepting queries</vosi:note></vosi:availability>\n"
        .to_string()
}

/// The table set: every registered table and TAP_SCHEMA, grouped by schema.
pub fn tableset(tables: &[TableInfo]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <vosi:tableset xmlns:vosi=\"http://www.ivoa.net/xml/VOSITables/v1.0\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\">\n",
    );
    let mut schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    schemas.sort();
    schemas.dedup();
    for schema in schemas {
        let _ = writeln!(out, "<schema><name>{}</name>", xml(schema));
        for t in tables.iter().filter(|t| t.schema == schema) {
            let _ = writeln!(
                out,
                "<table type=\"table\"><name>{}.{}</name>",
                xml(&t.schema),
                xml(&t.table)
            );
            for f in &t.fields {
                let meta = |k: &str| f.metadata().get(k).filter(|v| !v.is_empty());
                let _ = write!(out, "<column><name>{}</name>", xml(&adql_name(f.name())));
                if let Some(d) = meta("description") {
                    let _ = write!(out, "<description>{}</description>", xml(d));
                }
                if let Some(u) = meta("unit") {
                    let _ = write!(out, "<unit>{}</unit>", xml(u));
                }
                if let Some(u) = meta("ucd") {
                    let _ = write!(out, "<ucd>{}</ucd>", xml(u));
                }
                let (datatype, arraysize) = votable_type(f.data_type());
                let size = arraysize
                    .map(|a| format!(" arraysize=\"{a}\""))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "<dataType xsi:type=\"vs:VOTableType\"{size}>{datatype}</dataType></column>"
                );
            }
            if t.schema == "tap_schema" {
                for (_, from, target, from_column, target_column) in OWN_KEYS {
                    if from == t.table {
                        let _ = writeln!(
                            out,
                            "<foreignKey><targetTable>tap_schema.{target}</targetTable>\
                             <fkColumn><fromColumn>{from_column}</fromColumn>\
                             <targetColumn>{target_column}</targetColumn></fkColumn></foreignKey>"
                        );
                    }
                }
            }
            out.push_str("</table>\n");
        }
        out.push_str("</schema>\n");
    }
    out.push_str("</vosi:tableset>\n");
    out
}
