//! A FITS binary table as a DataFusion table, read in place through `insitu-engine`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use insitu_engine::fits::FitsFile;

/// Rows per record batch handed to DataFusion.
const BATCH_ROWS: usize = 64 * 1024;

/// The first binary table of a FITS file. Only the columns a query asks for are converted
/// (projection pushdown); the rest of each row is never touched.
pub struct FitsTable {
    file: FitsFile,
    hdu: usize,
    /// FITS column index of each Arrow field.
    columns: Vec<usize>,
    schema: SchemaRef,
}

impl std::fmt::Debug for FitsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FitsTable({}[{}])", self.file.path().display(), self.hdu)
    }
}

impl FitsTable {
    pub fn open(path: &Path) -> insitu_engine::Result<FitsTable> {
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
        Ok(FitsTable {
            file,
            hdu,
            columns,
            schema,
        })
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

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
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
        let rows = limit.map_or(table.rows(), |l| l.min(table.rows()));
        // Two partitions so both cores share the work downstream.
        let mut partitions = vec![Vec::new(), Vec::new()];
        for (k, start) in (0..rows).step_by(BATCH_ROWS).enumerate() {
            let end = (start + BATCH_ROWS).min(rows);
            let batch = table.record_batch(&wanted, start..end)?;
            partitions[k % 2].push(batch.with_schema(schema.clone())?);
        }
        Ok(MemorySourceConfig::try_new_exec(&partitions, schema, None)?)
    }
}
