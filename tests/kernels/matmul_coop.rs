//! matmul_coop (tensor cores, both kernels: staged and direct) vs reference::matmul, the
//! shaders through naga offline, and the direct kernel's f16 copy of x (on every adapter).
//!
//! The kernel rounds x to f16 (W is f16 already), so the reference is given x rounded the same
//! way; what is left is the f32 accumulation of exact products, far inside the tolerance
//! `COOP_RTOL` of `sum_k |x W|` (2^-10: room for a conversion that does not round to nearest,
//! while a misplaced fragment is off by the whole sum). On an adapter without cooperative
//! matrices (lavapipe) the GPU tests print that they are skipped; the naga test runs everywhere.

use crate::common::*;
use crate::matvec::assert_close_to_scale;
use shaderlm_engine::kernels::matmul::{
    coop_available, coop_shader_source, matmul, matmul_coop, matmul_coop_with, matmul_coop_x16, CoopConfig,
    CoopKernel, COOP_SWEEP,
};
use shaderlm_engine::{reference, DType, Error, Gpu, GpuOptions, Tensor};

/// Tolerance of the tensor-core path, relative to `sum_k |x W|` (see the module docs).
pub const COOP_RTOL: f32 = 1.0 / 1024.0;
pub const COOP_ATOL: f32 = 1e-6;

/// x as `matmul` will use it for a weight of `w_dtype` with `k` columns on `gpu`: rounded to
/// f16 where the tensor-core path is taken, else unchanged. With it the tolerance is
/// [`matmul_rtol`].
pub fn x_as_matmul_sees(gpu: &Gpu, w_dtype: DType, k: usize, xs: &[f32]) -> Vec<f32> {
    if takes_coop(gpu, w_dtype, k) {
        round_f16(xs)
    } else {
        xs.to_vec()
    }
}

/// The relative tolerance (of `sum_k |x W|`) for `matmul` on `gpu`: `rtol` of the SIMT path,
/// or [`COOP_RTOL`] where the tensor-core path is taken.
pub fn matmul_rtol(gpu: &Gpu, w_dtype: DType, k: usize, rtol: f32) -> f32 {
    if takes_coop(gpu, w_dtype, k) {
        COOP_RTOL
    } else {
        rtol
    }
}

fn takes_coop(gpu: &Gpu, w_dtype: DType, k: usize) -> bool {
    w_dtype == DType::F16 && k.is_multiple_of(4) && coop_available(gpu)
}

/// The Gpus of `gpus()` that have the tensor-core path; prints a skip line when none has.
fn coop_gpus(test: &str) -> Vec<&'static Gpu> {
    let found: Vec<&Gpu> = gpus().iter().filter(|g| coop_available(g)).collect();
    if found.is_empty() {
        eprintln!("{test}: skipped: no adapter with cooperative matrices (16x16x16 f16 -> f32)");
    }
    found
}

/// One case: `op` builds the matmul of random x `[m, k]` and F16 W `[n, k]`; every element is
/// checked against the reference of the f16-rounded x.
fn check(gpu: &Gpu, (m, n, k): (usize, usize, usize), what: &str, op: impl Fn(&Tensor, &Tensor, &Tensor) -> shaderlm_engine::Result<shaderlm_engine::Op>) {
    let case = format!("{what} m={m} n={n} k={k}");
    let mut rng = Rng::new((m * 7919 + n * 131 + k) as u64);
    let xs = rng.vec(m * k, 1.0);
    let ws = round_f16(&rng.vec(n * k, 1.0));
    let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &xs).unwrap();
    let w = Tensor::from_f32(gpu, &[n, k], DType::F16, &ws).unwrap();
    let y = Tensor::empty(gpu, &[m, n], DType::F32).unwrap();
    let op = op(&x, &w, &y).unwrap_or_else(|e| panic!("{case}: {e}"));
    let got = run_poisoned(gpu, &op, &y);
    let xh = round_f16(&xs);
    let (mut want, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
    reference::matmul::matmul(&xh, &ws, &mut want, (m, n, k));
    reference::matmul::matmul_abs(&xh, &ws, &mut scale, (m, n, k));
    assert_close_to_scale(&case, &got, &want, &scale, COOP_RTOL, COOP_ATOL);
}

const MS: [usize; 4] = [1, 17, 64, 200];
const NS: [usize; 3] = [16, 40, 256];
const KS: [usize; 3] = [16, 48, 512];

#[test]
fn matmul_coop_matches_reference() {
    for gpu in coop_gpus("matmul_coop_matches_reference") {
        for m in MS {
            for n in NS {
                for k in KS {
                    check(gpu, (m, n, k), "matmul_coop", |x, w, y| matmul_coop(gpu, x, w, y));
                }
            }
        }
    }
}

/// `matmul` itself takes the tensor cores for F16 weights with `k % 4 == 0` (x rounded to f16),
/// with the default kernel, past the few rows of x that `matvec_batch` takes.
#[test]
fn matmul_picks_coop_for_f16_weights() {
    for gpu in coop_gpus("matmul_picks_coop_for_f16_weights") {
        for (m, n, k) in [(65, 40, 48), (200, 256, 512)] {
            check(gpu, (m, n, k), "matmul (coop)", |x, w, y| {
                let op = matmul(gpu, x, w, y)?;
                // matmul_coop (staged), or matmul_coop_x16 + matmul_coop_direct: whichever the default is.
                assert!(op.labels().iter().all(|l| l.starts_with("matmul_coop")), "matmul picked {:?}", op.labels());
                Ok(op)
            });
        }
    }
}

/// Tile shapes the lead sweeps on the GPU, each on shapes with edge blocks and whole ones.
#[test]
fn matmul_coop_tile_shapes_match_reference() {
    let staged = |tile_m, tile_n, tile_k, subgroups_m, subgroups_n| CoopConfig {
        kernel: CoopKernel::Staged,
        tile_m,
        tile_n,
        tile_k,
        subgroups_m,
        subgroups_n,
    };
    let configs = [staged(64, 64, 32, 2, 2), staged(128, 128, 32, 2, 4), staged(128, 64, 64, 2, 2), staged(64, 128, 16, 1, 4)];
    for gpu in coop_gpus("matmul_coop_tile_shapes_match_reference") {
        for config in configs {
            for shape in [(17, 40, 48), (128, 128, 64), (200, 256, 512)] {
                let what = format!("matmul_coop {config:?}");
                check(gpu, shape, &what, |x, w, y| matmul_coop_with(gpu, x, w, y, config));
            }
        }
    }
}

/// A weight split into row chunks (bindings capped at 64 KiB): one dispatch per chunk, each
/// writing its columns of y.
#[test]
fn matmul_coop_split_weight_matches_reference() {
    let fast = GpuOptions { max_binding_bytes: Some(64 << 10), ..Default::default() };
    let gpu = Gpu::with_options(fast).unwrap();
    if !coop_available(&gpu) {
        eprintln!("matmul_coop_split_weight_matches_reference: skipped: no cooperative matrices");
        return;
    }
    let (m, n, k) = (17, 300, 512);
    check(&gpu, (m, n, k), "matmul_coop split", |x, w, y| {
        let op = matmul_coop(&gpu, x, w, y)?;
        assert!(op.labels().len() > 1, "a 300 KB weight under a 64 KiB binding is split");
        Ok(op)
    });
}

#[test]
fn matmul_coop_rejects_mismatches() {
    let Some(gpu) = coop_gpus("matmul_coop_rejects_mismatches").first().copied() else { return };
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (x, w, y) = (t(&[3, 8], DType::F32), t(&[5, 8], DType::F16), t(&[3, 5], DType::F32));
    assert!(matmul_coop(gpu, &x, &w, &y).is_ok());
    let shape = |r: Result<_, Error>| matches!(r, Err(Error::Shape { .. }));
    let dtype = |r: Result<_, Error>| matches!(r, Err(Error::DType { .. }));
    assert!(shape(matmul_coop(gpu, &t(&[3, 16], DType::F32), &w, &y)), "k differs");
    assert!(shape(matmul_coop(gpu, &t(&[3, 10], DType::F32), &t(&[5, 10], DType::F16), &y)), "k % 4");
    assert!(shape(matmul_coop(gpu, &x, &w, &t(&[3, 4], DType::F32))), "y columns");
    assert!(dtype(matmul_coop(gpu, &x, &t(&[5, 8], DType::F32), &y)), "f32 w");
    assert!(dtype(matmul_coop(gpu, &t(&[3, 8], DType::F16), &w, &y)), "f16 x");
    let bad = CoopConfig { tile_m: 48, ..CoopConfig::STAGED };
    assert!(shape(matmul_coop_with(gpu, &x, &w, &y, bad)), "tile_m not whole fragments per subgroup");
    let bad = CoopConfig { tile_m: 48, ..CoopConfig::DIRECT };
    assert!(shape(matmul_coop_with(gpu, &x, &w, &y, bad)), "direct: tile_m not whole fragments per subgroup");
    let deep = CoopConfig::direct((4, 4), (1, 1), 4);
    assert!(shape(matmul_coop_with(gpu, &x, &w, &y, deep)), "direct: 16 B fragments held (at most 8)");
    let direct = CoopConfig::DIRECT;
    assert!(shape(matmul_coop_with(gpu, &t(&[3, 16], DType::F32), &w, &y, direct)), "direct: k differs");
    assert!(dtype(matmul_coop_with(gpu, &x, &t(&[5, 8], DType::F32), &y, direct)), "direct: f32 w");
}

/// Without cooperative matrices `matmul_coop` refuses (and `matmul` takes the tiled kernel).
#[test]
fn matmul_coop_refuses_without_cooperative_matrices() {
    let gpu = gpus().iter().find(|g| !coop_available(g)).expect("the portable Gpu has no tensor cores");
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    // 65 rows of x: more than `matvec_batch` takes, so `matmul` would pick among the tiled kernels.
    let (x, w, y) = (t(&[65, 8], DType::F32), t(&[5, 8], DType::F16), t(&[65, 5], DType::F32));
    assert!(matches!(matmul_coop(gpu, &x, &w, &y), Err(Error::Shape { .. })));
    let op = matmul(gpu, &x, &w, &y).unwrap();
    assert_eq!(op.labels(), ["matmul"]);
}

/// The composed shaders (common.wgsl prepended, as the engine does) through naga 30.0.1 as wgpu
/// runs them on Vulkan: WGSL front end, validation with the capabilities wgpu derives from the
/// features the engine requests, the overrides of every tile shape in `COOP_SWEEP` and the
/// tests (subgroup size 32; 8 too for the direct kernel), SPIR-V back end with both bounds-check policies wgpu uses.
/// Catches shader errors and naga panics on any machine.
#[test]
fn matmul_coop_shader_compiles_through_naga() {
    let staged = |tile_m, tile_n, tile_k, subgroups_m, subgroups_n| CoopConfig {
        kernel: CoopKernel::Staged,
        tile_m,
        tile_n,
        tile_k,
        subgroups_m,
        subgroups_n,
    };
    let mut configs = COOP_SWEEP.to_vec();
    configs.extend([CoopConfig::default(), CoopConfig::DIRECT, staged(64, 64, 32, 2, 2), staged(128, 64, 64, 2, 2)]);
    configs.extend(DIRECT_CONFIGS);
    for kernel in [CoopKernel::Staged, CoopKernel::Direct] {
        let source = coop_shader_source(kernel);
        let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source)));
        let features =
            wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        let mut validator = wgpu_naga_bridge::create_validator(
            features,
            wgpu::DownlevelFlags::all(),
            naga::valid::ValidationFlags::all(),
        );
        let info = validator.validate(&module).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source)));
        for config in configs.iter().filter(|c| c.kernel == kernel) {
            // The staged kernel's shapes are sized for 32 lanes (loads per thread); the direct
            // kernel's divide at any subgroup size.
            let sizes: &[u32] = if kernel == CoopKernel::Staged { &[32] } else { &[32, 8] };
            for &subgroup_size in sizes {
                let constants = config.constants(subgroup_size, 1024).unwrap();
                spirv_of(&module, &info, &constants, &format!("{config:?} subgroup size {subgroup_size}"));
            }
        }
    }
}

/// Applies the overrides to `module` and writes SPIR-V with both buffer bounds-check policies.
fn spirv_of(module: &naga::Module, info: &naga::valid::ModuleInfo, overrides: &[(&str, f64)], what: &str) {
    use naga::back::spv;
    let mut constants = naga::back::PipelineConstants::default();
    for (name, value) in overrides {
        constants.insert(name.to_string(), *value);
    }
    let entry = Some((naga::ShaderStage::Compute, "main"));
    let (module, info) = naga::back::pipeline_constants::process_overrides(module, info, entry, &constants)
        .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
    for buffer in [naga::proc::BoundsCheckPolicy::Restrict, naga::proc::BoundsCheckPolicy::Unchecked] {
        let options = spv::Options {
            lang_version: (1, 6),
            bounds_check_policies: naga::proc::BoundsCheckPolicies {
                index: naga::proc::BoundsCheckPolicy::Restrict,
                buffer,
                image_load: naga::proc::BoundsCheckPolicy::Restrict,
                binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
            },
            zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::None,
            force_loop_bounding: false,
            ..spv::Options::default()
        };
        let pipeline = spv::PipelineOptions { entry_point: "main".into(), shader_stage: naga::ShaderStage::Compute };
        let words =
            spv::write_vec(&module, &info, &options, Some(&pipeline)).unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
        assert!(words.len() > 100, "{what}: SPIR-V written");
    }
}

// ---- the direct kernel: x written as f16 once, fragments loaded straight from memory ----

/// Direct shapes beyond the sweep that the tests run: one subgroup, a deep load, uneven splits.
const DIRECT_CONFIGS: [CoopConfig; 4] = [
    CoopConfig::direct((1, 1), (1, 1), 1),
    CoopConfig::direct((1, 2), (2, 1), 4),
    CoopConfig::direct((3, 1), (1, 3), 2),
    CoopConfig::direct((4, 4), (2, 2), 2),
];

/// The op of a direct config on a shape it takes: the f16 copy of x, then one dispatch per
/// row chunk of W.
fn is_direct(op: &shaderlm_engine::Op) -> bool {
    let labels = op.labels();
    labels.len() >= 2 && labels[0] == "matmul_coop_x16" && labels[1..].iter().all(|l| *l == "matmul_coop_direct")
}

#[test]
fn matmul_coop_direct_matches_reference() {
    for gpu in coop_gpus("matmul_coop_direct_matches_reference") {
        for m in MS {
            for n in NS {
                for k in KS {
                    check(gpu, (m, n, k), "matmul_coop direct", |x, w, y| {
                        let op = matmul_coop_with(gpu, x, w, y, CoopConfig::DIRECT)?;
                        assert!(is_direct(&op), "direct took {:?}", op.labels());
                        Ok(op)
                    });
                }
            }
        }
    }
}

/// Every direct shape of the sweep and the tests, on shapes with partial blocks in m and n
/// (n not a multiple of 16: the last B fragment starts earlier), k not a multiple of the load
/// depth (the one-step tail), and whole blocks.
#[test]
fn matmul_coop_direct_tile_shapes_match_reference() {
    let configs = COOP_SWEEP.iter().chain(&DIRECT_CONFIGS).filter(|c| c.kernel == CoopKernel::Direct);
    let configs: Vec<CoopConfig> = configs.copied().collect();
    for gpu in coop_gpus("matmul_coop_direct_tile_shapes_match_reference") {
        for &config in &configs {
            for shape in [(17, 40, 48), (128, 128, 64), (200, 257, 80), (33, 16, 16)] {
                check(gpu, shape, &config.name(), |x, w, y| {
                    let op = matmul_coop_with(gpu, x, w, y, config)?;
                    assert!(is_direct(&op), "{config:?} took {:?}", op.labels());
                    Ok(op)
                });
            }
        }
    }
}

/// A direct config on a shape it does not take runs the staged kernel, correctly: k % 16 != 0,
/// W under 16 rows, and a weight split into chunks whose last has under 16 rows.
#[test]
fn matmul_coop_direct_falls_back_to_staged() {
    for gpu in coop_gpus("matmul_coop_direct_falls_back_to_staged") {
        for shape in [(17, 40, 20), (64, 40, 4), (17, 5, 48), (1, 15, 16)] {
            check(gpu, shape, "direct -> staged", |x, w, y| {
                let op = matmul_coop_with(gpu, x, w, y, CoopConfig::DIRECT)?;
                assert_eq!(op.labels(), ["matmul_coop"]);
                Ok(op)
            });
        }
    }
    let small = GpuOptions { max_binding_bytes: Some(64 << 10), ..Default::default() };
    let gpu = Gpu::with_options(small).unwrap();
    if !coop_available(&gpu) {
        return;
    }
    // 64 KiB holds 64 rows of k = 512 halves: 264 rows are four chunks and 8 rows.
    check(&gpu, (17, 264, 512), "direct split -> staged", |x, w, y| {
        let op = matmul_coop_with(&gpu, x, w, y, CoopConfig::DIRECT)?;
        assert!(op.labels().len() == 5 && op.labels().iter().all(|l| *l == "matmul_coop"), "{:?}", op.labels());
        Ok(op)
    });
}

/// A weight split into row chunks of at least 16 rows: the direct kernel, one dispatch per
/// chunk after the one f16 copy of x.
#[test]
fn matmul_coop_direct_split_weight_matches_reference() {
    let small = GpuOptions { max_binding_bytes: Some(64 << 10), ..Default::default() };
    let gpu = Gpu::with_options(small).unwrap();
    if !coop_available(&gpu) {
        eprintln!("matmul_coop_direct_split_weight_matches_reference: skipped: no cooperative matrices");
        return;
    }
    check(&gpu, (17, 300, 512), "matmul_coop direct split", |x, w, y| {
        let op = matmul_coop_with(&gpu, x, w, y, CoopConfig::DIRECT)?;
        assert!(is_direct(&op) && op.labels().len() == 6, "x16 and five chunks: {:?}", op.labels());
        Ok(op)
    });
}

/// The f16 copy of x (on every adapter, lavapipe included): rows < m are x rounded to f16
/// (within one f16 rounding step of round-to-nearest), the padding rows are zeros (not the
/// poison written before).
#[test]
fn matmul_coop_x16_matches_rounding() {
    for gpu in gpus() {
        for (m, pad, k) in [(1, 0, 4), (7, 9, 16), (33, 31, 48), (257, 0, 12), (100, 28, 1000)] {
            let case = format!("matmul_coop_x16 {} m={m} rows={} k={k}", path(gpu), m + pad);
            let mut rng = Rng::new((m * 31 + k) as u64);
            let xs = rng.vec(m * k, 4.0);
            let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &xs).unwrap();
            let xh = Tensor::empty(gpu, &[m + pad, k], DType::F16).unwrap();
            xh.fill_words(gpu, POISON).unwrap();
            run(gpu, &matmul_coop_x16(gpu, &x, &xh).unwrap());
            let got = xh.to_f32(gpu).unwrap();
            let mut want = round_f16(&xs);
            want.resize((m + pad) * k, 0.0);
            // One step of f16 (2^-10 relative) allows a conversion that truncates; 2^-14 absolute,
            // one that flushes f16 subnormals to zero. A misplaced element is off by ~1.
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let tol = w.abs() / 1024.0 + 1.0 / 16384.0;
                assert!((g - w).abs() <= tol, "{case}: element {i} (row {}): got {g}, want {w}", i / k);
            }
        }
    }
}

#[test]
fn matmul_coop_x16_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let x = t(&[3, 8], DType::F32);
    assert!(matmul_coop_x16(gpu, &x, &t(&[4, 8], DType::F16)).is_ok());
    let shape = |r: Result<_, Error>| matches!(r, Err(Error::Shape { .. }));
    let dtype = |r: Result<_, Error>| matches!(r, Err(Error::DType { .. }));
    assert!(shape(matmul_coop_x16(gpu, &x, &t(&[2, 8], DType::F16))), "fewer rows than x");
    assert!(shape(matmul_coop_x16(gpu, &x, &t(&[3, 12], DType::F16))), "columns differ");
    assert!(shape(matmul_coop_x16(gpu, &t(&[3, 6], DType::F32), &t(&[3, 6], DType::F16))), "k % 4");
    assert!(dtype(matmul_coop_x16(gpu, &x, &t(&[3, 8], DType::F32))), "f32 xh");
    assert!(dtype(matmul_coop_x16(gpu, &t(&[3, 8], DType::F16), &t(&[3, 8], DType::F16))), "f16 x");
}
