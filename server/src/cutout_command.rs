//! `insitu cutout`: one cutout, or bulk cutouts from a catalogue.

use std::io::IsTerminal;
use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use insitu_engine::bulk::{self, BulkOptions, Output, Source};
use insitu_engine::catalog::read_catalog;
use insitu_engine::cutout::{self, Center, CutoutRequest, Mode, Size};
use insitu_engine::fits::{FitsFile, Image};
use insitu_engine::wcs::Wcs;

use crate::cli::CutoutArgs;

pub fn run(args: &CutoutArgs) -> anyhow::Result<()> {
    let mode: Mode = args.mode.parse()?;
    let size = match (args.size, args.size_arcsec) {
        (Some(n), _) => Size::Pixels(n),
        (None, Some(a)) => Size::Arcsec(a),
        (None, None) => bail!("give --size PIX or --size-arcsec ARCSEC"),
    };
    let planes = args.planes.as_deref().map(parse_planes).transpose()?;
    refuse_overwriting_the_input(args)?;
    let files = args
        .images
        .iter()
        .map(FitsFile::open)
        .collect::<Result<Vec<_>, _>>()?;
    let mut opened = Vec::with_capacity(files.len());
    for file in &files {
        opened.push(open_image(file, args.hdu)?);
    }

    if let Some(catalog) = &args.catalog {
        let wcs = opened
            .iter()
            .map(|o| o.wcs.as_ref().map_err(|e| anyhow!("{}: {e}", o.name)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sources: Vec<Source<'_>> = opened
            .iter()
            .zip(wcs)
            .map(|(o, wcs)| Source {
                image: o.image.clone(),
                wcs: Some(wcs),
            })
            .collect();
        let options = BulkOptions {
            size,
            mode,
            planes,
            skip_bad: args.skip_bad,
        };
        return run_bulk(args, &sources, catalog, &options);
    }
    let [one] = opened.as_slice() else {
        bail!("a single cutout takes one image; give several images only with --catalog");
    };
    let center = match (&args.pixel, args.ra, args.dec) {
        (Some(p), _, _) => parse_pixel(p)?,
        (None, Some(ra), Some(dec)) => Center::Sky { ra, dec },
        _ => bail!("give --ra and --dec, --pixel X,Y or --catalog CAT"),
    };
    let out = args
        .output
        .as_deref()
        .ok_or_else(|| anyhow!("give -o OUT.fits for a single cutout"))?;
    // A pixel cutout needs no WCS; a sky cutout reports why the WCS is unusable.
    let wcs = match (center, &one.wcs) {
        (Center::Sky { .. }, Err(e)) => bail!("{}: {e}", one.name),
        (_, w) => w.as_ref().ok(),
    };
    let request = CutoutRequest {
        center,
        size,
        mode,
        planes,
    };
    let cut = cutout::cut(&one.image, wcs, &request).with_context(|| one.name.clone())?;
    std::fs::write(out, cut.to_fits_bytes())
        .with_context(|| format!("{}: cannot write", out.display()))?;
    if !args.quiet {
        let w = cut.window;
        eprintln!(
            "wrote {} ({}×{} from x={}, y={})",
            out.display(),
            w.width,
            w.height,
            w.x0,
            w.y0
        );
    }
    Ok(())
}

/// An image HDU of one input file, with its WCS (or why it has none) and a name for messages.
struct Opened<'a> {
    name: String,
    image: Image<'a>,
    wcs: Result<Wcs, insitu_engine::Error>,
}

fn open_image(file: &FitsFile, hdu: Option<usize>) -> anyhow::Result<Opened<'_>> {
    let hdu = match hdu {
        Some(h) => h,
        None => file
            .first_image_hdu()
            .ok_or_else(|| anyhow!("{}: no HDU holds an image", file.path().display()))?,
    };
    let image = file.image(hdu)?;
    Ok(Opened {
        name: format!("{} HDU {hdu}", file.path().display()),
        wcs: Wcs::from_header(image.header()),
        image,
    })
}

fn run_bulk(
    args: &CutoutArgs,
    sources: &[Source<'_>],
    catalog_path: &Path,
    options: &BulkOptions,
) -> anyhow::Result<()> {
    let output = match (&args.out_dir, &args.npy, &args.mef) {
        (Some(d), None, None) => Output::Dir(d.clone()),
        (None, Some(n), None) => Output::Npy(n.clone()),
        (None, None, Some(m)) => Output::Mef(m.clone()),
        _ => bail!(
            "give exactly one of --out-dir DIR, --npy OUT.npy or --mef OUT.fits with --catalog"
        ),
    };
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("cannot start the worker threads")?;
    }
    let catalog = read_catalog(catalog_path)?;
    let bar = progress_bar(catalog.targets.len() as u64, args.quiet);
    let started = std::time::Instant::now();
    let report = bulk::run_many(sources, &catalog, options, &output, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    for bad in &report.skipped {
        eprintln!("skipped {bad}");
    }
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "wrote {} cutouts in {secs:.2} s ({:.0}/s), skipped {} row(s)",
            report.written,
            report.written as f64 / secs.max(1e-9),
            report.skipped.len()
        );
    }
    Ok(())
}

/// Writing a cutout over its own source would destroy the data it is read from (and fault
/// the memory map): insitu never writes into the data it serves.
fn refuse_overwriting_the_input(args: &CutoutArgs) -> anyhow::Result<()> {
    // A missing input is reported when it is opened.
    let inputs: Vec<_> = args
        .images
        .iter()
        .filter_map(|i| std::fs::canonicalize(i).ok())
        .collect();
    let outputs = [&args.output, &args.npy, &args.mef];
    for out in outputs.into_iter().flatten() {
        if std::fs::canonicalize(out).is_ok_and(|o| inputs.contains(&o)) {
            bail!(
                "{}: refusing to write the output over an input image",
                out.display()
            );
        }
    }
    Ok(())
}

fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} cutouts ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}

fn parse_pixel(text: &str) -> anyhow::Result<Center> {
    let parsed = text
        .split_once(',')
        .and_then(|(x, y)| Some((x.trim().parse::<f64>().ok()?, y.trim().parse::<f64>().ok()?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    match parsed {
        Some((x, y)) => Ok(Center::Pixel { x, y }),
        None => {
            bail!("--pixel {text:?}: expected X,Y with two finite numbers, e.g. --pixel 120.5,88")
        }
    }
}

fn parse_planes(text: &str) -> anyhow::Result<Range<usize>> {
    let parsed = text
        .split_once(':')
        .and_then(|(a, b)| Some(a.trim().parse::<usize>().ok()?..b.trim().parse::<usize>().ok()?))
        .filter(|r| r.start < r.end);
    parsed.ok_or_else(|| anyhow!("--planes {text:?}: expected A:B with A < B, e.g. --planes 0:3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pixel_and_planes() {
        assert_eq!(
            parse_pixel("1.5, -2").unwrap(),
            Center::Pixel { x: 1.5, y: -2.0 }
        );
        assert!(parse_pixel("1.5").is_err());
        assert!(parse_pixel("a,b").is_err());
        assert!(parse_pixel("nan,1").is_err());
        assert_eq!(parse_planes("1:3").unwrap(), 1..3);
        assert!(parse_planes("3:1").is_err());
    }
}
