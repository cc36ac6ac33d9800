//! The UWS 1.1 XML documents (UWS 1.1 §2.2.2 and its schema,
//! namespace `http://www.ivoa.net/xml/UWS/v1.0`): the job
//! list, a job, its results and its parameters, with elements in the schema's order.

use std::fmt::Write as _;

use super::time::format_iso;
use super::{Phase, Record};
use crate::votable::xml;

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
const NAMESPACES: &str = "xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\" \
     xmlns:xlink=\"http://www.w3.org/1999/xlink\" \
     xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" version=\"1.1\"";

/// The namespace of the `progress` element in `jobInfo`: rows (or other units) done and in all.
pub const PROGRESS_NS: &str = "urn:insitu:uws:progress";

/// `<uws:jobs>` (UWS 1.1 §2.2.2.1): one `jobref` per job, linking to `{list_url}/{id}`.
pub(super) fn job_list(records: &[Record], list_url: &str) -> String {
    let mut out = format!("{HEAD}<uws:jobs {NAMESPACES}>\n");
    for r in records {
        let _ = write!(
            out,
            "  <uws:jobref id=\"{id}\" xlink:type=\"simple\" xlink:href=\"{}/{id}\">\
             <uws:phase>{}</uws:phase>",
            xml(list_url),
            r.phase.as_str(),
            id = xml(&r.job_id),
        );
        if let Some(run_id) = &r.run_id {
            let _ = write!(out, "<uws:runId>{}</uws:runId>", xml(run_id));
        }
        let _ = writeln!(
            out,
            "<uws:ownerId xsi:nil=\"true\"/><uws:creationTime>{}</uws:creationTime></uws:jobref>",
            format_iso(r.creation_time)
        );
    }
    out.push_str("</uws:jobs>\n");
    out
}

/// `<uws:job>` (UWS 1.1 §2.2.2.2), results linking under `{job_url}/results/`.
pub(super) fn job(r: &Record, job_url: &str) -> String {
    let mut out = format!("{HEAD}<uws:job {NAMESPACES}>\n");
    let _ = writeln!(out, "  <uws:jobId>{}</uws:jobId>", xml(&r.job_id));
    if let Some(run_id) = &r.run_id {
        let _ = writeln!(out, "  <uws:runId>{}</uws:runId>", xml(run_id));
    }
    let _ = writeln!(out, "  <uws:ownerId xsi:nil=\"true\"/>");
    let _ = writeln!(out, "  <uws:phase>{}</uws:phase>", r.phase.as_str());
    let _ = writeln!(out, "  <uws:quote xsi:nil=\"true\"/>");
    let _ = writeln!(
        out,
        "  <uws:creationTime>{}</uws:creationTime>",
        format_iso(r.creation_time)
    );
    time_element(&mut out, "startTime", r.start_time);
    time_element(&mut out, "endTime", r.end_time);
    let _ = writeln!(
        out,
        "  <uws:executionDuration>{}</uws:executionDuration>",
        r.execution_duration
    );
    time_element(&mut out, "destruction", Some(r.destruction));
    parameter_elements(&mut out, r, "  ");
    result_elements(&mut out, r, job_url, "  ");
    if let (Phase::Error, Some(message)) = (r.phase, &r.error) {
        // hasDetail: `…/error` serves the message as a VOTable error document (the form TAP 1.1 gives errors).
        let _ = writeln!(
            out,
            "  <uws:errorSummary type=\"fatal\" hasDetail=\"true\">\
             <uws:message>{}</uws:message></uws:errorSummary>",
            xml(message)
        );
    }
    if let Some([done, total]) = r.progress {
        // UWS 1.1 §2.2.2.2: jobInfo holds whatever the service adds about the job.
        let _ = writeln!(
            out,
            "  <uws:jobInfo><progress xmlns=\"{PROGRESS_NS}\" done=\"{done}\" total=\"{total}\"/></uws:jobInfo>"
        );
    }
    out.push_str("</uws:job>\n");
    out
}

/// `<uws:results>` on its own (UWS 1.1 §2.2.2.3).
pub(super) fn results(r: &Record, job_url: &str) -> String {
    let mut out = String::from(HEAD);
    result_elements(&mut out, r, job_url, "");
    out.replacen("<uws:results>", &format!("<uws:results {NAMESPACES}>"), 1)
}

/// `<uws:parameters>` on its own (UWS 1.1 §2.2.2.4).
pub(super) fn parameters(r: &Record) -> String {
    let mut out = String::from(HEAD);
    parameter_elements(&mut out, r, "");
    out.replacen(
        "<uws:parameters>",
        &format!("<uws:parameters {NAMESPACES}>"),
        1,
    )
}

fn time_element(out: &mut String, name: &str, micros: Option<u64>) {
    let _ = match micros {
        Some(t) => writeln!(out, "  <uws:{name}>{}</uws:{name}>", format_iso(t)),
        None => writeln!(out, "  <uws:{name} xsi:nil=\"true\"/>"),
    };
}

/// Parameter ids lower-case: TAP clients (pyvo, astroquery) look up `query`, `lang`, ….
fn parameter_elements(out: &mut String, r: &Record, indent: &str) {
    let _ = writeln!(out, "{indent}<uws:parameters>");
    for (name, value) in &r.parameters {
        let _ = writeln!(
            out,
            "{indent}  <uws:parameter id=\"{}\">{}</uws:parameter>",
            xml(&name.to_ascii_lowercase()),
            xml(value)
        );
    }
    let _ = writeln!(out, "{indent}</uws:parameters>");
}

fn result_elements(out: &mut String, r: &Record, job_url: &str, indent: &str) {
    let _ = writeln!(out, "{indent}<uws:results>");
    for s in &r.results {
        let _ = writeln!(
            out,
            "{indent}  <uws:result id=\"{id}\" xlink:type=\"simple\" \
             xlink:href=\"{}/results/{id}\" size=\"{}\" mime-type=\"{}\"/>",
            xml(job_url),
            s.size,
            xml(&s.result.mime),
            id = xml(&s.result.id),
        );
    }
    let _ = writeln!(out, "{indent}</uws:results>");
}
