//! Running jobs: the workers that take QUEUED jobs in order, each run in its own task under
//! the job's execution duration (UWS 1.1 §2.1.4), and the reaper of jobs past their
//! destruction time (UWS 1.1 §2.1.5).

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use super::persist::{is_safe_name, StoredResult};
use super::{time, JobInput, JobResult, Jobs, Phase, Progress};
use crate::dali::DaliParams;

/// How often jobs past their destruction time (UWS 1.1 §2.1.5) are looked for.
const REAPER_PERIOD: Duration = Duration::from_secs(60);

/// The task running a job's runner.
pub(super) type RunTask = JoinHandle<Result<Vec<JobResult>, String>>;

/// How a job's run ended.
pub(super) enum Outcome {
    Finished(Result<Vec<JobResult>, String>),
    Panicked,
    TimedOut(u64),
    Cancelled,
}

impl Jobs {
    /// A worker takes a job: a QUEUED one becomes EXECUTING and its runner starts in its own
    /// task (so a panic stays in that task). `None` if the job went meanwhile (aborted,
    /// deleted).
    pub(super) fn begin(&self, id: &str) -> Option<(RunTask, u64)> {
        let mut table = self.lock();
        let entry = table.get_mut(id)?;
        if entry.record.phase != Phase::Queued {
            return None;
        }
        entry.record.start_time = Some(time::now_micros());
        entry.set_phase(Phase::Executing);
        self.persist_logged(&entry.record);
        let dir = self.job_dir(id);
        entry.progress = Progress::default();
        let input = JobInput {
            params: DaliParams::from_pairs(entry.record.parameters.clone()),
            uploads_dir: dir.join("uploads"),
            results_dir: dir.join("results"),
            progress: entry.progress.clone(),
        };
        let runner = self.runner.clone();
        let handle = tokio::spawn(async move { runner.run(input).await });
        entry.task = Some(handle.abort_handle());
        Some((handle, entry.record.execution_duration))
    }

    /// Records how a run ended, unless the job is no longer EXECUTING (aborted or deleted
    /// meanwhile: that decision stands).
    pub(super) fn finish(&self, id: &str, outcome: Outcome) {
        let mut table = self.lock();
        let Some(entry) = table.get_mut(id) else {
            return;
        };
        if entry.record.phase != Phase::Executing {
            return;
        }
        entry.task = None;
        let results_dir = self.job_dir(id).join("results");
        let result = match outcome {
            Outcome::Finished(Ok(results)) => check_results(&results_dir, results),
            Outcome::Finished(Err(message)) if message.trim().is_empty() => {
                Err("the job failed without saying why".to_string())
            }
            Outcome::Finished(Err(message)) => Err(message),
            Outcome::Panicked => {
                tracing::error!("job {id}: the runner panicked");
                Err("the job failed on an internal error".to_string())
            }
            Outcome::TimedOut(seconds) => Err(format!(
                "the job exceeded its execution duration of {seconds} s and was stopped"
            )),
            Outcome::Cancelled => Err("the job was cancelled".to_string()),
        };
        entry.record.end_time = Some(time::now_micros());
        entry.record.progress = entry.progress.get().map(|(done, total)| [done, total]);
        match result {
            Ok(results) => {
                entry.record.results = results;
                entry.set_phase(Phase::Completed);
            }
            Err(message) => {
                entry.record.error = Some(message);
                entry.set_phase(Phase::Error);
            }
        }
        self.persist_logged(&entry.record);
    }
}

/// One worker: takes queued job ids in order and runs each under its execution duration.
/// Holds the store weakly, so that dropping the store ends the workers.
pub(super) async fn work(
    store: Weak<Jobs>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
) {
    loop {
        let next = queue.lock().await.recv().await;
        let Some(id) = next else {
            return;
        };
        let Some(jobs) = store.upgrade() else {
            return;
        };
        let Some((handle, seconds)) = jobs.begin(&id) else {
            continue;
        };
        drop(jobs);
        let outcome = supervise(handle, seconds).await;
        let Some(jobs) = store.upgrade() else {
            return;
        };
        jobs.finish(&id, outcome);
    }
}

/// Waits for a runner task, stopping it after `seconds` (0: no limit).
async fn supervise(mut handle: RunTask, seconds: u64) -> Outcome {
    let joined = if seconds == 0 {
        (&mut handle).await
    } else {
        match tokio::time::timeout(Duration::from_secs(seconds), &mut handle).await {
            Ok(joined) => joined,
            Err(_) => {
                handle.abort();
                return Outcome::TimedOut(seconds);
            }
        }
    };
    match joined {
        Ok(result) => Outcome::Finished(result),
        Err(e) => outcome_of_join_error(&e),
    }
}

fn outcome_of_join_error(e: &JoinError) -> Outcome {
    if e.is_panic() {
        Outcome::Panicked
    } else {
        Outcome::Cancelled
    }
}

/// Deletes expired jobs every [`REAPER_PERIOD`] while the store lives.
pub(super) async fn reap(store: Weak<Jobs>) {
    let mut ticks = tokio::time::interval(REAPER_PERIOD);
    loop {
        ticks.tick().await;
        let Some(jobs) = store.upgrade() else {
            return;
        };
        let removed = jobs.remove_expired().await;
        if removed > 0 {
            tracing::info!("{removed} job(s) past their destruction time deleted");
        }
    }
}

/// The results a runner returned, checked: safe, unique ids and file names, files present.
fn check_results(dir: &Path, results: Vec<JobResult>) -> Result<Vec<StoredResult>, String> {
    let mut stored: Vec<StoredResult> = Vec::with_capacity(results.len());
    for result in results {
        if !is_safe_name(&result.id) || !is_safe_name(&result.file) {
            tracing::error!("runner returned an unsafe result name: {result:?}");
            return Err(format!(
                "the job's result {:?} has an invalid name",
                result.id
            ));
        }
        if stored.iter().any(|s| s.result.id == result.id) {
            return Err(format!(
                "the job returned two results called {:?}",
                result.id
            ));
        }
        let size = match std::fs::metadata(dir.join(&result.file)) {
            Ok(m) if m.is_file() => m.len(),
            _ => {
                return Err(format!(
                    "the job's result file {:?} was not written",
                    result.file
                ))
            }
        };
        stored.push(StoredResult { result, size });
    }
    Ok(stored)
}
