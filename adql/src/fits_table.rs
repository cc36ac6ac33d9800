//! A FITS binary table as a DataFusion table, read in place through `insitu-engine`, with
//! cone searches pushed down to a HEALPix index built on first use.
//!
//! A scan is a few partitions of row ranges (or of the index's candidate rows), each read
//! batch by batch as DataFusion pulls it: memory stays at a few batches, whatever the table.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ScalarValue;
use datafusion::common::Statistics;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use insitu_engine::fits::FitsFile;

use crate::geometry;
use crate::spatial_index::{HealpixIndex, IndexCache};

/// Rows per record batch handed to DataFusion.
const BATCH_ROWS: usize = 64 * 1024;

/// The first binary table of a FITS file. Only the columns a query asks for are converted
/// (projection pushdown); the rest of each row is never touched.
pub struct FitsTable {
    file: Arc<FitsFile>,
    hdu: usize,
    /// FITS column index of each Arrow field.
    columns: Vec<usize>,
    schema: SchemaRef,
    /// The table's HEALPix indexes, shared with its scans (a cross-match picks rows by them).
    indexer: Arc<Indexer>,
}

/// Builds and keeps a table's HEALPix indexes.
struct Indexer {
    file: Arc<FitsFile>,
    hdu: usize,
    columns: Vec<usize>,
    schema: SchemaRef,
    /// HEALPix indexes by (ra, dec) Arrow field indices, built on first use.
    indexes: Mutex<HashMap<(usize, usize), Arc<HealpixIndex>>>,
    /// Where indexes are kept between sessions, if anywhere.
    cache: Option<IndexCache>,
}

impl std::fmt::Debug for FitsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FitsTable({}[{}])", self.file.path().display(), self.hdu)
    }
}

impl FitsTable {
    /// Opens the first binary table of `path`; indexes go to `cache` when given.
    pub fn open(path: &Path, cache: Option<IndexCache>) -> insitu_engine::Result<FitsTable> {
        let file = FitsFile::open(path)?;
        let hdu = (0..file.hdu_count())
            .find(|&i| {
                file.header(i)
                    .is_ok_and(|h| h.string("XTENSION") == Some("BINTABLE"))
            })
            .unwrap_or(0);
        let (columns, schema) = {
            let table = file.table(Some(hdu))?;
            (table.arrow_columns(), table.arrow_schema())
        };
        let file = Arc::new(file);
        let indexer = Arc::new(Indexer {
            file: file.clone(),
            hdu,
            columns: columns.clone(),
            schema: schema.clone(),
            indexes: Mutex::new(HashMap::new()),
            cache,
        });
        Ok(FitsTable {
            file,
            hdu,
            columns,
            schema,
            indexer,
        })
    }

    /// The cone a filter selects on this table's columns, if it is one.
    fn cone(&self, filter: &Expr) -> Option<Cone> {
        let field = |e: &Expr| match strip_casts(e) {
            Expr::Column(c) => self.schema.index_of(&c.name).ok(),
            _ => None,
        };
        // `1 = CONTAINS(POINT, CIRCLE)` either way round, or `DISTANCE(...) < r` (also `<=`,
        // and `r > DISTANCE(...)`); `bound` is the radius of the DISTANCE form.
        let (call, bound) = match filter {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                let call = if number(left) == Some(1.0) {
                    right
                } else if number(right) == Some(1.0) {
                    left
                } else {
                    return None;
                };
                (call, None)
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Lt | Operator::LtEq,
                right,
            }) => (left, Some(number(right)?)),
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Gt | Operator::GtEq,
                right,
            }) => (right, Some(number(left)?)),
            _ => return None,
        };
        let Expr::ScalarFunction(f) = strip_casts(call) else {
            return None;
        };
        let a = &f.args;
        match (f.func.name(), a.len(), bound) {
            (geometry::CONTAINS_POINT_CIRCLE, 5, None) => Some(Cone {
                ra: field(&a[0])?,
                dec: field(&a[1])?,
                ra0: number(&a[2])?,
                dec0: number(&a[3])?,
                radius: number(&a[4])?,
            }),
            (geometry::DISTANCE, 4, Some(radius)) => {
                // Either point may be the column pair.
                let (cols, centre) = match (field(&a[0]), field(&a[1])) {
                    (Some(ra), Some(dec)) => ((ra, dec), (&a[2], &a[3])),
                    _ => ((field(&a[2])?, field(&a[3])?), (&a[0], &a[1])),
                };
                Some(Cone {
                    ra: cols.0,
                    dec: cols.1,
                    ra0: number(centre.0)?,
                    dec0: number(centre.1)?,
                    radius,
                })
            }
            _ => None,
        }
    }
}

impl Indexer {
    /// The index of the (ra, dec) fields, built from the table on first use.
    fn index(&self, ra: usize, dec: usize) -> Result<Arc<HealpixIndex>> {
        let mut indexes = self
            .indexes
            .lock()
            .map_err(|_| DataFusionError::Internal("spatial index lock poisoned".into()))?;
        if let Some(index) = indexes.get(&(ra, dec)) {
            return Ok(index.clone());
        }
        let names = (self.schema.field(ra).name(), self.schema.field(dec).name());
        let key = self.cache.as_ref().and_then(|_| {
            IndexCache::key(
                self.file.path(),
                &format!("hdu {} ({}, {})", self.hdu, names.0, names.1),
            )
        });
        let cached = match (&self.cache, &key) {
            (Some(cache), Some(key)) => cache.load(key),
            _ => None,
        };
        let index = match cached {
            Some(index) => Arc::new(index),
            None => {
                let table = self
                    .file
                    .table(Some(self.hdu))
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let batch =
                    table.record_batch(&[self.columns[ra], self.columns[dec]], 0..table.rows())?;
                let values = |k: usize| -> Result<Vec<Option<f64>>> {
                    let column = cast(batch.column(k), &DataType::Float64)?;
                    Ok(column.as_primitive::<Float64Type>().iter().collect())
                };
                let index = Arc::new(HealpixIndex::build(&values(0)?, &values(1)?));
                if let (Some(cache), Some(key)) = (&self.cache, &key) {
                    // A cache that cannot be written only costs a rebuild next time.
                    let _ = cache.store(key, &index);
                }
                index
            }
        };
        indexes.insert((ra, dec), index.clone());
        Ok(index)
    }
}

/// A cone search on two of the table's fields: centre and radius in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cone {
    ra: usize,
    dec: usize,
    ra0: f64,
    dec0: f64,
    radius: f64,
}

fn strip_casts(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_casts(&c.expr),
        Expr::TryCast(c) => strip_casts(&c.expr),
        other => other,
    }
}

/// A numeric literal as f64.
fn number(e: &Expr) -> Option<f64> {
    let Expr::Literal(v, _) = strip_casts(e) else {
        return None;
    };
    match v.cast_to(&DataType::Float64).ok()? {
        ScalarValue::Float64(Some(x)) if x.is_finite() => Some(x),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for FitsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the scan reads the index's candidate rows, DataFusion still applies the
        // exact test to them.
        Ok(filters
            .iter()
            .map(|f| match self.cone(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = self
            .file
            .table(Some(self.hdu))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let wanted: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| self.columns[i]).collect(),
            None => self.columns.clone(),
        };
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        // With a cone among the filters only the index's candidates are read; otherwise the
        // first `limit` rows (a limit comes only when no filter is left to apply).
        let parts = state.config().target_partitions().max(1);
        let rows = match filters.iter().find_map(|f| self.cone(f)) {
            Some(cone) => {
                let list = self.indexer.index(cone.ra, cone.dec)?.candidates(
                    cone.ra0,
                    cone.dec0,
                    cone.radius,
                );
                let len = list.len();
                Rows::List(Arc::new(list), 0..len)
            }
            None => Rows::Range(0..limit.map_or(table.rows(), |l| l.min(table.rows()))),
        };
        let whole_table = matches!(&rows, Rows::Range(r) if r.len() == table.rows());
        let partitions: Vec<FitsPartition> = rows
            .split(parts)
            .into_iter()
            .map(|rows| FitsPartition {
                file: self.file.clone(),
                hdu: self.hdu,
                columns: wanted.clone(),
                schema: schema.clone(),
                rows,
                late: None,
            })
            .collect();
        let fields: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let origin = whole_table.then(|| Origin {
            indexer: self.indexer.clone(),
            fields,
            rows: table.rows(),
        });
        Ok(Arc::new(FitsScanExec::new(schema, partitions, origin)))
    }
}

/// The scan of a FITS table: partitions read lazily, with their row counts as statistics
/// (so the join planner can put the smaller table on the build side).
#[derive(Debug)]
pub struct FitsScanExec {
    partitions: Vec<FitsPartition>,
    properties: Arc<PlanProperties>,
    /// For a scan of the whole table: its indexes and which table field each output column
    /// is, so that a cross-match can have it read only the rows near its build side.
    origin: Option<Origin>,
}

#[derive(Clone)]
struct Origin {
    indexer: Arc<Indexer>,
    fields: Vec<usize>,
    rows: usize,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Origin({} rows)", self.rows)
    }
}

impl FitsScanExec {
    fn new(
        schema: SchemaRef,
        partitions: Vec<FitsPartition>,
        origin: Option<Origin>,
    ) -> FitsScanExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        FitsScanExec {
            partitions,
            properties: Arc::new(properties),
            origin,
        }
    }

    /// The same scan, reading the rows a cross-match picks when it runs (see [`LateRows`]):
    /// `ra` and `dec` are this scan's output columns the cross-match tests. `None` unless this
    /// scans a whole FITS table.
    pub fn with_late_rows(
        &self,
        ra: usize,
        dec: usize,
    ) -> Option<(Arc<FitsScanExec>, Arc<LateRows>)> {
        let origin = self.origin.clone()?;
        let late = Arc::new(LateRows {
            indexer: origin.indexer.clone(),
            ra: *origin.fields.get(ra)?,
            dec: *origin.fields.get(dec)?,
            rows: origin.rows,
            chosen: std::sync::OnceLock::new(),
        });
        let parts = self.partitions.len();
        let partitions = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| FitsPartition {
                file: p.file.clone(),
                hdu: p.hdu,
                columns: p.columns.clone(),
                schema: p.schema.clone(),
                rows: p.rows.clone(),
                late: Some((late.clone(), i, parts)),
            })
            .collect();
        let exec = FitsScanExec::new(self.schema(), partitions, Some(origin));
        Some((Arc::new(exec), late))
    }
}

/// The rows a cross-match's probe-side scan reads, chosen once its build side is known: the
/// HEALPix index's candidates around every build position. Until [`LateRows::choose`] runs
/// (or when it decides the index would not save anything) the scan reads the whole table.
pub struct LateRows {
    indexer: Arc<Indexer>,
    /// Table fields of the tested position.
    ra: usize,
    dec: usize,
    rows: usize,
    chosen: std::sync::OnceLock<Rows>,
}

impl std::fmt::Debug for LateRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LateRows(of {})", self.rows)
    }
}

impl LateRows {
    /// Picks the rows within `radius` (degrees, already widened for rounding) of any of the
    /// positions, by the index: a superset of the rows that can match. Many positions, or any
    /// the index cannot bound (off the sphere), keep the whole table.
    pub fn choose(&self, ra: &[f64], dec: &[f64], radius: f64) -> Result<()> {
        // Each position's cone touches a few index cells; past a sixteenth of the table's rows
        // in positions, the lookups and the scattered reads cost more than a sequential scan.
        let bounded = ra.len().saturating_mul(16) < self.rows
            && radius.is_finite()
            && radius < 1.0
            && dec.iter().all(|d| !d.is_finite() || d.abs() <= 90.0);
        let rows = if bounded {
            let index = self.indexer.index(self.ra, self.dec)?;
            let mut list: Vec<usize> = Vec::new();
            for (&a, &d) in ra.iter().zip(dec) {
                if a.is_finite() && d.is_finite() {
                    list.extend(index.candidates(a, d, radius));
                }
            }
            list.sort_unstable();
            list.dedup();
            let len = list.len();
            Rows::List(Arc::new(list), 0..len)
        } else {
            Rows::Range(0..self.rows)
        };
        // A second choice (another run of the same plan) would be the same one.
        let _ = self.chosen.set(rows);
        Ok(())
    }

    /// How many rows were chosen, once chosen.
    pub fn chosen_rows(&self) -> Option<usize> {
        self.chosen.get().map(Rows::len)
    }
}

impl DisplayAs for FitsScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let rows: usize = self.partitions.iter().map(|p| p.rows.len()).sum();
        match self.partitions.first() {
            Some(p) => {
                write!(
                    f,
                    "FitsScanExec: {}[{}], {rows} rows in {} partitions",
                    p.file.path().display(),
                    p.hdu,
                    self.partitions.len()
                )?;
                if p.late.is_some() {
                    write!(f, ", or those near the cross-match's build side")?;
                }
                Ok(())
            }
            None => write!(f, "FitsScanExec: empty"),
        }
    }
}

impl ExecutionPlan for FitsScanExec {
    fn name(&self) -> &str {
        "FitsScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let p = self.partitions.get(partition).ok_or_else(|| {
            DataFusionError::Internal(format!("FitsScanExec has no partition {partition}"))
        })?;
        Ok(p.stream())
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let rows: usize = match args.partition() {
            Some(i) => self.partitions.get(i).map_or(0, |p| p.rows.len()),
            None => self.partitions.iter().map(|p| p.rows.len()).sum(),
        };
        let mut stats = Statistics::new_unknown(&self.schema());
        // Index candidates are a superset of what the filter keeps.
        stats.num_rows = Precision::Inexact(rows);
        Ok(Arc::new(stats))
    }
}

/// Which rows of the table a partition reads.
#[derive(Debug, Clone)]
enum Rows {
    Range(Range<usize>),
    /// `list[span]` of sorted row numbers (the list shared by all partitions).
    List(Arc<Vec<usize>>, Range<usize>),
}

impl Rows {
    /// About equal contiguous parts (at least one, none empty unless all are).
    fn split(self, parts: usize) -> Vec<Rows> {
        self.chunks(self.len().div_ceil(parts.max(1)).max(1))
    }

    fn len(&self) -> usize {
        match self {
            Rows::Range(r) | Rows::List(_, r) => r.len(),
        }
    }

    /// Consecutive pieces of at most `size` rows (one empty piece for no rows).
    fn chunks(&self, size: usize) -> Vec<Rows> {
        let (Rows::Range(r) | Rows::List(_, r)) = self;
        let pieces = (r.start..r.end)
            .step_by(size)
            .map(|s| s..(s + size).min(r.end));
        let pieces: Vec<Rows> = match self {
            Rows::Range(_) => pieces.map(Rows::Range).collect(),
            Rows::List(list, _) => pieces.map(|p| Rows::List(list.clone(), p)).collect(),
        };
        if pieces.is_empty() {
            vec![Rows::Range(0..0)]
        } else {
            pieces
        }
    }
}

/// One partition of a scan: its rows read `BATCH_ROWS` at a time, when pulled.
struct FitsPartition {
    file: Arc<FitsFile>,
    hdu: usize,
    columns: Vec<usize>,
    schema: SchemaRef,
    rows: Rows,
    /// Rows chosen when the query runs: (choice, this partition, partitions); `rows` when
    /// nothing was chosen.
    late: Option<(Arc<LateRows>, usize, usize)>,
}

impl std::fmt::Debug for FitsPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FitsPartition({}[{}], {} rows)",
            self.file.path().display(),
            self.hdu,
            self.rows.len()
        )
    }
}

impl FitsPartition {
    fn stream(&self) -> SendableRecordBatchStream {
        let (file, hdu, columns, schema) = (
            self.file.clone(),
            self.hdu,
            self.columns.clone(),
            self.schema.clone(),
        );
        let (rows, late) = (self.rows.clone(), self.late.clone());
        // Which rows is decided at the first pull: a cross-match chooses them after its build
        // side is collected, which is after this stream is made.
        let chunks = futures::stream::once(async move {
            let rows = match late
                .as_ref()
                .and_then(|(l, i, n)| Some((l.chosen.get()?, *i, *n)))
            {
                Some((chosen, i, n)) => chosen
                    .clone()
                    .split(n)
                    .into_iter()
                    .nth(i)
                    .unwrap_or(Rows::Range(0..0)),
                None => rows,
            };
            futures::stream::iter(rows.chunks(BATCH_ROWS))
        })
        .flatten();
        let batches = chunks.map(move |chunk| {
            let table = file
                .table(Some(hdu))
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let batch = match chunk {
                Rows::Range(r) => table.record_batch(&columns, r)?,
                Rows::List(list, span) => table.record_batch_rows(&columns, &list[span])?,
            };
            Ok(batch.with_schema(schema.clone())?)
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(pieces: &[Rows]) -> Vec<usize> {
        pieces
            .iter()
            .flat_map(|p| match p {
                Rows::Range(r) => r.clone().collect::<Vec<_>>(),
                Rows::List(list, span) => list[span.clone()].to_vec(),
            })
            .collect()
    }

    #[test]
    fn partitions_and_batches_cover_every_row_once() {
        for n in [0, 1, 5, BATCH_ROWS - 1, BATCH_ROWS + 1, 3 * BATCH_ROWS + 7] {
            for parts in [1, 2, 3] {
                let whole = Rows::Range(10..10 + n);
                let split = whole.split(parts);
                assert!(split.len() <= parts.max(1));
                let batches: Vec<Rows> = split.iter().flat_map(|p| p.chunks(BATCH_ROWS)).collect();
                assert!(batches.iter().all(|b| b.len() <= BATCH_ROWS));
                assert_eq!(rows_of(&batches), (10..10 + n).collect::<Vec<_>>());
                let list: Vec<usize> = (0..n).map(|i| 3 * i + 1).collect();
                let listed = Rows::List(Arc::new(list.clone()), 0..n).split(parts);
                let batches: Vec<Rows> = listed.iter().flat_map(|p| p.chunks(BATCH_ROWS)).collect();
                assert_eq!(rows_of(&batches), list);
            }
        }
    }
}
