//! UWS 1.1 asynchronous jobs (<https://www.ivoa.net/documents/UWS/20161024/>), shared by TAP
//! async (`/tap/async`) and later SODA async: a job store kept on disk, a bounded pool of
//! workers, and the HTTP resources of UWS 1.1 §2.2 ([`routes`]).
//!
//! The store knows nothing about what a job does: a [`Runner`] gets the job's parameters and
//! folders and returns the result files it wrote. Each job is a folder `<dir>/<id>/` with
//! `job.json` (its state, rewritten atomically on every change), `uploads/` (the multipart
//! parts sent at creation, one file per part name) and `results/`. A restart therefore loses
//! no job: [`Jobs::open`] lists the finished ones again, queues the QUEUED ones again, and runs
//! the EXECUTING ones (cut off by the restart) again from the start.
//!
//! Entry points: [`Jobs::open`] and [`routes`].

mod http;
mod persist;
mod time;
mod workers;
mod xml;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::dali::DaliParams;
use persist::{is_safe_name, load_records, new_job_id, Record};

pub use http::routes;

/// One result file of a finished job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The result's id in `…/results/{id}` (TAP 1.1 names the main one `result`).
    pub id: String,
    /// Its file name in the job's results folder.
    pub file: String,
    /// Its media type, sent as the download's `Content-Type`.
    pub mime: String,
}

/// What a job does.
pub trait Runner: Send + Sync + 'static {
    /// Runs a job: write the result files into `job.results_dir` and return them. `Err(message)`
    /// puts the job in phase ERROR with `message` as its error summary. The future may be
    /// dropped at any await point (ABORT, execution duration exceeded, shutdown).
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<Vec<JobResult>, String>>;
}

/// What a [`Runner`] gets.
#[derive(Debug, Clone)]
pub struct JobInput {
    /// The job's parameters (names upper-cased, in the order sent; `PHASE` and `RUNID` are
    /// UWS's own and left out). `parts` is empty: the parts are files in `uploads_dir`.
    pub params: DaliParams,
    /// The multipart parts sent at creation, each saved as a file named after its part name.
    pub uploads_dir: PathBuf,
    /// Where the result files go.
    pub results_dir: PathBuf,
    /// Where the runner may say how far it has come (shown in the job's `jobInfo`).
    pub progress: Progress,
}

/// How far a running job has come: units done out of a total (rows of a catalogue, say),
/// shown in the job document's `<uws:jobInfo>` (UWS 1.1 leaves its content to the service)
/// and kept with the job once it ends.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<[AtomicU64; 2]>);

impl Progress {
    /// Sets the total (0: no progress to show).
    pub fn set_total(&self, total: u64) {
        self.0[1].store(total, Ordering::Relaxed);
    }

    /// Counts `n` more units done.
    pub fn add_done(&self, n: u64) {
        self.0[0].fetch_add(n, Ordering::Relaxed);
    }

    /// (done, total), once a total is set.
    pub fn get(&self) -> Option<(u64, u64)> {
        let total = self.0[1].load(Ordering::Relaxed);
        (total > 0).then(|| (self.0[0].load(Ordering::Relaxed), total))
    }
}

/// How the store keeps and runs jobs.
#[derive(Debug, Clone)]
pub struct UwsConfig {
    /// The state folder holding one folder per job (a writable place, never a data volume).
    pub dir: PathBuf,
    /// How many jobs run at the same time (at least one).
    pub workers: usize,
    /// A new job's execution duration in seconds (0: unlimited).
    pub default_execution_duration: u64,
    /// The most a client may ask for, in seconds (0: no cap).
    pub max_execution_duration: u64,
    /// How long after its creation a job is destroyed, results and all.
    pub default_destruction: Duration,
}

/// A job's phase (UWS 1.1 §2.1.3); the store never sets HELD, SUSPENDED, UNKNOWN or ARCHIVED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Phase {
    Pending,
    Queued,
    Executing,
    Completed,
    Error,
    Aborted,
}

impl Phase {
    /// The UWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "PENDING",
            Phase::Queued => "QUEUED",
            Phase::Executing => "EXECUTING",
            Phase::Completed => "COMPLETED",
            Phase::Error => "ERROR",
            Phase::Aborted => "ABORTED",
        }
    }

    /// The phase called `name` (any case).
    pub fn parse(name: &str) -> Option<Phase> {
        [
            Phase::Pending,
            Phase::Queued,
            Phase::Executing,
            Phase::Completed,
            Phase::Error,
            Phase::Aborted,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether the job may still change on its own: the phases a blocking `WAIT` waits in
    /// (UWS 1.1 §2.2.1, blocking behaviour).
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Pending | Phase::Queued | Phase::Executing)
    }
}

/// A failed request on the job store, by whose fault (the HTTP layer maps it to a status).
#[derive(Debug)]
pub(crate) enum UwsError {
    /// No such job (or result): 404.
    NotFound(String),
    /// The client asked for something invalid: 400 with the message.
    BadRequest(String),
    /// The server failed (disk): 500, the details only in the log.
    Internal(String),
}

fn not_found(id: &str) -> UwsError {
    UwsError::NotFound(format!(
        "no job {id:?} here (never created, deleted or destroyed)"
    ))
}

/// A job in memory: its state, who waits on its phase, and its running task.
struct Entry {
    record: Record,
    phase: watch::Sender<Phase>,
    task: Option<AbortHandle>,
    /// The running job's progress, if its runner reports any.
    progress: Progress,
}

impl Entry {
    fn new(record: Record) -> Entry {
        Entry {
            phase: watch::Sender::new(record.phase),
            record,
            task: None,
            progress: Progress::default(),
        }
    }

    /// Moves to `phase` and wakes the `WAIT`ing requests.
    fn set_phase(&mut self, phase: Phase) {
        self.record.phase = phase;
        self.phase.send_replace(phase);
    }
}

/// The job store: every job of one UWS service, their files, and the workers that run them.
pub struct Jobs {
    config: UwsConfig,
    runner: Arc<dyn Runner>,
    table: Mutex<HashMap<String, Entry>>,
    /// Job ids in the order they were queued; the workers take them one by one.
    queue: mpsc::UnboundedSender<String>,
}

impl Jobs {
    /// Opens the store in `config.dir` (created if missing) and starts its workers, which
    /// must be inside a tokio runtime: persisted jobs are listed again; those past their
    /// destruction time are deleted; EXECUTING ones become QUEUED again; all QUEUED ones are
    /// queued in creation order. A damaged `job.json` is skipped with a warning.
    pub fn open(config: UwsConfig, runner: Arc<dyn Runner>) -> io::Result<Arc<Jobs>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            io::Error::other("the UWS job store must be opened inside a tokio runtime")
        })?;
        std::fs::create_dir_all(&config.dir)?;
        let records = load_records(&config.dir)?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let jobs = Arc::new(Jobs {
            config,
            runner,
            table: Mutex::new(HashMap::new()),
            queue,
        });
        let now = time::now_micros();
        let mut queued = Vec::new();
        {
            let mut table = jobs.lock();
            for mut record in records {
                let dir = jobs.job_dir(&record.job_id);
                if record.destruction <= now {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!("expired job {} not deleted: {e}", dir.display());
                    }
                    continue;
                }
                if record.phase == Phase::Executing {
                    // Cut off by the restart: its partial results go, and it runs again.
                    record.phase = Phase::Queued;
                    record.start_time = None;
                    record.progress = None;
                    let results = dir.join("results");
                    let _ = std::fs::remove_dir_all(&results);
                    std::fs::create_dir_all(&results)?;
                    jobs.persist(&record)?;
                }
                if record.phase == Phase::Queued {
                    queued.push((record.creation_time, record.job_id.clone()));
                }
                table.insert(record.job_id.clone(), Entry::new(record));
            }
            queued.sort();
            for (_, id) in queued {
                // The receiver lives until the workers below end, so this cannot fail now.
                let _ = jobs.queue.send(id);
            }
        }
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..jobs.config.workers.max(1) {
            runtime.spawn(workers::work(Arc::downgrade(&jobs), receiver.clone()));
        }
        runtime.spawn(workers::reap(Arc::downgrade(&jobs)));
        Ok(jobs)
    }

    /// A job's phase; `None` if there is no such job.
    pub fn phase(&self, id: &str) -> Option<Phase> {
        self.lock().get(id).map(|e| e.record.phase)
    }

    /// Deletes every job past its destruction time (the reaper does this every minute);
    /// how many went.
    pub async fn remove_expired(&self) -> usize {
        let now = time::now_micros();
        let expired: Vec<String> = self
            .lock()
            .values()
            .filter(|e| e.record.destruction <= now)
            .map(|e| e.record.job_id.clone())
            .collect();
        let mut removed = 0;
        for id in expired {
            if self.delete(&id).await.is_ok() {
                removed += 1;
            }
        }
        removed
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves every entry whole (each change is
        // one assignment), so the table stays usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.config.dir.join(id)
    }

    /// The execution duration a client may have: `asked` capped at the maximum (0, unlimited,
    /// becomes the maximum when there is one).
    fn capped_duration(&self, asked: u64) -> u64 {
        match self.config.max_execution_duration {
            0 => asked,
            max if asked == 0 => max,
            max => asked.min(max),
        }
    }

    /// Creates a job from a creation request's parameters (UWS 1.1 §2.2.3.1): its folder,
    /// its uploaded parts, its `job.json`; queued at once when `run`. Returns its id.
    async fn create(&self, params: DaliParams, run: bool) -> Result<String, UwsError> {
        for part in &params.parts {
            if !is_safe_name(&part.name) {
                return Err(UwsError::BadRequest(format!(
                    "multipart part name {:?} cannot name a file: use letters, digits, '.', '_' \
                     or '-' (no '/', '..' or control characters)",
                    part.name
                )));
            }
        }
        let (id, dir) = self.new_job_dir()?;
        match self.fill_job(&id, &dir, params, run).await {
            Ok(()) => Ok(id),
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                Err(UwsError::Internal(format!("job {id} not created: {e}")))
            }
        }
    }

    /// A fresh job id and its new, empty folder.
    fn new_job_dir(&self) -> Result<(String, PathBuf), UwsError> {
        let internal = |e: io::Error| {
            UwsError::Internal(format!(
                "no job folder in {}: {e}",
                self.config.dir.display()
            ))
        };
        loop {
            let id = new_job_id();
            let dir = self.job_dir(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(internal(e)),
            }
        }
    }

    async fn fill_job(
        &self,
        id: &str,
        dir: &Path,
        params: DaliParams,
        run: bool,
    ) -> io::Result<()> {
        let uploads = dir.join("uploads");
        tokio::fs::create_dir(&uploads).await?;
        tokio::fs::create_dir(dir.join("results")).await?;
        for part in &params.parts {
            tokio::fs::write(uploads.join(&part.name), &part.bytes).await?;
        }
        let now = time::now_micros();
        let destruction = u64::try_from(self.config.default_destruction.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_add(now);
        let record = Record {
            job_id: id.to_string(),
            run_id: params.get("RUNID").map(str::to_string),
            phase: if run { Phase::Queued } else { Phase::Pending },
            parameters: params
                .pairs
                .into_iter()
                .filter(|(name, _)| name != "PHASE" && name != "RUNID")
                .collect(),
            creation_time: now,
            start_time: None,
            end_time: None,
            execution_duration: self.capped_duration(self.config.default_execution_duration),
            destruction,
            error: None,
            results: Vec::new(),
            progress: None,
        };
        let mut table = self.lock();
        self.persist(&record)?;
        table.insert(id.to_string(), Entry::new(record));
        if run {
            self.enqueue(id);
        }
        Ok(())
    }

    fn enqueue(&self, id: &str) {
        if self.queue.send(id.to_string()).is_err() {
            // Only when every worker has ended, i.e. the runtime is shutting down: the job
            // stays QUEUED on disk and runs after the restart.
            tracing::warn!("job {id} queued while the workers are stopping");
        }
    }

    /// A copy of a job's state.
    fn record(&self, id: &str) -> Result<Record, UwsError> {
        self.lock()
            .get(id)
            .map(|e| {
                let mut record = e.record.clone();
                if let Some((done, total)) = e.progress.get() {
                    record.progress = Some([done, total]);
                }
                record
            })
            .ok_or_else(|| not_found(id))
    }

    /// A receiver of a job's phase changes, for `WAIT`.
    fn watch(&self, id: &str) -> Result<watch::Receiver<Phase>, UwsError> {
        self.lock()
            .get(id)
            .map(|e| e.phase.subscribe())
            .ok_or_else(|| not_found(id))
    }

    /// Applies `change` to a job under the lock and persists the result.
    fn update<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut Entry) -> Result<T, UwsError>,
    ) -> Result<T, UwsError> {
        let mut table = self.lock();
        let entry = table.get_mut(id).ok_or_else(|| not_found(id))?;
        let value = change(entry)?;
        self.persist_logged(&entry.record);
        Ok(value)
    }

    /// `PHASE=RUN` (UWS 1.1 §2.2.3.5): a PENDING job is queued; a QUEUED or EXECUTING one is
    /// left as it is (a repeated RUN is harmless); any other is refused.
    fn run(&self, id: &str) -> Result<(), UwsError> {
        let queue = self.update(id, |entry| match entry.record.phase {
            Phase::Pending => {
                entry.set_phase(Phase::Queued);
                Ok(true)
            }
            Phase::Queued | Phase::Executing => Ok(false),
            phase => Err(UwsError::BadRequest(format!(
                "job {id} is {}: only a PENDING job can be run",
                phase.as_str()
            ))),
        })?;
        if queue {
            self.enqueue(id);
        }
        Ok(())
    }

    /// `PHASE=ABORT` (UWS 1.1 §2.2.3.6): a PENDING, QUEUED or EXECUTING job is stopped and
    /// becomes ABORTED; aborting an ABORTED job again changes nothing; a finished one is
    /// refused.
    fn abort(&self, id: &str) -> Result<(), UwsError> {
        self.update(id, |entry| match entry.record.phase {
            Phase::Pending | Phase::Queued | Phase::Executing => {
                if let Some(task) = entry.task.take() {
                    task.abort();
                }
                entry.record.end_time = Some(time::now_micros());
                entry.set_phase(Phase::Aborted);
                Ok(())
            }
            Phase::Aborted => Ok(()),
            phase => Err(UwsError::BadRequest(format!(
                "job {id} is already {}: only a PENDING, QUEUED or EXECUTING job can be aborted",
                phase.as_str()
            ))),
        })
    }

    /// Sets the execution duration (UWS 1.1 §2.2.3.4) of a PENDING job, capped at the maximum.
    fn set_execution_duration(&self, id: &str, seconds: u64) -> Result<(), UwsError> {
        let seconds = self.capped_duration(seconds);
        self.update(id, |entry| {
            require_pending(entry, id, "its execution duration")?;
            entry.record.execution_duration = seconds;
            Ok(())
        })
    }

    /// Sets the destruction time (UWS 1.1 §2.2.3.3); one in the past gets the job deleted
    /// at the reaper's next round.
    fn set_destruction(&self, id: &str, micros: u64) -> Result<(), UwsError> {
        self.update(id, |entry| {
            entry.record.destruction = micros;
            Ok(())
        })
    }

    /// Replaces the values of the parameters given (UWS 1.1 §2.1.11) of a PENDING job.
    fn set_parameters(&self, id: &str, params: Vec<(String, String)>) -> Result<(), UwsError> {
        self.update(id, |entry| {
            require_pending(entry, id, "its parameters")?;
            let record = &mut entry.record;
            record
                .parameters
                .retain(|(name, _)| !params.iter().any(|(n, _)| n == name));
            record.parameters.extend(params);
            Ok(())
        })
    }

    /// Deletes a job: stops it if it runs, forgets it, removes its folder.
    async fn delete(&self, id: &str) -> Result<(), UwsError> {
        let entry = self.lock().remove(id).ok_or_else(|| not_found(id))?;
        if let Some(task) = entry.task {
            task.abort();
        }
        // Dropping the entry drops its phase sender, which ends every WAIT on it.
        tokio::fs::remove_dir_all(self.job_dir(id))
            .await
            .map_err(|e| {
                UwsError::Internal(format!(
                    "job {id} forgotten but its folder not removed: {e}"
                ))
            })
    }
}

impl Drop for Jobs {
    /// Stops the running jobs without recording anything, as a process exit would: they stay
    /// EXECUTING on disk and run again when the store is next opened.
    fn drop(&mut self) {
        let table = self.table.get_mut().unwrap_or_else(PoisonError::into_inner);
        for entry in table.values_mut() {
            if let Some(task) = entry.task.take() {
                task.abort();
            }
        }
    }
}

fn require_pending(entry: &Entry, id: &str, what: &str) -> Result<(), UwsError> {
    match entry.record.phase {
        Phase::Pending => Ok(()),
        phase => Err(UwsError::BadRequest(format!(
            "job {id} is {}: {what} can only change while it is PENDING",
            phase.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests;
