//! Cross-match joins by a declination-zone sweep instead of DataFusion's nested loop.
//!
//! [`SpatialJoinRule`] finds a `NestedLoopJoinExec` whose filter holds a cross-match term,
//! `adql_distance(a.ra, a.dec, b.ra, b.dec) < r` (also `<=`, or mirrored) or
//! `adql_contains_point_circle(a.ra, a.dec, b.ra, b.dec, r) = 1`, with `r` a constant, and
//! replaces it with a [`SpatialJoinExec`]. That operator collects the build (left) side once,
//! sorts it by declination zone and right ascension ([`Zones`]), and streams the probe (right)
//! side: each probe row looks up the rows of the zones its circle touches, within the
//! circle's right-ascension half-width, across RA = 0/360 and over the poles. The candidate
//! pairs are a superset of the answer; the join's whole filter (the cross-match term and any
//! other condition) is then evaluated on them exactly as the nested loop would, so both give
//! the same pairs. Inner, left, right and full outer joins are supported; others keep the
//! nested loop. Output comes in batches of about [`BATCH_PAIRS`] rows.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    new_null_array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, filter, take};
use datafusion::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinSide, JoinType, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal, TryCastExpr};
use datafusion::physical_expr::{split_conjunction, PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::utils::{build_join_schema, ColumnIndex, JoinFilter};
use datafusion::physical_plan::joins::{NestedLoopJoinExec, NestedLoopJoinExecBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    apply_expression_roots, collect, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan,
    ExecutionPlanProperties, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use rayon::prelude::*;
use tokio::sync::OnceCell;

use crate::fits_table::{FitsScanExec, LateRows};
use crate::geometry;

/// Candidate pairs gathered before the filter runs on them, and so about the rows per output
/// batch: bounds the memory of a dense match.
pub const BATCH_PAIRS: usize = 8192;

/// At most this many declination zones (zones are never lower than the radius).
const MAX_ZONES: f64 = 1_048_576.0;

/// The physical optimizer rule that puts [`SpatialJoinExec`] in place of cross-match nested
/// loops. It runs after DataFusion's own rules, so inputs are already distributed as the
/// nested loop wants them (build side in one partition).
#[derive(Debug, Default)]
pub struct SpatialJoinRule;

impl PhysicalOptimizerRule for SpatialJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| {
            let Some(join) = plan.downcast_ref::<NestedLoopJoinExec>() else {
                return Ok(Transformed::no(plan));
            };
            match SpatialJoinExec::try_from_nested_loop(join)? {
                Some(spatial) => Ok(Transformed::yes(Arc::new(spatial) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(plan)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "spatial_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The cross-match term of a join filter: the build and probe sides' (ra, dec) column indices
/// in their own inputs, and the radius in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CrossMatch {
    build: (usize, usize),
    probe: (usize, usize),
    radius: f64,
}

impl CrossMatch {
    /// The cross-match term among the conjuncts of `filter`, if there is one.
    fn find(filter: &JoinFilter) -> Option<CrossMatch> {
        split_conjunction(filter.expression())
            .into_iter()
            .find_map(|term| Self::from_term(term, filter.column_indices()))
    }

    fn from_term(term: &Arc<dyn PhysicalExpr>, columns: &[ColumnIndex]) -> Option<CrossMatch> {
        let binary = term.downcast_ref::<BinaryExpr>()?;
        let (l, r) = (binary.left(), binary.right());
        let (call, radius) = match binary.op() {
            Operator::Lt | Operator::LtEq => (l, Some(number(r)?)),
            Operator::Gt | Operator::GtEq => (r, Some(number(l)?)),
            Operator::Eq if number(l) == Some(1.0) => (r, None),
            Operator::Eq if number(r) == Some(1.0) => (l, None),
            _ => return None,
        };
        let call = strip_casts(call).downcast_ref::<ScalarFunctionExpr>()?;
        let args = call.args();
        let radius = match (call.name(), args.len(), radius) {
            (geometry::DISTANCE, 4, Some(radius)) => radius,
            (geometry::CONTAINS_POINT_CIRCLE, 5, None) => number(&args[4])?,
            _ => return None,
        };
        if !radius.is_finite() {
            return None;
        }
        let column = |e: &Arc<dyn PhysicalExpr>| {
            let c = strip_casts(e).downcast_ref::<Column>()?;
            columns.get(c.index()).cloned()
        };
        let pair = |a: usize| -> Option<(JoinSide, (usize, usize))> {
            let (ra, dec) = (column(&args[a])?, column(&args[a + 1])?);
            (ra.side == dec.side).then_some((ra.side, (ra.index, dec.index)))
        };
        match (pair(0)?, pair(2)?) {
            ((JoinSide::Left, build), (JoinSide::Right, probe))
            | ((JoinSide::Right, probe), (JoinSide::Left, build)) => Some(CrossMatch {
                build,
                probe,
                radius,
            }),
            _ => None,
        }
    }
}

fn strip_casts(e: &Arc<dyn PhysicalExpr>) -> &Arc<dyn PhysicalExpr> {
    if let Some(c) = e.downcast_ref::<CastExpr>() {
        strip_casts(c.expr())
    } else if let Some(c) = e.downcast_ref::<TryCastExpr>() {
        strip_casts(c.expr())
    } else {
        e
    }
}

/// A numeric constant as f64.
fn number(e: &Arc<dyn PhysicalExpr>) -> Option<f64> {
    let literal = strip_casts(e).downcast_ref::<Literal>()?;
    match literal.value().cast_to(&DataType::Float64).ok()? {
        ScalarValue::Float64(Some(x)) => Some(x),
        _ => None,
    }
}

/// A cross-match join run as a zone sweep (see the module documentation).
#[derive(Debug)]
pub struct SpatialJoinExec {
    build: Arc<dyn ExecutionPlan>,
    probe: Arc<dyn ExecutionPlan>,
    filter: JoinFilter,
    join_type: JoinType,
    projection: Option<Vec<usize>>,
    cross_match: CrossMatch,
    /// Side and column of each output column.
    output: Vec<ColumnIndex>,
    properties: Arc<PlanProperties>,
    /// The build side, collected and sorted by the first partition that needs it.
    shared: Arc<OnceCell<Arc<BuildSide>>>,
    /// When the probe side scans an indexed FITS table and its unmatched rows are dropped
    /// (inner and left joins): the scan's rows, chosen near the build side once it is known.
    late_rows: Option<Arc<LateRows>>,
}

/// The probe side reading only the rows near the build side, where it is a scan of a whole
/// FITS table (as planned, or wrapped for cooperative scheduling).
fn late_scan(
    probe: &Arc<dyn ExecutionPlan>,
    (ra, dec): (usize, usize),
) -> Option<(Arc<dyn ExecutionPlan>, Arc<LateRows>)> {
    if let Some(scan) = probe.downcast_ref::<FitsScanExec>() {
        let (scan, late) = scan.with_late_rows(ra, dec)?;
        return Some((scan, late));
    }
    let coop = probe.downcast_ref::<CooperativeExec>()?;
    let (scan, late) = late_scan(coop.input(), (ra, dec))?;
    Some((Arc::new(CooperativeExec::new(scan)), late))
}

impl SpatialJoinExec {
    /// The spatial join that does what `join` does, when its filter has a cross-match term
    /// and its join type keeps or pads rows (inner and outer joins).
    pub fn try_from_nested_loop(join: &NestedLoopJoinExec) -> Result<Option<SpatialJoinExec>> {
        let Some(filter) = join.filter() else {
            return Ok(None);
        };
        let Some(cross_match) = CrossMatch::find(filter) else {
            return Ok(None);
        };
        if !matches!(
            join.join_type(),
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
        ) {
            return Ok(None);
        }
        let projection = join.projection().as_ref().map(|p| p.to_vec());
        Self::try_new(
            join.left().clone(),
            join.right().clone(),
            filter.clone(),
            *join.join_type(),
            projection,
            cross_match,
        )
        .map(Some)
    }

    fn try_new(
        build: Arc<dyn ExecutionPlan>,
        probe: Arc<dyn ExecutionPlan>,
        filter: JoinFilter,
        join_type: JoinType,
        projection: Option<Vec<usize>>,
        cross_match: CrossMatch,
    ) -> Result<SpatialJoinExec> {
        // The nested loop over the same inputs describes the output exactly (schema with outer
        // joins' nullability, partitioning, equivalences): take its properties.
        let nested = NestedLoopJoinExecBuilder::new(build.clone(), probe.clone(), join_type)
            .with_filter(Some(filter.clone()))
            .with_projection(projection.clone())
            .build()?;
        // Inner and left joins drop probe rows without a match: a FITS probe side then reads
        // only the rows its index places near the build side.
        let (probe, late_rows) = match join_type {
            JoinType::Inner | JoinType::Left => match late_scan(&probe, cross_match.probe) {
                Some((scan, late)) => (scan, Some(late)),
                None => (probe, None),
            },
            _ => (probe, None),
        };
        let (_, columns) = build_join_schema(&build.schema(), &probe.schema(), &join_type);
        let output = match &projection {
            Some(p) => p.iter().map(|&i| columns[i].clone()).collect(),
            None => columns,
        };
        Ok(SpatialJoinExec {
            build,
            probe,
            filter,
            join_type,
            projection,
            cross_match,
            output,
            properties: nested.properties().clone(),
            shared: Arc::new(OnceCell::new()),
            late_rows,
        })
    }

    /// Collects and indexes the build side (once for all partitions).
    async fn build_side(
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
        cross_match: CrossMatch,
        probe_partitions: usize,
        keeps_build_rows: bool,
        late_rows: Option<Arc<LateRows>>,
    ) -> Result<Arc<BuildSide>> {
        let schema = plan.schema();
        let batches = collect(plan, context).await?;
        let batch = concat_batches(&schema, &batches)?;
        drop(batches);
        let (ra, dec) = (
            degrees(batch.column(cross_match.build.0))?,
            degrees(batch.column(cross_match.build.1))?,
        );
        let zones = Zones::build(&ra, &dec, cross_match.radius);
        if let Some(late) = late_rows {
            late.choose(&ra, &dec, zones.radius)?;
        }
        Ok(Arc::new(BuildSide {
            matched: Mutex::new(vec![
                false;
                if keeps_build_rows {
                    batch.num_rows()
                } else {
                    0
                }
            ]),
            batch,
            zones,
            probes_running: AtomicUsize::new(probe_partitions),
        }))
    }
}

/// A column's values as f64 degrees (nulls as NaN, which match nothing).
fn degrees(column: &ArrayRef) -> Result<Vec<f64>> {
    let column = cast(column, &DataType::Float64)?;
    let values = column.as_primitive::<Float64Type>();
    Ok(values
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect::<Vec<f64>>())
}

impl DisplayAs for SpatialJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SpatialJoinExec: join_type={:?}, radius={}°, filter={}",
            self.join_type,
            self.cross_match.radius,
            self.filter.expression()
        )
    }
}

impl ExecutionPlan for SpatialJoinExec {
    fn name(&self) -> &str {
        "SpatialJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![
            Distribution::SinglePartition,
            Distribution::UnspecifiedDistribution,
        ]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.build, &self.probe]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(std::iter::once(self.filter.expression()), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [build, probe] = <[Arc<dyn ExecutionPlan>; 2]>::try_from(children).map_err(|c| {
            DataFusionError::Internal(format!("SpatialJoinExec takes 2 children, got {}", c.len()))
        })?;
        Ok(Arc::new(SpatialJoinExec::try_new(
            build,
            probe,
            self.filter.clone(),
            self.join_type,
            self.projection.clone(),
            self.cross_match,
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let probe = self.probe.execute(partition, context.clone())?;
        let job = Arc::new(Job {
            filter: self.filter.clone(),
            join_type: self.join_type,
            cross_match: self.cross_match,
            output: self.output.clone(),
            schema: self.schema(),
        });
        let (shared, build_plan) = (self.shared.clone(), self.build.clone());
        let late_rows = self.late_rows.clone();
        let probe_partitions = self.probe.output_partitioning().partition_count();
        let keeps_build_rows = matches!(self.join_type, JoinType::Left | JoinType::Full);
        let start = async move {
            let build = shared
                .get_or_try_init(|| {
                    Self::build_side(
                        build_plan,
                        context,
                        job.cross_match,
                        probe_partitions,
                        keeps_build_rows,
                        late_rows,
                    )
                })
                .await?
                .clone();
            Ok::<_, DataFusionError>(Step::Probe(Probing {
                job,
                build,
                probe,
                current: None,
            }))
        };
        let steps = futures::stream::once(start).flat_map(|step| {
            futures::stream::unfold(Some(step), |state| async move {
                let step = match state? {
                    Ok(step) => step,
                    Err(e) => return Some((Err(e), None)),
                };
                match step.next().await {
                    Ok(Some((batch, step))) => Some((Ok(batch), Some(Ok(step)))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            steps,
        )))
    }
}

/// What every partition's stream needs to know of the join.
struct Job {
    filter: JoinFilter,
    join_type: JoinType,
    cross_match: CrossMatch,
    output: Vec<ColumnIndex>,
    schema: SchemaRef,
}

/// The build side: its rows, their zones, and (for left and full joins) which rows matched.
#[derive(Debug)]
struct BuildSide {
    batch: RecordBatch,
    zones: Zones,
    matched: Mutex<Vec<bool>>,
    /// Probe partitions still running; the last one to finish emits unmatched build rows.
    probes_running: AtomicUsize,
}

/// One state of a partition's output stream.
enum Step {
    Probe(Probing),
    /// Build rows without a match (left and full joins), emitted by the last partition.
    Unmatched {
        job: Arc<Job>,
        build: Arc<BuildSide>,
        rows: Vec<u32>,
    },
}

struct Probing {
    job: Arc<Job>,
    build: Arc<BuildSide>,
    probe: SendableRecordBatchStream,
    current: Option<Box<ProbeBatch>>,
}

/// A probe batch being joined, and how far.
struct ProbeBatch {
    batch: RecordBatch,
    ra: Vec<f64>,
    dec: Vec<f64>,
    /// Row numbers in declination-zone order, so consecutive lookups touch the same zones.
    order: Vec<u32>,
    /// How far into `order` the candidate search has gone.
    next: usize,
    /// Probe rows looked up per parallel slice, adapted to keep slices near
    /// [`BATCH_PAIRS`] candidates.
    slice: usize,
    /// Candidate pairs found and not yet filtered, and how far they have been.
    pending: (Vec<u32>, Vec<u32>, usize),
    /// Which probe rows matched (right and full joins pad the others at the end).
    matched: Vec<bool>,
    padded: bool,
}

impl ProbeBatch {
    fn new(batch: RecordBatch, (ra, dec): (usize, usize), zones: &Zones) -> Result<ProbeBatch> {
        let (ra, dec) = (degrees(batch.column(ra))?, degrees(batch.column(dec))?);
        let mut keyed: Vec<(u32, u32)> = (0..batch.num_rows())
            .filter_map(|row| Some((zones.zone_key(dec[row]), u32::try_from(row).ok()?)))
            .collect();
        keyed.sort_unstable();
        Ok(ProbeBatch {
            matched: vec![false; batch.num_rows()],
            batch,
            ra,
            dec,
            order: keyed.into_iter().map(|(_, row)| row).collect(),
            next: 0,
            slice: 4096,
            pending: (Vec::new(), Vec::new(), 0),
            padded: false,
        })
    }

    /// Looks up the candidates of the next slice of probe rows, in parallel.
    fn search(&mut self, zones: &Zones) {
        let end = (self.next + self.slice).min(self.order.len());
        let (ra, dec) = (&self.ra, &self.dec);
        let parts: Vec<(Vec<u32>, Vec<u32>)> = self.order[self.next..end]
            .par_chunks(1024)
            .map(|rows| {
                let (mut b, mut p, mut found) = (Vec::new(), Vec::new(), Vec::new());
                for &row in rows {
                    found.clear();
                    zones.candidates(ra[row as usize], dec[row as usize], &mut found);
                    b.extend_from_slice(&found);
                    p.extend(std::iter::repeat_n(row, found.len()));
                }
                (b, p)
            })
            .collect();
        self.next = end;
        let total: usize = parts.iter().map(|p| p.0.len()).sum();
        let (mut b, mut p) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for (pb, pp) in parts {
            b.extend(pb);
            p.extend(pp);
        }
        self.pending = (b, p, 0);
        // Aim the next slice at a few batches of candidates: dense matches stay bounded in
        // memory, sparse ones keep the slices long enough to share out.
        self.slice = if total > 4 * BATCH_PAIRS {
            (self.slice / 2).max(64)
        } else if total < BATCH_PAIRS {
            (self.slice * 2).min(1 << 16)
        } else {
            self.slice
        };
    }
}

impl Step {
    /// The next non-empty output batch and the state after it; `None` at the end.
    async fn next(self) -> Result<Option<(RecordBatch, Step)>> {
        let mut probing = match self {
            Step::Probe(p) => p,
            Step::Unmatched {
                job,
                build,
                mut rows,
            } => {
                if rows.is_empty() {
                    return Ok(None);
                }
                let tail = rows.split_off(rows.len().min(BATCH_PAIRS));
                let batch = job.unmatched_build_rows(&build, &rows)?;
                let next = Step::Unmatched {
                    job,
                    build,
                    rows: tail,
                };
                return Ok(Some((batch, next)));
            }
        };
        loop {
            if let Some(current) = &mut probing.current {
                if let Some(batch) = probing.job.join_some(&probing.build, current)? {
                    return Ok(Some((batch, Step::Probe(probing))));
                }
                probing.current = None;
            }
            match probing.probe.next().await {
                Some(batch) => {
                    let batch = batch?;
                    let columns = probing.job.cross_match.probe;
                    probing.current = Some(Box::new(ProbeBatch::new(
                        batch,
                        columns,
                        &probing.build.zones,
                    )?));
                }
                None => {
                    let build = probing.build;
                    let last = build.probes_running.fetch_sub(1, Ordering::AcqRel) == 1;
                    let keeps = matches!(probing.job.join_type, JoinType::Left | JoinType::Full);
                    if !(last && keeps) {
                        return Ok(None);
                    }
                    let rows: Vec<u32> = lock(&build.matched)?
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| !**m)
                        .filter_map(|(row, _)| u32::try_from(row).ok())
                        .collect();
                    let step = Step::Unmatched {
                        job: probing.job,
                        build,
                        rows,
                    };
                    return Box::pin(step.next()).await;
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| DataFusionError::Internal("spatial join state poisoned".into()))
}

impl Job {
    /// The next output batch of `probe`'s rows (about [`BATCH_PAIRS`] candidate pairs
    /// filtered at a time), or `None` when the batch is done.
    fn join_some(&self, build: &BuildSide, probe: &mut ProbeBatch) -> Result<Option<RecordBatch>> {
        loop {
            let (b, p, done) = &mut probe.pending;
            if *done < b.len() {
                let end = (*done + BATCH_PAIRS).min(b.len());
                let chunk = (b[*done..end].to_vec(), p[*done..end].to_vec());
                *done = end;
                let (build_rows, probe_rows) =
                    self.matching(build, &probe.batch, chunk.0, chunk.1)?;
                if matches!(self.join_type, JoinType::Left | JoinType::Full) {
                    let mut matched = lock(&build.matched)?;
                    for &r in build_rows.values() {
                        matched[r as usize] = true;
                    }
                }
                for &r in probe_rows.values() {
                    probe.matched[r as usize] = true;
                }
                if !probe_rows.is_empty() {
                    return self
                        .output_batch(build, &probe.batch, &build_rows, &probe_rows)
                        .map(Some);
                }
            } else if probe.next < probe.order.len() {
                probe.search(&build.zones);
            } else if matches!(self.join_type, JoinType::Right | JoinType::Full) && !probe.padded {
                // Probe rows without a match, with nulls for the build side's columns.
                probe.padded = true;
                let rows: Vec<u32> = (0..probe.batch.num_rows())
                    .filter(|&r| !probe.matched[r])
                    .filter_map(|r| u32::try_from(r).ok())
                    .collect();
                if !rows.is_empty() {
                    let nulls = UInt32Array::from(vec![None::<u32>; rows.len()]);
                    let rows = UInt32Array::from(rows);
                    return self
                        .output_batch(build, &probe.batch, &nulls, &rows)
                        .map(Some);
                }
            } else {
                return Ok(None);
            }
        }
    }

    /// The candidate pairs that pass the join's filter.
    fn matching(
        &self,
        build: &BuildSide,
        probe: &RecordBatch,
        build_rows: Vec<u32>,
        probe_rows: Vec<u32>,
    ) -> Result<(UInt32Array, UInt32Array)> {
        let (build_rows, probe_rows) =
            (UInt32Array::from(build_rows), UInt32Array::from(probe_rows));
        if build_rows.is_empty() {
            return Ok((build_rows, probe_rows));
        }
        let columns = self
            .filter
            .column_indices()
            .iter()
            .map(|c| match c.side {
                JoinSide::Left => take(build.batch.column(c.index), &build_rows, None),
                _ => take(probe.column(c.index), &probe_rows, None),
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        let pairs = RecordBatch::try_new(self.filter.schema().clone(), columns)?;
        let mask = self
            .filter
            .expression()
            .evaluate(&pairs)?
            .into_array(pairs.num_rows())?;
        let mask: &BooleanArray = mask
            .as_boolean_opt()
            .ok_or_else(|| DataFusionError::Internal("the join filter is not a boolean".into()))?;
        let keep = |a: &UInt32Array| -> Result<UInt32Array> {
            Ok(filter(a, mask)?.as_primitive().clone())
        };
        Ok((keep(&build_rows)?, keep(&probe_rows)?))
    }

    fn output_batch(
        &self,
        build: &BuildSide,
        probe: &RecordBatch,
        build_rows: &UInt32Array,
        probe_rows: &UInt32Array,
    ) -> Result<RecordBatch> {
        let columns = self
            .output
            .iter()
            .map(|c| match c.side {
                JoinSide::Left => take(build.batch.column(c.index), build_rows, None),
                _ => take(probe.column(c.index), probe_rows, None),
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        self.batch(columns, probe_rows.len())
    }

    /// Build rows with nulls for the probe side's columns.
    fn unmatched_build_rows(&self, build: &BuildSide, rows: &[u32]) -> Result<RecordBatch> {
        let rows = UInt32Array::from(rows.to_vec());
        let columns = self
            .output
            .iter()
            .zip(self.schema.fields())
            .map(|(c, field)| match c.side {
                JoinSide::Left => Ok(take(build.batch.column(c.index), &rows, None)?),
                _ => Ok(new_null_array(field.data_type(), rows.len())),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        self.batch(columns, rows.len())
    }

    /// An output batch; `rows` counts rows even when no column is asked for (`COUNT(*)`).
    fn batch(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

/// Build rows sorted by declination zone, then right ascension in [0, 360).
///
/// Zones are at least the radius high, so a circle's rows lie in the zones from `dec - r` to
/// `dec + r`; within a zone they lie within the circle's right-ascension half-width
/// `asin(sin r / cos dec)` of its centre, or anywhere when the circle holds a pole.
#[derive(Debug)]
pub struct Zones {
    /// The radius searched, widened by a margin far above rounding and far below any radius
    /// that matters, and its sine.
    radius: f64,
    sin_radius: f64,
    height: f64,
    /// `starts[z]..starts[z + 1]` are zone `z`'s entries.
    starts: Vec<u32>,
    ra: Vec<f64>,
    rows: Vec<u32>,
    /// Finite positions off the sphere's range (|dec| > 90): tried against every probe row, so
    /// the filter decides on them as the nested loop would.
    anywhere: Vec<u32>,
}

impl Zones {
    pub fn build(ra: &[f64], dec: &[f64], radius: f64) -> Zones {
        let height = radius.max(180.0 / MAX_ZONES);
        let count = (180.0 / height).ceil().max(1.0) as usize;
        let mut anywhere = Vec::new();
        let mut entries: Vec<(u32, f64, u32)> = Vec::with_capacity(ra.len());
        for (row, (&a, &d)) in ra.iter().zip(dec).enumerate() {
            let Ok(row) = u32::try_from(row) else { break };
            if !(a.is_finite() && d.is_finite()) {
                continue; // NaN distances match nothing
            }
            if d.abs() > 90.0 {
                anywhere.push(row);
                continue;
            }
            entries.push((zone(d, height, count) as u32, a.rem_euclid(360.0), row));
        }
        entries.par_sort_unstable_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        let mut starts = vec![0u32; count + 1];
        for e in &entries {
            starts[e.0 as usize + 1] += 1;
        }
        for z in 0..count {
            starts[z + 1] += starts[z];
        }
        let r = radius.max(0.0) * (1.0 + 1e-9) + 1e-9;
        Zones {
            radius: if radius < 0.0 { -1.0 } else { r },
            sin_radius: r.to_radians().sin(),
            height,
            starts,
            ra: entries.iter().map(|e| e.1).collect(),
            rows: entries.iter().map(|e| e.2).collect(),
            anywhere,
        }
    }

    /// Appends to `out` the build rows that may lie within the radius of (ra, dec): a
    /// superset of those that do.
    pub fn candidates(&self, ra: f64, dec: f64, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.anywhere);
        if !(ra.is_finite() && dec.is_finite()) || self.radius < 0.0 {
            return;
        }
        let count = self.starts.len() - 1;
        if dec.abs() > 90.0 {
            out.extend_from_slice(&self.rows); // off the sphere: let the filter decide
            return;
        }
        let r = self.radius;
        // The circle's RA half-width is asin(sin r / cos dec); s/√(1−s²) = tan(asin s) bounds
        // it from above without an asin.
        let s = self.sin_radius / dec.to_radians().cos();
        let half_width = if dec.abs() + r >= 90.0 || s >= 0.999 {
            180.0
        } else {
            (s / (1.0 - s * s).sqrt()).to_degrees() * (1.0 + 1e-9) + 1e-9
        };
        let ra = ra.rem_euclid(360.0);
        let (lo, hi) = (ra - half_width, ra + half_width);
        let spans: [(f64, f64); 2] = if half_width >= 180.0 {
            [(0.0, 360.0), (1.0, 0.0)]
        } else if lo < 0.0 {
            [(0.0, hi), (lo + 360.0, 360.0)]
        } else if hi > 360.0 {
            [(lo, 360.0), (0.0, hi - 360.0)]
        } else {
            [(lo, hi), (1.0, 0.0)]
        };
        let (z0, z1) = (
            zone(dec - r, self.height, count),
            zone(dec + r, self.height, count),
        );
        for z in z0..=z1 {
            let (start, end) = (self.starts[z] as usize, self.starts[z + 1] as usize);
            let ras = &self.ra[start..end];
            for &(a, b) in spans.iter().filter(|(a, b)| a <= b) {
                let i = ras.partition_point(|&x| x < a);
                let j = ras.partition_point(|&x| x <= b);
                if i < j {
                    out.extend_from_slice(&self.rows[start + i..start + j]);
                }
            }
        }
    }
}

impl Zones {
    /// A sort key that puts probe rows of one zone together (off-sphere and NaN rows last).
    fn zone_key(&self, dec: f64) -> u32 {
        if dec.is_finite() && dec.abs() <= 90.0 {
            zone(dec, self.height, self.starts.len() - 1) as u32
        } else {
            u32::MAX
        }
    }
}

fn zone(dec: f64, height: f64, count: usize) -> usize {
    (((dec + 90.0) / height).floor().max(0.0) as usize).min(count - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::angular_distance;

    #[test]
    fn zone_candidates_hold_every_match_at_poles_and_wrap() {
        let mut state = 99u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 4000;
        let mut ra: Vec<f64> = Vec::new();
        let mut dec: Vec<f64> = Vec::new();
        for i in 0..n {
            let (a, d) = match i % 4 {
                0 => (next() * 360.0, (2.0 * next() - 1.0).asin().to_degrees()),
                1 => (next() * 360.0, 89.0 + next()),
                2 => (next() * 360.0, -90.0 + next()),
                _ => ((next() - 0.5) * 2.0, (next() - 0.5) * 2.0), // RA below 0 too
            };
            ra.push(a);
            dec.push(d);
        }
        for radius in [0.0, 0.01, 0.3, 5.0, 100.0] {
            let zones = Zones::build(&ra, &dec, radius);
            let mut out = Vec::new();
            for p in (0..n).step_by(7) {
                out.clear();
                zones.candidates(ra[p], dec[p], &mut out);
                out.sort_unstable();
                for b in 0..n {
                    if angular_distance(ra[b], dec[b], ra[p], dec[p]) <= radius {
                        assert!(
                            out.binary_search(&(b as u32)).is_ok(),
                            "r={radius}: probe {p} lost build row {b}"
                        );
                    }
                }
                if radius <= 0.3 && dec[p].abs() < 80.0 {
                    assert!(out.len() < n / 20, "r={radius}: {} candidates", out.len());
                }
            }
        }
    }
}
