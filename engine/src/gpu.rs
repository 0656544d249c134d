//! `Gpu`: one adapter, one device, one queue, and the cache of compiled pipelines.
//!
//! Adapter choice: `GpuOptions::adapter` (by default the `SHADERLM_ADAPTER` environment variable,
//! a case-insensitive substring of the adapter name), else the high-performance adapter, else
//! whatever exists (lavapipe on a machine without a GPU). The device is opened with every limit
//! the adapter offers and the optional features the kernels can use: shader-f16, subgroups,
//! timestamp queries and cooperative matrices. Kernels with a fast path pick it at runtime from
//! `GpuInfo::features`; `GpuOptions` can switch a fast path off, which is how the tests run the
//! portable path on an adapter that has both.
//!
//! Several GPUs: [`adapters`] lists what wgpu enumerates, in a stable order; `--gpus` style
//! specs ("all" or "0,1") become indices into that list through [`select_adapters`], and
//! `GpuOptions::adapter_index` opens one of them. Opening the same index twice gives two
//! independent devices on one adapter, which is how the multi-GPU code is tested on lavapipe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::kernels::Shader;

/// What to open and which fast paths to allow.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Case-insensitive substring of the adapter name; `None` picks the high-performance one.
    pub adapter: Option<String>,
    /// Index into [`adapters`]; takes precedence over `adapter`.
    pub adapter_index: Option<usize>,
    /// Use subgroup operations where the adapter has them.
    pub subgroups: bool,
    /// Use f16 arithmetic (`enable f16`) where the adapter has it.
    pub shader_f16: bool,
    /// Use cooperative-matrix (tensor core) instructions where the adapter has them.
    pub cooperative_matrix: bool,
    /// Lower the largest storage binding below the adapter's (tests use this to exercise
    /// split bindings cheaply). Never raises it.
    pub max_binding_bytes: Option<u64>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            adapter: std::env::var("SHADERLM_ADAPTER").ok().filter(|s| !s.is_empty()),
            adapter_index: None,
            subgroups: true,
            shader_f16: true,
            cooperative_matrix: true,
            max_binding_bytes: None,
        }
    }
}

/// Optional features, as enabled on this device (adapter support AND the options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamp_query: bool,
    pub cooperative_matrix: bool,
}

/// What the opened device is.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub features: Features,
    /// Smallest and largest subgroup size the adapter reports (0 when it has no subgroups).
    pub subgroup_size: (u32, u32),
    /// Largest range one storage binding may cover.
    pub max_binding_bytes: u64,
    /// Largest single buffer.
    pub max_buffer_bytes: u64,
    /// Alignment of a storage binding's offset.
    pub binding_alignment: u64,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroups_per_dimension: u32,
    /// Device-local memory the adapter reports (Vulkan only; `None` where it cannot be asked).
    pub memory_bytes: Option<u64>,
    /// The cooperative-matrix configurations (M x N x K, input and accumulator types) the
    /// adapter supports; empty when `features.cooperative_matrix` is off.
    pub cooperative_matrices: Vec<wgpu::CooperativeMatrixProperties>,
}

impl GpuInfo {
    /// Whether cooperative matrices are on with an `m x n x k` configuration of `ab` inputs into
    /// a `cr` accumulator.
    pub fn has_cooperative_matrix(
        &self,
        (m, n, k): (u32, u32, u32),
        ab: wgpu::CooperativeScalarType,
        cr: wgpu::CooperativeScalarType,
    ) -> bool {
        self.features.cooperative_matrix
            && self
                .cooperative_matrices
                .iter()
                .any(|c| (c.m_size, c.n_size, c.k_size) == (m, n, k) && c.ab_type == ab && c.cr_type == cr)
    }
}

impl std::fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "yes" } else { "no" };
        let ft = &self.features;
        let scalar = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_lowercase();
        let coop = if ft.cooperative_matrix {
            let configs: Vec<String> = self
                .cooperative_matrices
                .iter()
                .map(|c| format!("{}x{}x{} {}->{}", c.m_size, c.n_size, c.k_size, scalar(c.ab_type), scalar(c.cr_type)))
                .collect();
            format!("yes ({})", configs.join(", "))
        } else {
            "no".to_string()
        };
        write!(
            f,
            "{} ({}, {}, driver {}) | shader-f16 {} | subgroups {} ({}..{}) | timestamps {} | \
             cooperative matrix {} | max binding {} MiB | max buffer {} MiB | memory {}",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            on(ft.shader_f16),
            on(ft.subgroups),
            self.subgroup_size.0,
            self.subgroup_size.1,
            on(ft.timestamp_query),
            coop,
            self.max_binding_bytes >> 20,
            self.max_buffer_bytes >> 20,
            self.memory_bytes.map_or("unknown".to_string(), |b| format!("{} MiB", b >> 20)),
        )
    }
}

type PipelineKey = (&'static str, Vec<(String, u64)>);

pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: GpuInfo,
    adapter_info: wgpu::AdapterInfo,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Pipelines that failed to compile, with the message: not tried again (a kernel with a
    /// fallback asks once, not once per op it builds).
    failed: Mutex<HashMap<PipelineKey, String>>,
    /// `SHADERLM_DEBUG`: 0 quiet, 1 list dispatches, 2 also time them.
    pub(crate) debug: u8,
}

/// Names and backends of every adapter wgpu can see, for `--list-adapters` style output.
pub fn list_adapters() -> Vec<String> {
    let instance = new_instance();
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect()
}

/// One adapter as [`adapters`] lists it.
#[derive(Clone, Debug)]
pub struct AdapterEntry {
    /// Position in the enumeration: what `--gpus` and `GpuOptions::adapter_index` name.
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    /// A software rasterizer (lavapipe, llvmpipe, WARP).
    pub is_cpu: bool,
}

impl std::fmt::Display for AdapterEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({}, {})", self.index, self.name, self.backend, self.device_type)
    }
}

/// Every adapter wgpu enumerates, in its order (the same on every call in one process).
pub fn adapters() -> Vec<AdapterEntry> {
    enumerate(&new_instance())
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let i = a.get_info();
            AdapterEntry {
                index,
                name: i.name,
                backend: format!("{:?}", i.backend),
                device_type: format!("{:?}", i.device_type),
                is_cpu: i.device_type == wgpu::DeviceType::Cpu,
            }
        })
        .collect()
}

/// Adapter indices for a `--gpus` spec over `list`: "all" (the real GPUs of the first backend
/// that has one, so a GPU seen through two backends counts once; the CPU adapters when there is
/// no GPU) or comma-separated indices, repeats allowed ("0,0" opens adapter 0 twice).
pub fn select_adapters(spec: &str, list: &[AdapterEntry]) -> Result<Vec<usize>> {
    let spec = spec.trim();
    if list.is_empty() {
        return Err(Error::NoAdapter("wgpu found none".into()));
    }
    if spec.eq_ignore_ascii_case("all") {
        let real: Vec<&AdapterEntry> = list.iter().filter(|a| !a.is_cpu).collect();
        let pool = if real.is_empty() { list.iter().collect() } else { real };
        let backend = &pool[0].backend;
        return Ok(pool.iter().filter(|a| &a.backend == backend).map(|a| a.index).collect());
    }
    let names = || list.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("; ");
    spec.split(',')
        .map(|part| {
            let part = part.trim();
            match part.parse::<usize>() {
                Ok(i) if i < list.len() => Ok(i),
                _ => Err(Error::NoAdapter(format!("--gpus {spec:?}: {part:?} is not an adapter index; adapters: [{}]", names()))),
            }
        })
        .collect()
}

fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
}

fn new_instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // Validation layers are slow and noisy; wgpu's own validation still runs.
    desc.flags.remove(wgpu::InstanceFlags::VALIDATION | wgpu::InstanceFlags::DEBUG);
    wgpu::Instance::new(desc)
}

impl Gpu {
    /// Opens the default adapter (see module docs).
    pub fn new() -> Result<Gpu> {
        Gpu::with_options(GpuOptions::default())
    }

    pub fn with_options(options: GpuOptions) -> Result<Gpu> {
        let instance = new_instance();
        let adapter = match options.adapter_index {
            Some(index) => enumerate(&instance).into_iter().nth(index).ok_or_else(|| {
                Error::NoAdapter(format!("no adapter {index}; adapters: [{}]", list_adapters().join(", ")))
            })?,
            None => pick_adapter(&instance, options.adapter.as_deref())?,
        };
        let adapter_info = adapter.get_info();
        let have = adapter.features();

        let mut wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if options.shader_f16 {
            wanted |= wgpu::Features::SHADER_F16;
        }
        if options.subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        if options.cooperative_matrix && options.shader_f16 {
            wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let features = have & wanted;
        let coop = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

        let mut limits = adapter.limits();
        if let Some(cap) = options.max_binding_bytes {
            limits.max_storage_buffer_binding_size = cap.min(limits.max_storage_buffer_binding_size) & !3;
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("shaderlm"),
            required_features: features,
            required_limits: limits.clone(),
            // Cooperative matrices are an experimental wgpu feature and must be opted into.
            experimental_features: if coop {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::Device { adapter: adapter_info.name.clone(), reason: e.to_string() })?;

        let has = |f| features.contains(f);
        let info = GpuInfo {
            name: adapter_info.name.clone(),
            backend: format!("{:?}", adapter_info.backend),
            device_type: format!("{:?}", adapter_info.device_type),
            driver: format!("{} {}", adapter_info.driver, adapter_info.driver_info).trim().to_string(),
            features: Features {
                shader_f16: has(wgpu::Features::SHADER_F16),
                subgroups: has(wgpu::Features::SUBGROUP),
                timestamp_query: has(wgpu::Features::TIMESTAMP_QUERY),
                cooperative_matrix: coop,
            },
            subgroup_size: if has(wgpu::Features::SUBGROUP) {
                (adapter_info.subgroup_min_size, adapter_info.subgroup_max_size)
            } else {
                (0, 0)
            },
            max_binding_bytes: limits.max_storage_buffer_binding_size,
            max_buffer_bytes: limits.max_buffer_size,
            binding_alignment: limits.min_storage_buffer_offset_alignment as u64,
            max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            memory_bytes: device_local_memory(&adapter),
            cooperative_matrices: if coop { adapter.cooperative_matrix_properties() } else { Vec::new() },
        };
        let debug = std::env::var("SHADERLM_DEBUG").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Gpu {
            device,
            queue,
            info,
            adapter_info,
            pipelines: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            debug,
        })
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// Device-local memory, where the backend can say (used to refuse a model that won't fit
    /// before allocating it).
    pub fn memory_bytes(&self) -> Option<u64> {
        self.info.memory_bytes
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter_info
    }

    /// The raw wgpu device, for code that needs what the engine does not wrap.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map(|_| ())
            .map_err(|e| Error::Gpu { op: "wait".into(), message: e.to_string() })
    }

    /// The compiled pipeline for `shader` with the given `override` constants, compiled once.
    /// The shader's source is `common.wgsl` followed by the kernel's file (see `kernels`).
    pub(crate) fn pipeline(
        &self,
        shader: &Shader,
        constants: &[(&str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key: PipelineKey =
            (shader.name, constants.iter().map(|(k, v)| (k.to_string(), v.to_bits())).collect());
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        if let Some(message) = self.failed.lock().unwrap().get(&key) {
            return Err(Error::Shader { name: shader.name.to_string(), message: message.clone() });
        }
        let source = shader.compose();
        // A pipeline the driver cannot build is an internal error, not a validation one: both
        // are caught here (uncaught, wgpu's default handler would panic).
        let internal_scope = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // The kernels are this crate's own code, and every loop in them terminates: wgpu's forced
        // loop bounding (an extra counter and exit in every loop) would only cost time and keep
        // the driver from unrolling the short loops over override-sized tiles. All other
        // runtime checks stay on.
        let mut checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() };
        // On Vulkan the device runs with robustBufferAccess (a feature every Vulkan driver has,
        // which wgpu turns on), so a storage access out of a binding's range is already kept in
        // bounds by the driver: wgpu's own checks around each access would add nothing but
        // instructions. They cost the tensor-core matmul a quarter of its speed on the H200
        // (23 -> 31 TFLOP/s without them, BENCHMARKS.md). Other backends keep them.
        if self.info().backend == "Vulkan" {
            checks.bounds_checks = false;
        }
        // For measurement only: SHADERLM_UNCHECKED=1 also drops the guards on integer division.
        if std::env::var("SHADERLM_UNCHECKED").is_ok_and(|v| v == "1") {
            checks.bounds_checks = false;
            checks.int_div_checks = false;
        }
        let descriptor =
            wgpu::ShaderModuleDescriptor { label: Some(shader.name), source: wgpu::ShaderSource::Wgsl(source.into()) };
        // SAFETY: see above: no kernel loops forever; on Vulkan the driver's robust buffer access
        // bounds every storage access (SHADERLM_UNCHECKED=1 is a measurement switch on trusted
        // kernels).
        let module = unsafe { self.device.create_shader_module_trusted(descriptor, checks) };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(shader.name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let validation = pollster::block_on(scope.pop());
        let internal = pollster::block_on(internal_scope.pop());
        if let Some(err) = validation.or(internal) {
            let message = err.to_string();
            self.failed.lock().unwrap().insert(key, message.clone());
            return Err(Error::Shader { name: shader.name.to_string(), message });
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// A uniform buffer holding `params`, written once (kernels keep it in their `Op`).
    pub(crate) fn uniform<P: bytemuck::Pod>(&self, label: &str, params: &P) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }
}

fn pick_adapter(instance: &wgpu::Instance, wanted: Option<&str>) -> Result<wgpu::Adapter> {
    let adapters = enumerate(instance);
    let names = || adapters.iter().map(|a| a.get_info().name).collect::<Vec<_>>().join(", ");
    if let Some(wanted) = wanted {
        let needle = wanted.to_lowercase();
        return adapters
            .iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&needle))
            .cloned()
            .ok_or_else(|| Error::NoAdapter(format!("none matches {wanted:?}; adapters: [{}]", names())));
    }
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    };
    if let Ok(adapter) = pollster::block_on(instance.request_adapter(&options)) {
        return Ok(adapter);
    }
    adapters.into_iter().next().ok_or_else(|| {
        Error::NoAdapter(
            "wgpu found none. Without a GPU, install a software Vulkan driver: \
             apt-get install -y mesa-vulkan-drivers libvulkan1"
                .into(),
        )
    })
}

/// Sum of the device-local memory heaps, asked of Vulkan through wgpu-hal. Other backends do not
/// expose it; they return `None` and the caller skips the check.
fn device_local_memory(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: the hal adapter is only read, while `adapter` is alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: the physical device belongs to this instance.
    let props = unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    const DEVICE_LOCAL: u32 = 1; // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT
    let heaps = &props.memory_heaps[..props.memory_heap_count as usize];
    let total: u64 = heaps.iter().filter(|h| h.flags.as_raw() & DEVICE_LOCAL != 0).map(|h| h.size).sum();
    (total > 0).then_some(total)
}
