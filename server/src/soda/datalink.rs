//! DataLink 1.1 `{links}` (`/datalink/links`, GET or POST, `ID` repeatable): for each dataset
//! a `#this` link to the whole file and a `#cutout` link to a SODA service descriptor
//! (`RESOURCE type="meta" utype="adhoc:service"`, DataLink 1.1 §4) whose inputParams carry
//! the dataset's ID and its footprint as the `VALUES` bounds of `CIRCLE` and `POLYGON` (SODA
//! 1.0 §4.2). An unknown ID gets one row with a `NotFoundFault` error message (DataLink 1.1
//! §3.4); a request with no ID an empty table.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::SodaState;
use crate::dali::{self, DaliParams};
use crate::volumes::Tiles;
use crate::votable::xml;

/// The media type of a DataLink document (DataLink 1.1 §3.1).
pub const DATALINK_MIME: &str = "application/x-votable+xml;content=datalink";

/// IDs answered per request; more are left out with `QUERY_STATUS=OVERFLOW` (DataLink 1.1
/// §2.1.1).
pub const MAX_IDS: usize = 1000;

/// `s` percent-encoded for a URL path (RFC 3986 §2.3 unreserved characters and `/` kept).
pub fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `s` percent-encoded for a query value (everything but the unreserved characters).
pub fn encode_query(s: &str) -> String {
    encode_path(s).replace('/', "%2F")
}

/// The `{links}` URL of a dataset id.
pub fn links_url(base: &str, id: &str) -> String {
    format!("{base}/datalink/links?ID={}", encode_query(id))
}

pub async fn links(
    State(state): State<Arc<SodaState>>,
    headers: HeaderMap,
    params: DaliParams,
) -> Response {
    if let Some(format) = params.get("RESPONSEFORMAT") {
        // DataLink 1.1 §2.1.2: strip MIME parameters, then votable or its MIME type.
        let base = format
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !["", "votable", "application/x-votable+xml", "text/xml"].contains(&base.as_str()) {
            return dali::error(
                StatusCode::BAD_REQUEST,
                &format!("UsageFault: RESPONSEFORMAT={format} is not supported: use votable"),
            );
        }
    }
    let ids: Vec<&str> = params.all("ID").collect();
    let body = document(&state.tiles, &state.base(&headers), &ids);
    ([(header::CONTENT_TYPE, DATALINK_MIME)], body).into_response()
}

/// One row of the links table; `None` cells are null.
struct Link {
    id: String,
    access_url: Option<String>,
    service_def: Option<String>,
    error_message: Option<String>,
    semantics: &'static str,
    description: Option<String>,
    content_type: Option<&'static str>,
    content_length: Option<u64>,
}

/// The DataLink document for `ids` (at most [`MAX_IDS`] answered), links built on `base`.
pub fn document(tiles: &Tiles, base: &str, ids: &[&str]) -> String {
    let mut links = Vec::new();
    let mut services = String::new();
    for id in ids.iter().take(MAX_IDS) {
        let Ok(tile) = tiles.dataset(id) else {
            links.push(Link {
                id: id.to_string(),
                access_url: None,
                service_def: None,
                error_message: Some(format!(
                    "NotFoundFault: {id} is not a dataset of this service"
                )),
                semantics: "#this",
                description: None,
                content_type: None,
                content_length: None,
            });
            continue;
        };
        let (volume, row) = tiles.row(tile);
        links.push(Link {
            id: id.to_string(),
            access_url: Some(format!(
                "{base}/files/{}/{}",
                encode_path(&volume.name),
                encode_path(&row.relative_path)
            )),
            service_def: None,
            error_message: None,
            semantics: "#this",
            description: Some(format!(
                "The FITS file {} (image in HDU {})",
                row.file_name(),
                row.hdu
            )),
            content_type: Some("application/fits"),
            content_length: Some(row.size),
        });
        let service = format!("soda-{}", links.len());
        links.push(Link {
            id: id.to_string(),
            access_url: None,
            service_def: Some(service.clone()),
            error_message: None,
            semantics: "#cutout",
            description: Some(
                "SODA cutout of the image: give POS, CIRCLE, POLYGON (ICRS degrees) or SUB \
                 (pixels)"
                    .into(),
            ),
            content_type: Some("application/fits"),
            content_length: None,
        });
        let centre = format!("{} {} {}", row.ra, row.dec, row.fov / 2.0);
        let mut corners = String::new();
        for [ra, dec] in &row.corners {
            let _ = write!(
                corners,
                "{}{ra} {dec}",
                if corners.is_empty() { "" } else { " " }
            );
        }
        services.push_str(&descriptor(
            &service,
            &format!("{base}/soda/sync"),
            &tiles.did(tile),
            &centre,
            &corners,
        ));
    }
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n\
         <RESOURCE type=\"results\">\n\
         <INFO name=\"standardID\" value=\"ivo://ivoa.net/std/DataLink#links-1.1\"/>\n\
         <INFO name=\"QUERY_STATUS\" value=\"OK\"/>\n<TABLE>\n",
    );
    for (name, ucd, extra) in [
        ("ID", "meta.id;meta.main", ""),
        ("access_url", "meta.ref.url", ""),
        ("service_def", "meta.ref", ""),
        ("error_message", "meta.code.error", ""),
        ("semantics", "meta.code", ""),
        ("description", "meta.note", ""),
        ("content_type", "meta.code.mime", ""),
        ("content_length", "phys.size;meta.file", " unit=\"byte\""),
    ] {
        let datatype = if name == "content_length" {
            "datatype=\"long\""
        } else {
            "datatype=\"char\" arraysize=\"*\""
        };
        let _ = writeln!(
            out,
            "<FIELD name=\"{name}\" {datatype} ucd=\"{ucd}\"{extra}/>"
        );
    }
    out.push_str("<DATA><TABLEDATA>\n");
    for link in &links {
        let cells = [
            Some(link.id.clone()),
            link.access_url.clone(),
            link.service_def.clone(),
            link.error_message.clone(),
            Some(link.semantics.to_string()),
            link.description.clone(),
            link.content_type.map(str::to_string),
            link.content_length.map(|n| n.to_string()),
        ];
        out.push_str("<TR>");
        for cell in cells {
            match cell {
                Some(text) => {
                    let _ = write!(out, "<TD>{}</TD>", xml(&text));
                }
                None => out.push_str("<TD/>"),
            }
        }
        out.push_str("</TR>\n");
    }
    out.push_str("</TABLEDATA></DATA>\n</TABLE>\n");
    if ids.len() > MAX_IDS {
        out.push_str("<INFO name=\"QUERY_STATUS\" value=\"OVERFLOW\"/>\n");
    }
    out.push_str("</RESOURCE>\n");
    out.push_str(&services);
    out.push_str("</VOTABLE>\n");
    out
}

/// A SODA sync service descriptor for one dataset (SODA 1.0 §4.2 and its appendix A).
fn descriptor(service: &str, access_url: &str, did: &str, circle: &str, polygon: &str) -> String {
    format!(
        "<RESOURCE type=\"meta\" utype=\"adhoc:service\" ID=\"{service}\" name=\"cutout\">\n\
         <DESCRIPTION>SODA 1.0 cutout of this image: the pixels a region touches, as FITS \
         with the WCS moved</DESCRIPTION>\n\
         <PARAM name=\"standardID\" datatype=\"char\" arraysize=\"*\" \
         value=\"ivo://ivoa.net/std/SODA#sync-1.0\"/>\n\
         <PARAM name=\"accessURL\" datatype=\"char\" arraysize=\"*\" ucd=\"meta.ref.url\" \
         value=\"{access_url}\"/>\n\
         <PARAM name=\"contentType\" datatype=\"char\" arraysize=\"*\" \
         value=\"application/fits\"/>\n\
         <GROUP name=\"inputParams\">\n\
         <PARAM name=\"ID\" datatype=\"char\" arraysize=\"*\" ucd=\"meta.ref.url;meta.curation\" \
         value=\"{did}\"><DESCRIPTION>The publisher DID of the dataset</DESCRIPTION></PARAM>\n\
         <PARAM name=\"POS\" datatype=\"char\" arraysize=\"*\" ucd=\"pos.outline;obs\" value=\"\">\
         <DESCRIPTION>Region to cut out: CIRCLE ra dec radius, RANGE ra1 ra2 dec1 dec2 or \
         POLYGON ra1 dec1 ra2 dec2 … (ICRS degrees)</DESCRIPTION></PARAM>\n\
         <PARAM name=\"CIRCLE\" datatype=\"double\" arraysize=\"3\" xtype=\"circle\" unit=\"deg\" \
         ucd=\"pos.outline;obs\" value=\"\"><DESCRIPTION>A circle (ra dec radius) that the \
         cutout covers</DESCRIPTION><VALUES><MAX value=\"{circle}\"/></VALUES></PARAM>\n\
         <PARAM name=\"POLYGON\" datatype=\"double\" arraysize=\"*\" xtype=\"polygon\" \
         unit=\"deg\" ucd=\"pos.outline;obs\" value=\"\"><DESCRIPTION>A polygon (ra dec pairs) \
         that the cutout covers</DESCRIPTION><VALUES><MAX value=\"{polygon}\"/></VALUES>\
         </PARAM>\n\
         <PARAM name=\"SUB\" datatype=\"char\" arraysize=\"*\" value=\"\"><DESCRIPTION>Pixel \
         section in cfitsio syntax, [ext][x1:x2,y1:y2], 1-based and inclusive, * for a whole \
         axis</DESCRIPTION></PARAM>\n\
         </GROUP>\n</RESOURCE>\n",
        service = xml(service),
        access_url = xml(access_url),
        did = xml(did),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_percent_encoded() {
        assert_eq!(encode_path("MER/a b?.fits"), "MER/a%20b%3F.fits");
        assert_eq!(
            links_url("http://h", "ivo://insitu/v?MER/x.fits"),
            "http://h/datalink/links?ID=ivo%3A%2F%2Finsitu%2Fv%3FMER%2Fx.fits"
        );
    }
}
