//! The wgpu host of the tensor kernels: finds an adapter, uploads a batch's planes and their
//! resampling weights, runs `resample.wgsl` (two passes), `limits.wgsl` and `stretch.wgsl`, and
//! reads the tensor back. Batches larger than the device's buffers are cut into chunks of
//! planes. [`Tensorizer`] falls back to [`crate::reference`] when there is no adapter.

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::recipe::{Batch, Recipe, Tensor};
use crate::resample::{flux_factor, BatchTables};
use crate::stretch::{Interval, Stretch};
use crate::{reference, Error, Result};

/// The most bytes one buffer of a chunk holds, whatever the device allows: bounds the memory a
/// batch takes on the device (and on the host, for the read-back).
const MAX_CHUNK_BYTES: u64 = 256 << 20;
/// Dispatches address at most this many workgroups a dimension (WebGPU's default limit).
const MAX_GROUPS: u32 = 65_535;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TableInfo {
    stride: u32,
    window_offset: u32,
    weight_offset: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ResampleParams {
    out_w: u32,
    out_h: u32,
    planes: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LimitParams {
    plane_len: u32,
    mode: u32,
    lower: f32,
    upper: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct StretchParams {
    plane_len: u32,
    stretch: u32,
    a: f32,
    norm: f32,
    fill: f32,
    total: u32,
    row: u32,
    _pad: u32,
}

/// A kernel's WGSL source after the helpers every kernel shares (`float_bits.wgsl`).
macro_rules! kernel {
    ($file:literal) => {
        wgpu::ShaderModuleDescriptor {
            label: Some($file),
            source: wgpu::ShaderSource::Wgsl(std::borrow::Cow::Borrowed(concat!(
                include_str!("float_bits.wgsl"),
                include_str!($file)
            ))),
        }
    };
}

/// A GPU device with the tensor kernels compiled for it.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: String,
    software: bool,
    max_chunk_bytes: u64,
    horizontal: wgpu::ComputePipeline,
    vertical: wgpu::ComputePipeline,
    limits: wgpu::ComputePipeline,
    stretch: wgpu::ComputePipeline,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.adapter)
            .finish()
    }
}

impl Gpu {
    /// The first high-performance adapter wgpu finds (its backends may be narrowed with
    /// `WGPU_BACKEND`), with the kernels compiled; [`Error::NoAdapter`] when there is none.
    pub fn open() -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        let adapter = pollster::block_on(instance.request_adapter(&options))
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("insitu tensors"),
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = |module: &wgpu::ShaderModule, entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let resample = device.create_shader_module(kernel!("resample.wgsl"));
        let limits_module = device.create_shader_module(kernel!("limits.wgsl"));
        let stretch_module = device.create_shader_module(kernel!("stretch.wgsl"));
        let gpu = Gpu {
            horizontal: pipeline(&resample, "horizontal"),
            vertical: pipeline(&resample, "vertical"),
            limits: pipeline(&limits_module, "plane_limits"),
            stretch: pipeline(&stretch_module, "scale"),
            adapter: format!("{} ({:?}, {})", info.name, info.backend, info.driver_info),
            software: info.device_type == wgpu::DeviceType::Cpu,
            max_chunk_bytes: MAX_CHUNK_BYTES
                .min(limits.max_storage_buffer_binding_size)
                .min(limits.max_buffer_size),
            device,
            queue,
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("the kernels do not compile: {e}")));
        }
        Ok(gpu)
    }

    /// The adapter's name, backend and driver, for logs and benchmark reports.
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Whether the adapter is a software rasteriser on the CPU (Mesa's lavapipe), which the
    /// CPU path outruns.
    pub fn is_software(&self) -> bool {
        self.software
    }

    /// The `[N, C, H, W]` tensor of `batch` made as `recipe` says, on the GPU: the same values
    /// as [`reference::tensor`] up to float rounding.
    pub fn tensor(&self, batch: &Batch<'_>, recipe: &Recipe) -> Result<Tensor> {
        self.tensor_in(batch, recipe, Vec::new())
    }

    /// [`Gpu::tensor`], read back into `buffer`'s memory (its values do not matter).
    pub fn tensor_in(
        &self,
        batch: &Batch<'_>,
        recipe: &Recipe,
        buffer: Vec<f32>,
    ) -> Result<Tensor> {
        recipe.check()?;
        batch.check()?;
        let plane_len = recipe.width * recipe.height;
        let mut data = buffer;
        data.clear();
        data.reserve(batch.planes.len() * plane_len);
        let mut start = 0;
        while start < batch.planes.len() {
            let end = self.chunk_end(batch, recipe, start)?;
            data.extend(self.run_chunk(batch, recipe, start..end)?);
            start = end;
        }
        Ok(Tensor {
            shape: [batch.items, batch.channels, recipe.height, recipe.width],
            data,
        })
    }

    /// The end of the chunk of planes from `start` whose buffers fit the device.
    fn chunk_end(&self, batch: &Batch<'_>, recipe: &Recipe, start: usize) -> Result<usize> {
        let limit = self.max_chunk_bytes / 4;
        let (mut src, mut tmp, mut dst) = (0u64, 0u64, 0u64);
        let mut end = start;
        for plane in &batch.planes[start..] {
            let (w, h) = (plane.width as u64, plane.height as u64);
            let (s, t, d) = (
                w * h,
                h * recipe.width as u64,
                (recipe.width * recipe.height) as u64,
            );
            if s > limit || t > limit || h > u64::from(MAX_GROUPS) * 16 {
                return Err(Error::Input(format!(
                    "a {w}×{h} plane is too large for the GPU's buffers"
                )));
            }
            if src + s > limit
                || tmp + t > limit
                || dst + d > limit
                || end - start >= MAX_GROUPS as usize
            {
                break;
            }
            (src, tmp, dst) = (src + s, tmp + t, dst + d);
            end += 1;
        }
        Ok(end)
    }

    fn run_chunk(
        &self,
        batch: &Batch<'_>,
        recipe: &Recipe,
        planes: std::ops::Range<usize>,
    ) -> Result<Vec<f32>> {
        let planes = &batch.planes[planes];
        let (out_w, out_h) = (recipe.width, recipe.height);
        let plane_len = out_w * out_h;
        let tables = BatchTables::new(
            recipe.filter,
            planes.iter().map(|p| (p.width, p.height)),
            out_w,
            out_h,
        );
        let (mut table_info, mut windows, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for t in &tables.tables {
            table_info.push(TableInfo {
                stride: t.stride as u32,
                window_offset: windows.len() as u32,
                weight_offset: weights.len() as u32,
                _pad: 0,
            });
            windows.extend_from_slice(&t.windows);
            weights.extend_from_slice(&t.weights);
        }
        let (mut info, mut src) = (Vec::with_capacity(planes.len()), Vec::new());
        let (mut tmp_len, mut max_h) = (0usize, 0usize);
        for (plane, &[h, v]) in planes.iter().zip(&tables.of_plane) {
            let flux = if recipe.flux_conserving {
                flux_factor(plane.width, plane.height, out_w, out_h)
            } else {
                1.0
            };
            info.push(PlaneInfo {
                src_offset: src.len() as u32,
                width: plane.width as u32,
                height: plane.height as u32,
                tmp_offset: tmp_len as u32,
                h_table: h as u32,
                v_table: v as u32,
                flux,
                _pad: 0,
            });
            src.extend_from_slice(plane.data);
            tmp_len += plane.height * out_w;
            max_h = max_h.max(plane.height);
        }
        let count = planes.len() as u32;
        let total = planes.len() * plane_len;

        let d = &self.device;
        let scope = d.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = d.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let storage = wgpu::BufferUsages::STORAGE;
        let init = |label: &str, contents: &[u8], usage| {
            d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
        };
        let empty = |label: &str, bytes: usize, usage| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (bytes.max(4) as u64).next_multiple_of(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let info_buf = init("planes", bytemuck::cast_slice(&info), storage);
        let table_buf = init("tables", bytemuck::cast_slice(&table_info), storage);
        let window_buf = init("windows", bytemuck::cast_slice(&windows), storage);
        let weight_buf = init("weights", bytemuck::cast_slice(&weights), storage);
        let src_buf = init("src", bytemuck::cast_slice(&src), storage);
        let tmp_buf = empty("tmp", tmp_len * 4, storage);
        let dst_buf = empty("dst", total * 4, storage | wgpu::BufferUsages::COPY_SRC);
        let limits_buf = empty("limits", planes.len() * 8, storage);
        let read_buf = empty(
            "read-back",
            total * 4,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let resample_params = ResampleParams {
            out_w: out_w as u32,
            out_h: out_h as u32,
            planes: count,
            _pad: 0,
        };
        let uniform = wgpu::BufferUsages::UNIFORM;
        let resample_params = init("resample", bytemuck::bytes_of(&resample_params), uniform);
        let (mode, lower, upper) = match recipe.scaling.map(|s| s.interval) {
            Some(Interval::Percentile { lower, upper }) => (1, lower, upper),
            _ => (0, 0.0, 100.0),
        };
        let limit_params = LimitParams {
            plane_len: plane_len as u32,
            mode,
            lower,
            upper,
        };
        let limit_params = init("limits", bytemuck::bytes_of(&limit_params), uniform);
        let groups = total.div_ceil(256) as u32;
        let groups_x = groups.clamp(1, MAX_GROUPS);
        let groups_y = groups.div_ceil(groups_x).max(1);
        let (stretch, a, norm) = stretch_code(recipe.scaling.map(|s| s.stretch));
        let stretch_params = StretchParams {
            plane_len: plane_len as u32,
            stretch,
            a,
            norm,
            fill: recipe.fill,
            total: total as u32,
            row: groups_x * 256,
            _pad: 0,
        };
        let stretch_params = init("stretch", bytemuck::bytes_of(&stretch_params), uniform);

        // Each entry point's automatic layout holds only the bindings it uses.
        let bind = |pipeline: &wgpu::ComputePipeline, buffers: &[(u32, &wgpu::Buffer)]| {
            let entries: Vec<wgpu::BindGroupEntry> = buffers
                .iter()
                .map(|&(binding, b)| wgpu::BindGroupEntry {
                    binding,
                    resource: b.as_entire_binding(),
                })
                .collect();
            d.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        };
        let shared = [
            (0, &info_buf),
            (1, &table_buf),
            (2, &window_buf),
            (3, &weight_buf),
            (7, &resample_params),
        ];
        let horizontal = bind(
            &self.horizontal,
            &[&shared[..], &[(4, &src_buf), (5, &tmp_buf)]].concat(),
        );
        let vertical = bind(
            &self.vertical,
            &[&shared[..], &[(5, &tmp_buf), (6, &dst_buf)]].concat(),
        );
        let scaled = recipe.scaling.is_some();
        let limits = scaled.then(|| {
            bind(
                &self.limits,
                &[(0, &dst_buf), (1, &limits_buf), (2, &limit_params)],
            )
        });
        let stretch_group = bind(
            &self.stretch,
            &[(0, &dst_buf), (1, &limits_buf), (2, &stretch_params)],
        );

        let mut encoder = d.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.horizontal);
            pass.set_bind_group(0, &horizontal, &[]);
            pass.dispatch_workgroups(out_w.div_ceil(16) as u32, max_h.div_ceil(16) as u32, count);
            pass.set_pipeline(&self.vertical);
            pass.set_bind_group(0, &vertical, &[]);
            pass.dispatch_workgroups(out_w.div_ceil(16) as u32, out_h.div_ceil(16) as u32, count);
            if let Some(limits) = &limits {
                pass.set_pipeline(&self.limits);
                pass.set_bind_group(0, limits, &[]);
                pass.dispatch_workgroups(count, 1, 1);
            }
            pass.set_pipeline(&self.stretch);
            pass.set_bind_group(0, &stretch_group, &[]);
            pass.dispatch_workgroups(groups_x, groups_y, 1);
        }
        encoder.copy_buffer_to_buffer(&dst_buf, 0, &read_buf, 0, (total * 4) as u64);
        self.queue.submit([encoder.finish()]);
        let (sender, receiver) = std::sync::mpsc::channel();
        read_buf.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = sender.send(r);
        });
        d.poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        if let Some(e) = pollster::block_on(memory.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(e.to_string()));
        }
        receiver
            .recv()
            .map_err(|e| Error::Gpu(e.to_string()))?
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let view = read_buf
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let values = bytemuck::cast_slice::<u8, f32>(&view[..total * 4]).to_vec();
        Ok(values)
    }
}

/// The stretch kernel's code, parameter and normaliser, the latter computed as the CPU path
/// computes it (stretch.rs `apply`).
fn stretch_code(stretch: Option<Stretch>) -> (u32, f32, f32) {
    match stretch {
        None => (0, 0.0, 1.0),
        Some(Stretch::Linear) => (1, 0.0, 1.0),
        Some(Stretch::Sqrt) => (2, 0.0, 1.0),
        Some(Stretch::Log { a }) => (3, a, a.ln_1p()),
        Some(Stretch::Asinh { a }) => (4, a, crate::stretch::asinh_of_positive(1.0 / a)),
    }
}

/// Which path a [`Tensorizer`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Device {
    /// A hardware GPU when wgpu finds one, else the CPU (a software adapter is not used).
    Auto,
    /// Any adapter wgpu finds, a software one included (tests run lavapipe so), else the CPU.
    Gpu,
    /// The CPU reference.
    Cpu,
}

/// Where tensors are made: on a GPU, or on the CPU ([`reference::tensor`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Tensorizer {
    Gpu(Box<Gpu>),
    Cpu,
}

impl Tensorizer {
    /// [`Tensorizer::new`] with [`Device::Auto`].
    pub fn auto() -> Tensorizer {
        Tensorizer::new(Device::Auto)
    }

    /// The path `device` asks for, as far as the machine has it; logs which, once.
    pub fn new(device: Device) -> Tensorizer {
        if device == Device::Cpu {
            tracing::info!("tensors on the CPU, as asked");
            return Tensorizer::Cpu;
        }
        match Gpu::open() {
            Ok(gpu) if device == Device::Auto && gpu.is_software() => {
                tracing::info!(
                    "tensors on the CPU: the only adapter, {}, is a software one",
                    gpu.adapter()
                );
                Tensorizer::Cpu
            }
            Ok(gpu) => {
                tracing::info!("tensors on the GPU: {}", gpu.adapter());
                Tensorizer::Gpu(Box::new(gpu))
            }
            Err(e) => {
                tracing::info!("tensors on the CPU ({e})");
                Tensorizer::Cpu
            }
        }
    }

    /// Which path, in words: the adapter, or "CPU".
    pub fn describe(&self) -> String {
        match self {
            Tensorizer::Gpu(gpu) => format!("GPU {}", gpu.adapter()),
            Tensorizer::Cpu => "CPU".into(),
        }
    }

    pub fn tensor(&self, batch: &Batch<'_>, recipe: &Recipe) -> Result<Tensor> {
        self.tensor_in(batch, recipe, Vec::new())
    }

    /// The tensor made in `buffer`'s memory (its length and values do not matter), for
    /// callers that reuse the allocations of tensors they are done with.
    pub fn tensor_in(
        &self,
        batch: &Batch<'_>,
        recipe: &Recipe,
        buffer: Vec<f32>,
    ) -> Result<Tensor> {
        match self {
            Tensorizer::Gpu(gpu) => gpu.tensor_in(batch, recipe, buffer),
            Tensorizer::Cpu => reference::tensor_in(batch, recipe, buffer),
        }
    }

    /// The tensor's values written into `out`, which holds exactly the tensor (C order), for
    /// callers that own the memory (a numpy array). The CPU path writes in place; the GPU
    /// path copies what it reads back.
    pub fn tensor_into(&self, batch: &Batch<'_>, recipe: &Recipe, out: &mut [f32]) -> Result<()> {
        match self {
            Tensorizer::Gpu(gpu) => {
                reference::check_len(batch, recipe, out.len())?;
                out.copy_from_slice(&gpu.tensor(batch, recipe)?.data);
                Ok(())
            }
            Tensorizer::Cpu => reference::tensor_into(batch, recipe, out),
        }
    }
}
