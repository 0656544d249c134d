//! The kernel table and what every kernel shares.
//!
//! One kernel = one WGSL file `shaders/<op>.wgsl` + one Rust file `kernels/<op>.rs` with the same
//! stem. The Rust side checks shapes and dtypes (returning `Error`, never panicking), fills the
//! kernel's `Params` uniform (a `#[repr(C)]` Pod struct mirroring the WGSL struct field for
//! field), picks the pipeline variant (subgroup or portable), binds, and sizes the grid. It returns
//! an [`Op`]: ready-to-record dispatches that can be recorded any number of times, so a model
//! builds its per-token ops once and replays them.
//!
//! Every shader is compiled as `common.wgsl` + its own file (any `enable` lines of the file go
//! first, as WGSL requires), with the shared pieces of shaders/parts/ spliced in where the file
//! says `// include: <name>`. Pipeline-time constants (workgroup size, tiles) are WGSL `override`s
//! set through `PipelineCompilationOptions::constants`; per-dispatch values go in `Params`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

pub mod add;
pub mod argmax;
pub mod attention_decode;
pub mod attention_prefill;
pub mod copy;
pub mod cross_entropy;
pub mod copy_rows;
pub mod embedding;
pub mod matmul;
pub mod matvec;
pub mod matvec_batch;
pub mod quantize;
pub mod rms_norm;
pub mod rms_norm_matvec;
pub mod rms_norm_matvec_rope_kv_cache;
pub mod rms_norm_matvec_swiglu;
pub mod rope;
pub mod rope_kv_cache;
pub mod sample;
pub mod silu_mul;
pub mod softmax;
pub mod swiglu;

const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// A WGSL file and the entry point to compile from it.
pub(crate) struct Shader {
    /// Pipeline label and cache key, e.g. `"matvec_subgroup"`.
    pub name: &'static str,
    pub source: &'static str,
}

/// `shader!("rms_norm")` embeds `shaders/rms_norm.wgsl` (entry point `main`).
macro_rules! shader {
    ($stem:literal) => {
        $crate::kernels::Shader {
            name: $stem,
            source: include_str!(concat!("../../../shaders/", $stem, ".wgsl")),
        }
    };
}
pub(crate) use shader;

/// Pieces of WGSL that several kernels share (shaders/parts/), spliced in where a kernel has the
/// line `// include: <name>` (WGSL has no include of its own).
const PARTS: &[(&str, &str)] = &[
    ("workgroup_sums_subgroup", include_str!("../../../shaders/parts/workgroup_sums_subgroup.wgsl")),
    ("workgroup_sums_tree", include_str!("../../../shaders/parts/workgroup_sums_tree.wgsl")),
    ("matvec_body", include_str!("../../../shaders/parts/matvec_body.wgsl")),
    ("matvec_q8_body", include_str!("../../../shaders/parts/matvec_q8_body.wgsl")),
    ("matvec_q4_body", include_str!("../../../shaders/parts/matvec_q4_body.wgsl")),
    ("rms_norm_matvec_body", include_str!("../../../shaders/parts/rms_norm_matvec_body.wgsl")),
    ("rms_norm_matvec_swiglu_body", include_str!("../../../shaders/parts/rms_norm_matvec_swiglu_body.wgsl")),
    ("rms_norm_matvec_rope_kv_cache_body", include_str!("../../../shaders/parts/rms_norm_matvec_rope_kv_cache_body.wgsl")),
    ("matvec_s24_body", include_str!("../../../shaders/parts/matvec_s24_body.wgsl")),
    ("attention_decode_split", include_str!("../../../shaders/parts/attention_decode_split.wgsl")),
    ("rope_kv_cache_rows", include_str!("../../../shaders/parts/rope_kv_cache_rows.wgsl")),
    ("matmul_tiled", include_str!("../../../shaders/parts/matmul_tiled.wgsl")),
    ("matvec_batch_body", include_str!("../../../shaders/parts/matvec_batch_body.wgsl")),
    ("dot4_q8", include_str!("../../../shaders/parts/dot4_q8.wgsl")),
    ("dot4_q4", include_str!("../../../shaders/parts/dot4_q4.wgsl")),
    ("dot4_norm_x", include_str!("../../../shaders/parts/dot4_norm_x.wgsl")),
    ("matvec_dot4_body", include_str!("../../../shaders/parts/matvec_dot4_body.wgsl")),
    ("rms_norm_matvec_dot4_body", include_str!("../../../shaders/parts/rms_norm_matvec_dot4_body.wgsl")),
    ("rms_norm_matvec_swiglu_dot4_body", include_str!("../../../shaders/parts/rms_norm_matvec_swiglu_dot4_body.wgsl")),
    ("rms_norm_matvec_rope_kv_cache_dot4_body", include_str!("../../../shaders/parts/rms_norm_matvec_rope_kv_cache_dot4_body.wgsl")),
];

impl Shader {
    /// `enable` directives of the file, then common.wgsl, then the rest of the file with each
    /// `// include: <name>` line replaced by that part (parts may include parts). An unknown name
    /// becomes a line that does not compile, so the pipeline's error names it.
    pub(crate) fn compose(&self) -> String {
        let (enables, body): (Vec<&str>, Vec<&str>) =
            self.source.lines().partition(|l| l.trim_start().starts_with("enable "));
        let mut out = format!("{}\n{}\n", enables.join("\n"), COMMON);
        splice_parts(&body, &mut out, 0);
        out
    }
}

/// Appends `lines` to `out`, each `// include: <name>` line replaced by that part, recursively
/// (up to a depth no real nesting reaches, so a part that includes itself stops).
fn splice_parts(lines: &[&str], out: &mut String, depth: usize) {
    for line in lines {
        match line.trim_start().strip_prefix("// include: ").map(str::trim) {
            Some(name) => match PARTS.iter().find(|(part, _)| *part == name) {
                Some((_, text)) if depth < 4 => splice_parts(&text.lines().collect::<Vec<_>>(), out, depth + 1),
                _ => out.push_str(&format!("unknown_shader_part {name};\n")),
            },
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// One recorded dispatch: pipeline, bindings, grid.
#[derive(Clone)]
pub(crate) struct Dispatch {
    pub label: String,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// Bytes of storage bound (a rough count of memory traffic, for SHADERLM_DEBUG).
    pub bytes: u64,
}

/// A ready-to-record operation: one or more dispatches (more when a large tensor is bound
/// in chunks). Cheap to clone; record it with [`crate::Recorder::run`].
#[derive(Clone)]
pub struct Op {
    pub(crate) dispatches: Vec<Dispatch>,
}

impl Op {
    /// Concatenates two ops into one that records both, in order.
    pub fn then(mut self, other: Op) -> Op {
        self.dispatches.extend(other.dispatches);
        self
    }

    /// An op that records nothing (a neutral start for `then`).
    pub fn empty() -> Op {
        Op { dispatches: Vec::new() }
    }

    /// Number of dispatches.
    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }

    /// Labels of the dispatches, in order.
    pub fn labels(&self) -> Vec<&str> {
        self.dispatches.iter().map(|d| d.label.as_str()).collect()
    }

    /// Renames every dispatch (e.g. `"attn_norm/3"`) so debug output names the model's step.
    pub fn labelled(mut self, label: &str) -> Op {
        for d in &mut self.dispatches {
            d.label = format!("{label}:{}", d.label);
        }
        self
    }
}

/// What a kernel binds, in binding order (binding 0, 1, ...): tensors as storage, then params.
/// A packed (quantized) tensor is bound as two storage ranges: `Quants` then `Scales`.
pub(crate) enum Bind<'a> {
    Tensor(&'a Tensor),
    Quants(&'a Tensor),
    Scales(&'a Tensor),
    Uniform(&'a wgpu::Buffer),
}

/// Builds one dispatch of `shader` over `groups` workgroups (a first dimension past the
/// per-dimension limit is folded into the second, which must be 1: shaders compute the flat group
/// id with `flat_group_id`).
pub(crate) fn dispatch(
    gpu: &Gpu,
    op: &'static str,
    shader: &Shader,
    constants: &[(&str, f64)],
    binds: &[Bind],
    groups: [u32; 3],
) -> Result<Dispatch> {
    let pipeline = gpu.pipeline(shader, constants)?;
    let layout = pipeline.get_bind_group_layout(0);
    let mut entries = Vec::with_capacity(binds.len());
    let mut bytes = 0;
    for (i, b) in binds.iter().enumerate() {
        let resource = match b {
            Bind::Tensor(t) => {
                bytes += t.byte_size();
                t.binding(gpu, op)?
            }
            Bind::Quants(t) => {
                bytes += t.dtype().quant_bytes(t.numel());
                t.quants_binding(gpu, op)?
            }
            Bind::Scales(t) => {
                bytes += t.dtype().scale_bytes(t.numel());
                t.scales_binding(gpu, op)?
            }
            Bind::Uniform(buf) => buf.as_entire_binding(),
        };
        entries.push(wgpu::BindGroupEntry { binding: i as u32, resource });
    }
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(shader.name),
        layout: &layout,
        entries: &entries,
    });
    if let Some(err) = pollster::block_on(scope.pop()) {
        return Err(Error::Gpu { op: op.to_string(), message: err.to_string() });
    }
    let max = gpu.info().max_workgroups_per_dimension;
    let [x, y, z] = groups;
    if y != 1 || x <= max {
        if x > max || y > max || z > max {
            return Err(Error::TooLarge { what: format!("{op}: workgroup grid {groups:?}"), bytes: 0, limit: max as u64 });
        }
        return Ok(Dispatch { label: shader.name.to_string(), pipeline, bind_group, workgroups: groups, bytes });
    }
    // The third dimension (a kernel's batch index, say) stays as it is.
    let rows = x.div_ceil(max);
    let workgroups = [x.div_ceil(rows), rows, z];
    Ok(Dispatch { label: shader.name.to_string(), pipeline, bind_group, workgroups, bytes })
}

/// The `GROUP_WORDS` override of the Q4 kernels (quant words per scale group, 32 elements a
/// word: 1 for Q4, 4 for Q4G128); `None` for any other dtype.
pub(crate) fn q4_group_words(dtype: DType) -> Option<(&'static str, f64)> {
    matches!(dtype, DType::Q4 | DType::Q4G128).then(|| ("GROUP_WORDS", (dtype.group().unwrap_or(32) / 32) as f64))
}

/// Checks that `t` has exactly `expected` as its shape.
pub(crate) fn expect_shape(op: &'static str, what: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.shape() != expected {
        return Err(Error::shape(op, what, expected, t.shape()));
    }
    Ok(())
}

/// Checks that `t` has one of the `allowed` dtypes.
pub(crate) fn expect_dtype(op: &'static str, what: &str, t: &Tensor, allowed: &[crate::DType]) -> Result<()> {
    if !allowed.contains(&t.dtype()) {
        return Err(Error::dtype(op, what, allowed, t.dtype()));
    }
    Ok(())
}

/// Checks that `t` is 2-D and returns its `(rows, cols)`.
pub(crate) fn dims2(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize)> {
    match *t.shape() {
        [r, c] => Ok((r, c)),
        _ => Err(Error::shape(op, format!("{what} rank"), "[rows, cols]", t.shape())),
    }
}
