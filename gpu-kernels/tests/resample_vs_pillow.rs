//! The CPU resampling (the oracle of the GPU kernel) against Pillow's `Image.resize` on float
//! ("F") images, for both filters, shrinking and enlarging, and bilinear enlargement also
//! against scipy's `ndimage.zoom(order=1, grid_mode=True)`. Needs the project's Python with
//! numpy, scipy and Pillow (`.ci/setup` makes `.venv`; `INSITU_PYTHON` overrides it): without
//! them this test fails rather than skips.

use std::path::PathBuf;
use std::process::Command;

use insitu_gpu::{reference, Batch, Filter, Plane, Recipe};

const ORACLE: &str = r#"
import sys
import numpy as np
from PIL import Image
from scipy import ndimage

folder = sys.argv[1]
for line in open(f"{folder}/cases.txt"):
    name, w, h, ow, oh = line.split()
    w, h, ow, oh = int(w), int(h), int(ow), int(oh)
    data = np.fromfile(f"{folder}/{name}.in", dtype="<f4").reshape(h, w)
    for filt, code in (("bilinear", Image.BILINEAR), ("lanczos3", Image.LANCZOS)):
        img = Image.fromarray(data, mode="F").resize((ow, oh), code)
        np.asarray(img, dtype="<f4").tofile(f"{folder}/{name}.{filt}.pillow")
    if ow >= w and oh >= h:
        z = ndimage.zoom(data.astype(np.float64), (oh / h, ow / w), order=1, mode="nearest",
                         grid_mode=True)
        z.astype("<f4").tofile(f"{folder}/{name}.bilinear.scipy")
"#;

fn python() -> PathBuf {
    std::env::var_os("INSITU_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

fn read_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn resampling_equals_pillow_and_scipy() {
    let dir = tempfile::tempdir().unwrap();
    // (width, height, out_w, out_h): shrink by whole and odd factors, enlarge, mixed.
    let cases = [
        (300, 300, 224, 224),
        (64, 64, 224, 224),
        (448, 448, 224, 224),
        (97, 41, 30, 50),
        (5, 7, 16, 16),
        (1000, 20, 37, 20),
    ];
    let mut list = String::new();
    let mut inputs = Vec::new();
    for (k, &(w, h, ow, oh)) in cases.iter().enumerate() {
        // A smooth profile plus a deterministic ripple: both filters' lobes matter.
        let data: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                let r2 = (x - w as f32 / 3.0).powi(2) + (y - h as f32 / 2.0).powi(2);
                100.0 * (-r2 / (w * h) as f32 * 8.0).exp() + ((i * 7919) % 13) as f32 * 0.3 - 2.0
            })
            .collect();
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join(format!("c{k}.in")), bytes).unwrap();
        list += &format!("c{k} {w} {h} {ow} {oh}\n");
        inputs.push(data);
    }
    std::fs::write(dir.path().join("cases.txt"), list).unwrap();
    let status = Command::new(python())
        .arg("-c")
        .arg(ORACLE)
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run .ci/setup, or set INSITU_PYTHON)",
                python().display()
            )
        });
    assert!(status.success(), "the Pillow oracle failed");

    let mut compared = 0;
    for (k, (&(w, h, ow, oh), data)) in cases.iter().zip(&inputs).enumerate() {
        for (filter, name) in [
            (Filter::Bilinear, "bilinear"),
            (Filter::Lanczos3, "lanczos3"),
        ] {
            let recipe = Recipe {
                filter,
                scaling: None,
                fill: f32::NAN,
                ..Recipe::new(oh, ow)
            };
            let batch = Batch::new(1, 1, vec![Plane::new(w, h, data).unwrap()]).unwrap();
            let ours = reference::tensor(&batch, &recipe).unwrap().data;
            let mut oracles = vec!["pillow"];
            if filter == Filter::Bilinear && ow >= w && oh >= h {
                oracles.push("scipy");
            }
            for oracle in oracles {
                let want = read_f32(&dir.path().join(format!("c{k}.{name}.{oracle}")));
                assert_eq!(want.len(), ours.len());
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (i, (&a, &b)) in ours.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 2e-6 * scale,
                        "{name} {w}×{h} → {ow}×{oh} vs {oracle}: pixel ({}, {}) {a} != {b}",
                        i % ow,
                        i / ow
                    );
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 2 * cases.len() + 2);
}
