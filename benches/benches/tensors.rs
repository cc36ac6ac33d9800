//! Criterion benches of the tensor kernels: 256 items × 4 bands of 300² float32 planes (a
//! galaxy-sized cutout at Euclid's 0.1″ pixels) to `[256, 4, 224, 224]` with Lanczos-3 and
//! asinh on the central 99.5 %, on the CPU reference (all cores, rayon) and, when wgpu finds
//! an adapter, on the GPU (the adapter is printed). The recipe of the tensor issue's benchmark;
//! reading the cutouts is not measured here.
//!
//! `cargo bench -p insitu-benches --bench tensors`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use insitu_gpu::{reference, Batch, Gpu, Plane, Recipe};

const ITEMS: usize = 256;
const BANDS: usize = 4;
const SIDE: usize = 300;
const OUT: usize = 224;

/// Deterministic galaxy-like planes: an exponential profile on a noisy sky.
fn planes() -> Vec<Vec<f32>> {
    let mut state = 1u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..ITEMS * BANDS)
        .map(|_| {
            let scale = 3.0 + 20.0 * next();
            (0..SIDE * SIDE)
                .map(|i| {
                    let (x, y) = ((i % SIDE) as f32 - 150.0, (i / SIDE) as f32 - 150.0);
                    (-(x * x + y * y).sqrt() / scale).exp() + 1e-3 * (next() - 0.5)
                })
                .collect()
        })
        .collect()
}

fn tensors(c: &mut Criterion) {
    let data = planes();
    let batch = Batch::new(
        ITEMS,
        BANDS,
        data.iter()
            .map(|d| Plane::new(SIDE, SIDE, d).expect("SIDE² values"))
            .collect(),
    )
    .expect("ITEMS × BANDS planes");
    let recipe = Recipe::new(OUT, OUT);
    let mut group = c.benchmark_group("tensors_300_to_224_lanczos3_asinh");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function("cpu_reference", |b| {
        b.iter(|| black_box(reference::tensor(&batch, &recipe).expect("recipe is valid")))
    });
    match Gpu::open() {
        Ok(gpu) => {
            println!("wgpu adapter: {}", gpu.adapter());
            group.bench_function("gpu", |b| {
                b.iter(|| black_box(gpu.tensor(&batch, &recipe).expect("recipe is valid")))
            });
        }
        Err(e) => println!("GPU bench not run: {e}"),
    }
    group.finish();
}

criterion_group!(benches, tensors);
criterion_main!(benches);
