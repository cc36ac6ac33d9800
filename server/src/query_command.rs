//! `insitu query`: one ADQL query over tables named on the command line, written to stdout or
//! a file; `--parse-only` checks the ADQL text alone.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use insitu_adql::arrow::datatypes::SchemaRef;
use insitu_adql::arrow::record_batch::RecordBatch;
use insitu_adql::spatial_index::IndexCache;
use insitu_adql::AdqlEngine;
use insitu_engine::partial_file::PartialFile;

use crate::cli::QueryArgs;

pub fn run(args: &QueryArgs) -> anyhow::Result<()> {
    if args.parse_only {
        insitu_adql::parse::check(&args.adql)?;
        return Ok(());
    }
    if args.format == "parquet" && args.output.is_none() {
        bail!("--format parquet writes a binary file: give -o OUT");
    }
    if let Some(out) = &args.output {
        for spec in &args.tables {
            let input = spec.split_once('=').map_or(spec.as_str(), |(_, p)| p);
            if same_file(Path::new(input), out) {
                bail!(
                    "{}: the output would overwrite an input table",
                    out.display()
                );
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build()
        .context("cannot start the query runtime")?;
    let (schema, batches) = runtime.block_on(async {
        let cache = args.cache_dir.clone().or_else(IndexCache::default_dir);
        let engine = match cache {
            Some(dir) => AdqlEngine::new().with_index_cache(dir),
            None => AdqlEngine::new(),
        };
        for spec in &args.tables {
            let (name, path) = spec
                .split_once('=')
                .ok_or_else(|| anyhow!("--table {spec:?}: expected SCHEMA.TABLE=PATH"))?;
            engine.register(name, Path::new(path)).await?;
        }
        anyhow::Ok(engine.run(&args.adql).await?)
    })?;
    match &args.output {
        Some(path) => {
            let file = PartialFile::create(path)?;
            write(
                &args.format,
                &schema,
                &batches,
                std::io::BufWriter::new(file.file()),
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
            file.commit()?;
        }
        None => write(
            &args.format,
            &schema,
            &batches,
            std::io::BufWriter::new(std::io::stdout()),
        )?,
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn write(
    format: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    mut out: impl Write + Send,
) -> anyhow::Result<()> {
    match format {
        "parquet" => {
            let mut writer =
                insitu_adql::parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), None)?;
            for b in batches {
                writer.write(b)?;
            }
            writer.close()?;
        }
        "votable" => {
            let fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            out.write_all(crate::votable::document(&fields, batches, false).as_bytes())?;
        }
        "table" => writeln!(out, "{}", insitu_adql::pretty(batches)?)?,
        _ => {
            let mut writer = insitu_adql::CsvWriter::new(&mut out);
            if batches.is_empty() {
                // The header line even when no row came back.
                writer.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for b in batches {
                writer.write(b)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
