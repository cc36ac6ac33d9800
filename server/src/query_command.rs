//! `insitu query`: one ADQL query over tables named on the command line, printed to stdout.

use std::path::Path;

use anyhow::{anyhow, Context};
use insitu_adql::AdqlEngine;

use crate::cli::QueryArgs;

pub fn run(args: &QueryArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the query runtime")?;
    runtime.block_on(async {
        let engine = AdqlEngine::new();
        for spec in &args.tables {
            let (name, path) = spec
                .split_once('=')
                .ok_or_else(|| anyhow!("--table {spec:?}: expected SCHEMA.TABLE=PATH"))?;
            engine.register(name, Path::new(path)).await?;
        }
        let batches = engine.query(&args.adql).await?;
        let text = match args.format.as_str() {
            "csv" => {
                let mut out = Vec::new();
                let mut writer = insitu_adql::CsvWriter::new(&mut out);
                for b in &batches {
                    writer.write(b)?;
                }
                drop(writer);
                String::from_utf8(out)?
            }
            "votable" => {
                let fields: Vec<_> = match batches.first() {
                    Some(b) => b
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone())
                        .collect(),
                    None => vec![],
                };
                crate::votable::document(&fields, &batches, false)
            }
            _ => insitu_adql::pretty(&batches)?,
        };
        println!("{}", text.trim_end());
        Ok(())
    })
}
