//! The GPU path against its CPU reference on the same batches: every filter, stretch and
//! interval, planes smaller and larger than the output, holes, empty and constant planes.
//! Runs on whatever adapter wgpu finds (Mesa's lavapipe in CI); without one it says so and
//! passes, unless `INSITU_REQUIRE_GPU=1`, which CI sets.

use insitu_gpu::stretch::{Interval, Stretch};
use insitu_gpu::{reference, Batch, Error, Filter, Gpu, Plane, Recipe, Scaling};

fn gpu() -> Option<Gpu> {
    match Gpu::open() {
        Ok(gpu) => {
            println!("wgpu adapter: {}", gpu.adapter());
            Some(gpu)
        }
        Err(e @ Error::NoAdapter(_))
            if std::env::var("INSITU_REQUIRE_GPU").as_deref() != Ok("1") =>
        {
            println!("no wgpu adapter, GPU comparison not run: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// SplitMix64 as a uniform [0, 1) source: the same planes on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A galaxy-like plane: a sky level with noise, an exponential profile, a few NaN holes.
fn galaxy(random: &mut Random, w: usize, h: usize, holes: usize) -> Vec<f32> {
    let (cx, cy) = (w as f64 * random.next(), h as f64 * random.next());
    let scale = 2.0 + 10.0 * random.next();
    let mut data: Vec<f32> = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            let r = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
            (1e-3 * (random.next() - 0.5) + 0.2 * (-r / scale).exp()) as f32
        })
        .collect();
    for _ in 0..holes {
        let at = (random.next() * (w * h) as f64) as usize;
        data[at.min(w * h - 1)] = f32::NAN;
    }
    data
}

fn planes(random: &mut Random) -> Vec<(usize, usize, Vec<f32>)> {
    let mut out: Vec<(usize, usize, Vec<f32>)> = [
        (64, 64, 3),
        (97, 41, 0),
        (300, 280, 40),
        (17, 23, 1),
        (1, 1, 0),
        (500, 3, 0),
    ]
    .into_iter()
    .map(|(w, h, holes)| (w, h, galaxy(random, w, h, holes)))
    .collect();
    out.push((20, 20, vec![f32::NAN; 400])); // off the image: no data at all
    out.push((33, 12, vec![0.25; 396])); // constant: hi == lo
    let mut edge = galaxy(random, 50, 50, 0); // half off an image edge
    edge[..1250].fill(f32::NAN);
    out.push((50, 50, edge));
    out.push((
        9,
        9,
        (0..81)
            .map(|i| if i % 2 == 0 { f32::INFINITY } else { i as f32 })
            .collect(),
    ));
    out
}

/// `|gpu − cpu| ≤ 1e-5 · scale` element by element, NaN where the other is NaN; `scale` is 1
/// for stretched values (in [0, 1]) and each plane's largest |value| otherwise.
fn assert_close(gpu: &[f32], cpu: &[f32], plane_len: usize, stretched: bool, what: &str) {
    assert_eq!(gpu.len(), cpu.len(), "{what}");
    for (p, (g, c)) in gpu.chunks(plane_len).zip(cpu.chunks(plane_len)).enumerate() {
        let scale = if stretched {
            1.0
        } else {
            c.iter()
                .filter(|v| v.is_finite())
                .fold(1e-30f32, |m, v| m.max(v.abs()))
        };
        for (i, (&g, &c)) in g.iter().zip(c).enumerate() {
            let ok = if c.is_nan() {
                g.is_nan()
            } else {
                (g - c).abs() <= 1e-5 * scale
            };
            assert!(
                ok,
                "{what}: plane {p} value {i}: GPU {g} CPU {c} (scale {scale})"
            );
        }
    }
}

#[test]
fn gpu_tensors_equal_the_cpu_reference() {
    let Some(gpu) = gpu() else { return };
    let mut random = Random(7);
    let data = planes(&mut random);
    // 5 items × 2 channels.
    let planes: Vec<Plane> = data
        .iter()
        .map(|(w, h, d)| Plane::new(*w, *h, d).unwrap())
        .collect();
    let batch = Batch::new(5, 2, planes).unwrap();
    let stretches = [
        Stretch::Linear,
        Stretch::Sqrt,
        Stretch::LOG,
        Stretch::ASINH,
        Stretch::Asinh { a: 0.02 },
    ];
    let intervals = [
        Interval::MinMax,
        Interval::central_percentile(99.5),
        Interval::Percentile {
            lower: 0.0,
            upper: 100.0,
        },
        Interval::Percentile {
            lower: 1.0,
            upper: 99.9,
        },
    ];
    let mut runs = 0;
    for filter in [Filter::Bilinear, Filter::Lanczos3] {
        for (height, width) in [(32, 32), (224, 224), (40, 17)] {
            for flux_conserving in [false, true] {
                let base = Recipe {
                    height,
                    width,
                    filter,
                    flux_conserving,
                    scaling: None,
                    fill: f32::NAN,
                };
                let mut recipes = vec![base];
                for stretch in stretches {
                    for interval in intervals {
                        recipes.push(Recipe {
                            scaling: Some(Scaling { interval, stretch }),
                            fill: if flux_conserving { 0.0 } else { f32::NAN },
                            ..base
                        });
                    }
                }
                for recipe in recipes {
                    let want = reference::tensor(&batch, &recipe).unwrap();
                    let got = gpu.tensor(&batch, &recipe).unwrap();
                    assert_eq!(got.shape, [5, 2, height, width]);
                    assert_eq!(got.shape, want.shape);
                    let what = format!("{recipe:?}");
                    assert_close(
                        &got.data,
                        &want.data,
                        height * width,
                        recipe.scaling.is_some(),
                        &what,
                    );
                    runs += 1;
                }
            }
        }
    }
    assert_eq!(runs, 2 * 3 * 2 * 21);
}

#[test]
fn bad_recipes_are_refused_on_both_paths() {
    let Some(gpu) = gpu() else { return };
    let data = [1.0f32; 4];
    let batch = Batch::new(1, 1, vec![Plane::new(2, 2, &data).unwrap()]).unwrap();
    let recipe = Recipe {
        width: 0,
        ..Recipe::new(8, 8)
    };
    let cpu = reference::tensor(&batch, &recipe).unwrap_err().to_string();
    let on_gpu = gpu.tensor(&batch, &recipe).unwrap_err().to_string();
    assert_eq!(cpu, on_gpu);
    assert!(cpu.contains("empty"), "{cpu}");
    // An empty batch is an empty tensor, not an error.
    let none = Batch::new(0, 3, vec![]).unwrap();
    let t = gpu.tensor(&none, &Recipe::new(8, 8)).unwrap();
    assert_eq!((t.shape, t.data.len()), ([0, 3, 8, 8], 0));
}
