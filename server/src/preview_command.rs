//! `insitu preview`: a stretched PNG or JPEG of one FITS image, or an RGB composite of three.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use insitu_engine::cutout::{window_physical, Window};
use insitu_engine::fits::FitsFile;

use crate::cli::PreviewArgs;
use crate::preview::{self, PreviewOptions};

pub fn run(args: &PreviewArgs) -> anyhow::Result<()> {
    if args.images.len() != 1 && args.images.len() != 3 {
        bail!(
            "give one image (grey) or three (red, green, blue), not {}",
            args.images.len()
        );
    }
    refuse_overwriting_the_input(args)?;
    let options = options(args)?;
    let bands = args
        .images
        .iter()
        .map(|path| read_band(path, args.hdu, args.plane))
        .collect::<anyhow::Result<Vec<Band>>>()?;
    let Some(first) = bands.first() else {
        bail!("give an image");
    };
    let (width, height) = (first.width, first.height);
    for (band, path) in bands.iter().zip(&args.images).skip(1) {
        if (band.width, band.height) != (width, height) {
            bail!(
                "{} is {}×{} pixels but {} is {width}×{height}: the bands of a composite must match",
                path.display(),
                band.width,
                band.height,
                args.images[0].display(),
            );
        }
    }
    let values: Vec<&[f32]> = bands.iter().map(|b| b.values.as_slice()).collect();
    let rendered =
        preview::render_with_limits(width, height, &values, &options).map_err(|e| anyhow!(e))?;
    std::fs::write(&args.output, &rendered.bytes)
        .with_context(|| format!("{}: cannot write", args.output.display()))?;
    if !args.quiet {
        let limits: Vec<String> = rendered
            .limits
            .iter()
            .map(|l| match l {
                Some((lo, hi)) => format!("[{lo}, {hi}]"),
                None => "none (no finite value)".into(),
            })
            .collect();
        eprintln!(
            "wrote {} ({width}×{height}, {}, limits {})",
            args.output.display(),
            if bands.len() == 3 { "rgb" } else { "grey" },
            limits.join(" ")
        );
    }
    Ok(())
}

/// The options the flags ask for, read by the same parser as the HTTP parameters.
fn options(args: &PreviewArgs) -> anyhow::Result<PreviewOptions> {
    let format = match &args.format {
        Some(f) => f.clone(),
        None => args
            .output
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .filter(|e| ["png", "jpg", "jpeg"].contains(&e.as_str()))
            .ok_or_else(|| {
                anyhow!(
                    "{}: name the output .png, .jpg or .jpeg, or give --format",
                    args.output.display()
                )
            })?,
    };
    let params = [
        ("format", Some(format.clone())),
        ("stretch", args.stretch.clone()),
        ("interval", args.interval.clone()),
        ("percentile", args.percentile.clone()),
        ("plow", args.plow.clone()),
        ("phigh", args.phigh.clone()),
        ("quality", args.quality.clone()),
    ];
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.clone())
    };
    PreviewOptions::from_params(&get)
        .map_err(|e| anyhow!(e))?
        .ok_or_else(|| anyhow!("--format {format}: expected png or jpeg"))
}

/// One plane of an image HDU as physical values (NaN for BLANK), in FITS row order.
struct Band {
    width: usize,
    height: usize,
    values: Vec<f32>,
}

fn read_band(path: &Path, hdu: Option<usize>, plane: usize) -> anyhow::Result<Band> {
    let file = FitsFile::open(path)?;
    let hdu = match hdu {
        Some(h) => h,
        None => file
            .first_image_hdu()
            .ok_or_else(|| anyhow!("{}: no HDU holds an image", path.display()))?,
    };
    let image = file.image(hdu)?;
    let (width, height) = (image.width(), image.height());
    if plane >= image.planes() {
        bail!(
            "{} HDU {hdu}: --plane {plane}, but the image has {} plane(s)",
            path.display(),
            image.planes()
        );
    }
    let n = width
        .checked_mul(height)
        .filter(|&n| n > 0)
        .ok_or_else(|| anyhow!("{} HDU {hdu}: a {width}×{height} image", path.display()))?;
    let mut values = Vec::new();
    values.try_reserve_exact(n).map_err(|_| {
        anyhow!(
            "{} HDU {hdu}: not enough memory for {width}×{height} values",
            path.display()
        )
    })?;
    values.resize(n, 0.0);
    let whole = Window {
        x0: 0,
        y0: 0,
        width,
        height,
    };
    window_physical(&image, plane, whole, &mut values);
    Ok(Band {
        width,
        height,
        values,
    })
}

/// Writing over a source image would destroy it (and fault its memory map).
fn refuse_overwriting_the_input(args: &PreviewArgs) -> anyhow::Result<()> {
    let output = std::fs::canonicalize(&args.output).ok();
    let clash = args
        .images
        .iter()
        .any(|i| output.is_some() && std::fs::canonicalize(i).ok() == output);
    if clash {
        bail!(
            "{}: refusing to write the preview over an input image",
            args.output.display()
        );
    }
    Ok(())
}
