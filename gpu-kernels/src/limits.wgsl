// Per-plane display limits (lo, hi) of the resampled planes, one workgroup a plane: the
// smallest and largest finite value, or two percentiles as numpy's `percentile` (method
// "linear") takes them, each rank found exactly by a radix select on the values' bits (four
// 8-bit histogram passes). The CPU reference is stretch.rs `limits`. Planes with no finite
// value get NaN limits.

struct Params {
    plane_len: u32,
    // 0: min/max, 1: percentiles
    mode: u32,
    lower: f32,
    upper: f32,
}

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read_write> limits: array<vec2<f32>>;
@group(0) @binding(2) var<uniform> params: Params;

const GROUP: u32 = 256u;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> part_count: array<u32, 256>;
var<workgroup> part_min: array<f32, 256>;
var<workgroup> part_max: array<f32, 256>;
var<workgroup> finite_count: u32;
var<workgroup> chosen_bucket: u32;
var<workgroup> chosen_rest: u32;

// Unsigned keys in the order of the floats: negative values flipped whole, positive ones with
// the sign bit set.
fn sortable(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn unsortable(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// The finite value of rank `rank` (0-based, ascending) of plane `base..base + n`.
fn select_rank(base: u32, n: u32, rank: u32, lid: u32) -> f32 {
    var prefix = 0u;
    var mask = 0u;
    var rest = rank;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        for (var i = lid; i < n; i += GROUP) {
            let v = values[base + i];
            if is_finite(v) {
                let key = sortable(v);
                if (key & mask) == prefix {
                    atomicAdd(&hist[(key >> shift) & 255u], 1u);
                }
            }
        }
        workgroupBarrier();
        if lid == 0u {
            var below = 0u;
            var bucket = 255u;
            var left = 0u;
            for (var b = 0u; b < 256u; b++) {
                let c = atomicLoad(&hist[b]);
                if rest < below + c {
                    bucket = b;
                    left = rest - below;
                    break;
                }
                below += c;
            }
            chosen_bucket = bucket;
            chosen_rest = left;
        }
        let bucket = workgroupUniformLoad(&chosen_bucket);
        rest = workgroupUniformLoad(&chosen_rest);
        prefix |= bucket << shift;
        mask |= 255u << shift;
    }
    return unsortable(prefix);
}

// numpy's percentile of the `count` finite values: linear between the two neighbouring ranks,
// taken from the upper one when the fraction is ≥ ½ (numpy's _lerp).
fn percentile(base: u32, n: u32, count: u32, p: f32, lid: u32) -> f32 {
    let last = count - 1u;
    let q = clamp(p / 100.0, 0.0, 1.0);
    let index = f32(last) * q;
    let below = min(u32(floor(index)), last);
    let gamma = index - f32(below);
    let a = select_rank(base, n, below, lid);
    let b = select_rank(base, n, min(below + 1u, last), lid);
    let diff = b - a;
    return select(a + diff * gamma, b - diff * (1.0 - gamma), gamma >= 0.5);
}

@compute @workgroup_size(256, 1, 1)
fn plane_limits(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let plane = group.x + group.y * 65535u;
    let n = params.plane_len;
    let base = plane * n;
    var count = 0u;
    var lo = 3.4028235e38;
    var hi = -3.4028235e38;
    for (var i = lid; i < n; i += GROUP) {
        let v = values[base + i];
        if is_finite(v) {
            count += 1u;
            lo = min(lo, v);
            hi = max(hi, v);
        }
    }
    part_count[lid] = count;
    part_min[lid] = lo;
    part_max[lid] = hi;
    workgroupBarrier();
    if lid == 0u {
        var total = 0u;
        var l = 3.4028235e38;
        var h = -3.4028235e38;
        for (var t = 0u; t < GROUP; t++) {
            total += part_count[t];
            l = min(l, part_min[t]);
            h = max(h, part_max[t]);
        }
        finite_count = total;
        part_min[0] = l;
        part_max[0] = h;
    }
    let total = workgroupUniformLoad(&finite_count);
    if total == 0u {
        if lid == 0u {
            limits[plane] = vec2<f32>(nan(), nan());
        }
        return;
    }
    if params.mode == 0u {
        if lid == 0u {
            limits[plane] = vec2<f32>(part_min[0], part_max[0]);
        }
        return;
    }
    let low = percentile(base, n, total, params.lower, lid);
    let high = percentile(base, n, total, params.upper, lid);
    if lid == 0u {
        limits[plane] = vec2<f32>(low, high);
    }
}
