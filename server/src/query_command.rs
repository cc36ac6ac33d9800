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
use crate::votable::{self, Serialization};

pub fn run(args: &QueryArgs) -> anyhow::Result<()> {
    if args.parse_only {
        insitu_adql::parse::check(&args.adql)?;
        return Ok(());
    }
    if (args.format == "parquet" || args.format == "fits") && args.output.is_none() {
        bail!("--format {} writes a binary file: give -o OUT", args.format);
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
                &args.adql,
                &schema,
                &batches,
                std::io::BufWriter::new(file.file()),
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
            file.commit()?;
        }
        None => write(
            &args.format,
            &args.adql,
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
    adql: &str,
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
        "votable" | "votable-binary2" => {
            let serialization = if format == "votable" {
                Serialization::TableData
            } else {
                Serialization::Binary2
            };
            // The query text travels with the result, as TAP services give it (DALI 1.1 §4.4.1).
            let infos = [("QUERY", adql)];
            votable::write(&mut out, schema, batches, serialization, &infos, false)?;
        }
        "fits" => {
            insitu_engine::fits::write_bintable(&mut out, schema, batches)?;
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
