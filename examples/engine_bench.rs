//! engine_bench: memory bandwidth and the linear-algebra kernels on the GPU it runs on.
//!
//! ```sh
//! cargo run --release --example engine_bench              # full shapes (a real GPU)
//! cargo run --release --example engine_bench -- --quick   # small shapes (lavapipe: seconds)
//! cargo run --release --example engine_bench -- --sweep   # also try matvec workgroup shapes
//! cargo run --release --example engine_bench -- --coop    # only: tensor-core vs tiled matmul
//! cargo run --release --example engine_bench -- --coop --sweep   # ... and coop tile shapes
//! cargo run --release --example engine_bench -- --quant-sweep   # packed matvec paths and shapes
//! cargo run --release --example engine_bench -- --batch-sweep   # a few rows of x: matvec_batch vs matmul
//! cargo run --release --example engine_bench -- --s24-sweep   # 2:4 sparse matvec paths and shapes
//! ```
//!
//! `--batch-sweep` prints, for F16 weights at the Llama-2-7B and TinyLlama shapes and
//! M = 1..64 rows of x (a batched decode step), the time per call of `matvec_batch` under a few
//! workgroup shapes beside the tensor-core and tiled matmuls, and the weight's GB/s.
//!
//! `--s24-sweep` prints only the copy bandwidth and, at 4096x4096, 11008x4096, 4096x11008 and
//! 576x1536, the default f16 and q4 matvecs beside S24F16 and S24Q4 on every path (`Float`;
//! `Dot4` for S24Q4) and workgroup shape (32-256 threads x 1-16 rows): µs per call, GB/s of the
//! bytes stored, and the speed-up over the dense twin (f16 for S24F16, q4 for S24Q4); then per
//! shape the best of each, to set `QuantMatvecConfig::for_sparse`.
//!
//! `--quant-sweep` prints only the copy bandwidth and, for Q8, Q4 and Q4G128 weights at the
//! Llama-2-7B shapes (4096x4096, 11008x4096, 4096x11008) and SmolLM2-135M's (576x576, 1536x576,
//! 576x1536), the f16 matvec beside every packed path (`QuantPath::Float`, `QuantPath::Dot4`)
//! and workgroup shape: µs per call, GB/s of the bytes stored, and the speed-up over f16.
//!
//! It prints, for the adapter it opens (`SHADERLM_ADAPTER` picks one):
//! 1. copy bandwidth: one large buffer-to-buffer copy, counted two ways, read + write
//!    (2 x bytes copied / time) and read only (bytes copied / time);
//! 2. matvec GB/s, F32, F16, S24F16, Q8, Q4, S24Q4 and Q4G128 weights, at 4096x4096, 11008x4096
//!    and 4096x11008 (N x K), where bytes = weight (quants and scales; for the 2:4 sparse
//!    S24F16 / S24Q4, kept values, positions and scales) + x + y, each counted once; compare
//!    the us per call of a sparse weight with its dense twin (f16 with s24f16, q4 with s24q4);
//! 3. matmul GFLOP/s (2 M N K / time) at M = 512, N = K = 4096, for the same weight dtypes;
//! 4. each matvec's fraction of the copy's read-only bandwidth: both read every byte once,
//!    so this compares like with like (the fraction of the read + write figure is half of it).
//!
//! With `--coop` it prints only the F16 matmul's TFLOP/s on the tensor cores (`matmul_coop`:
//! the default, the staged kernel and the direct one) against the tiled SIMT kernel at
//! 512x4096x4096, 512x11008x4096, 512x4096x11008, 512x32000x4096 and 4096^3 (M x N x K), and
//! with `--sweep` instead every tile shape of `matmul::COOP_SWEEP`, then the best per size.
//!
//! Timing: GPU timestamps where the adapter has them (each dispatch in its own timed pass; the
//! median over many runs), else wall clock. The wall-clock time per run over several
//! submissions of many runs each is printed beside it: the gap is launch and submission
//! overhead. Each op is warmed up first.
//! Weights rotate over enough copies (512 MiB in all) that they come from memory, not from a
//! cache; all inputs are random, never zeros.

use std::time::Instant;

use shaderlm_engine::kernels::matmul::{
    coop_available, matmul, matmul_coop_with, matmul_with, CoopConfig, MatmulConfig, COOP_SWEEP,
};
use shaderlm_engine::kernels::matvec::{matvec_quant_with, matvec_with, MatvecConfig, QuantMatvecConfig, QuantPath};
use shaderlm_engine::{DType, Gpu, Op, Recorder, Result, Tensor};

const MIB: f64 = (1u64 << 20) as f64;

struct Shapes {
    copy_bytes: u64,
    matvec: [(usize, usize); 3],
    matmul: (usize, usize, usize),
    /// Weight bytes to rotate over per matvec shape (at least one copy).
    rotate_bytes: u64,
    timed_runs: usize,
}

const FULL: Shapes = Shapes {
    copy_bytes: 1 << 30,
    matvec: [(4096, 4096), (11008, 4096), (4096, 11008)],
    matmul: (512, 4096, 4096),
    rotate_bytes: 512 << 20,
    timed_runs: 200,
};

const QUICK: Shapes = Shapes {
    copy_bytes: 64 << 20,
    matvec: [(512, 512), (1376, 512), (512, 1376)],
    matmul: (64, 256, 256),
    rotate_bytes: 0,
    timed_runs: 10,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let sweep = args.iter().any(|a| a == "--sweep");
    let coop = args.iter().any(|a| a == "--coop");
    let quant_sweep = args.iter().any(|a| a == "--quant-sweep");
    let batch_sweep = args.iter().any(|a| a == "--batch-sweep");
    let s24_sweep = args.iter().any(|a| a == "--s24-sweep");
    let known = ["--quick", "--sweep", "--coop", "--quant-sweep", "--batch-sweep", "--s24-sweep"];
    if let Some(a) = args.iter().find(|a| !known.contains(&a.as_str())) {
        eprintln!("unknown argument {a:?}; usage: engine_bench [{}]", known.join("] ["));
        std::process::exit(2);
    }
    let shapes = if quick { &QUICK } else { &FULL };
    let gpu = Gpu::new()?;
    if batch_sweep {
        return batch_sweep_table(&gpu, quick);
    }
    if coop {
        return coop_bench(&gpu, quick, sweep);
    }
    let timestamps = gpu.info().features.timestamp_query;
    println!("engine_bench{} on {}", if quick { " --quick" } else { "" }, gpu.info());
    println!(
        "timing: {}; matvec weights rotate over {} MiB per shape (at least one copy)",
        if timestamps {
            "GPU timestamps, median per run (each dispatch in its own timed pass); \
             wall = clock over 5 submissions of many runs, back to back"
        } else {
            "wall clock over 5 submissions of many runs, back to back (no timestamp queries)"
        },
        shapes.rotate_bytes >> 20
    );

    // 1. Copy bandwidth.
    // The shader copy (kernels::copy) is what the fractions below use; the driver's buffer copy
    // is printed beside it (on the H200 through Vulkan it ran at about a fifth of the speed).
    let copy_bytes = shapes.copy_bytes.min(gpu.info().max_binding_bytes) & !15;
    let src = Tensor::from_u32(&gpu, &[copy_bytes as usize / 4], &random_words(copy_bytes as usize / 4, 1))?;
    let dst = Tensor::empty(&gpu, &[copy_bytes as usize / 4], DType::U32)?;
    let buffer_copy = time_runs(&gpu, shapes.timed_runs.min(20), 1, |rec, _| rec.copy(&src, &dst))?;
    let copy_op = shaderlm_engine::kernels::copy::copy(&gpu, &src, &dst)?;
    let copy = time_runs(&gpu, shapes.timed_runs.min(20), 1, |rec, _| {
        rec.run(&copy_op);
        Ok(())
    })?;
    drop((src, dst, copy_op));
    let copy_read = copy_bytes as f64 / copy.seconds() / 1e9;
    println!();
    println!(
        "driver buffer copy of {} MiB: {:.3} ms, {:.1} GB/s read + write",
        copy_bytes >> 20,
        buffer_copy.seconds() * 1e3,
        2.0 * copy_bytes as f64 / buffer_copy.seconds() / 1e9
    );
    println!("shader copy (kernels::copy) of {} MiB: {:.3} ms", copy_bytes >> 20, copy.seconds() * 1e3);
    println!("  read + write  {:>8.1} GB/s   (2 x bytes copied / time)", 2.0 * copy_read);
    println!("  read only     {:>8.1} GB/s   (bytes copied / time; the matvec comparison below)", copy_read);
    if quant_sweep {
        return quant_sweep_table(&gpu, shapes, copy_read);
    }
    if s24_sweep {
        return s24_sweep_table(&gpu, shapes, copy_read);
    }

    // 2. Matvec.
    let config = MatvecConfig::for_gpu(&gpu);
    println!();
    println!(
        "matvec workgroups: {} threads x {} rows (packed weights: at most one thread per 16-byte word of a row)",
        config.workgroup_size, config.rows_per_workgroup
    );
    println!(
        "{:<8} {:>14} {:>5} {:>11} {:>10} {:>10} {:>9} {:>13}",
        "op", "N x K", "w", "bytes MiB", "gpu us", "wall us", "GB/s", "of copy read"
    );
    let mut f16_fractions = Vec::new();
    for &(n, k) in &shapes.matvec {
        for dtype in WEIGHT_DTYPES.into_iter().filter(|d| d.group().is_none_or(|g| k % g == 0)) {
            let bench = MatvecBench::new(&gpu, n, k, dtype, shapes.rotate_bytes)?;
            // What `matvec` picks: packed weights use no more threads than a row has words.
            let config = MatvecConfig::for_weight(&gpu, &bench.weights[0]);
            let t = bench.time(&gpu, config, shapes.timed_runs)?;
            let gbs = bench.bytes as f64 / t.seconds() / 1e9;
            if dtype == DType::F16 {
                f16_fractions.push((n, k, gbs / copy_read));
            }
            println!(
                "{:<8} {:>14} {:>5} {:>11.1} {:>10} {:>10.2} {:>9.1} {:>12.1}%",
                "matvec",
                format!("{n} x {k}"),
                dtype.to_string(),
                bench.bytes as f64 / MIB,
                t.gpu.map_or("-".into(), |s| format!("{:.2}", s * 1e6)),
                t.wall * 1e6,
                gbs,
                100.0 * gbs / copy_read
            );
            if sweep {
                bench.sweep(&gpu, shapes.timed_runs)?;
            }
        }
    }

    // 3. Matmul.
    let (m, n, k) = shapes.matmul;
    println!();
    println!("{:<8} {:>20} {:>5} {:>10} {:>10} {:>10}", "op", "M x N x K", "w", "gpu us", "wall us", "GFLOP/s");
    let mut rng = Rng(7);
    let x = Tensor::from_f32(&gpu, &[m, k], DType::F32, &rng.vec(m * k))?;
    let y = Tensor::empty(&gpu, &[m, n], DType::F32)?;
    let wdata = rng.vec(n * k);
    for dtype in WEIGHT_DTYPES.into_iter().filter(|d| d.group().is_none_or(|g| k % g == 0)) {
        let w = weight(&gpu, &[n, k], dtype, &wdata)?;
        let op = matmul(&gpu, &x, &w, &y)?;
        let runs = (shapes.timed_runs / 10).max(5);
        let t = time_runs(&gpu, runs, op.labels().len(), |rec, _| {
            rec.run(&op);
            Ok(())
        })?;
        println!(
            "{:<8} {:>20} {:>5} {:>10} {:>10.1} {:>10.1}",
            "matmul",
            format!("{m} x {n} x {k}"),
            dtype.to_string(),
            t.gpu.map_or("-".into(), |s| format!("{:.1}", s * 1e6)),
            t.wall * 1e6,
            2.0 * (m * n * k) as f64 / t.seconds() / 1e9
        );
    }

    // 4. The f16 matvec against the copy.
    println!();
    println!("f16 matvec bandwidth as a fraction of copy bandwidth (read only = read + write / 2):");
    for (n, k, f) in f16_fractions {
        println!("  {n} x {k}: {:.1}% of read only, {:.1}% of read + write", 100.0 * f, 50.0 * f);
    }
    Ok(())
}

/// Tensor cores against the tiled SIMT kernel, F16 weights: TFLOP/s = 2 M N K / time (the
/// direct kernel's time includes its dispatch that writes x as f16). With `sweep`, every shape
/// of `COOP_SWEEP` (staged and direct kernels) at each size, then the best of each kernel.
fn coop_bench(gpu: &Gpu, quick: bool, sweep: bool) -> Result<()> {
    println!("engine_bench --coop on {}", gpu.info());
    if !coop_available(gpu) {
        println!("skipped: no cooperative matrices with 16x16x16 f16 -> f32 (and one subgroup size) here");
        return Ok(());
    }
    let shapes: &[(usize, usize, usize)] = if quick {
        &[(64, 256, 256), (64, 512, 256)]
    } else {
        &[(512, 4096, 4096), (512, 11008, 4096), (512, 4096, 11008), (512, 32000, 4096), (4096, 4096, 4096)]
    };
    let configs: Vec<CoopConfig> = if sweep {
        COOP_SWEEP.to_vec()
    } else {
        let mut v = vec![CoopConfig::default(), CoopConfig::STAGED, CoopConfig::DIRECT];
        v.dedup();
        v
    };
    // Fewer timed runs at the largest sizes keeps the whole sweep under a minute on the H200.
    let runs = if sweep { 10 } else { 20 };
    println!("{:<44} {:>20} {:>10} {:>10}", "kernel", "M x N x K", "gpu us", "TFLOP/s");
    let mut rng = Rng(11);
    let mut best: Vec<(String, String, f64)> = Vec::new();
    for &(m, n, k) in shapes {
        let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &rng.vec(m * k))?;
        let w = Tensor::from_f32(gpu, &[n, k], DType::F16, &rng.vec(n * k))?;
        let y = Tensor::empty(gpu, &[m, n], DType::F32)?;
        let flops = 2.0 * (m * n * k) as f64;
        let mut kernels: Vec<(String, Op)> =
            vec![("matmul (tiled SIMT)".to_string(), matmul_with(gpu, &x, &w, &y, MatmulConfig::default())?)];
        for &config in &configs {
            let name = format!("coop {}", config.name());
            match matmul_coop_with(gpu, &x, &w, &y, config) {
                Ok(op) => kernels.push((name, op)),
                Err(e) => println!("{name:<44} refused: {e}"),
            }
        }
        let size = format!("{m} x {n} x {k}");
        let (mut best_staged, mut best_direct) = ((String::new(), 0.0), (String::new(), 0.0));
        for (name, op) in &kernels {
            let t = time_runs(gpu, runs, op.labels().len(), |rec, _| {
                rec.run(op);
                Ok(())
            })?;
            let tflops = flops / t.seconds() / 1e12;
            let gpu_us = t.gpu.map_or("-".into(), |s| format!("{:.1}", s * 1e6));
            println!("{name:<44} {size:>20} {gpu_us:>10} {tflops:>10.1}");
            let slot = if name.contains("direct") { &mut best_direct } else { &mut best_staged };
            if name.starts_with("coop") && tflops > slot.1 {
                *slot = (name.clone(), tflops);
            }
        }
        best.push((size.clone(), best_staged.0, best_staged.1));
        best.push((size, best_direct.0, best_direct.1));
    }
    println!();
    println!("best per size and kernel:");
    for (size, name, tflops) in best.iter().filter(|b| !b.1.is_empty()) {
        println!("  {size:>20}  {tflops:>6.1} TFLOP/s  {name}");
    }
    Ok(())
}

/// `--batch-sweep`: F16 weights times M rows of x, for M from 1 to 64: `matvec_batch` in each
/// workgroup shape of a short list, the tensor-core matmul (where there is one) and the tiled one.
fn batch_sweep_table(gpu: &Gpu, quick: bool) -> Result<()> {
    use shaderlm_engine::kernels::matvec_batch::{matvec_batch_with, MatvecBatchConfig};
    println!("engine_bench --batch-sweep on {}", gpu.info());
    let shapes: &[(usize, usize)] =
        if quick { &[(512, 512), (1376, 512)] } else { &[(4096, 4096), (11008, 4096), (4096, 11008), (5632, 2048)] };
    // Threads x rows of W x rows of x: GPU shapes, or CPU-adapter ones with --quick (lavapipe runs
    // a workgroup as a loop, and its barriers cost most there).
    let configs: &[(u32, u32, u32)] = if quick {
        &[(32, 4, 4), (32, 2, 8), (64, 2, 8)]
    } else {
        &[(256, 2, 8), (256, 1, 8), (256, 1, 16), (128, 2, 8), (256, 4, 4), (512, 2, 8)]
    };
    println!("{:<34} {:>16} {:>4} {:>10} {:>10}", "kernel", "N x K", "M", "gpu us", "weight GB/s");
    let mut rng = Rng(5);
    for &(n, k) in shapes {
        let w = Tensor::from_f32(gpu, &[n, k], DType::F16, &rng.vec(n * k))?;
        let weight_bytes = 2.0 * (n * k) as f64;
        for m in [1, 2, 4, 8, 16, 32, 64] {
            let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &rng.vec(m * k))?;
            let y = Tensor::empty(gpu, &[m, n], DType::F32)?;
            let mut kernels: Vec<(String, Op)> = Vec::new();
            if m == 1 {
                kernels.push(("matvec (default)".into(), matvec_with(gpu, &w, &x, &y, MatvecConfig::for_gpu(gpu))?));
            }
            for &(workgroup_size, rows_per_workgroup, batch) in configs {
                let config = MatvecBatchConfig { workgroup_size, rows_per_workgroup, batch: batch.min(m as u32) };
                let name = format!("matvec_batch {workgroup_size}x{rows_per_workgroup}x{}", config.batch);
                match matvec_batch_with(gpu, &x, &w, &y, config, false) {
                    Ok(op) => kernels.push((name, op)),
                    Err(e) => println!("{name:<34} refused: {e}"),
                }
            }
            if coop_available(gpu) {
                if let Ok(op) = matmul_coop_with(gpu, &x, &w, &y, CoopConfig::default()) {
                    kernels.push(("matmul_coop (default)".into(), op));
                }
            }
            kernels.push(("matmul (tiled SIMT)".into(), matmul_with(gpu, &x, &w, &y, MatmulConfig::default())?));
            for (name, op) in &kernels {
                let t = time_runs(gpu, 20, op.labels().len(), |rec, _| {
                    rec.run(op);
                    Ok(())
                })?;
                println!(
                    "{:<34} {:>16} {:>4} {:>10.1} {:>10.0}",
                    name,
                    format!("{n} x {k}"),
                    m,
                    t.seconds() * 1e6,
                    weight_bytes / t.seconds() / 1e9
                );
            }
        }
    }
    Ok(())
}

/// Shapes (N x K) of the quant sweep: Llama-2-7B's projections, then SmolLM2-135M's.
const QUANT_SHAPES: [(usize, usize); 6] =
    [(4096, 4096), (11008, 4096), (4096, 11008), (576, 576), (1536, 576), (576, 1536)];
const QUANT_SHAPES_QUICK: [(usize, usize); 6] =
    [(512, 512), (1376, 512), (512, 1376), (576, 576), (1536, 576), (576, 1536)];

/// `--quant-sweep`: per shape, the f16 matvec, then for each packed dtype its default
/// (`QuantMatvecConfig::for_weight`) and the best workgroup shapes of each path.
fn quant_sweep_table(gpu: &Gpu, shapes: &Shapes, copy_read: f64) -> Result<()> {
    let quick = shapes.rotate_bytes == 0;
    let runs = shapes.timed_runs;
    println!();
    println!("packed matvec paths: bytes = weight as stored (quants + scales) + x + y; x f16 = f16 time / this time");
    println!(
        "{:>13} {:>7} {:>6} {:>7} {:>5} {:>9} {:>9} {:>8} {:>7}",
        "N x K", "w", "path", "threads", "rows", "us", "GB/s", "of copy", "x f16"
    );
    let mut summary = Vec::new();
    for &(n, k) in if quick { &QUANT_SHAPES_QUICK } else { &QUANT_SHAPES } {
        let f16 = MatvecBench::new(gpu, n, k, DType::F16, shapes.rotate_bytes)?;
        let f16_config = MatvecConfig::for_weight(gpu, &f16.weights[0]);
        let f16_us = f16.time(gpu, f16_config, runs)?.seconds() * 1e6;
        let line = |w: &str, path: &str, threads: u32, rows: u32, us: f64, bytes: u64| {
            let gbs = bytes as f64 / us / 1e3;
            println!(
                "{:>13} {:>7} {:>6} {:>7} {:>5} {:>9.2} {:>9.1} {:>7.1}% {:>6.2}x",
                format!("{n} x {k}"),
                w,
                path,
                threads,
                rows,
                us,
                gbs,
                100.0 * gbs / copy_read,
                f16_us / us
            );
        };
        line("f16", "-", f16_config.workgroup_size, f16_config.rows_per_workgroup, f16_us, f16.bytes);
        drop(f16);
        for dtype in [DType::Q8, DType::Q4, DType::Q4G128] {
            if dtype.group().is_some_and(|g| k % g != 0) {
                continue;
            }
            let bench = MatvecBench::new(gpu, n, k, dtype, shapes.rotate_bytes)?;
            let default = QuantMatvecConfig::for_weight(gpu, &bench.weights[0]);
            let default_us = bench.time_quant(gpu, default, runs)?.seconds() * 1e6;
            let (threads, rows) = (default.workgroup_size, default.rows_per_workgroup);
            line(&format!("{dtype}"), &format!("{:?}*", default.path), threads, rows, default_us, bench.bytes);
            let paths: &[QuantPath] =
                if gpu.info().features.subgroups { &[QuantPath::Float, QuantPath::Dot4] } else { &[QuantPath::Float] };
            for &path in paths {
                let mut results = Vec::new();
                let rows: &[u32] = if path == QuantPath::Dot4 { &[1, 2, 4, 8, 16] } else { &[1, 2, 4, 8] };
                for workgroup_size in [32, 64, 128, 256, 512] {
                    for &rows_per_workgroup in rows {
                        let config = QuantMatvecConfig { workgroup_size, rows_per_workgroup, path };
                        // Shapes the device refuses are skipped.
                        if let Ok(t) = bench.time_quant(gpu, config, runs) {
                            results.push((t.seconds() * 1e6, config));
                        }
                    }
                }
                results.sort_by(|a, b| a.0.total_cmp(&b.0));
                for (us, c) in results.iter().take(4) {
                    let (w, path) = (dtype.to_string(), format!("{:?}", c.path));
                    line(&w, &path, c.workgroup_size, c.rows_per_workgroup, *us, bench.bytes);
                }
                if let Some(&(us, c)) = results.first() {
                    summary.push(format!(
                        "  {:>13} {:>7} best {:?}: {} threads x {} rows, {:.2} us = {:.2}x f16 \
                         (default {:?} {}x{}: {:.2}x)",
                        format!("{n} x {k}"),
                        dtype.to_string(),
                        path,
                        c.workgroup_size,
                        c.rows_per_workgroup,
                        us,
                        f16_us / us,
                        default.path,
                        default.workgroup_size,
                        default.rows_per_workgroup,
                        f16_us / default_us
                    ));
                }
            }
        }
    }
    println!();
    println!("summary (* above marks the default, QuantMatvecConfig::for_weight):");
    for s in summary {
        println!("{s}");
    }
    Ok(())
}

/// Shapes (N x K) of the 2:4 sweep: Llama-2-7B's projections and SmolLM2-135M's down projection.
const S24_SHAPES: [(usize, usize); 4] = [(4096, 4096), (11008, 4096), (4096, 11008), (576, 1536)];
const S24_SHAPES_QUICK: [(usize, usize); 4] = [(512, 512), (1408, 512), (512, 1408), (576, 1536)];

/// `--s24-sweep`: per shape, the default f16 and q4 matvecs, then S24F16 and S24Q4 in their
/// default (`QuantMatvecConfig::for_weight`, marked `*`) and the five fastest workgroup shapes of
/// each path; then a summary of the best per dtype and path.
fn s24_sweep_table(gpu: &Gpu, shapes: &Shapes, copy_read: f64) -> Result<()> {
    let quick = shapes.rotate_bytes == 0;
    let runs = shapes.timed_runs.min(100);
    println!();
    println!("2:4 sparse matvec: bytes = weight as stored + x + y; x dense = the dense twin's time / this time");
    println!("(twin: the default f16 matvec for s24f16, the default q4 matvec for s24q4)");
    println!(
        "{:>13} {:>7} {:>6} {:>7} {:>5} {:>9} {:>9} {:>8} {:>8}",
        "N x K", "w", "path", "threads", "rows", "us", "GB/s", "of copy", "x dense"
    );
    let mut summary = Vec::new();
    for &(n, k) in if quick { &S24_SHAPES_QUICK } else { &S24_SHAPES } {
        let line = |w: &str, path: &str, threads: u32, rows: u32, us: f64, bytes: u64, twin_us: f64| {
            let gbs = bytes as f64 / us / 1e3;
            println!(
                "{:>13} {:>7} {:>6} {:>7} {:>5} {:>9.2} {:>9.1} {:>7.1}% {:>7.2}x",
                format!("{n} x {k}"),
                w,
                path,
                threads,
                rows,
                us,
                gbs,
                100.0 * gbs / copy_read,
                twin_us / us
            );
        };
        // The dense twins, each in its default.
        let f16 = MatvecBench::new(gpu, n, k, DType::F16, shapes.rotate_bytes)?;
        let f16_config = MatvecConfig::for_weight(gpu, &f16.weights[0]);
        let f16_us = f16.time(gpu, f16_config, runs)?.seconds() * 1e6;
        line("f16", "-*", f16_config.workgroup_size, f16_config.rows_per_workgroup, f16_us, f16.bytes, f16_us);
        drop(f16);
        let q4 = MatvecBench::new(gpu, n, k, DType::Q4, shapes.rotate_bytes)?;
        let q4_config = QuantMatvecConfig::for_weight(gpu, &q4.weights[0]);
        let q4_us = q4.time_quant(gpu, q4_config, runs)?.seconds() * 1e6;
        let (threads, rows) = (q4_config.workgroup_size, q4_config.rows_per_workgroup);
        line("q4", &format!("{:?}*", q4_config.path), threads, rows, q4_us, q4.bytes, q4_us);
        drop(q4);

        for (dtype, twin_us) in [(DType::S24F16, f16_us), (DType::S24Q4, q4_us)] {
            if dtype.group().is_some_and(|g| k % g != 0) {
                continue;
            }
            let bench = MatvecBench::new(gpu, n, k, dtype, shapes.rotate_bytes)?;
            let default = QuantMatvecConfig::for_weight(gpu, &bench.weights[0]);
            let default_us = bench.time_quant(gpu, default, runs)?.seconds() * 1e6;
            let (threads, rows) = (default.workgroup_size, default.rows_per_workgroup);
            let name = dtype.to_string();
            line(&name, &format!("{:?}*", default.path), threads, rows, default_us, bench.bytes, twin_us);
            let paths: &[QuantPath] = if dtype == DType::S24Q4 && gpu.info().features.subgroups {
                &[QuantPath::Float, QuantPath::Dot4]
            } else {
                &[QuantPath::Float]
            };
            for &path in paths {
                let mut results = Vec::new();
                for workgroup_size in [32, 64, 128, 256] {
                    for rows_per_workgroup in [1, 2, 4, 8, 16] {
                        let config = QuantMatvecConfig { workgroup_size, rows_per_workgroup, path };
                        // Shapes the device refuses are skipped.
                        if let Ok(t) = bench.time_quant(gpu, config, runs) {
                            results.push((t.seconds() * 1e6, config));
                        }
                    }
                }
                results.sort_by(|a, b| a.0.total_cmp(&b.0));
                for (us, c) in results.iter().take(5) {
                    let path = format!("{:?}", c.path);
                    line(&name, &path, c.workgroup_size, c.rows_per_workgroup, *us, bench.bytes, twin_us);
                }
                if let Some(&(us, c)) = results.first() {
                    summary.push(format!(
                        "  {:>13} {:>7} best {:?}: {} threads x {} rows, {:.2} us = {:.2}x its dense twin \
                         (default {:?} {}x{}: {:.2} us = {:.2}x)",
                        format!("{n} x {k}"),
                        name,
                        path,
                        c.workgroup_size,
                        c.rows_per_workgroup,
                        us,
                        twin_us / us,
                        default.path,
                        default.workgroup_size,
                        default.rows_per_workgroup,
                        default_us,
                        twin_us / default_us
                    ));
                }
            }
        }
    }
    println!();
    println!("summary (* above marks the defaults: MatvecConfig / QuantMatvecConfig::for_weight):");
    for s in summary {
        println!("{s}");
    }
    Ok(())
}

/// The weight dtypes measured (each 2:4 sparse one after its dense twin).
const WEIGHT_DTYPES: [DType; 7] =
    [DType::F32, DType::F16, DType::S24F16, DType::Q8, DType::Q4, DType::S24Q4, DType::Q4G128];

/// A weight `[n, k]` of `dtype` holding `values` (packed dtypes quantized on the CPU; sparse
/// ones first pruned 2:4, keeping the two largest magnitudes of each group of four).
fn weight(gpu: &Gpu, shape: &[usize; 2], dtype: DType, values: &[f32]) -> Result<Tensor> {
    use shaderlm_engine::dtype::{quantize_q4, quantize_q8};
    let [n, k] = *shape;
    match dtype {
        DType::S24F16 | DType::S24Q4 => Tensor::from_f32(gpu, shape, dtype, &prune_2_4(values)),
        DType::Q8 => Tensor::from_words(gpu, shape, dtype, &quantize_q8(values, n, k)?),
        DType::Q4 | DType::Q4G128 => {
            Tensor::from_words(gpu, shape, dtype, &quantize_q4(values, n, k, dtype.group().unwrap_or(32))?)
        }
        _ => Tensor::from_f32(gpu, shape, dtype, values),
    }
}

/// `values` with the two smallest magnitudes of every group of four set to zero.
fn prune_2_4(values: &[f32]) -> Vec<f32> {
    let mut pruned = values.to_vec();
    for group in pruned.chunks_mut(4) {
        let mut all = [0, 1, 2, 3];
        let order = &mut all[..group.len()];
        order.sort_by(|&a, &b| group[a].abs().total_cmp(&group[b].abs()));
        for &i in &order[..order.len().saturating_sub(2)] {
            group[i] = 0.0;
        }
    }
    pruned
}

/// One matvec shape: the weight in enough copies to rotate over, x and y.
struct MatvecBench {
    weights: Vec<Tensor>,
    x: Tensor,
    y: Tensor,
    /// Bytes one matvec moves: weight + x + y.
    bytes: u64,
}

impl MatvecBench {
    fn new(gpu: &Gpu, n: usize, k: usize, dtype: DType, rotate_bytes: u64) -> Result<MatvecBench> {
        let mut rng = Rng((n * 31 + k) as u64);
        let first = weight(gpu, &[n, k], dtype, &rng.vec(n * k))?;
        let copies = rotate_bytes.div_ceil(first.byte_size()).clamp(1, 32) as usize;
        let mut weights = vec![first.clone()];
        let mut rec = Recorder::new(gpu);
        for _ in 1..copies {
            let w = Tensor::empty(gpu, &[n, k], dtype)?;
            rec.copy(&first, &w)?;
            weights.push(w);
        }
        rec.submit()?;
        gpu.wait()?;
        let x = Tensor::from_f32(gpu, &[k], DType::F32, &rng.vec(k))?;
        let y = Tensor::empty(gpu, &[n], DType::F32)?;
        let bytes = first.byte_size() + x.byte_size() + y.byte_size();
        Ok(MatvecBench { weights, x, y, bytes })
    }

    fn time(&self, gpu: &Gpu, config: MatvecConfig, runs: usize) -> Result<Timing> {
        let ops =
            self.weights.iter().map(|w| matvec_with(gpu, w, &self.x, &self.y, config)).collect::<Result<Vec<Op>>>()?;
        time_runs(gpu, runs, ops[0].labels().len(), |rec, i| {
            rec.run(&ops[i % ops.len()]);
            Ok(())
        })
    }

    fn time_quant(&self, gpu: &Gpu, config: QuantMatvecConfig, runs: usize) -> Result<Timing> {
        let ops = self
            .weights
            .iter()
            .map(|w| matvec_quant_with(gpu, w, &self.x, &self.y, config))
            .collect::<Result<Vec<Op>>>()?;
        time_runs(gpu, runs, ops[0].labels().len(), |rec, i| {
            rec.run(&ops[i % ops.len()]);
            Ok(())
        })
    }

    /// GB/s for each workgroup shape the device allows, best first.
    fn sweep(&self, gpu: &Gpu, runs: usize) -> Result<()> {
        let mut results = Vec::new();
        for workgroup_size in [32, 64, 128, 256, 512, 1024] {
            for rows_per_workgroup in [1, 2, 4, 8] {
                let config = MatvecConfig { workgroup_size, rows_per_workgroup };
                // Shapes the device refuses are skipped.
                if let Ok(t) = self.time(gpu, config, runs) {
                    results.push((self.bytes as f64 / t.seconds() / 1e9, config));
                }
            }
        }
        results.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (gbs, c) in results.iter().take(8) {
            println!(
                "    sweep: {:>5} threads x {:>2} rows: {:>8.1} GB/s",
                c.workgroup_size, c.rows_per_workgroup, gbs
            );
        }
        Ok(())
    }
}

/// Seconds per run: GPU time (timestamps) when the adapter has it, and wall clock always.
struct Timing {
    gpu: Option<f64>,
    wall: f64,
}

impl Timing {
    /// The figure used for rates: GPU time where measured.
    fn seconds(&self) -> f64 {
        self.gpu.unwrap_or(self.wall)
    }
}

/// Times `runs` runs of `record(rec, i)` (each recording `commands_per_run` commands), after a
/// warm-up submission. GPU time: the median over runs of the sum of each run's timed commands.
/// Wall clock: five submissions back to back, each of enough runs for about 10 ms of GPU work,
/// divided by the runs; the recorder encodes at submit, so all but the first submission's
/// encoding overlaps the GPU's work (what is left is counted: an upper bound).
fn time_runs<'a>(
    gpu: &'a Gpu,
    runs: usize,
    commands_per_run: usize,
    record: impl Fn(&mut Recorder<'a>, usize) -> Result<()>,
) -> Result<Timing> {
    // Submits `batches` recorders of `count` runs each, back to back; returns seconds to idle.
    let submit_batches = |batches: usize, count: usize| -> Result<f64> {
        let start = Instant::now();
        for b in 0..batches {
            let mut rec = Recorder::new(gpu);
            for i in 0..count {
                record(&mut rec, b * count + i)?;
            }
            rec.submit()?;
        }
        gpu.wait()?;
        Ok(start.elapsed().as_secs_f64())
    };
    submit_batches(1, runs.max(2))?; // warm-up: pipelines, first touch of buffers, clocks

    let gpu_time = if gpu.info().features.timestamp_query {
        // At most 2048 commands per timed submission (4096 queries).
        let runs = runs.min(2048 / commands_per_run.max(1)).max(1);
        let mut rec = Recorder::new(gpu);
        for i in 0..runs {
            record(&mut rec, i)?;
        }
        let times = rec.submit_timed()?;
        let mut per_run: Vec<f64> =
            times.chunks(commands_per_run.max(1)).map(|c| c.iter().map(|t| t.seconds).sum()).collect();
        per_run.sort_by(f64::total_cmp);
        let untimed = times.iter().any(|t| t.label.contains("untimed"));
        (!untimed && !per_run.is_empty()).then(|| per_run[per_run.len() / 2]).filter(|&s| s > 0.0)
    } else {
        None
    };

    let estimate = match gpu_time {
        Some(s) => s,
        None => submit_batches(1, runs)? / runs as f64,
    };
    let count = ((0.01 / estimate.max(1e-9)) as usize).clamp(runs.min(100), 10_000);
    let batches = 5;
    let wall = submit_batches(batches, count)? / (batches * count) as f64;
    Ok(Timing { gpu: gpu_time, wall })
}

/// Random 32-bit words (the copy's source: what it holds does not matter, but it is not zero).
fn random_words(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed);
    (0..n).map(|_| rng.next() as u32).collect()
}

/// SplitMix64, as in the tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` values uniform in [-1, 1).
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0).collect()
    }
}
