//! insitu-adql: answers ADQL 2.1 queries over mission tables read in place.
//!
//! [`AdqlEngine`] holds a DataFusion session: tables are registered as `schema.table` from
//! FITS binary tables (read in place through `insitu-engine`, [`fits_table::FitsTable`]),
//! Parquet or CSV files; [`AdqlEngine::query`] parses ADQL ([`parse`]), rewrites what ADQL and
//! DataFusion's SQL spell differently (`TOP`, geometry functions as UDFs of [`geometry`]), and
//! runs it. Identifiers are case-insensitive, as ADQL requires.
//!
//! Cone searches on FITS tables use a HEALPix index ([`spatial_index`]); cross-matches run
//! as a spatial join ([`spatial_join`]); `TAP_SCHEMA` describes what is registered
//! ([`tap_schema`]); [`AdqlEngine::with_uploads`] gives one query its `TAP_UPLOAD` tables.
#![forbid(unsafe_code)]

pub mod error;
pub mod fits_table;
pub mod geometry;
pub mod parse;
pub mod rewrite;
pub mod spatial_index;
pub mod spatial_join;
pub mod tap_schema;
pub mod units;

use std::path::Path;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::execution::options::{CsvReadOptions, ParquetReadOptions};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use datafusion::arrow;
pub use datafusion::arrow::csv::Writer as CsvWriter;
pub use datafusion::parquet;
pub use error::{Error, Result};

/// Batches as an aligned text table (for terminals and golden files).
pub fn pretty(batches: &[RecordBatch]) -> Result<String> {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .map_err(|e| Error::Execution(e.to_string()))
}

/// A session that answers ADQL over registered tables.
pub struct AdqlEngine {
    ctx: SessionContext,
    registered: Mutex<Vec<tap_schema::TableInfo>>,
    /// Where spatial indexes are kept between sessions.
    cache: Option<spatial_index::IndexCache>,
}

impl Default for AdqlEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl AdqlEngine {
    pub fn new() -> AdqlEngine {
        let config = SessionConfig::new().with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(spatial_join::SpatialJoinRule))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for udf in geometry::udfs() {
            ctx.register_udf(udf);
        }
        ctx.register_udf(units::udf());
        AdqlEngine {
            ctx,
            registered: Mutex::new(Vec::new()),
            cache: None,
        }
    }

    /// Keeps the spatial indexes of tables registered from now on in `dir` (created when
    /// needed; never a data volume). Without it indexes live in memory for the session.
    pub fn with_index_cache(mut self, dir: impl Into<std::path::PathBuf>) -> AdqlEngine {
        self.cache = Some(spatial_index::IndexCache::new(dir));
        self
    }

    /// Registers the file at `path` as `name` (`schema.table` or `table`), by its extension:
    /// `.fits`/`.fit`/`.fits.gz` (first binary table), `.parquet`, `.csv`.
    pub async fn register(&self, name: &str, path: &Path) -> Result<()> {
        let table_error = |reason: String| Error::Table {
            name: name.to_string(),
            reason,
        };
        let (schema, table) = match name.to_ascii_lowercase().split_once('.') {
            Some((s, t)) => (s.to_string(), t.to_string()),
            None => ("public".to_string(), name.to_ascii_lowercase()),
        };
        self.ensure_schema(&schema)?;
        let qualified = format!("{schema}.{table}");
        let lower = path.to_string_lossy().to_ascii_lowercase();
        let path_str = path.to_string_lossy().into_owned();
        if lower.ends_with(".fits") || lower.ends_with(".fit") || lower.ends_with(".fits.gz") {
            let provider = fits_table::FitsTable::open(path, self.cache.clone())
                .map_err(|e| table_error(e.to_string()))?;
            self.ctx
                .register_table(qualified.as_str(), Arc::new(provider))
                .map_err(|e| table_error(e.strip_backtrace()))?;
        } else if lower.ends_with(".parquet") {
            self.ctx
                .register_parquet(
                    qualified.as_str(),
                    &path_str,
                    // Keep the field metadata: units, UCDs and descriptions.
                    ParquetReadOptions::default().skip_metadata(false),
                )
                .await
                .map_err(|e| table_error(e.strip_backtrace()))?;
        } else if lower.ends_with(".csv") {
            self.ctx
                .register_csv(qualified.as_str(), &path_str, CsvReadOptions::new())
                .await
                .map_err(|e| table_error(e.strip_backtrace()))?;
        } else {
            return Err(table_error(format!(
                "{}: not a FITS, Parquet or CSV file (by its extension)",
                path.display()
            )));
        }
        let provider = self.ctx.table_provider(qualified.as_str()).await?;
        let info = tap_schema::TableInfo {
            schema,
            table,
            fields: provider
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect(),
        };
        let mut registered = self
            .registered
            .lock()
            .map_err(|_| Error::Execution("table registry poisoned".into()))?;
        registered.retain(|t| {
            (t.schema.as_str(), t.table.as_str()) != (info.schema.as_str(), info.table.as_str())
        });
        registered.push(info);
        self.publish_tap_schema(&registered)
    }

    /// Registers in-memory rows as `name` (`schema.table`), described in TAP_SCHEMA like a
    /// file's table: for tables insitu derives itself (a volume's tile index, ObsCore).
    /// Replaces a table of the same name.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let (schema_name, table) = match name.to_ascii_lowercase().split_once('.') {
            Some((s, t)) => (s.to_string(), t.to_string()),
            None => ("public".to_string(), name.to_ascii_lowercase()),
        };
        self.ensure_schema(&schema_name)?;
        let qualified = format!("{schema_name}.{table}");
        let provider = datafusion::datasource::MemTable::try_new(schema.clone(), vec![batches])?;
        self.ctx.deregister_table(qualified.as_str())?;
        self.ctx
            .register_table(qualified.as_str(), Arc::new(provider))?;
        let info = tap_schema::TableInfo {
            schema: schema_name,
            table,
            fields: schema.fields().iter().map(|f| f.as_ref().clone()).collect(),
        };
        let mut registered = self
            .registered
            .lock()
            .map_err(|_| Error::Execution("table registry poisoned".into()))?;
        registered.retain(|t| {
            (t.schema.as_str(), t.table.as_str()) != (info.schema.as_str(), info.table.as_str())
        });
        registered.push(info);
        self.publish_tap_schema(&registered)
    }

    /// Registers rows a user sent with the query (TAP_UPLOAD) as `TAP_UPLOAD.name`: in memory,
    /// left out of TAP_SCHEMA, and joined like any table (cross-matches use the spatial join).
    pub fn register_upload(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let table = name.to_ascii_lowercase();
        if !table
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::Table {
                name: name.to_string(),
                reason: "an upload name is a letter then letters, digits or '_'".into(),
            });
        }
        self.ensure_schema("tap_upload")?;
        let qualified = format!("tap_upload.{table}");
        let provider = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
        self.ctx.deregister_table(qualified.as_str())?;
        self.ctx
            .register_table(qualified.as_str(), Arc::new(provider))?;
        Ok(())
    }

    /// A session for one query that sees every table of this one plus `uploads` as
    /// `TAP_UPLOAD.name` (TAP 1.1 §4: an upload lives for its query only). The mission tables
    /// are shared, not reopened; the uploads are invisible to this engine and other queries.
    pub fn with_uploads(
        &self,
        uploads: Vec<(String, SchemaRef, Vec<RecordBatch>)>,
    ) -> Result<AdqlEngine> {
        let registered = self
            .registered
            .lock()
            .map_err(|_| Error::Execution("table registry poisoned".into()))?
            .clone();
        let fork = AdqlEngine {
            registered: Mutex::new(registered),
            cache: self.cache.clone(),
            ..AdqlEngine::new()
        };
        let missing = || Error::Execution("the default catalog is missing".into());
        let from = self.ctx.catalog("datafusion").ok_or_else(missing)?;
        let to = fork.ctx.catalog("datafusion").ok_or_else(missing)?;
        for name in from.schema_names() {
            if name == "tap_upload" {
                continue;
            }
            if let Some(schema) = from.schema(&name) {
                to.register_schema(&name, schema)?;
            }
        }
        for (name, schema, batches) in uploads {
            fork.register_upload(&name, schema, batches)?;
        }
        Ok(fork)
    }

    /// Replaces the `TAP_SCHEMA` tables with ones describing `registered`.
    fn publish_tap_schema(&self, registered: &[tap_schema::TableInfo]) -> Result<()> {
        self.ensure_schema("tap_schema")?;
        for (name, table) in tap_schema::tables(registered)? {
            let qualified = format!("tap_schema.{name}");
            self.ctx.deregister_table(qualified.as_str())?;
            self.ctx.register_table(qualified.as_str(), table)?;
        }
        Ok(())
    }

    fn ensure_schema(&self, schema: &str) -> Result<()> {
        let catalog = self
            .ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Execution("the default catalog is missing".into()))?;
        if catalog.schema(schema).is_none() {
            let provider: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
            catalog
                .register_schema(schema, provider)
                .map_err(Error::from)?;
        }
        Ok(())
    }

    /// DataFusion's physical plan for a query in its own SQL (not ADQL): for tests and
    /// diagnostics, e.g. to see that a cross-match runs as a `SpatialJoinExec`.
    pub async fn explain(&self, sql: &str) -> Result<String> {
        let frame = self.ctx.sql(sql).await?;
        let plan = frame.create_physical_plan().await?;
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        Ok(text)
    }

    /// Runs one ADQL query and collects its result.
    pub async fn query(&self, adql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.run(adql).await?.1)
    }

    /// Runs one ADQL query: the result's schema (also when no row comes back) and its rows.
    pub async fn run(&self, adql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.run_limited(adql, usize::MAX).await
    }

    /// Runs one ADQL query and keeps at most `rows` rows of its result (a TAP MAXREC): the
    /// limit is planned into the query, so no more is computed than needed.
    pub async fn run_limited(
        &self,
        adql: &str,
        rows: usize,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let sql = rewrite::to_datafusion_sql(adql)?;
        let mut frame = self.ctx.sql(&sql).await?;
        if rows != usize::MAX {
            frame = frame.limit(0, Some(rows))?;
        }
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        Ok((schema, frame.collect().await?))
    }

    /// The registered tables and TAP_SCHEMA's own, as TAP_SCHEMA describes them.
    pub fn tables(&self) -> Result<Vec<tap_schema::TableInfo>> {
        let registered = self
            .registered
            .lock()
            .map_err(|_| Error::Execution("table registry poisoned".into()))?;
        Ok(tap_schema::with_own_tables(&registered))
    }
}
