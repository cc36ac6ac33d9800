//! A job on disk: its `job.json` (the fields of UWS 1.1's `<job>`, times in microseconds), written
//! atomically, read back at start-up, and the naming rules for the files of a job folder.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::{time, JobResult, Jobs, Phase};

/// A result as the store keeps it: what the runner returned, with the file's size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredResult {
    #[serde(flatten)]
    pub(super) result: JobResult,
    pub(super) size: u64,
}

/// A job's state, as written to `job.json` (times in microseconds since the epoch).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Record {
    pub(super) job_id: String,
    pub(super) run_id: Option<String>,
    pub(super) phase: Phase,
    pub(super) parameters: Vec<(String, String)>,
    pub(super) creation_time: u64,
    pub(super) start_time: Option<u64>,
    pub(super) end_time: Option<u64>,
    /// Seconds; 0 means unlimited (UWS 1.1 §2.1.4).
    pub(super) execution_duration: u64,
    pub(super) destruction: u64,
    pub(super) error: Option<String>,
    pub(super) results: Vec<StoredResult>,
    /// (done, total) of the runner's progress, if it reported any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) progress: Option<[u64; 2]>,
}

impl Jobs {
    /// Writes `job.json` atomically: a temporary file, flushed to disk, renamed over the old
    /// one, so a crash leaves either the old state or the new one, never half of it.
    pub(super) fn persist(&self, record: &Record) -> io::Result<()> {
        let dir = self.job_dir(&record.job_id);
        let tmp = dir.join("job.json.tmp");
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join("job.json"))
    }

    /// `persist` where the change is already made in memory: a failure is logged (the job
    /// goes on; only a restart would lose the change).
    pub(super) fn persist_logged(&self, record: &Record) {
        if let Err(e) = self.persist(record) {
            tracing::error!("job {}: job.json not written: {e}", record.job_id);
        }
    }
}

/// Whether `name` can be a file name inside a job folder as it is: not empty, no path
/// separator, no `..`, no control character.
pub(super) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && !name.contains("..")
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// 16 hex digits from the clock, a counter and the process id, mixed through SipHash with
/// this process's random keys: unique within a process, and not guessable from outside.
pub(super) fn new_job_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(time::now_micros());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Every job persisted under `dir`; damaged or foreign folders are skipped with a warning.
pub(super) fn load_records(dir: &Path) -> io::Result<Vec<Record>> {
    let mut records = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let path = item?.path();
        if !path.is_dir() {
            continue;
        }
        let file = path.join("job.json");
        let record = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).map_err(|e| e.to_string()))
            .and_then(|record| {
                let named = path.file_name().and_then(|n| n.to_str());
                if named == Some(record.job_id.as_str()) && is_safe_name(&record.job_id) {
                    Ok(record)
                } else {
                    Err(format!(
                        "its jobId {:?} is not its folder's name",
                        record.job_id
                    ))
                }
            });
        match record {
            Ok(record) => records.push(record),
            Err(e) => tracing::warn!("job {} skipped: {e}", file.display()),
        }
    }
    Ok(records)
}
