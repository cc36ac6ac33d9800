// Separable resampling of variable-size planes to one out_w × out_h size: `horizontal` makes
// each plane's rows out_w wide (into `tmp`), `vertical` makes its columns out_h tall (into
// `dst`). The weights come precomputed per axis (resample.rs, AxisTable); this file only
// accumulates, in the same order as the CPU reference. Non-finite inputs are tested by their
// bits (`is_finite`, `nan` from float_bits.wgsl, which gpu.rs puts before this file).

struct PlaneInfo {
    src_offset: u32,
    width: u32,
    height: u32,
    tmp_offset: u32,
    h_table: u32,
    v_table: u32,
    flux: f32,
    _pad: u32,
}

struct TableInfo {
    stride: u32,
    window_offset: u32,
    weight_offset: u32,
    _pad: u32,
}

struct Params {
    out_w: u32,
    out_h: u32,
    planes: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> planes: array<PlaneInfo>;
@group(0) @binding(1) var<storage, read> tables: array<TableInfo>;
@group(0) @binding(2) var<storage, read> windows: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read> src: array<f32>;
@group(0) @binding(5) var<storage, read_write> tmp: array<f32>;
@group(0) @binding(6) var<storage, read_write> dst: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;

struct Sum {
    sum: f32,
    finite_weight: f32,
    missing: bool,
}

fn add(acc: ptr<function, Sum>, w: f32, v: f32) {
    if is_finite(v) {
        (*acc).sum += w * v;
        (*acc).finite_weight += w;
    } else {
        (*acc).missing = true;
    }
}

// The weighted sum, re-weighted over the finite inputs when some are not; NaN when those carry
// less than half of the weight. `ok` is false for NaN (kept out of arithmetic).
struct Value {
    value: f32,
    ok: bool,
}

fn finish(acc: Sum) -> Value {
    if !acc.missing {
        return Value(acc.sum, true);
    }
    if acc.finite_weight >= 0.5 {
        return Value(acc.sum / acc.finite_weight, true);
    }
    return Value(0.0, false);
}

@compute @workgroup_size(16, 16, 1)
fn horizontal(@builtin(global_invocation_id) id: vec3<u32>) {
    let p = id.z;
    let x = id.x;
    let y = id.y;
    if p >= params.planes {
        return;
    }
    let info = planes[p];
    if x >= params.out_w || y >= info.height {
        return;
    }
    let t = tables[info.h_table];
    let win = windows[t.window_offset + x];
    let row = info.src_offset + y * info.width + win.x;
    let w0 = t.weight_offset + x * t.stride;
    var acc = Sum(0.0, 0.0, false);
    for (var k = 0u; k < win.y; k++) {
        add(&acc, weights[w0 + k], src[row + k]);
    }
    let v = finish(acc);
    tmp[info.tmp_offset + y * params.out_w + x] = select(nan(), v.value, v.ok);
}

@compute @workgroup_size(16, 16, 1)
fn vertical(@builtin(global_invocation_id) id: vec3<u32>) {
    let p = id.z;
    let x = id.x;
    let y = id.y;
    if p >= params.planes || x >= params.out_w || y >= params.out_h {
        return;
    }
    let info = planes[p];
    let t = tables[info.v_table];
    let win = windows[t.window_offset + y];
    let w0 = t.weight_offset + y * t.stride;
    var acc = Sum(0.0, 0.0, false);
    for (var k = 0u; k < win.y; k++) {
        add(&acc, weights[w0 + k], tmp[info.tmp_offset + (win.x + k) * params.out_w + x]);
    }
    let v = finish(acc);
    dst[(p * params.out_h + y) * params.out_w + x] = select(nan(), v.value * info.flux, v.ok);
}
